// `watch()`: live progress of a set of tasks over one Server-Sent Events stream, with polling
// as the fallback — one contract, both transports.
//
// - The stream (`/api/v1/progress/stream`) sends each watched task's current state, then every
//   change. When it drops, the browser's own reconnect (which resends Last-Event-ID, so the
//   server replays what was missed) gets one chance; after that we close it, poll, and reopen
//   it with exponential backoff — a reopened stream resumes from the last event id
//   (`last_event_id`), and one batch read catches up on anything a server restart lost.
// - When the stream cannot open (no EventSource, a proxy that breaks it, 429 too many streams)
//   we poll: the batch route (`/api/v1/progress/`) for every due task in one request, with
//   If-None-Match, at the slower of the front end's cadence (5 s / 15 s / 30 s by the task's
//   age) and the server's `X-Poll-After` / `Retry-After`; per-task routes on a server without
//   the batch route. A task at a terminal state is no longer polled or streamed.
// - A refused token (401) or a forbidden scope (403) stops the watch and reports the error;
//   so does a 400 (ids the server rejects). A task UNKNOWN for longer than `giveUpAfterMs` is
//   delivered once with `gaveUp: true` and no longer watched.
// - Polling pauses while the document is hidden (`pauseWhenHidden`).

import {
  ApiError, batchPath, getJson, progressPath, streamPath, tokenOf,
  type Connection, type StreamScope,
} from './http.js';
import {
  fold, frontEndCadence, gaveUp, idOf, isTerminal, pollHint, unknownBody, validId,
  type Source, type TaskProgress,
} from './progress.js';
import type {
  BatchResponse, Kind, ProgressBody, WatchIds,
} from './types.js';

/** Most ids one stream or batch may name (the server's limit). */
export const MAX_IDS = 200;

export type Mode = 'connecting' | 'live' | 'polling' | 'paused' | 'idle' | 'stopped';

export interface WatchOptions extends Connection {
  /** Watch every task of the tenant (staff tokens): changes only, new tasks are added. */
  all?: boolean;
  /** `'poll'` never opens a stream. Default `'auto'`. */
  transport?: 'auto' | 'poll';
  /** The EventSource constructor (default: the global one; null = none, poll only). */
  EventSource?: typeof EventSource | null;
  /** Ms between polls of a task watched for `ageMs` (default: 5 s, 15 s after 1 min, 30 s after 10). */
  pollInterval?: (ageMs: number) => number;
  /** Give up on a task that stays UNKNOWN this long (ms). Default 10 minutes. */
  giveUpAfterMs?: number;
  /** Stop polling while `document.hidden` (default true). */
  pauseWhenHidden?: boolean;
  /** Backoff of stream reopen attempts (ms). Default 1 000 … 60 000. */
  reconnectMinMs?: number;
  reconnectMaxMs?: number;
  /** Start at once (default true); otherwise call `start()`. */
  autoStart?: boolean;
  /** The transport changed. */
  onMode?: (mode: Mode) => void;
  /** The watch stopped for good: 401/403/400. */
  onError?: (error: ApiError) => void;
  /** The server lost the history of an `all` stream: reload the task list. */
  onResync?: () => void;
  /**
   * The server could not replay what changed since our position (its change log no longer holds
   * it): a full snapshot of every watched task follows, `info.tasks` events, taken as the whole
   * truth (a task that went terminal meanwhile is in it).
   */
  onReset?: (info: ResetInfo) => void;
}

/** The data of a `reset` event. */
export interface ResetInfo {
  /** Why: `history_expired`. */
  reason: string;
  /** Always true: the events that follow are a full snapshot, not a diff. */
  snapshot: boolean;
  /** How many snapshot events follow (one per watched task). */
  tasks: number;
}

/** A running watch. */
export interface Watch {
  /** Watches one more task; `hint.status` (e.g. from a list endpoint) marks it terminal or not. */
  add(kind: Kind, id: string | number, hint?: { status?: string | null } | null): void;
  remove(kind: Kind, id: string | number): void;
  /** Bodies the application read itself (a batch answer): folded in like any other. */
  deliver(batch: Partial<BatchResponse> | null | undefined): void;
  /** The last state of every watched task that has one. */
  tasks(): ReadonlyMap<string, TaskProgress>;
  get(kind: Kind, id: string | number): TaskProgress | undefined;
  readonly mode: Mode;
  start(): void;
  stop(): void;
}

