// Live updates of the work box: one Server-Sent Events stream for the tenant, with polling as
// the fallback.
//
// - Staff watch the whole tenant (`all=true`: changes only); others watch the ids on screen
//   (the stream sends their current state first). The stream is reopened, debounced, when the
//   set of watched ids changes.
// - When the stream errors, the browser's own reconnect (which resends Last-Event-ID, so the
//   server replays what was missed) gets one chance; if that fails too, we close it and reopen
//   with exponential backoff, polling meanwhile. On every (re)open of an `all=true` stream one
//   batch read catches up on tasks on screen.
// - Polling follows the academy front end's cadence (5 s for a task's first minute, 15 s up to
//   10 minutes, 30 s after), stops at a terminal status, pauses while the tab is hidden, sends
//   If-None-Match, and never has more than one request in flight per task.

import { request, streamUrl } from './api.js';
import { isTerminal, pollDelay } from './format.js';

const MAX_STREAM_IDS = 200;
const BACKOFF_MIN_MS = 1_000;
const BACKOFF_MAX_MS = 60_000;
const STABLE_MS = 30_000;

export const key = (kind, id) => `${kind}:${id}`;

function progressPath(kind, id) {
  return kind === 'video'
    ? `/api/v1/media/videos/${encodeURIComponent(id)}/progress/`
    : `/api/v1/jobs/${encodeURIComponent(id)}/progress/`;
}

export class Live {
  /**
   * @param {object} o
   * @param {boolean} o.all watch the whole tenant (staff)
   * @param {(kind: string, id: string, body: object) => void} o.onBody a task's new state
   * @param {() => void} o.onResync the server lost history: reload the lists
   * @param {(mode: string) => void} o.onMode 'connecting' | 'live' | 'polling' | 'paused' | 'idle'
   */
  constructor({ all, onBody, onResync, onMode }) {
    this.all = all;
    this.onBody = onBody;
    this.onResync = onResync;
    this.onMode = onMode;
    this.tasks = new Map();
    this.es = null;
    this.open = false;
    this.pollingOn = false;
    this.failures = 0;
    this.openedAt = 0;
    this.reconnectTimer = null;
    this.reopenTimer = null;
    this.streamKey = '';
    this.started = false;
    this.stopped = false;
    this.mode = '';
    this.onVisibility = () => this.visibilityChanged();
    document.addEventListener('visibilitychange', this.onVisibility);
  }

  /** Starts watching a task (no-op when already watched); `body` is its state, if known. */
  track(kind, id, body) {
    const k = key(kind, id);
    let t = this.tasks.get(k);
    if (!t) {
      t = { kind, id: String(id), since: Date.now(), terminal: false, etag: null,
        inflight: false, timer: null };
      this.tasks.set(k, t);
    }
    if (body && body.status) {
      const terminal = isTerminal(kind, body.status);
      // A retried video starts over: a fresh cadence.
      if (t.terminal && !terminal) t.since = Date.now();
      t.terminal = terminal;
    }
    this.changed();
    this.schedule(t);
  }

  forget(kind, id) {
    const t = this.tasks.get(key(kind, id));
    if (!t) return;
    clearTimeout(t.timer);
    this.tasks.delete(key(kind, id));
    this.changed();
  }

  /** A task's state arrived (from any source): remember whether to keep watching it. */
  deliver(kind, id, body) {
    const t = this.tasks.get(key(kind, id));
    if (t && body && body.status) {
      const wasTerminal = t.terminal;
      t.terminal = isTerminal(kind, body.status);
      if (t.terminal) clearTimeout(t.timer);
      if (wasTerminal && !t.terminal) {
        // A retried video starts over: a fresh cadence, and ids-streams must include it again.
        t.since = Date.now();
        this.changed();
        this.schedule(t);
      }
    }
    this.onBody(kind, String(id), body);
  }

  start() {
    this.started = true;
    this.stopped = false;
    this.connect();
  }

  stop() {
    this.stopped = true;
    document.removeEventListener('visibilitychange', this.onVisibility);
    this.closeStream();
    clearTimeout(this.reconnectTimer);
    clearTimeout(this.reopenTimer);
    for (const t of this.tasks.values()) clearTimeout(t.timer);
    this.tasks.clear();
  }

  // ---- the stream ----

  watchedIds() {
    const videos = [];
    const jobs = [];
    // Newest first; the server's limit is far above what one person has running.
    for (const t of [...this.tasks.values()].reverse()) {
      if (t.terminal || videos.length + jobs.length >= MAX_STREAM_IDS) continue;
      (t.kind === 'video' ? videos : jobs).push(t.id);
    }
    return { videos, jobs };
  }

  /** The set of watched tasks changed: an ids-stream must be reopened (debounced). */
  changed() {
    if (this.all || this.stopped || !this.started) return;
    clearTimeout(this.reopenTimer);
    this.reopenTimer = setTimeout(() => {
      const { videos, jobs } = this.watchedIds();
      const next = `${videos.join(',')}|${jobs.join(',')}`;
      if (next !== this.streamKey) this.connect();
    }, 300);
  }

  closeStream() {
    if (this.es) {
      this.es.close();
      this.es = null;
    }
    this.open = false;
  }

  setMode(mode) {
    if (mode !== this.mode) {
      this.mode = mode;
      this.onMode(mode);
    }
  }

