// HTTP pieces of the client: the error type, authenticated GETs with the caching headers the
// progress routes use, and the URLs of the routes.

import type { Kind } from './types.js';

/** An answer that was not 2xx/304 (status 0: the request did not reach the server). */
export class ApiError extends Error {
  readonly status: number;
  readonly code: string;
  /** `Retry-After` of a 429/503, in ms, when the server sent one. */
  readonly retryAfterMs: number | null;

  constructor(status: number, code: string, message: string, retryAfterMs: number | null = null) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
    this.retryAfterMs = retryAfterMs;
  }

  /** 401/403: the token is refused or not allowed to do this; retrying will not help. */
  get fatal(): boolean {
    return this.status === 401 || this.status === 403;
  }
}

/** Where the API is and how to authenticate. */
export interface Connection {
  /** Origin (and optional path prefix) of the API, e.g. `https://api.example`; '' = same origin. */
  baseUrl?: string;
  /** The bearer token, or a function returning the current one (called for every request). */
  token?: string | null | (() => string | null | undefined);
  /** Extra headers for every request (e.g. `X-Tenant-Code`), or a function returning them. */
  headers?: Record<string, string> | (() => Record<string, string>);
  /** `fetch` to use (defaults to the global one). */
  fetch?: typeof fetch;
}

export function tokenOf(c: Connection): string | null {
  const t = typeof c.token === 'function' ? c.token() : c.token;
  return t ? String(t) : null;
}

function retryAfterMs(res: Response): number | null {
  const v = Number(res.headers.get('Retry-After'));
  return res.headers.get('Retry-After') != null && Number.isFinite(v) && v >= 0 ? v * 1000 : null;
}

/** The `{error: {code, message}}` envelope (or `{error: "..."}`) of an answer as an ApiError. */
export async function errorOf(res: Response): Promise<ApiError> {
  let code = `http_${res.status}`;
  let message = `The server answered ${res.status}.`;
  try {
    const body = JSON.parse(await res.text());
    if (body && typeof body.error === 'string') message = body.error;
    else if (body && body.error && typeof body.error === 'object') {
      if (typeof body.error.message === 'string') message = body.error.message;
      if (typeof body.error.code === 'string') code = body.error.code;
    }
  } catch {
    // Not JSON (a proxy's page): keep the generic message.
  }
  return new ApiError(res.status, code, message, retryAfterMs(res));
}

/** A GET answer: `body` is null for 304. */
export interface Got<T> {
  status: number;
  body: T | null;
  etag: string | null;
  xPollAfter: string | null;
  retryAfter: string | null;
}

/** An authenticated JSON GET. Throws ApiError for non-2xx/304 (status 0 for network errors). */
export async function getJson<T>(
  c: Connection,
  path: string,
  { etag, signal }: { etag?: string | null; signal?: AbortSignal } = {},
): Promise<Got<T>> {
  const headers: Record<string, string> = { Accept: 'application/json' };
  const extra = typeof c.headers === 'function' ? c.headers() : c.headers;
  Object.assign(headers, extra || {});
  const t = tokenOf(c);
  if (t) headers.Authorization = `Bearer ${t}`;
  if (etag) headers['If-None-Match'] = etag;
  const f = c.fetch || globalThis.fetch;
  let res: Response;
  try {
    res = await f(`${c.baseUrl || ''}${path}`, {
      headers, signal, cache: 'no-store', credentials: 'omit',
    });
  } catch (e) {
    throw new ApiError(0, 'network', `The request failed: ${e instanceof Error ? e.message : String(e)}`);
  }
  const meta = {
    status: res.status,
    etag: res.headers.get('ETag'),
    xPollAfter: res.headers.get('X-Poll-After'),
    retryAfter: res.headers.get('Retry-After'),
  };
  if (res.status === 304) return { ...meta, body: null };
  if (!res.ok) throw await errorOf(res);
  let body: T;
  try {
    body = (await res.json()) as T;
  } catch {
    throw new ApiError(res.status, 'bad_json', 'The server sent a body that is not JSON.');
  }
  return { ...meta, body };
}

/** Ids joined for a query: the server splits on literal commas. */
function ids(list: readonly string[]): string {
  return list.map(encodeURIComponent).join(',');
}

export function progressPath(kind: Kind, id: string): string {
  return kind === 'video'
    ? `/api/v1/media/videos/${encodeURIComponent(id)}/progress/`
    : `/api/v1/jobs/${encodeURIComponent(id)}/progress/`;
}

export function batchPath(videos: readonly string[], jobs: readonly string[]): string {
  const q: string[] = [];
  if (videos.length) q.push(`videos=${ids(videos)}`);
  if (jobs.length) q.push(`jobs=${ids(jobs)}`);
  return `/api/v1/progress/${q.length ? `?${q.join('&')}` : ''}`;
}

/** What a stream watches. */
export type StreamScope = { all: true } | { all?: false; videos: readonly string[]; jobs: readonly string[] };

/**
 * The stream's path. EventSource cannot send headers, so the token rides in the query
 * (`withToken`), and so does the resume position when a new EventSource resumes.
 */
export function streamPath(scope: StreamScope, token: string | null, lastEventId: string | null): string {
  const q: string[] = [];
  if (scope.all) q.push('all=true');
  else {
    if (scope.videos.length) q.push(`videos=${ids(scope.videos)}`);
    if (scope.jobs.length) q.push(`jobs=${ids(scope.jobs)}`);
  }
  if (lastEventId) q.push(`last_event_id=${encodeURIComponent(lastEventId)}`);
  if (token) q.push(`access_token=${encodeURIComponent(token)}`);
  return `/api/v1/progress/stream?${q.join('&')}`;
}
