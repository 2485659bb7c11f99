// The app's HTTP API, through the web server's /api proxy. Every failure becomes an
// ApiError whose message is the one the app wrote in its error body, or a plain sentence
// naming what to check when no app answered.

import { t } from './i18n.js';

const KEY = 'weknora.apiKey';

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** The key in use: kept for this tab only, unless the user asked to be remembered. */
export function apiKey() {
  return sessionStorage.getItem(KEY) || localStorage.getItem(KEY) || '';
}

export function setApiKey(key, remember) {
  signOut();
  (remember ? localStorage : sessionStorage).setItem(KEY, key);
}

export function signOut() {
  sessionStorage.removeItem(KEY);
  localStorage.removeItem(KEY);
}

/** The error for a response that is not a success, from its status and body text. */
function errorFrom(status, text) {
  try {
    const body = JSON.parse(text);
    if (body && body.error && body.error.message) {
      return new ApiError(status, (body.error.details && body.error.details.reason) || 'error', body.error.message);
    }
  } catch {
    // Not JSON: nginx answered for the app (size limit, app down).
  }
  if (status === 413) return new ApiError(status, 'file_too_large', t('err.tooLarge'));
  if (status === 502 || status === 503 || status === 504) {
    return new ApiError(status, 'unavailable', t('err.gateway', { status }));
  }
  return new ApiError(status, 'unexpected', t('err.unexpected', { status }));
}

/** `api('GET', '/knowledge-bases')`: the whole JSON body of a successful answer. */
export async function api(method, path, body, key = apiKey()) {
  const headers = { 'X-API-Key': key };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let response;
  try {
    response = await fetch(`/api/v1${path}`, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch {
    throw new ApiError(0, 'network', t('err.network'));
  }
  const text = await response.text();
  if (!response.ok) throw errorFrom(response.status, text);
  return text ? JSON.parse(text) : {};
}

/**
 * Uploads one file to a knowledge base, reporting progress as a fraction (0..1).
 * XMLHttpRequest because fetch cannot report upload progress.
 */
export function uploadFile(kbId, file, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open('POST', `/api/v1/knowledge-bases/${encodeURIComponent(kbId)}/knowledge/file`);
    xhr.setRequestHeader('X-API-Key', apiKey());
    xhr.upload.onprogress = (e) => {
      if (e.lengthComputable) onProgress(e.loaded / e.total);
    };
    xhr.onload = () => {
      if (xhr.status >= 200 && xhr.status < 300) resolve(JSON.parse(xhr.responseText));
      else reject(errorFrom(xhr.status, xhr.responseText));
    };
    xhr.onerror = () => reject(new ApiError(0, 'network', t('err.network')));
    const form = new FormData();
    form.append('file', file, file.name);
    xhr.send(form);
  });
}

/**
 * A Server-Sent Events parser: feed it the stream's text piece by piece, however it was
 * cut, and it calls `onEvent({event, data})` once per complete event (the `event:` and
 * `data:` lines up to a blank line; several `data:` lines join with a newline; `:` lines
 * are comments such as keep-alives).
 */
export function sseParser(onEvent) {
  let buffer = '';
  let event = '';
  let data = [];
  return (text) => {
    buffer += text;
    // Only whole lines: the rest waits for the next piece (a "\r" alone at the end too,
    // as its "\n" may follow).
    for (let end = buffer.indexOf('\n'); end >= 0; end = buffer.indexOf('\n')) {
      const line = buffer.slice(0, end).replace(/\r$/, '');
      buffer = buffer.slice(end + 1);
      if (line === '') {
        if (data.length) onEvent({ event: event || 'message', data: data.join('\n') });
        event = '';
        data = [];
        continue;
      }
      if (line.startsWith(':')) continue;
      const colon = line.indexOf(':');
      const field = colon < 0 ? line : line.slice(0, colon);
      const value = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
      if (field === 'event') event = value;
      else if (field === 'data') data.push(value);
    }
  };
}

/**
 * Asks a question in a chat session and calls `onFrame(frame)` with each frame of the
 * streamed answer as it arrives; resolves with the last one (done: true). fetch rather than
 * EventSource, which can neither POST nor send the key. A refusal before the stream (400,
 * 404, 409, 429) throws an ApiError with the app's message; so does a stream that ends
 * without its last frame. `signal` aborts the reading (AbortError), not the answer.
 */
export async function chat(sessionId, body, onFrame, signal) {
  let response;
  try {
    response = await fetch(`/api/v1/knowledge-chat/${encodeURIComponent(sessionId)}`, {
      method: 'POST',
      headers: { 'X-API-Key': apiKey(), 'Content-Type': 'application/json', Accept: 'text/event-stream' },
      body: JSON.stringify(body),
      signal,
    });
  } catch (error) {
    if (error.name === 'AbortError') throw error;
    throw new ApiError(0, 'network', t('err.network'));
  }
  if (!response.ok) throw errorFrom(response.status, await response.text());
  let last = null;
  const feed = sseParser(({ data }) => {
    const frame = JSON.parse(data);
    onFrame(frame);
    // agent_query, session_title and complete are done too: the answer's end is its own frame.
    if (frame.done && (frame.response_type === 'answer' || frame.response_type === 'error')) last = frame;
  });
  // The decoder keeps a character cut between two pieces (Chinese is 3 bytes) whole.
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  for (;;) {
    let piece;
    try {
      piece = await reader.read();
    } catch (error) {
      if (error.name === 'AbortError') throw error;
      throw new ApiError(0, 'network', t('err.streamCut'));
    }
    if (piece.done) break;
    feed(piece.value);
  }
  feed('\n\n'); // a last frame without its blank line still counts
  if (!last) throw new ApiError(0, 'network', t('err.streamCut'));
  return last;
}