  connect() {
    if (this.stopped) return;
    clearTimeout(this.reconnectTimer);
    this.closeStream();
    let query;
    if (this.all) {
      query = { all: 'true' };
      this.streamKey = 'all';
    } else {
      const { videos, jobs } = this.watchedIds();
      this.streamKey = `${videos.join(',')}|${jobs.join(',')}`;
      if (!videos.length && !jobs.length) {
        this.setMode('idle');
        return;
      }
      query = {};
      if (videos.length) query.videos = videos.join(',');
      if (jobs.length) query.jobs = jobs.join(',');
    }
    if (typeof EventSource !== 'function') {
      this.fallBack();
      return;
    }
    this.setMode('connecting');
    const es = new EventSource(streamUrl(query));
    this.es = es;
    let openedThisTry = false;
    es.addEventListener('open', () => {
      if (this.es !== es) return;
      openedThisTry = true;
      this.open = true;
      this.openedAt = Date.now();
      this.setMode('live');
      this.stopPolling();
      // Changes-only streams do not replay what happened before they opened.
      if (this.all) this.catchUp();
    });
    const onTask = (kind) => (ev) => {
      if (this.es !== es) return;
      let body;
      try {
        body = JSON.parse(ev.data);
      } catch {
        return;
      }
      const id = kind === 'video' ? body.id : body.job_id;
      if (id == null) return;
      if (!this.tasks.has(key(kind, id))) {
        if (!this.all) return;
        this.track(kind, id, body);
      }
      this.deliver(kind, String(id), body);
    };
    es.addEventListener('video', onTask('video'));
    es.addEventListener('job', onTask('job'));
    es.addEventListener('resync', () => {
      if (this.es === es) this.onResync();
    });
    es.addEventListener('error', () => {
      if (this.es !== es) return;
      this.open = false;
      // Only a stream that stayed up a while resets the backoff (a flapping one must not).
      if (openedThisTry && Date.now() - this.openedAt > STABLE_MS) this.failures = 0;
      if (es.readyState === EventSource.CONNECTING && openedThisTry) {
        // Let the browser reconnect once: it resends Last-Event-ID and the server replays.
        openedThisTry = false;
        this.setMode('connecting');
        this.startPolling();
        return;
      }
      this.failures += 1;
      this.fallBack();
    });
  }

  /** The stream is down: poll, and reopen it later with exponential backoff and jitter. */
  fallBack() {
    this.closeStream();
    this.setMode('polling');
    this.startPolling();
    // EventSource hides the status: a cheap authenticated read tells a refused token (the
    // request layer signs out on 401) from a network problem.
    request('/api/v1/progress/').catch(() => {});
    if (typeof EventSource !== 'function') return;
    const base = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** Math.min(this.failures, 16));
    const delay = base / 2 + Math.random() * (base / 2);
    clearTimeout(this.reconnectTimer);
    this.reconnectTimer = setTimeout(() => this.connect(), delay);
  }

  /** One batch read of every watched task (chunks of the server's limit). */
  async catchUp() {
    const active = [...this.tasks.values()].filter((t) => !t.terminal);
    for (let i = 0; i < active.length; i += MAX_STREAM_IDS) {
      const chunk = active.slice(i, i + MAX_STREAM_IDS);
      const q = new URLSearchParams();
      const videos = chunk.filter((t) => t.kind === 'video').map((t) => t.id);
      const jobs = chunk.filter((t) => t.kind === 'job').map((t) => t.id);
      if (videos.length) q.set('videos', videos.join(','));
      if (jobs.length) q.set('jobs', jobs.join(','));
      try {
        const { body } = await request(`/api/v1/progress/?${q.toString().replace(/%2C/gi, ',')}`);
        this.deliverBatch(body);
      } catch {
        // The stream or the next poll will bring it.
      }
    }
  }

  deliverBatch(body) {
    if (!body) return;
    for (const [id, b] of Object.entries(body.videos || {})) this.deliver('video', id, b);
    for (const [id, b] of Object.entries(body.jobs || {})) this.deliver('job', id, b);
  }

  // ---- polling ----

  /** Polling runs only while the stream is down (never before its first answer). */
  polling() {
    return this.pollingOn && !this.open && !this.stopped;
  }

  /** Starts polling (a first read within a second); a no-op while it already runs. */
  startPolling() {
    if (this.pollingOn) return;
    this.pollingOn = true;
    for (const t of this.tasks.values()) this.schedule(t, Math.random() * 1000);
  }

  stopPolling() {
    this.pollingOn = false;
    this.clearTimers();
  }

  clearTimers() {
    for (const t of this.tasks.values()) {
      clearTimeout(t.timer);
      t.timer = null;
    }
  }

  schedule(t, delay) {
    clearTimeout(t.timer);
    t.timer = null;
    if (!this.polling() || t.terminal || document.hidden) return;
    const wait = delay ?? pollDelay(Date.now() - t.since);
    t.timer = setTimeout(() => this.poll(t), wait);
  }

  async poll(t) {
    t.timer = null;
    if (t.inflight || !this.polling() || t.terminal || document.hidden) return;
    if (this.tasks.get(key(t.kind, t.id)) !== t) return;
    t.inflight = true;
    try {
      const res = await request(progressPath(t.kind, t.id), { etag: t.etag });
      if (res.etag) t.etag = res.etag;
      if (res.status === 200 && res.body) this.deliver(t.kind, t.id, res.body);
    } catch {
      // Network trouble or a 5xx: try again at the usual cadence (401 already signed out).
    } finally {
      t.inflight = false;
    }
    this.schedule(t);
  }

  visibilityChanged() {
    if (document.hidden) {
      this.clearTimers();
      if (this.polling()) this.setMode('paused');
    } else if (this.polling()) {
      this.setMode('polling');
      // Back in view: one prompt read of every active task, then the usual cadence.
      for (const t of this.tasks.values()) this.schedule(t, Math.random() * 500);
    }
  }
}
