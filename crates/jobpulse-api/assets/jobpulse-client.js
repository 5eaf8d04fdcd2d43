// @jobpulse/client, bundled for the dashboard from clients/js/src by clients/js/scripts/build.mjs.
// Do not edit: change clients/js/src and run `npm run build` there (CI checks this file matches).

// src/http.ts
var ApiError = class extends Error {
  constructor(status, code, message, retryAfterMs2 = null) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
    this.retryAfterMs = retryAfterMs2;
  }
  /** 401/403: the token is refused or not allowed to do this; retrying will not help. */
  get fatal() {
    return this.status === 401 || this.status === 403;
  }
};
function tokenOf(c) {
  const t = typeof c.token === "function" ? c.token() : c.token;
  return t ? String(t) : null;
}
function retryAfterMs(res) {
  const v = Number(res.headers.get("Retry-After"));
  return res.headers.get("Retry-After") != null && Number.isFinite(v) && v >= 0 ? v * 1e3 : null;
}
async function errorOf(res) {
  let code = `http_${res.status}`;
  let message = `The server answered ${res.status}.`;
  try {
    const body = JSON.parse(await res.text());
    if (body && typeof body.error === "string") message = body.error;
    else if (body && body.error && typeof body.error === "object") {
      if (typeof body.error.message === "string") message = body.error.message;
      if (typeof body.error.code === "string") code = body.error.code;
    }
  } catch {
  }
  return new ApiError(res.status, code, message, retryAfterMs(res));
}
async function getJson(c, path, { etag, signal } = {}) {
  const headers = { Accept: "application/json" };
  const extra = typeof c.headers === "function" ? c.headers() : c.headers;
  Object.assign(headers, extra || {});
  const t = tokenOf(c);
  if (t) headers.Authorization = `Bearer ${t}`;
  if (etag) headers["If-None-Match"] = etag;
  const f = c.fetch || globalThis.fetch;
  let res;
  try {
    res = await f(`${c.baseUrl || ""}${path}`, {
      headers,
      signal,
      cache: "no-store",
      credentials: "omit"
    });
  } catch (e) {
    throw new ApiError(0, "network", `The request failed: ${e instanceof Error ? e.message : String(e)}`);
  }
  const meta = {
    status: res.status,
    etag: res.headers.get("ETag"),
    xPollAfter: res.headers.get("X-Poll-After"),
    retryAfter: res.headers.get("Retry-After")
  };
  if (res.status === 304) return { ...meta, body: null };
  if (!res.ok) throw await errorOf(res);
  let body;
  try {
    body = await res.json();
  } catch {
    throw new ApiError(res.status, "bad_json", "The server sent a body that is not JSON.");
  }
  return { ...meta, body };
}
function ids(list) {
  return list.map(encodeURIComponent).join(",");
}
function progressPath(kind, id) {
  return kind === "video" ? `/api/v1/media/videos/${encodeURIComponent(id)}/progress/` : `/api/v1/jobs/${encodeURIComponent(id)}/progress/`;
}
function batchPath(videos, jobs) {
  const q = [];
  if (videos.length) q.push(`videos=${ids(videos)}`);
  if (jobs.length) q.push(`jobs=${ids(jobs)}`);
  return `/api/v1/progress/${q.length ? `?${q.join("&")}` : ""}`;
}
function streamPath(scope, token, lastEventId) {
  const q = [];
  if (scope.all) q.push("all=true");
  else {
    if (scope.videos.length) q.push(`videos=${ids(scope.videos)}`);
    if (scope.jobs.length) q.push(`jobs=${ids(scope.jobs)}`);
  }
  if (lastEventId) q.push(`last_event_id=${encodeURIComponent(lastEventId)}`);
  if (token) q.push(`access_token=${encodeURIComponent(token)}`);
  return `/api/v1/progress/stream?${q.join("&")}`;
}

