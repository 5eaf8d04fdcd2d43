// Pure helpers of the dashboard: the front end's display rules (bar percent, steps, ETA words),
// token decoding and the credentials CSV. No DOM, no network: Node's test runner imports this
// file directly (tests/browser/format.test.mjs).

export const STAFF_ROLES = new Set(['owner', 'admin', 'teacher', 'staff']);

// The contract's rules that live progress also needs (terminal states, the bar's percent, the
// polling cadence) have one implementation: the client's.
export {
  VIDEO_TERMINAL, JOB_TERMINAL, isTerminal, displayPercent as barPercent, frontEndCadence as pollDelay,
} from './jobpulse-client.js';

/** Terminal or still going, the outcome that picks the badge colour and the row's look. */
export function outcome(kind, body) {
  const s = body && body.status;
  if (kind === 'job' && s === 'DONE' && body.error_message) return 'failed';
  switch (s) {
    case 'READY': case 'DONE': return 'ok';
    case 'FAILED': case 'REJECTED_BAD_INPUT': return 'failed';
    case 'FALLBACK_TO_GPU': case 'REVIEW_REQUIRED': return 'attention';
    case 'RETRY_WAIT': case 'RETRYING': return 'retry';
    case 'PROCESSING': case 'RUNNING': return 'active';
    case 'UPLOADED': case 'PENDING': return 'waiting';
    default: return 'unknown';
  }
}

function clamp(n, lo, hi) {
  const v = Number.isFinite(n) ? n : lo;
  return Math.min(hi, Math.max(lo, Math.round(v)));
}

/** `{text: "[4/7] 인코딩", percent: 40}` while a step is known, else null. */
export function stepInfo(kind, body) {
  if (!body) return null;
  let index; let total; let name; let percent;
  if (kind === 'video') {
    index = body.encoding_step_index; total = body.encoding_step_total;
    name = body.encoding_step_name; percent = body.encoding_step_percent;
  } else {
    const p = body.progress;
    if (!p || typeof p !== 'object') return null;
    index = p.step_index; total = p.step_total;
    name = p.step_name_display || p.step_name || p.step; percent = p.step_percent;
  }
  if (index == null || total == null) return null;
  return {
    text: `[${index}/${total}] ${name ?? ''}`.trim(),
    percent: percent == null ? null : clamp(percent, 0, 100),
  };
}

/** Seconds left, from either body shape (null when unknown). */
export function remainingSeconds(kind, body) {
  if (!body) return null;
  const v = kind === 'video'
    ? body.encoding_remaining_seconds
    : body.progress && typeof body.progress === 'object' ? body.progress.remaining_seconds : null;
  return Number.isFinite(v) && v >= 0 ? v : null;
}

/** "about 40 s left", "about 3 min left", "about 1 h 20 min left"; null when unknown. */
export function etaWords(seconds) {
  if (seconds == null || !Number.isFinite(seconds) || seconds < 0) return null;
  if (seconds < 5) return 'almost done';
  if (seconds < 60) return `about ${Math.max(5, Math.round(seconds / 5) * 5)} s left`;
  if (seconds < 90 * 60) return `about ${Math.max(1, Math.round(seconds / 60))} min left`;
  const h = Math.floor(seconds / 3600);
  const m = Math.round((seconds - h * 3600) / 60);
  return m ? `about ${h} h ${m} min left` : `about ${h} h left`;
}

