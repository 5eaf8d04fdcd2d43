// The per-task state: what a person should see of one task, folded from the bodies the server
// sends (over SSE or polling, in any order). Pure: no timers, no network — unit-tested in Node.
//
// Rules (CONTRACT §2–4):
// - `percent` follows the academy front end's drawing rules (a video UPLOADED is 10 %,
//   PROCESSING max(1, min(99, progress)), READY 100; a job PENDING 0, RUNNING its overall
//   percent within 1..99, DONE 100) and never goes back within an attempt: only a new attempt
//   (a higher `attempt`, or the first active state after RETRY_WAIT/RETRYING) or a new run
//   (a terminal task that starts over, e.g. a retried video) may show less.
// - A terminal state is delivered once; later copies of it change nothing.
// - A body identical to the last one delivered is not delivered again.
// - UNKNOWN keeps what was shown before and starts the give-up clock (`unknownSince`).

import type {
  JobBody, JobStatus, Kind, ProgressBody, VideoBody, VideoStatus,
} from './types.js';

export const VIDEO_TERMINAL: ReadonlySet<string> = new Set(['READY', 'FAILED']);
export const JOB_TERMINAL: ReadonlySet<string> = new Set([
  'DONE', 'FAILED', 'REJECTED_BAD_INPUT', 'FALLBACK_TO_GPU', 'REVIEW_REQUIRED',
]);
const RETRY_STATES: ReadonlySet<string> = new Set(['RETRY_WAIT', 'RETRYING']);
const ACTIVE_STATES: ReadonlySet<string> = new Set(['PROCESSING', 'RUNNING']);

/** True when no further change is expected (UNKNOWN is not terminal: it may still appear). */
export function isTerminal(kind: Kind, status: string | null | undefined): boolean {
  if (!status) return false;
  return kind === 'video' ? VIDEO_TERMINAL.has(status) : JOB_TERMINAL.has(status);
}

/** The current step of an active task. */
export interface Step {
  index: number;
  total: number;
  /** Display name, e.g. `인코딩` (the machine name when the server sent no display name). */
  name: string | null;
  percent: number | null;
}

/** What a watcher delivers for one task. */
export interface TaskProgress {
  kind: Kind;
  id: string;
  status: VideoStatus | JobStatus | string;
  /** 0–100 by the front end's drawing rules, never lower than before within an attempt. */
  percent: number | null;
  step: Step | null;
  /** Seconds left, as the server estimates them (null when unknown). */
  etaSeconds: number | null;
  attempt: number | null;
  terminal: boolean;
  /** UNKNOWN for longer than the watcher's give-up time: no longer watched. */
  gaveUp: boolean;
  /** When the task became UNKNOWN (ms since the epoch), null while it is known. */
  unknownSince: number | null;
  /** The body as the server sent it. */
  body: ProgressBody;
  /** Where the body came from. */
  source: Source;
  /** When it was received (ms since the epoch). */
  at: number;
}

export type Source = 'sse' | 'poll' | 'app';

function num(v: unknown): number | null {
  return typeof v === 'number' && Number.isFinite(v) ? v : null;
}

function clamp(n: unknown, lo: number, hi: number): number {
  const v = num(n) ?? lo;
  return Math.min(hi, Math.max(lo, Math.round(v)));
}

function field(body: unknown, name: string): unknown {
  return body && typeof body === 'object' ? (body as Record<string, unknown>)[name] : undefined;
}

function jobProgress(body: unknown): Record<string, unknown> | null {
  const p = field(body, 'progress');
  return p && typeof p === 'object' ? (p as Record<string, unknown>) : null;
}

/**
 * The percent a bar shows for `body`, by the front end's rules; states without a number keep
 * `previous`. `null` means "no idea yet" (an indeterminate bar).
 */
export function displayPercent(kind: Kind, body: unknown, previous: number | null = null): number | null {
  const s = field(body, 'status');
  if (kind === 'video') {
    const p = field(body, 'encoding_progress') ?? field(body, 'progress');
    switch (s) {
      case 'UPLOADED': return 10;
      case 'PROCESSING': return clamp(p, 1, 99);
      // Between attempts the bar stays where the failed attempt left it.
      case 'RETRY_WAIT': return previous ?? clamp(p, 1, 99);
      case 'READY': return 100;
      case 'FAILED': return previous ?? clamp(field(body, 'progress'), 0, 100);
      default: return previous;
    }
  }
  switch (s) {
    case 'PENDING': return previous ?? 0;
    case 'RUNNING': {
      const p = jobProgress(body);
      return p ? clamp(p.percent, 1, 99) : (previous ?? 1);
    }
    case 'DONE': return field(body, 'error_message') ? (previous ?? 100) : 100;
    default: return previous;
  }
}

/** The step of an active task's body, or null. */
export function stepOf(kind: Kind, body: unknown): Step | null {
  let index; let total; let name; let percent;
  if (kind === 'video') {
    index = field(body, 'encoding_step_index'); total = field(body, 'encoding_step_total');
    name = field(body, 'encoding_step_name'); percent = field(body, 'encoding_step_percent');
  } else {
    const p = jobProgress(body);
    if (!p) return null;
    index = p.step_index; total = p.step_total;
    name = p.step_name_display || p.step_name || p.step; percent = p.step_percent;
  }
  const i = num(index);
  const t = num(total);
  if (i == null || t == null) return null;
  return {
    index: i,
    total: t,
    name: typeof name === 'string' ? name : null,
    percent: num(percent) == null ? null : clamp(percent, 0, 100),
  };
}