export type OnUpdate = (task: TaskProgress, watch: Watch) => void;

const STABLE_MS = 30_000;
const REOPEN_DEBOUNCE_MS = 300;

interface Entry {
  kind: Kind;
  id: string;
  state?: TaskProgress;
  /** No more news expected (terminal, gave up, or marked terminal by a hint). */
  final: boolean;
  /** Start of the polling cadence (reset when a finished task starts over). */
  since: number;
  nextPollAt: number;
  etag: string | null;
  inflight: boolean;
  /** Ordinal of the newest read folded in: an answer to an older read is ignored. */
  readSeq: number;
  giveUpTimer: ReturnType<typeof setTimeout> | null;
}

export const key = (kind: Kind, id: string): string => `${kind}:${id}`;

function doc(): Document | null {
  return typeof document === 'object' && document ? document : null;
}

/** Starts watching `ids`; `onUpdate` gets every task's news. */
export function watch(ids: WatchIds, onUpdate: OnUpdate, options: WatchOptions = {}): Watch {
  const w = new Watcher(onUpdate, options);
  for (const v of ids.videos || []) w.add('video', v);
  for (const j of ids.jobs || []) w.add('job', j);
  if (options.autoStart !== false) w.start();
  return w;
}

class Watcher implements Watch {
  private readonly o: WatchOptions;
  private readonly onUpdate: OnUpdate;
  private readonly entries = new Map<string, Entry>();
  private readonly ES: typeof EventSource | null;
  private es: EventSource | null = null;
  private open = false;
  private opened = 0;
  private failures = 0;
  private openedAt = 0;
  private streamKey = '';
  private streamSet = new Set<string>();
  private lastEventId: string | null = null;
  private polling = false;
  private pollTimer: ReturnType<typeof setTimeout> | null = null;
  private reconnectTimer: ReturnType<typeof setTimeout> | null = null;
  private reopenTimer: ReturnType<typeof setTimeout> | null = null;
  private minPollAt = 0;
  private batchRoute = true;
  private batchEtags = new Map<string, string>();
  private seq = 0;
  private started = false;
  private stopped = false;
  private currentMode: Mode = 'idle';
  private announced = false;
  private readonly onVisibility = () => this.visibilityChanged();

  constructor(onUpdate: OnUpdate, options: WatchOptions) {
    this.o = options;
    this.onUpdate = onUpdate;
    const ES = options.EventSource === undefined
      ? (typeof EventSource === 'function' ? EventSource : null)
      : options.EventSource;
    this.ES = options.transport === 'poll' ? null : ES;
  }

  get mode(): Mode {
    return this.currentMode;
  }

  // ---- the watched set ----

  add(kind: Kind, rawId: string | number, hint?: { status?: string | null } | null): void {
    const id = String(rawId);
    if (kind !== 'video' && kind !== 'job') throw new TypeError(`unknown kind ${String(kind)}`);
    if (!validId(kind, id)) throw new TypeError(`not a valid ${kind} id: ${JSON.stringify(id)}`);
    const k = key(kind, id);
    let e = this.entries.get(k);
    const now = Date.now();
    if (!e) {
      e = {
        kind, id, final: false, since: now, nextPollAt: 0, etag: null, inflight: false,
        readSeq: 0, giveUpTimer: null,
      };
      this.entries.set(k, e);
    }
    const status = hint && hint.status;
    if (status) {
      const terminal = isTerminal(kind, status);
      if (e.final && !terminal) {
        // A finished task starts over (a retried video): a fresh cadence, watched again.
        e.since = now;
        e.nextPollAt = 0;
        e.readSeq = this.nextSeq();
        if (e.state) e.state = { ...e.state, terminal: false, gaveUp: false, unknownSince: null };
      }
      e.final = terminal;
    }
    this.setChanged();
    this.schedulePoll();
  }