/** `25 s`, `1 min`, `1 h 5 min` (the words `jobpulse watch` uses too). */
export function spanWords(seconds) {
  const s = Math.max(0, Math.floor(Number.isFinite(seconds) ? seconds : 0));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min`;
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  return m ? `${h} h ${m} min` : `${h} h`;
}

/**
 * "no sign of the worker for 1 min" while a running task's answer says `stalled`
 * (docs/contract.md §3a); `secondsAgo` defaults to the answer's `worker_seen_seconds_ago`
 * (the page passes it advanced by the time since the answer came). Null otherwise.
 */
export function livenessText(body, secondsAgo) {
  if (!body || body.stalled !== true) return null;
  const ago = Number.isFinite(secondsAgo) ? secondsAgo : body.worker_seen_seconds_ago;
  return `no sign of the worker for ${spanWords(ago)}`;
}

/**
 * "attempt 2 of 3 — retrying in 20 s" between attempts (the next attempt; `retry_at` against
 * `nowMs`), "attempt 2 of 3" while a retry runs (docs/contract.md §3b); null for a first
 * attempt or without an attempt number.
 */
export function attemptText(body, nowMs) {
  if (!body || !Number.isFinite(body.attempt)) return null;
  const of = Number.isFinite(body.max_attempts) ? ` of ${body.max_attempts}` : '';
  if (body.status === 'RETRY_WAIT' || body.status === 'RETRYING') {
    const left = Number.isFinite(body.retry_at) ? body.retry_at - nowMs : 0;
    const when = left > 0 ? `retrying in ${spanWords(Math.ceil(left / 1000))}` : 'retrying now';
    return `attempt ${body.attempt + 1}${of} — ${when}`;
  }
  if ((body.status === 'PROCESSING' || body.status === 'RUNNING') && body.attempt > 1) {
    return `attempt ${body.attempt}${of}`;
  }
  return null;
}

function b64urlDecode(part) {
  let s = part.replace(/-/g, '+').replace(/_/g, '/');
  while (s.length % 4) s += '=';
  const bin = atob(s);
  const bytes = Uint8Array.from(bin, (c) => c.charCodeAt(0));
  return new TextDecoder().decode(bytes);
}

/**
 * The claims of a JWT, for display only: the signature is NOT checked here (the server checks
 * it on every request). Throws on anything that is not a three-part token with a JSON payload.
 */
export function decodeToken(token) {
  const parts = String(token).trim().split('.');
  if (parts.length !== 3 || parts.some((p) => !/^[A-Za-z0-9_-]*$/.test(p)) || !parts[1]) {
    throw new Error('This does not look like a token (three dot-separated parts).');
  }
  let claims;
  try {
    claims = JSON.parse(b64urlDecode(parts[1]));
  } catch {
    throw new Error('The token payload is not readable JSON.');
  }
  if (!claims || typeof claims !== 'object' || Array.isArray(claims)) {
    throw new Error('The token payload is not a JSON object.');
  }
  return claims;
}

/** The token from a `#token=…` fragment (other fragment parameters are ignored). */
export function tokenFromHash(hash) {
  const h = String(hash || '').replace(/^#/, '');
  if (!h) return null;
  const v = new URLSearchParams(h).get('token');
  return v ? v.trim() : null;
}

export function isStaff(claims) {
  return Boolean(claims && typeof claims.role === 'string' && STAFF_ROLES.has(claims.role));
}

// A cell that starts with one of these is a formula to a spreadsheet program.
const FORMULA_START = /^[=+\-@\t\r]/;

function csvCell(v) {
  let s = v == null ? '' : String(v);
  if (FORMULA_START.test(s)) s = `'${s}`;
  return /[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

/**
 * The credentials of an import as CSV text: UTF-8 with a BOM (so Excel reads Korean names
 * correctly), CRLF line ends, formula-looking cells defused.
 */
export function credentialsCsv(credentials) {
  const rows = [['이름 (name)', '아이디 (login_id)', '비밀번호 (password)']];
  for (const c of Array.isArray(credentials) ? credentials : []) {
    rows.push([c && c.name, c && c.login_id, c && c.password]);
  }
  return `\uFEFF${rows.map((r) => r.map(csvCell).join(',')).join('\r\n')}\r\n`;
}

/** A display string for one entry of `duplicates[]`/`restored[]` (strings or small objects). */
export function entryText(e) {
  if (e == null) return '';
  if (typeof e !== 'object') return String(e);
  const parts = [];
  if (e.row != null) parts.push(`row ${e.row}`);
  if (e.name != null) parts.push(String(e.name));
  if (e.login_id != null) parts.push(String(e.login_id));
  return parts.length ? parts.join(' · ') : JSON.stringify(e);
}

/** The parts of an excel_parsing result the summary shows. */
export function importSummary(result) {
  const r = result && typeof result === 'object' ? result : {};
  const list = (v) => (Array.isArray(v) ? v : []);
  return {
    created: Number.isFinite(r.created) ? r.created : 0,
    duplicates: list(r.duplicates),
    restored: list(r.restored),
    failed: list(r.failed).map((f) => ({
      row: f && f.row != null ? f.row : '?',
      name: f && f.name != null ? String(f.name) : '',
      error: f && f.error != null ? String(f.error) : '',
    })),
    hasCredentials: Array.isArray(r.credentials) && r.credentials.length > 0,
  };
}

/** A URL safe to put in `src`/`poster`: http(s) only, resolved against `base`. */
export function safeUrl(u, base) {
  if (typeof u !== 'string' || !u) return null;
  try {
    const url = new URL(u, base);
    return url.protocol === 'http:' || url.protocol === 'https:' ? url.href : null;
  } catch {
    return null;
  }
}