/** Seconds left from either body shape (null when unknown). */
export function etaOf(kind: Kind, body: unknown): number | null {
  const v = kind === 'video'
    ? field(body, 'encoding_remaining_seconds')
    : jobProgress(body)?.remaining_seconds;
  const n = num(v);
  return n != null && n >= 0 ? n : null;
}

/** The id a body names (`id` of a video, `job_id` of a job), as a string. */
export function idOf(kind: Kind, body: unknown): string | null {
  const v = field(body, kind === 'video' ? 'id' : 'job_id');
  return typeof v === 'number' || typeof v === 'string' ? String(v) : null;
}

/** The body the server sends for an id it does not know (used for batch `unknown` lists). */
export function unknownBody(kind: Kind, id: string): VideoBody | JobBody {
  if (kind === 'video') {
    return {
      id: Number(id), state: 'UNKNOWN', status: 'UNKNOWN', progress: 0, encoding_progress: 0,
      encoding_remaining_seconds: null, encoding_step_index: null, encoding_step_total: null,
      encoding_step_name: null, encoding_step_percent: null,
    };
  }
  return { job_id: id, status: 'UNKNOWN', message: 'No progress is known for this job.' };
}

/** The outcome of folding one body into a task's state. */
export interface Folded {
  next: TaskProgress;
  /** Whether this is news to deliver (false for a repeated terminal state or an identical body). */
  deliver: boolean;
}

/**
 * Folds `body` into `prev` (undefined for a task seen for the first time). `now` is the
 * receive time in ms.
 */
export function fold(
  prev: TaskProgress | undefined,
  kind: Kind,
  id: string,
  body: ProgressBody,
  source: Source,
  now: number,
): Folded {
  const raw = field(body, 'status');
  const status = typeof raw === 'string' && raw ? raw : 'UNKNOWN';
  const terminal = isTerminal(kind, status);
  if (prev && prev.terminal && terminal) {
    // Terminal states absorb later writes of their run: nothing new can follow.
    return { next: prev, deliver: false };
  }
  if (prev && prev.gaveUp && status === 'UNKNOWN') {
    // Given up on, and still unknown: nothing new.
    return { next: prev, deliver: false };
  }
  if (prev && JSON.stringify(prev.body) === JSON.stringify(body)) {
    return { next: prev, deliver: false };
  }
  const attempt = num(field(body, 'attempt'));
  const newRun = Boolean(prev && prev.terminal && !terminal && status !== 'UNKNOWN');
  const newAttempt = Boolean(prev && (
    newRun
    || (attempt != null && prev.attempt != null && attempt > prev.attempt)
    || (RETRY_STATES.has(String(prev.status)) && ACTIVE_STATES.has(status))
  ));
  // Waiting for the next attempt, the bar stays where the failed one left it.
  const waiting = RETRY_STATES.has(status);
  const previous = prev && (!newAttempt || waiting) ? prev.percent : null;
  const shown = displayPercent(kind, body, previous);
  const percent = !newAttempt && previous != null && shown != null
    ? Math.max(previous, shown)
    : shown ?? previous;
  const next: TaskProgress = {
    kind,
    id,
    status,
    percent,
    step: stepOf(kind, body),
    etaSeconds: etaOf(kind, body),
    attempt: attempt ?? (newRun ? null : prev?.attempt ?? null),
    terminal,
    gaveUp: false,
    unknownSince: status === 'UNKNOWN' ? (prev?.unknownSince ?? now) : null,
    body,
    source,
    at: now,
  };
  return { next, deliver: true };
}

/** The state after giving up on a task that stayed UNKNOWN. */
export function gaveUp(prev: TaskProgress, now: number): TaskProgress {
  return { ...prev, gaveUp: true, at: now };
}

/** Milliseconds between polls of a task watched for `ageMs`: 5 s, then 15 s, then 30 s. */
export function frontEndCadence(ageMs: number): number {
  if (ageMs < 60_000) return 5_000;
  if (ageMs < 10 * 60_000) return 15_000;
  return 30_000;
}

/**
 * The server's poll hint in ms: `X-Poll-After` (seconds, or `stop`), else `Retry-After`
 * (seconds). `'stop'` when the server says the task is finished; null when there is no hint.
 */
export function pollHint(xPollAfter: string | null, retryAfter: string | null): number | 'stop' | null {
  const x = (xPollAfter || '').trim().toLowerCase();
  if (x === 'stop') return 'stop';
  const secs = Number(x || (retryAfter || '').trim());
  if ((x || retryAfter) && Number.isFinite(secs) && secs >= 0) return Math.min(secs, 3600) * 1000;
  return null;
}

/** Video ids are positive integers, job ids `[A-Za-z0-9_-]{1,64}` (the server's rules). */
export function validId(kind: Kind, id: string): boolean {
  return kind === 'video' ? /^[1-9][0-9]{0,17}$/.test(id) : /^[A-Za-z0-9_-]{1,64}$/.test(id);
}