// src/progress.ts
var VIDEO_TERMINAL = /* @__PURE__ */ new Set(["READY", "FAILED"]);
var JOB_TERMINAL = /* @__PURE__ */ new Set([
  "DONE",
  "FAILED",
  "REJECTED_BAD_INPUT",
  "FALLBACK_TO_GPU",
  "REVIEW_REQUIRED"
]);
var RETRY_STATES = /* @__PURE__ */ new Set(["RETRY_WAIT", "RETRYING"]);
var ACTIVE_STATES = /* @__PURE__ */ new Set(["PROCESSING", "RUNNING"]);
function isTerminal(kind, status) {
  if (!status) return false;
  return kind === "video" ? VIDEO_TERMINAL.has(status) : JOB_TERMINAL.has(status);
}
function num(v) {
  return typeof v === "number" && Number.isFinite(v) ? v : null;
}
function clamp(n, lo, hi) {
  const v = num(n) ?? lo;
  return Math.min(hi, Math.max(lo, Math.round(v)));
}
function field(body, name) {
  return body && typeof body === "object" ? body[name] : void 0;
}
function jobProgress(body) {
  const p = field(body, "progress");
  return p && typeof p === "object" ? p : null;
}
function displayPercent(kind, body, previous = null) {
  const s = field(body, "status");
  if (kind === "video") {
    const p = field(body, "encoding_progress") ?? field(body, "progress");
    switch (s) {
      case "UPLOADED":
        return 10;
      case "PROCESSING":
        return clamp(p, 1, 99);
      // Between attempts the bar stays where the failed attempt left it.
      case "RETRY_WAIT":
        return previous ?? clamp(p, 1, 99);
      case "READY":
        return 100;
      case "FAILED":
        return previous ?? clamp(field(body, "progress"), 0, 100);
      default:
        return previous;
    }
  }
  switch (s) {
    case "PENDING":
      return previous ?? 0;
    case "RUNNING": {
      const p = jobProgress(body);
      return p ? clamp(p.percent, 1, 99) : previous ?? 1;
    }
    case "DONE":
      return field(body, "error_message") ? previous ?? 100 : 100;
    default:
      return previous;
  }
}
function stepOf(kind, body) {
  let index;
  let total;
  let name;
  let percent;
  if (kind === "video") {
    index = field(body, "encoding_step_index");
    total = field(body, "encoding_step_total");
    name = field(body, "encoding_step_name");
    percent = field(body, "encoding_step_percent");
  } else {
    const p = jobProgress(body);
    if (!p) return null;
    index = p.step_index;
    total = p.step_total;
    name = p.step_name_display || p.step_name || p.step;
    percent = p.step_percent;
  }
  const i = num(index);
  const t = num(total);
  if (i == null || t == null) return null;
  return {
    index: i,
    total: t,
    name: typeof name === "string" ? name : null,
    percent: num(percent) == null ? null : clamp(percent, 0, 100)
  };
}
function etaOf(kind, body) {
  const v = kind === "video" ? field(body, "encoding_remaining_seconds") : jobProgress(body)?.remaining_seconds;
  const n = num(v);
  return n != null && n >= 0 ? n : null;
}
function idOf(kind, body) {
  const v = field(body, kind === "video" ? "id" : "job_id");
  return typeof v === "number" || typeof v === "string" ? String(v) : null;
}
function unknownBody(kind, id) {
  if (kind === "video") {
    return {
      id: Number(id),
      state: "UNKNOWN",
      status: "UNKNOWN",
      progress: 0,
      encoding_progress: 0,
      encoding_remaining_seconds: null,
      encoding_step_index: null,
      encoding_step_total: null,
      encoding_step_name: null,
      encoding_step_percent: null
    };
  }
  return { job_id: id, status: "UNKNOWN", message: "No progress is known for this job." };
}
function fold(prev, kind, id, body, source, now) {
  const raw = field(body, "status");
  const status = typeof raw === "string" && raw ? raw : "UNKNOWN";
  const terminal = isTerminal(kind, status);
  if (prev && prev.terminal && terminal) {
    return { next: prev, deliver: false };
  }
  if (prev && prev.gaveUp && status === "UNKNOWN") {
    return { next: prev, deliver: false };
  }
  if (prev && JSON.stringify(prev.body) === JSON.stringify(body)) {
    return { next: prev, deliver: false };
  }
  const attempt = num(field(body, "attempt"));
  const newRun = Boolean(prev && prev.terminal && !terminal && status !== "UNKNOWN");
  const newAttempt = Boolean(prev && (newRun || attempt != null && prev.attempt != null && attempt > prev.attempt || RETRY_STATES.has(String(prev.status)) && ACTIVE_STATES.has(status)));
  const waiting = RETRY_STATES.has(status);
  const previous = prev && (!newAttempt || waiting) ? prev.percent : null;
  const shown = displayPercent(kind, body, previous);
  const percent = !newAttempt && previous != null && shown != null ? Math.max(previous, shown) : shown ?? previous;
  const next = {
    kind,
    id,
    status,
    percent,
    step: stepOf(kind, body),
    etaSeconds: etaOf(kind, body),
    attempt: attempt ?? (newRun ? null : prev?.attempt ?? null),
    terminal,
    gaveUp: false,
    unknownSince: status === "UNKNOWN" ? prev?.unknownSince ?? now : null,
    body,
    source,
    at: now
  };
  return { next, deliver: true };
}
function gaveUp(prev, now) {
  return { ...prev, gaveUp: true, at: now };
}
function frontEndCadence(ageMs) {
  if (ageMs < 6e4) return 5e3;
  if (ageMs < 10 * 6e4) return 15e3;
  return 3e4;
}
function pollHint(xPollAfter, retryAfter) {
  const x = (xPollAfter || "").trim().toLowerCase();
  if (x === "stop") return "stop";
  const secs = Number(x || (retryAfter || "").trim());
  if ((x || retryAfter) && Number.isFinite(secs) && secs >= 0) return Math.min(secs, 3600) * 1e3;
  return null;
}
function validId(kind, id) {
  return kind === "video" ? /^[1-9][0-9]{0,17}$/.test(id) : /^[A-Za-z0-9_-]{1,64}$/.test(id);
}

