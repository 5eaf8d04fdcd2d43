// The HTTP client of the dashboard: the bearer token, JSON and error envelopes, uploads with
// progress (XMLHttpRequest, the one browser API that reports upload progress), and the single
// place where a 401 turns into "sign in again".

const TOKEN_KEY = 'jobpulse.token';

/** An answer that was not 2xx/304, with the server's message when it sent one. */
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

let onUnauthorized = () => {};

/** Called once with the handler that signs the user out on any 401. */
export function setUnauthorizedHandler(fn) {
  onUnauthorized = fn;
}

export function getToken() {
  try {
    return sessionStorage.getItem(TOKEN_KEY);
  } catch {
    return null;
  }
}

export function setToken(token) {
  try {
    if (token) sessionStorage.setItem(TOKEN_KEY, token);
    else sessionStorage.removeItem(TOKEN_KEY);
  } catch {
    // Storage disabled: the token lives only as long as the page.
  }
  memoryToken = token || null;
}

let memoryToken = null;

function token() {
  return getToken() || memoryToken;
}

/** The `{error: {code, message}}` envelope (or the `{error: "..."}` variant) as an ApiError. */
function errorFrom(status, text) {
  let code = `http_${status}`;
  let message = `The server answered ${status}.`;
  try {
    const body = JSON.parse(text);
    if (body && typeof body.error === 'string') message = body.error;
    else if (body && body.error && typeof body.error === 'object') {
      if (typeof body.error.message === 'string') message = body.error.message;
      if (typeof body.error.code === 'string') code = body.error.code;
    } else if (body && typeof body.message === 'string') message = body.message;
  } catch {
    // Not JSON (a proxy's HTML page): keep the generic message.
  }
  return new ApiError(status, code, message);
}

function check401(status, err) {
  if (status === 401) {
    onUnauthorized(err.message || 'Your token was refused.');
  }
}

/**
 * A JSON request. Returns `{status, body, etag, pollAfter}`; `body` is null for 204/304.
 * `etag` sends If-None-Match. Throws ApiError for other statuses (and signs out on 401).
 */
export async function request(path, { method = 'GET', body, etag, signal } = {}) {
  const headers = { Accept: 'application/json' };
  const t = token();
  if (t) headers.Authorization = `Bearer ${t}`;
  if (etag) headers['If-None-Match'] = etag;
  let payload = body;
  if (body && !(body instanceof FormData)) {
    headers['Content-Type'] = 'application/json';
    payload = JSON.stringify(body);
  }
  const res = await fetch(path, {
    method, headers, body: payload, signal, cache: 'no-store', credentials: 'omit',
  });
  const meta = {
    status: res.status,
    etag: res.headers.get('ETag'),
    pollAfter: res.headers.get('X-Poll-After'),
    body: null,
  };
  if (res.status === 304 || res.status === 204) return meta;
  const text = await res.text();
  if (!res.ok) {
    // A 422 may carry a job body (REJECTED_BAD_INPUT) rather than an error envelope.
    const err = errorFrom(res.status, text);
    try {
      err.body = JSON.parse(text);
    } catch {
      err.body = null;
    }
    check401(res.status, err);
    throw err;
  }
  if (text) {
    try {
      meta.body = JSON.parse(text);
    } catch {
      throw new ApiError(res.status, 'bad_json', 'The server sent a body that is not JSON.');
    }
  }
  return meta;
}

/** GET that answers null for 404/405 (an endpoint this server does not have). */
export async function getOptional(path) {
  try {
    return (await request(path)).body;
  } catch (e) {
    if (e instanceof ApiError && (e.status === 404 || e.status === 405)) return null;
    throw e;
  }
}

/**
 * A multipart POST with upload progress. `onProgress(loaded, total)` fires as bytes leave.
 * Resolves to the JSON body; rejects with ApiError (status 0 for a network failure).
 */
export function upload(path, form, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open('POST', path);
    const t = token();
    if (t) xhr.setRequestHeader('Authorization', `Bearer ${t}`);
    xhr.setRequestHeader('Accept', 'application/json');
    xhr.responseType = 'text';
    xhr.upload.addEventListener('progress', (e) => {
      if (e.lengthComputable) onProgress(e.loaded, e.total);
    });
    xhr.addEventListener('load', () => {
      if (xhr.status >= 200 && xhr.status < 300) {
        try {
          resolve(JSON.parse(xhr.responseText || '{}'));
        } catch {
          reject(new ApiError(xhr.status, 'bad_json', 'The server sent a body that is not JSON.'));
        }
        return;
      }
      const err = errorFrom(xhr.status, xhr.responseText);
      try {
        err.body = JSON.parse(xhr.responseText);
      } catch {
        err.body = null;
      }
      check401(xhr.status, err);
      reject(err);
    });
    xhr.addEventListener('error', () => reject(new ApiError(0, 'network', 'The upload failed: network error.')));
    xhr.addEventListener('abort', () => reject(new ApiError(0, 'aborted', 'The upload was cancelled.')));
    xhr.send(form);
  });
}