  remove(kind: Kind, rawId: string | number): void {
    const k = key(kind, String(rawId));
    const e = this.entries.get(k);
    if (!e) return;
    if (e.giveUpTimer) clearTimeout(e.giveUpTimer);
    this.entries.delete(k);
    this.setChanged();
  }

  tasks(): ReadonlyMap<string, TaskProgress> {
    const out = new Map<string, TaskProgress>();
    for (const [k, e] of this.entries) if (e.state) out.set(k, e.state);
    return out;
  }

  get(kind: Kind, id: string | number): TaskProgress | undefined {
    return this.entries.get(key(kind, String(id)))?.state;
  }

  deliver(batch: Partial<BatchResponse> | null | undefined): void {
    if (!batch) return;
    const seq = this.nextSeq();
    for (const [id, b] of Object.entries(batch.videos || {})) this.apply('video', id, b, 'app', seq);
    for (const [id, b] of Object.entries(batch.jobs || {})) this.apply('job', id, b, 'app', seq);
    for (const id of batch.unknown?.videos || []) this.apply('video', String(id), unknownBody('video', String(id)), 'app', seq);
    for (const id of batch.unknown?.jobs || []) this.apply('job', id, unknownBody('job', id), 'app', seq);
  }

  // ---- life cycle ----

  start(): void {
    if (this.started || this.stopped) return;
    this.started = true;
    doc()?.addEventListener('visibilitychange', this.onVisibility);
    this.connect();
  }

  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    doc()?.removeEventListener('visibilitychange', this.onVisibility);
    this.closeStream();
    for (const t of [this.pollTimer, this.reconnectTimer, this.reopenTimer]) if (t) clearTimeout(t);
    for (const e of this.entries.values()) if (e.giveUpTimer) clearTimeout(e.giveUpTimer);
    this.setMode('stopped');
  }

  private fatal(err: ApiError): void {
    this.stop();
    this.o.onError?.(err);
  }

  private setMode(mode: Mode): void {
    if (mode === this.currentMode && this.announced) return;
    this.announced = true;
    this.currentMode = mode;
    this.o.onMode?.(mode);
  }

  private nextSeq(): number {
    this.seq += 1;
    return this.seq;
  }

  private conn(): Connection {
    return this.o;
  }

  // ---- folding news in ----

  private apply(kind: Kind, id: string, body: ProgressBody, source: Source, seq: number): void {
    if (this.stopped) return;
    const k = key(kind, id);
    let e = this.entries.get(k);
    if (!e) {
      // Only an all-tenant stream brings tasks nobody asked for; the application's own reads
      // name tasks it shows.
      if (!(this.o.all || source === 'app') || !validId(kind, id)) return;
      this.add(kind, id);
      e = this.entries.get(k);
      if (!e) return;
    }
    if (seq < e.readSeq) return;
    const { next, deliver } = fold(e.state, kind, id, body, source, Date.now());
    e.readSeq = seq;
    e.state = next;
    const wasFinal = e.final;
    e.final = next.terminal;
    if (wasFinal && !e.final) e.since = Date.now();
    if (wasFinal !== e.final) this.setChanged();
    this.armGiveUp(e);
    if (deliver) this.onUpdate(next, this);
  }

  private armGiveUp(e: Entry): void {
    const since = e.state?.unknownSince;
    if (since == null || e.final) {
      if (e.giveUpTimer) clearTimeout(e.giveUpTimer);
      e.giveUpTimer = null;
      return;
    }
    if (e.giveUpTimer) return;
    const after = this.o.giveUpAfterMs ?? 600_000;
    e.giveUpTimer = setTimeout(() => {
      e.giveUpTimer = null;
      if (this.stopped || !e.state || e.state.unknownSince == null || e.final) return;
      e.state = gaveUp(e.state, Date.now());
      e.final = true;
      this.setChanged();
      this.onUpdate(e.state, this);
    }, Math.max(0, since + after - Date.now()));
  }

  // ---- the stream ----

  /** Ids an ids-stream names: unfinished tasks, newest first, at most MAX_IDS. */
  private scope(): StreamScope & { key: string } {
    if (this.o.all) return { all: true, key: 'all' };
    const videos: string[] = [];
    const jobs: string[] = [];
    for (const e of [...this.entries.values()].reverse()) {
      if (e.final || videos.length + jobs.length >= MAX_IDS) continue;
      (e.kind === 'video' ? videos : jobs).push(e.id);
    }
    return { videos, jobs, key: `${videos.join(',')}|${jobs.join(',')}` };
  }

  /** The watched set changed: an ids-stream is reopened (debounced) when its ids differ. */
  private setChanged(): void {
    if (this.o.all || this.stopped || !this.started) return;
    if (this.reopenTimer) clearTimeout(this.reopenTimer);
    this.reopenTimer = setTimeout(() => {
      this.reopenTimer = null;
      if (this.scope().key !== this.streamKey) this.connect();
    }, REOPEN_DEBOUNCE_MS);
  }

  private closeStream(): void {
    if (this.es) {
      this.es.close();
      this.es = null;
    }
    this.open = false;
  }

  private connect(): void {
    if (this.stopped) return;
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    this.reconnectTimer = null;
    this.closeStream();
    const scope = this.scope();
    if (scope.key !== this.streamKey) {
      // Another set of ids: the new stream starts with a snapshot, not from an old position.
      if (!this.o.all) this.lastEventId = null;
      this.streamKey = scope.key;
    }
    this.streamSet = new Set(scope.all ? [] : [
      ...scope.videos.map((v) => key('video', v)), ...scope.jobs.map((j) => key('job', j)),
    ]);
    if (!scope.all && !scope.videos.length && !scope.jobs.length) {
      this.stopPolling();
      this.setMode('idle');
      return;
    }
    if (!this.ES) {
      this.fallBack(null);
      return;
    }
    // While polling covers the tasks, a reopen attempt does not change what the user sees.
    if (!this.polling) this.setMode('connecting');
    const url = `${this.o.baseUrl || ''}${streamPath(scope, tokenOf(this.conn()), this.lastEventId)}`;
    const es = new this.ES(url);
    this.es = es;
    let openedThisTry = false;
    es.addEventListener('open', () => {
      if (this.es !== es) return;
      openedThisTry = true;
      this.open = true;
      this.openedAt = Date.now();
      this.opened += 1;
      this.setMode('live');
      this.stopPolling();
      this.schedulePoll();
      // A changes-only stream does not replay what happened before it opened, and after a
      // reopen a restarted server may not know our position: one batch read catches up.
      if (this.o.all || this.opened > 1) void this.catchUp();
    });
    const onTask = (kind: Kind) => (ev: MessageEvent) => {
      if (this.es !== es) return;
      if (ev.lastEventId) this.lastEventId = ev.lastEventId;
      let body: ProgressBody;
      try {
        body = JSON.parse(ev.data);
      } catch {
        return;
      }
      const id = idOf(kind, body);
      if (id != null) this.apply(kind, id, body, 'sse', this.nextSeq());
    };
    es.addEventListener('video', onTask('video') as EventListener);
    es.addEventListener('job', onTask('job') as EventListener);
    es.addEventListener('reset', ((ev: MessageEvent) => {
      if (this.es !== es) return;
      // The reset's id is the position to resume from once its snapshot has been read.
      if (ev.lastEventId) this.lastEventId = ev.lastEventId;
      let info: ResetInfo;
      try {
        info = JSON.parse(ev.data) as ResetInfo;
      } catch {
        info = { reason: 'unknown', snapshot: true, tasks: 0 };
      }
      this.o.onReset?.(info);
    }) as EventListener);
    es.addEventListener('resync', () => {
      if (this.es === es) this.o.onResync?.();
    });
    es.addEventListener('error', () => {
      if (this.es !== es) return;
      this.open = false;
      // Only a stream that stayed up a while resets the backoff (a flapping one must not).
      if (openedThisTry && Date.now() - this.openedAt > STABLE_MS) this.failures = 0;
      if (openedThisTry && es.readyState === 0 /* CONNECTING */) {
        // The browser reconnects once by itself, resending Last-Event-ID; poll meanwhile.
        openedThisTry = false;
        this.setMode('connecting');
        this.startPolling();
        return;
      }
      this.failures += 1;
      this.closeStream();
      if (openedThisTry) {
        this.fallBack(null);
      } else {
        // EventSource hides the status: ask once, the way it asked, to tell a refused token
        // or a full server from a network problem.
        void this.diagnose(url);
      }
    });
  }

  private async diagnose(url: string): Promise<void> {
    const ctl = typeof AbortController === 'function' ? new AbortController() : null;
    let err: ApiError | null = null;
    try {
      const res = await (this.o.fetch || globalThis.fetch)(url, {
        headers: { Accept: 'text/event-stream' }, cache: 'no-store', credentials: 'omit',
        signal: ctl?.signal,
      });
      ctl?.abort();
      if (!res.ok) err = new ApiError(res.status, `http_${res.status}`, `The stream answered ${res.status}.`,
        res.headers.get('Retry-After') != null ? Number(res.headers.get('Retry-After')) * 1000 : null);
    } catch {
      // Unreachable or blocked: a network problem.
    }
    if (this.stopped) return;
    if (err && (err.fatal || err.status === 400)) {
      this.fatal(err);
      return;
    }
    this.fallBack(err);
  }

  /** The stream is down: poll, and reopen it later with exponential backoff and jitter. */
  private fallBack(err: ApiError | null): void {
    this.closeStream();
    this.setMode(doc()?.hidden && this.pauses() ? 'paused' : 'polling');
    this.startPolling();
    if (!this.ES) return;
    const min = this.o.reconnectMinMs ?? 1_000;
    const max = this.o.reconnectMaxMs ?? 60_000;
    const base = Math.min(max, min * 2 ** Math.min(this.failures, 16));
    let delay = base / 2 + Math.random() * (base / 2);
    if (err?.retryAfterMs) delay = Math.max(delay, err.retryAfterMs);
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    this.reconnectTimer = setTimeout(() => this.connect(), delay);
  }

  /** One batch read of every unfinished task (chunks of MAX_IDS). */
  private async catchUp(): Promise<void> {
    const due = [...this.entries.values()].filter((e) => !e.final);
    await this.read(due, false);
  }

  // ---- polling ----

  private pauses(): boolean {
    return this.o.pauseWhenHidden !== false;
  }

  private startPolling(): void {
    if (this.polling) return;
    this.polling = true;
    // A first read soon (spread over a second), then the cadence.
    const now = Date.now();
    for (const e of this.entries.values()) e.nextPollAt = now + Math.random() * 1000;
    this.schedulePoll();
  }

  private stopPolling(): void {
    this.polling = false;
    if (this.pollTimer) clearTimeout(this.pollTimer);
    this.pollTimer = null;
  }

  /** Whether `e` is read by polling now. */
  private pollable(e: Entry): boolean {
    if (e.final || this.stopped) return false;
    // A live ids-stream covers the tasks it names; the others (beyond its limit) are polled.
    if (this.open) return !this.o.all && !this.streamSet.has(key(e.kind, e.id));
    return this.polling;
  }

  private schedulePoll(): void {
    if (this.pollTimer) clearTimeout(this.pollTimer);
    this.pollTimer = null;
    if (this.stopped || !this.started || (doc()?.hidden && this.pauses())) return;
    let next = Infinity;
    for (const e of this.entries.values()) {
      if (this.pollable(e) && !e.inflight) next = Math.min(next, e.nextPollAt);
    }
    if (next === Infinity) return;
    const wait = Math.max(0, next - Date.now(), this.minPollAt - Date.now());
    this.pollTimer = setTimeout(() => void this.pollDue(), wait);
  }

  private async pollDue(): Promise<void> {
    this.pollTimer = null;
    if (doc()?.hidden && this.pauses()) return;
    const now = Date.now();
    // Tasks due within the next second go along: one request instead of several.
    const due = [...this.entries.values()].filter((e) => this.pollable(e) && !e.inflight
      && e.nextPollAt <= now + 1000);
    await this.read(due, true);
    this.schedulePoll();
  }

  /** Reads `list` (batch route, or one request per task without it), folding the answers in. */
  private async read(list: Entry[], conditional: boolean): Promise<void> {
    if (!list.length) return;
    for (const e of list) e.inflight = true;
    const chunks: Entry[][] = [];
    for (let i = 0; i < list.length; i += MAX_IDS) chunks.push(list.slice(i, i + MAX_IDS));
    try {
      await Promise.all(chunks.map((c) => (this.batchRoute
        ? this.readBatch(c, conditional)
        : Promise.all(c.map((e) => this.readOne(e, conditional))))));
    } finally {
      for (const e of list) e.inflight = false;
    }
  }

  private next(e: Entry, hintMs: number | 'stop' | null): void {
    const cadence = (this.o.pollInterval || frontEndCadence)(Date.now() - e.since);
    e.nextPollAt = Date.now() + Math.max(cadence, typeof hintMs === 'number' ? hintMs : 0);
  }

  private failed(list: Entry[], err: unknown): void {
    if (err instanceof ApiError && (err.fatal || err.status === 400)) {
      this.fatal(err);
      return;
    }
    if (err instanceof ApiError && err.retryAfterMs) this.minPollAt = Date.now() + err.retryAfterMs;
    // A network problem or a 5xx: try again at the usual cadence.
    for (const e of list) this.next(e, null);
  }

  private async readBatch(list: Entry[], conditional: boolean): Promise<void> {
    const videos = list.filter((e) => e.kind === 'video').map((e) => e.id);
    const jobs = list.filter((e) => e.kind === 'job').map((e) => e.id);
    const path = batchPath(videos, jobs);
    const seq = this.nextSeq();
    try {
      const got = await getJson<BatchResponse>(this.conn(), path, {
        etag: conditional ? this.batchEtags.get(path) : null,
      });
      if (got.etag) this.batchEtags.set(path, got.etag);
      if (this.batchEtags.size > 500) this.batchEtags.clear();
      if (got.body) this.deliverBatch(got.body, seq);
      const hint = pollHint(got.xPollAfter, got.retryAfter);
      for (const e of list) this.next(e, hint);
    } catch (err) {
      if (err instanceof ApiError && (err.status === 404 || err.status === 405)) {
        // A server without the batch route: one request per task from now on.
        this.batchRoute = false;
        await Promise.all(list.map((e) => this.readOne(e, conditional)));
        return;
      }
      this.failed(list, err);
    }
  }

  private deliverBatch(b: BatchResponse, seq: number): void {
    for (const [id, body] of Object.entries(b.videos || {})) this.apply('video', id, body, 'poll', seq);
    for (const [id, body] of Object.entries(b.jobs || {})) this.apply('job', id, body, 'poll', seq);
    for (const id of b.unknown?.videos || []) this.apply('video', String(id), unknownBody('video', String(id)), 'poll', seq);
    for (const id of b.unknown?.jobs || []) this.apply('job', id, unknownBody('job', id), 'poll', seq);
  }

  private async readOne(e: Entry, conditional: boolean): Promise<void> {
    const seq = this.nextSeq();
    try {
      const got = await getJson<ProgressBody>(this.conn(), progressPath(e.kind, e.id), {
        etag: conditional ? e.etag : null,
      });
      if (got.etag) e.etag = got.etag;
      if (got.body) this.apply(e.kind, e.id, got.body, 'poll', seq);
      this.next(e, pollHint(got.xPollAfter, got.retryAfter));
    } catch (err) {
      if (err instanceof ApiError && err.status === 404 && e.kind === 'job') {
        // A staff-only job asked for with a student's token: as good as unknown.
        this.apply(e.kind, e.id, unknownBody(e.kind, e.id), 'poll', seq);
        this.next(e, null);
        return;
      }
      this.failed([e], err);
    }
  }

  private visibilityChanged(): void {
    if (this.stopped) return;
    if (doc()?.hidden && this.pauses()) {
      if (this.pollTimer) clearTimeout(this.pollTimer);
      this.pollTimer = null;
      if (this.polling && !this.open) this.setMode('paused');
    } else {
      if (this.polling && !this.open) {
        this.setMode('polling');
        // Back in view: one prompt read of every unfinished task, then the cadence.
        const now = Date.now();
        for (const e of this.entries.values()) e.nextPollAt = Math.min(e.nextPollAt, now + Math.random() * 500);
      }
      this.schedulePoll();
    }
  }
}