// src/watch.ts
var MAX_IDS = 200;
var STABLE_MS = 3e4;
var REOPEN_DEBOUNCE_MS = 300;
var key = (kind, id) => `${kind}:${id}`;
function doc() {
  return typeof document === "object" && document ? document : null;
}
function watch(ids2, onUpdate, options = {}) {
  const w = new Watcher(onUpdate, options);
  for (const v of ids2.videos || []) w.add("video", v);
  for (const j of ids2.jobs || []) w.add("job", j);
  if (options.autoStart !== false) w.start();
  return w;
}
var Watcher = class {
  constructor(onUpdate, options) {
    this.entries = /* @__PURE__ */ new Map();
    this.es = null;
    this.open = false;
    this.opened = 0;
    this.failures = 0;
    this.openedAt = 0;
    this.streamKey = "";
    this.streamSet = /* @__PURE__ */ new Set();
    this.lastEventId = null;
    this.polling = false;
    this.pollTimer = null;
    this.reconnectTimer = null;
    this.reopenTimer = null;
    this.minPollAt = 0;
    this.batchRoute = true;
    this.batchEtags = /* @__PURE__ */ new Map();
    this.seq = 0;
    this.started = false;
    this.stopped = false;
    this.currentMode = "idle";
    this.announced = false;
    this.onVisibility = () => this.visibilityChanged();
    this.o = options;
    this.onUpdate = onUpdate;
    const ES = options.EventSource === void 0 ? typeof EventSource === "function" ? EventSource : null : options.EventSource;
    this.ES = options.transport === "poll" ? null : ES;
  }
  get mode() {
    return this.currentMode;
  }
  // ---- the watched set ----
  add(kind, rawId, hint) {
    const id = String(rawId);
    if (kind !== "video" && kind !== "job") throw new TypeError(`unknown kind ${String(kind)}`);
    if (!validId(kind, id)) throw new TypeError(`not a valid ${kind} id: ${JSON.stringify(id)}`);
    const k = key(kind, id);
    let e = this.entries.get(k);
    const now = Date.now();
    if (!e) {
      e = {
        kind,
        id,
        final: false,
        since: now,
        nextPollAt: 0,
        etag: null,
        inflight: false,
        readSeq: 0,
        giveUpTimer: null
      };
      this.entries.set(k, e);
    }
    const status = hint && hint.status;
    if (status) {
      const terminal = isTerminal(kind, status);
      if (e.final && !terminal) {
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
  remove(kind, rawId) {
    const k = key(kind, String(rawId));
    const e = this.entries.get(k);
    if (!e) return;
    if (e.giveUpTimer) clearTimeout(e.giveUpTimer);
    this.entries.delete(k);
    this.setChanged();
  }
  tasks() {
    const out = /* @__PURE__ */ new Map();
    for (const [k, e] of this.entries) if (e.state) out.set(k, e.state);
    return out;
  }
  get(kind, id) {
    return this.entries.get(key(kind, String(id)))?.state;
  }
  deliver(batch) {
    if (!batch) return;
    const seq = this.nextSeq();
    for (const [id, b] of Object.entries(batch.videos || {})) this.apply("video", id, b, "app", seq);
    for (const [id, b] of Object.entries(batch.jobs || {})) this.apply("job", id, b, "app", seq);
    for (const id of batch.unknown?.videos || []) this.apply("video", String(id), unknownBody("video", String(id)), "app", seq);
    for (const id of batch.unknown?.jobs || []) this.apply("job", id, unknownBody("job", id), "app", seq);
  }
  // ---- life cycle ----
  start() {
    if (this.started || this.stopped) return;
    this.started = true;
    doc()?.addEventListener("visibilitychange", this.onVisibility);
    this.connect();
  }
  stop() {
    if (this.stopped) return;
    this.stopped = true;
    doc()?.removeEventListener("visibilitychange", this.onVisibility);
    this.closeStream();
    for (const t of [this.pollTimer, this.reconnectTimer, this.reopenTimer]) if (t) clearTimeout(t);
    for (const e of this.entries.values()) if (e.giveUpTimer) clearTimeout(e.giveUpTimer);
    this.setMode("stopped");
  }
  fatal(err) {
    this.stop();
    this.o.onError?.(err);
  }
  setMode(mode) {
    if (mode === this.currentMode && this.announced) return;
    this.announced = true;
    this.currentMode = mode;
    this.o.onMode?.(mode);
  }
  nextSeq() {
    this.seq += 1;
    return this.seq;
  }
  conn() {
    return this.o;
  }
  // ---- folding news in ----
  apply(kind, id, body, source, seq) {
    if (this.stopped) return;
    const k = key(kind, id);
    let e = this.entries.get(k);
    if (!e) {
      if (!(this.o.all || source === "app") || !validId(kind, id)) return;
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
  armGiveUp(e) {
    const since = e.state?.unknownSince;
    if (since == null || e.final) {
      if (e.giveUpTimer) clearTimeout(e.giveUpTimer);
      e.giveUpTimer = null;
      return;
    }
    if (e.giveUpTimer) return;
    const after = this.o.giveUpAfterMs ?? 6e5;
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
  scope() {
    if (this.o.all) return { all: true, key: "all" };
    const videos = [];
    const jobs = [];
    for (const e of [...this.entries.values()].reverse()) {
      if (e.final || videos.length + jobs.length >= MAX_IDS) continue;
      (e.kind === "video" ? videos : jobs).push(e.id);
    }
    return { videos, jobs, key: `${videos.join(",")}|${jobs.join(",")}` };
  }
  /** The watched set changed: an ids-stream is reopened (debounced) when its ids differ. */
  setChanged() {
    if (this.o.all || this.stopped || !this.started) return;
    if (this.reopenTimer) clearTimeout(this.reopenTimer);
    this.reopenTimer = setTimeout(() => {
      this.reopenTimer = null;
      if (this.scope().key !== this.streamKey) this.connect();
    }, REOPEN_DEBOUNCE_MS);
  }
  closeStream() {
    if (this.es) {
      this.es.close();
      this.es = null;
    }
    this.open = false;
  }
  connect() {
    if (this.stopped) return;
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    this.reconnectTimer = null;
    this.closeStream();
    const scope = this.scope();
    if (scope.key !== this.streamKey) {
      if (!this.o.all) this.lastEventId = null;
      this.streamKey = scope.key;
    }
    this.streamSet = new Set(scope.all ? [] : [
      ...scope.videos.map((v) => key("video", v)),
      ...scope.jobs.map((j) => key("job", j))
    ]);
    if (!scope.all && !scope.videos.length && !scope.jobs.length) {
      this.stopPolling();
      this.setMode("idle");
      return;
    }
    if (!this.ES) {
      this.fallBack(null);
      return;
    }
    if (!this.polling) this.setMode("connecting");
    const url = `${this.o.baseUrl || ""}${streamPath(scope, tokenOf(this.conn()), this.lastEventId)}`;
    const es = new this.ES(url);
    this.es = es;
    let openedThisTry = false;
    es.addEventListener("open", () => {
      if (this.es !== es) return;
      openedThisTry = true;
      this.open = true;
      this.openedAt = Date.now();
      this.opened += 1;
      this.setMode("live");
      this.stopPolling();
      this.schedulePoll();
      if (this.o.all || this.opened > 1) void this.catchUp();
    });
    const onTask = (kind) => (ev) => {
      if (this.es !== es) return;
      if (ev.lastEventId) this.lastEventId = ev.lastEventId;
      let body;
      try {
        body = JSON.parse(ev.data);
      } catch {
        return;
      }
      const id = idOf(kind, body);
      if (id != null) this.apply(kind, id, body, "sse", this.nextSeq());
    };
    es.addEventListener("video", onTask("video"));
    es.addEventListener("job", onTask("job"));
    es.addEventListener("reset", ((ev) => {
      if (this.es !== es) return;
      if (ev.lastEventId) this.lastEventId = ev.lastEventId;
      let info;
      try {
        info = JSON.parse(ev.data);
      } catch {
        info = { reason: "unknown", snapshot: true, tasks: 0 };
      }
      this.o.onReset?.(info);
    }));
    es.addEventListener("resync", () => {
      if (this.es === es) this.o.onResync?.();
    });
    es.addEventListener("error", () => {
      if (this.es !== es) return;
      this.open = false;
      if (openedThisTry && Date.now() - this.openedAt > STABLE_MS) this.failures = 0;
      if (openedThisTry && es.readyState === 0) {
        openedThisTry = false;
        this.setMode("connecting");
        this.startPolling();
        return;
      }
      this.failures += 1;
      this.closeStream();
      if (openedThisTry) {
        this.fallBack(null);
      } else {
        void this.diagnose(url);
      }
    });
  }
  async diagnose(url) {
    const ctl = typeof AbortController === "function" ? new AbortController() : null;
    let err = null;
    try {
      const res = await (this.o.fetch || globalThis.fetch)(url, {
        headers: { Accept: "text/event-stream" },
        cache: "no-store",
        credentials: "omit",
        signal: ctl?.signal
      });
      ctl?.abort();
      if (!res.ok) err = new ApiError(
        res.status,
        `http_${res.status}`,
        `The stream answered ${res.status}.`,
        res.headers.get("Retry-After") != null ? Number(res.headers.get("Retry-After")) * 1e3 : null
      );
    } catch {
    }
    if (this.stopped) return;
    if (err && (err.fatal || err.status === 400)) {
      this.fatal(err);
      return;
    }
    this.fallBack(err);
  }
  /** The stream is down: poll, and reopen it later with exponential backoff and jitter. */
  fallBack(err) {
    this.closeStream();
    this.setMode(doc()?.hidden && this.pauses() ? "paused" : "polling");
    this.startPolling();
    if (!this.ES) return;
    const min = this.o.reconnectMinMs ?? 1e3;
    const max = this.o.reconnectMaxMs ?? 6e4;
    const base = Math.min(max, min * 2 ** Math.min(this.failures, 16));
    let delay = base / 2 + Math.random() * (base / 2);
    if (err?.retryAfterMs) delay = Math.max(delay, err.retryAfterMs);
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    this.reconnectTimer = setTimeout(() => this.connect(), delay);
  }
  /** One batch read of every unfinished task (chunks of MAX_IDS). */
  async catchUp() {
    const due = [...this.entries.values()].filter((e) => !e.final);
    await this.read(due, false);
  }
  // ---- polling ----
  pauses() {
    return this.o.pauseWhenHidden !== false;
  }
  startPolling() {
    if (this.polling) return;
    this.polling = true;
    const now = Date.now();
    for (const e of this.entries.values()) e.nextPollAt = now + Math.random() * 1e3;
    this.schedulePoll();
  }
  stopPolling() {
    this.polling = false;
    if (this.pollTimer) clearTimeout(this.pollTimer);
    this.pollTimer = null;
  }
  /** Whether `e` is read by polling now. */
  pollable(e) {
    if (e.final || this.stopped) return false;
    if (this.open) return !this.o.all && !this.streamSet.has(key(e.kind, e.id));
    return this.polling;
  }
  schedulePoll() {
    if (this.pollTimer) clearTimeout(this.pollTimer);
    this.pollTimer = null;
    if (this.stopped || !this.started || doc()?.hidden && this.pauses()) return;
    let next = Infinity;
    for (const e of this.entries.values()) {
      if (this.pollable(e) && !e.inflight) next = Math.min(next, e.nextPollAt);
    }
    if (next === Infinity) return;
    const wait = Math.max(0, next - Date.now(), this.minPollAt - Date.now());
    this.pollTimer = setTimeout(() => void this.pollDue(), wait);
  }
  async pollDue() {
    this.pollTimer = null;
    if (doc()?.hidden && this.pauses()) return;
    const now = Date.now();
    const due = [...this.entries.values()].filter((e) => this.pollable(e) && !e.inflight && e.nextPollAt <= now + 1e3);
    await this.read(due, true);
    this.schedulePoll();
  }
  /** Reads `list` (batch route, or one request per task without it), folding the answers in. */
  async read(list, conditional) {
    if (!list.length) return;
    for (const e of list) e.inflight = true;
    const chunks = [];
    for (let i = 0; i < list.length; i += MAX_IDS) chunks.push(list.slice(i, i + MAX_IDS));
    try {
      await Promise.all(chunks.map((c) => this.batchRoute ? this.readBatch(c, conditional) : Promise.all(c.map((e) => this.readOne(e, conditional)))));
    } finally {
      for (const e of list) e.inflight = false;
    }
  }
  next(e, hintMs) {
    const cadence = (this.o.pollInterval || frontEndCadence)(Date.now() - e.since);
    e.nextPollAt = Date.now() + Math.max(cadence, typeof hintMs === "number" ? hintMs : 0);
  }
  failed(list, err) {
    if (err instanceof ApiError && (err.fatal || err.status === 400)) {
      this.fatal(err);
      return;
    }
    if (err instanceof ApiError && err.retryAfterMs) this.minPollAt = Date.now() + err.retryAfterMs;
    for (const e of list) this.next(e, null);
  }
  async readBatch(list, conditional) {
    const videos = list.filter((e) => e.kind === "video").map((e) => e.id);
    const jobs = list.filter((e) => e.kind === "job").map((e) => e.id);
    const path = batchPath(videos, jobs);
    const seq = this.nextSeq();
    try {
      const got = await getJson(this.conn(), path, {
        etag: conditional ? this.batchEtags.get(path) : null
      });
      if (got.etag) this.batchEtags.set(path, got.etag);
      if (this.batchEtags.size > 500) this.batchEtags.clear();
      if (got.body) this.deliverBatch(got.body, seq);
      const hint = pollHint(got.xPollAfter, got.retryAfter);
      for (const e of list) this.next(e, hint);
    } catch (err) {
      if (err instanceof ApiError && (err.status === 404 || err.status === 405)) {
        this.batchRoute = false;
        await Promise.all(list.map((e) => this.readOne(e, conditional)));
        return;
      }
      this.failed(list, err);
    }
  }
  deliverBatch(b, seq) {
    for (const [id, body] of Object.entries(b.videos || {})) this.apply("video", id, body, "poll", seq);
    for (const [id, body] of Object.entries(b.jobs || {})) this.apply("job", id, body, "poll", seq);
    for (const id of b.unknown?.videos || []) this.apply("video", String(id), unknownBody("video", String(id)), "poll", seq);
    for (const id of b.unknown?.jobs || []) this.apply("job", id, unknownBody("job", id), "poll", seq);
  }
  async readOne(e, conditional) {
    const seq = this.nextSeq();
    try {
      const got = await getJson(this.conn(), progressPath(e.kind, e.id), {
        etag: conditional ? e.etag : null
      });
      if (got.etag) e.etag = got.etag;
      if (got.body) this.apply(e.kind, e.id, got.body, "poll", seq);
      this.next(e, pollHint(got.xPollAfter, got.retryAfter));
    } catch (err) {
      if (err instanceof ApiError && err.status === 404 && e.kind === "job") {
        this.apply(e.kind, e.id, unknownBody(e.kind, e.id), "poll", seq);
        this.next(e, null);
        return;
      }
      this.failed([e], err);
    }
  }
  visibilityChanged() {
    if (this.stopped) return;
    if (doc()?.hidden && this.pauses()) {
      if (this.pollTimer) clearTimeout(this.pollTimer);
      this.pollTimer = null;
      if (this.polling && !this.open) this.setMode("paused");
    } else {
      if (this.polling && !this.open) {
        this.setMode("polling");
        const now = Date.now();
        for (const e of this.entries.values()) e.nextPollAt = Math.min(e.nextPollAt, now + Math.random() * 500);
      }
      this.schedulePoll();
    }
  }
};
export {
  ApiError,
  JOB_TERMINAL,
  MAX_IDS,
  VIDEO_TERMINAL,
  batchPath,
  displayPercent,
  etaOf,
  fold,
  frontEndCadence,
  gaveUp,
  getJson,
  idOf,
  isTerminal,
  key,
  pollHint,
  progressPath,
  stepOf,
  streamPath,
  unknownBody,
  validId,
  watch
};
