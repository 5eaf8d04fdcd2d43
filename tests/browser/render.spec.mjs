// Render test of the dashboard in headless Chromium against the real API router over the
// in-process read model (crates/jobpulse-api/examples/dashboard_fixture.rs). The test writes
// progress into the read model the way workers do and checks what a person sees: sign-in via
// a `#token=` link, rows that appear and advance over SSE, steps, ETA, retry and failure
// states, the import summary, escaping of hostile strings, the polling fallback when the
// stream is blocked, and the sign-out on a refused token.
//
// What it does not cover (no database on that server): the list, upload, job, retry, delete
// and result endpoints — dashboard.spec.mjs runs those against `jobpulse up`.
//
//   cargo build -p jobpulse-api --example dashboard_fixture
//   cd tests/browser && npm ci && node render.spec.mjs
//
// Env: JOBPULSE_FIXTURE (path of the built example; default target/debug/examples/…, or under
// CARGO_TARGET_DIR), CHROMIUM_PATH (default /usr/bin/chromium), SCREENSHOT_DIR (default: the
// system temp dir).

import { spawn, spawnSync } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

import {
  check, launch, log, readRow, runPhases, waitFor,
} from './lib.mjs';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const FIXTURE = process.env.JOBPULSE_FIXTURE
  || join(process.env.CARGO_TARGET_DIR || join(ROOT, 'target'), 'debug/examples/dashboard_fixture');
const SHOTS = process.env.SCREENSHOT_DIR || tmpdir();
// Expected on this server: the 404s of endpoints it lacks, a blocked stream, refused tokens.
const EXPECTED_CONSOLE = [/status of 404/, /ERR_CONNECTION_REFUSED/, /EventSource/, /status of 401/];
const XSS_IMG = '<img src=x onerror=alert(1)>';
const XSS_SCRIPT = '<script>alert(2)</script>';

/** The fixture server: `{url, staff_token, student_token, send(cmd), stop()}`. */
async function startFixture(env = {}) {
  check(existsSync(FIXTURE), `fixture not built: ${FIXTURE}\n`
    + '  run: cargo build -p jobpulse-api --example dashboard_fixture');
  const child = spawn(FIXTURE, [], { env: { ...process.env, ...env }, stdio: ['pipe', 'pipe', 'inherit'] });
  const lines = createInterface({ input: child.stdout });
  const waiting = [];
  const early = [];
  lines.on('line', (l) => (waiting.length ? waiting.shift()(l) : early.push(l)));
  const next = () => new Promise((res, rej) => {
    if (early.length) return res(early.shift());
    const t = setTimeout(() => rej(new Error('fixture did not answer in 10 s')), 10_000);
    waiting.push((l) => {
      clearTimeout(t);
      res(l);
    });
  });
  const hello = JSON.parse(await next());
  return {
    ...hello,
    async send(cmd) {
      child.stdin.write(`${JSON.stringify(cmd)}\n`);
      const reply = JSON.parse(await next());
      check(reply.ok && String(reply.outcome).startsWith('Applied'),
        `the read model refused ${JSON.stringify(cmd)}: ${JSON.stringify(reply)}`);
    },
    stop() {
      child.stdin.end();
      return new Promise((r) => {
        child.once('exit', r);
        setTimeout(() => child.kill(), 3000);
      });
    },
  };
}

function hs256(claims, secret) {
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const body = `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64(claims)}`;
  return `${body}.${createHmac('sha256', secret).update(body).digest('base64url')}`;
}

const row = (page, kind, id) => readRow(page, kind, id);

/** Whether a recorded poll asked for this task (its own route, or the batch route naming it). */
function asks(p, kind, id) {
  const u = new URL(p.url);
  if (u.pathname === '/api/v1/progress/') {
    return (u.searchParams.get(kind === 'video' ? 'videos' : 'jobs') || '').split(',').includes(String(id));
  }
  return u.pathname === (kind === 'video' ? `/api/v1/media/videos/${id}/progress/` : `/api/v1/jobs/${id}/progress/`);
}

async function waitRow(page, kind, id, pred, what, ms = 4000) {
  return waitFor(async () => {
    const r = await row(page, kind, id);
    return r && pred(r) ? r : null;
  }, ms, async () => `${kind} ${id}: expected ${what}; the row shows ${JSON.stringify(await row(page, kind, id))}`);
}

let fx;
let browser;
let page;
let health;
const progressRequests = [];

async function signInByLink() {
  ({ page, health } = browser);
  page.on('request', (r) => {
    const { pathname } = new URL(r.url());
    // Polls: the batch route (what the live client prefers) and the per-task routes.
    if (/^\/api\/v1\/((media\/videos\/\d+|jobs\/[^/]+)\/)?progress\/$/.test(pathname)) {
      progressRequests.push({ url: r.url(), inm: r.headers()['if-none-match'] || null, at: Date.now() });
    }
  });
  await page.goto(`${fx.url}/#token=${fx.staff_token}`);
  const identity = await waitFor(
    () => page.evaluate(() => {
      const el = document.querySelector('[data-testid="identity-text"]');
      return el && el.offsetParent !== null ? el.textContent : null;
    }),
    5000, 'the identity line after signing in by link',
  );
  check(identity.includes('tenant demo') && identity.includes('role teacher'),
    `identity line: ${identity}`);
  const { hash, stored } = await page.evaluate(() => ({
    hash: location.hash, stored: sessionStorage.getItem('jobpulse.token'),
  }));
  check(hash === '', `the #token= fragment must be cleared, address shows ${hash}`);
  check(stored === fx.staff_token, 'the token must be kept in sessionStorage');
  await waitFor(
    () => page.evaluate(() => document.querySelector('[data-testid="connection-state"]').dataset.state === 'live'),
    5000, 'the connection indicator to say live (SSE open)',
  );
  const notice = await page.textContent('[data-testid="workbox-notice"]');
  check(/no videos or jobs list/.test(notice), `expected a notice about the missing list endpoints, got: ${notice}`);
  check(await page.isVisible('[data-testid="import-form"]'), 'staff see the import form');
}

async function processingOverSse() {
  const before = progressRequests.length;
  const t0 = Date.now();
  await fx.send({ kind: 'video', id: 101, status: 'PROCESSING', step: [4, 0.4], remaining: 84 });
  const r = await waitRow(page, 'video', 101, (x) => x.status === 'PROCESSING', 'PROCESSING', 2500);
  const first = Date.now() - t0;
  // Step 4 of the plan at 40 %: the bar is max(1, min(99, overall)).
  check(r.badge === 'PROCESSING', `badge: ${r.badge}`);
  check(r.step === '[4/7] 인코딩', `step text: ${r.step}`);
  check(r.stepPercent === 'step 40 %', `step percent: ${r.stepPercent}`);
  check(r.eta === 'about 1 min left', `ETA for 84 s: ${r.eta}`);
  check(r.bar >= 10 && r.bar <= 99, `bar: ${r.bar}`);
  check(r.label === 'Video #101', `label without a list endpoint: ${r.label}`);
  check(r.buttons.includes('delete-button') && !r.buttons.includes('retry-button'), `buttons: ${r.buttons}`);
  const firstBar = r.bar;
  await fx.send({ kind: 'video', id: 101, status: 'PROCESSING', step: [5, 0.5], remaining: 40 });
  const r2 = await waitRow(page, 'video', 101, (x) => x.step.startsWith('[5/7]'), 'step 5', 2500);
  check(r2.step === '[5/7] 검증', `step text: ${r2.step}`);
  check(r2.eta === 'about 40 s left', `ETA for 40 s: ${r2.eta}`);
  check(r2.bar > firstBar, `the bar must advance: ${firstBar} -> ${r2.bar}`);
  await fx.send({ kind: 'video', id: 101, status: 'PROCESSING', step: [7, 0.9], remaining: 180 });
  const r3 = await waitRow(page, 'video', 101, (x) => x.step.startsWith('[7/7]'), 'step 7', 2500);
  check(r3.eta === 'about 3 min left', `ETA for 180 s: ${r3.eta}`);
  const polls = progressRequests.slice(before);
  check(polls.length === 0, `no polling while the stream is live, saw ${polls.map((p) => p.url)}`);
  log(`      first SSE update shown after ${first} ms; bar ${firstBar} -> ${r2.bar} -> ${r3.bar}`);
}

async function uploadedToReady() {
  await fx.send({ kind: 'video', id: 102, status: 'UPLOADED' });
  const r = await waitRow(page, 'video', 102, (x) => x.status === 'UPLOADED', 'UPLOADED');
  check(r.bar === 10, `UPLOADED is drawn at 10 %, got ${r.bar}`);
  await fx.send({ kind: 'video', id: 102, status: 'PROCESSING', step: [1, 0] });
  const p = await waitRow(page, 'video', 102, (x) => x.status === 'PROCESSING', 'PROCESSING');
  check(p.bar >= 10, `the bar must not move back when encoding begins: ${p.bar}`);
  await fx.send({ kind: 'video', id: 102, status: 'READY', hls_path: 'tenants/1/video/hls/102/master.m3u8', duration: 3 });
  const done = await waitRow(page, 'video', 102, (x) => x.status === 'READY', 'READY');
  check(done.bar === 100 && done.outcome === 'ok', `READY: ${JSON.stringify(done)}`);
  check(done.step === '' && done.eta === '', 'no step or ETA once READY');
  const announced = await page.textContent('[data-testid="announcer"]');
  check(announced.includes('READY'), `status change announced (aria-live): ${announced}`);
}

async function retryAndFailure() {
  await fx.send({ kind: 'video', id: 104, status: 'PROCESSING', step: [4, 0.2], remaining: 30 });
  await waitRow(page, 'video', 104, (x) => x.status === 'PROCESSING', 'PROCESSING');
  const held = (await row(page, 'video', 104)).bar;
  await fx.send({
    kind: 'video', id: 104, status: 'RETRY_WAIT', attempt: 2, shown_attempt: 1, max_attempts: 3,
    retry_in: 20, error: 'ffmpeg exited with 1', generation: 1,
  });
  const w = await waitRow(page, 'video', 104, (x) => x.status === 'RETRY_WAIT', 'RETRY_WAIT');
  check(w.badge === 'RETRY WAIT' && w.outcome === 'retry', `badge: ${w.badge} ${w.outcome}`);
  // Issue 18 item 3: the next attempt, of how many, and when (retry_at 20 s ahead).
  check(/^attempt 2 of 3 — retrying in (20|19) s$/.test(w.attempt), `attempt: ${w.attempt}`);
  check(w.bar === held, `the bar holds between attempts: ${held} -> ${w.bar}`);
  const later = await waitRow(page, 'video', 104, (x) => /retrying in (17|16|15) s$/.test(x.attempt),
    'the countdown moving on', 6000);
  log(`      ${w.attempt} → ${later.attempt}`);
  // Attempt 2 starts from its own 0 %: the contract's percent is held by the read model.
  await fx.send({
    kind: 'video', id: 104, status: 'PROCESSING', attempt: 2, shown_attempt: 2, max_attempts: 3, step: [1, 0],
  });
  const a2 = await waitRow(page, 'video', 104, (x) => x.status === 'PROCESSING', 'attempt 2 running');
  check(a2.attempt === 'attempt 2 of 3', `attempt 2 running: ${a2.attempt}`);
  check(a2.bar >= held, `the bar must not go back when attempt 2 starts: ${held} -> ${a2.bar}`);
  log(`      bar ${held} held through RETRY_WAIT and attempt 2's start (${a2.bar})`);
  await fx.send({ kind: 'video', id: 103, status: 'FAILED', error: XSS_IMG, attempt: 5 });
  const f = await waitRow(page, 'video', 103, (x) => x.status === 'FAILED', 'FAILED');
  check(f.error === XSS_IMG, `the error reason must render as text: ${f.error}`);
  check(f.images === 0 && f.scripts === 0, 'no element may come out of a server string');
  check(f.buttons.includes('retry-button'), `a FAILED video offers Retry: ${f.buttons}`);
  await fx.send({ kind: 'job', id: 'exp1', job_type: 'attendance_excel_export', status: 'DONE', error: XSS_SCRIPT });
  const j = await waitRow(page, 'job', 'exp1', (x) => x.status === 'DONE', 'DONE');
  check(j.outcome === 'failed' && j.badge === 'DONE · error', `DONE with error_message is a failure: ${j.badge} ${j.outcome}`);
  check(j.error === XSS_SCRIPT && j.scripts === 0, `job error as text: ${j.error}`);
  // Give any injected handler the chance to run before the health check.
  await page.waitForTimeout(300);
  await health.assertClean('after hostile strings', { allowConsole: EXPECTED_CONSOLE });
}

/** Issue 18 item 2: a running task whose worker goes quiet says so, and recovers. */
async function stalledWorker() {
  await fx.send({ kind: 'video', id: 106, status: 'PROCESSING', step: [4, 0.5], remaining: 60 });
  const r = await waitRow(page, 'video', 106, (x) => x.status === 'PROCESSING', 'PROCESSING');
  check(!r.stalled && r.liveness === '', `alive at first: ${JSON.stringify(r)}`);
  // The fixture shows a task stalled after 1.5 s without a write; the stream pushes the flip.
  const s = await waitRow(page, 'video', 106, (x) => x.stalled, 'stalled', 5000);
  check(/^no sign of the worker for [1-4] s$/.test(s.liveness), `liveness: ${s.liveness}`);
  check(s.bar === r.bar, `the bar stays where it was: ${r.bar} -> ${s.bar}`);
  const on = await waitRow(page, 'video', 106, (x) => x.liveness !== s.liveness, 'the words moving on', 3000);
  log(`      "${s.liveness}" → "${on.liveness}"`);
  await page.screenshot({ path: join(SHOTS, 'dashboard-stalled.png') });
  await fx.send({ kind: 'video', id: 106, status: 'PROCESSING', step: [4, 0.6], remaining: 50 });
  const back = await waitRow(page, 'video', 106, (x) => !x.stalled, 'alive again', 3000);
  check(back.liveness === '', `no liveness words once alive: ${back.liveness}`);
}

async function importSummary() {
  await fx.send({ kind: 'job', id: 'imp1', job_type: 'excel_parsing', status: 'RUNNING', step: [3, 0.6], remaining: 12 });
  const r = await waitRow(page, 'job', 'imp1', (x) => x.status === 'RUNNING', 'RUNNING');
  check(r.step === '[3/4] 등록', `import step: ${r.step}`);
  check(r.stepPercent === 'step 60 %', `import step percent: ${r.stepPercent}`);
  check(r.eta === 'about 10 s left', `ETA for 12 s: ${r.eta}`);
  check(r.buttons.includes('cancel-button'), `a running job offers Cancel: ${r.buttons}`);
  await fx.send({
    kind: 'job', id: 'imp1', job_type: 'excel_parsing', status: 'DONE',
    result: {
      created: 3,
      duplicates: [{ row: 4, name: '김철수' }],
      restored: [],
      failed: [{ row: 7, name: XSS_IMG, error: '학부모 전화번호가 없습니다' }],
    },
  });
  const d = await waitRow(page, 'job', 'imp1', (x) => x.status === 'DONE' && x.result, 'DONE with a summary');
  check(d.label === 'Student import (Excel)', `label: ${d.label}`);
  const summary = await page.evaluate(() => {
    const rowEl = document.querySelector('[data-testid="task-job-imp1"]');
    const txt = (id) => rowEl.querySelector(`[data-testid="${id}"]`).textContent;
    const cells = [...rowEl.querySelectorAll('[data-testid="failed-rows"] tbody td')].map((td) => td.textContent);
    return { created: txt('result-created'), dup: txt('result-duplicates'), failed: txt('result-failed'), cells,
      imgs: rowEl.querySelectorAll('img').length };
  });
  check(summary.created === '3 created', `created: ${summary.created}`);
  check(summary.dup === '1 duplicates', `duplicates: ${summary.dup}`);
  check(summary.failed === '1 failed', `failed: ${summary.failed}`);
  check(JSON.stringify(summary.cells) === JSON.stringify(['7', XSS_IMG, '학부모 전화번호가 없습니다']),
    `failed rows table: ${JSON.stringify(summary.cells)}`);
  check(summary.imgs === 0, 'the failed row name must render as text');
  check(d.buttons.includes('csv-button'), `staff get the credentials download: ${d.buttons}`);
  check(!d.buttons.includes('cancel-button'), 'no Cancel once DONE');
  // The result endpoint does not exist on this server: the click must end in a visible error.
  await page.click('[data-testid="task-job-imp1"] [data-testid="csv-button"]');
  await waitFor(() => page.evaluate(() => {
    const n = document.querySelector('[data-testid="workbox-notice"]');
    return !n.hidden && /not found/i.test(n.textContent);
  }), 3000, 'a visible error when the credentials cannot be fetched');
}

async function screenshot() {
  const path = join(SHOTS, 'jobpulse-render.png');
  await page.screenshot({ path, fullPage: true });
  log(`      screenshot: ${path}`);
  await page.setViewportSize({ width: 390, height: 844 });
  const narrow = join(SHOTS, 'jobpulse-render-narrow.png');
  await page.screenshot({ path: narrow, fullPage: true });
  log(`      screenshot: ${narrow}`);
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth > window.innerWidth + 1);
  check(!overflow, 'the page must not scroll sideways on a phone-sized screen');
  await page.setViewportSize({ width: 1280, height: 900 });
}

async function keyboard() {
  // The delete button asks again in place, and works from the keyboard.
  await page.focus('[data-testid="task-video-104"] [data-testid="delete-button"]');
  await page.keyboard.press('Enter');
  const armed = await page.textContent('[data-testid="task-video-104"] [data-testid="delete-button"]');
  check(armed === 'Really delete?', `first press arms the delete button: ${armed}`);
}

async function pollingFallback() {
  // The same tab after a reload, with the stream blocked in the browser (as a proxy that
  // breaks SSE would): the remembered rows come back and are polled.
  await page.route('**/api/v1/progress/stream**', (route) => route.abort('connectionrefused'));
  await page.reload();
  await waitFor(() => page.evaluate(() => document.querySelector('[data-testid="connection-state"]').dataset.state === 'polling'),
    8000, 'the connection indicator to say polling');
  const restored = await row(page, 'video', 101);
  check(restored, 'rows on screen are remembered across a reload (no list endpoint here)');
  const start = progressRequests.length;
  await fx.send({ kind: 'video', id: 101, status: 'PROCESSING', step: [7, 0.95], remaining: 3 });
  const t0 = Date.now();
  const r = await waitRow(page, 'video', 101, (x) => x.eta === 'almost done', 'the polled update', 8000);
  const waited = Date.now() - t0;
  const polls = progressRequests.slice(start).filter((p) => asks(p, 'video', 101));
  check(polls.length >= 1, 'the update must come from polling (the batch route, or the task endpoint)');
  const terminal = progressRequests.slice(start).filter((p) => asks(p, 'video', 102));
  check(terminal.length === 0, `a READY task is not polled: ${terminal.length} requests`);
  log(`      polled update shown after ${waited} ms (cadence 5 s), ${polls.length} polls of video 101; bar ${r.bar}`);
  // Two cadence periods, to see the spacing and the conditional requests.
  await page.waitForTimeout(11_000);
  const spaced = progressRequests.filter((p) => asks(p, 'video', 101)).slice(-3);
  check(spaced.length >= 2, `polling must continue at the 5 s cadence: ${spaced.length} polls in 11 s`);
  check(spaced.slice(1).every((p) => p.inm), 'polls after the first send If-None-Match');
  for (let i = 1; i < spaced.length; i += 1) {
    const gap = spaced[i].at - spaced[i - 1].at;
    check(gap >= 4000, `polls of one task at least ~5 s apart in the first minute, saw ${gap} ms`);
  }
}

async function hiddenTabPauses() {
  const start = progressRequests.length;
  await page.evaluate(() => {
    Object.defineProperty(document, 'hidden', { configurable: true, get: () => true });
    Object.defineProperty(document, 'visibilityState', { configurable: true, get: () => 'hidden' });
    document.dispatchEvent(new Event('visibilitychange'));
  });
  await page.waitForTimeout(7000);
  const during = progressRequests.length - start;
  check(during === 0, `no polling while the tab is hidden, saw ${during} requests`);
  await page.evaluate(() => {
    delete document.hidden;
    delete document.visibilityState;
    document.dispatchEvent(new Event('visibilitychange'));
  });
  await waitFor(() => progressRequests.length > start, 3000, 'polling to resume when the tab is visible again');
  await page.unroute('**/api/v1/progress/stream**');
}

async function refusedToken() {
  const foreign = hs256({
    exp: Math.floor(Date.now() / 1000) + 600, token_type: 'access', tenant_id: 1, role: 'teacher',
  }, 'not-the-server-secret-not-the-server-secret');
  // From another document: a fragment-only change would not reload the page.
  await page.goto('about:blank');
  await page.goto(`${fx.url}/#token=${foreign}`);
  await waitFor(() => page.evaluate(() => {
    const m = document.querySelector('[data-testid="signin-message"]');
    return m && !m.hidden && /refused the token/.test(m.textContent)
      && document.querySelector('#app').hidden;
  }), 8000, 'a token the server refuses (401) must lead back to sign-in with a message');
  const expired = hs256({ exp: 1000, token_type: 'access', tenant_id: 1 }, 'x');
  await page.fill('[data-testid="token-input"]', expired);
  await page.click('[data-testid="signin-button"]');
  const msg = await page.textContent('[data-testid="signin-message"]');
  check(/expired/.test(msg), `an expired token is refused before any request: ${msg}`);
  await page.fill('[data-testid="token-input"]', 'not a token');
  await page.click('[data-testid="signin-button"]');
  check(/does not look like a token/.test(await page.textContent('[data-testid="signin-message"]')),
    'garbage is refused with a clear message');
}

/** A 3 s H.264/AAC clip as HLS (MPEG-TS segments), made by ffmpeg in a temp dir. */
function makeHls() {
  const dir = mkdtempSync(join(tmpdir(), 'jobpulse-hls-'));
  const r = spawnSync('ffmpeg', ['-v', 'error', '-f', 'lavfi', '-i', 'testsrc=size=320x240:rate=25',
    '-f', 'lavfi', '-i', 'sine=frequency=440:sample_rate=44100', '-t', '3', '-c:v', 'libx264',
    '-pix_fmt', 'yuv420p', '-profile:v', 'baseline', '-g', '25', '-c:a', 'aac', '-f', 'hls',
    '-hls_time', '1', '-hls_playlist_type', 'vod', '-master_pl_name', 'master.m3u8',
    join(dir, 'index.m3u8')], { encoding: 'utf8' });
  check(r.status === 0, `ffmpeg could not make the test clip (apt-get install -y ffmpeg): ${r.stderr || r.error}`);
  return dir;
}

async function playback() {
  // Our player module, in the signed-in page under its real CSP, with media bytes served
  // same-origin from a clip ffmpeg just made. Chromium has native HLS (canPlayType says
  // "maybe"); hiding that exercises the hls.js path (MediaSource + a blob: worker) as in
  // browsers without it.
  const dir = makeHls();
  try {
    await page.route('**/hls-test/**', (route) => {
      const name = new URL(route.request().url()).pathname.split('/').pop();
      const file = join(dir, name);
      if (!existsSync(file)) return route.fulfill({ status: 404 });
      return route.fulfill({
        path: file,
        contentType: name.endsWith('.m3u8') ? 'application/vnd.apple.mpegurl' : 'video/mp2t',
      });
    });
    await page.goto('about:blank');
    await page.goto(`${fx.url}/`);
    await waitFor(() => page.isVisible('[data-testid="identity-text"]'), 5000, 'signed in again');
    const seen = [];
    for (const hideNative of [false, true]) {
      const r = await page.evaluate(async (hide) => {
        if (hide) {
          const orig = HTMLMediaElement.prototype.canPlayType;
          HTMLMediaElement.prototype.canPlayType = function canPlayType(t) {
            return /mpegurl/i.test(t) ? '' : orig.call(this, t);
          };
        }
        const { play } = await import('/assets/player.js');
        const box = document.createElement('div');
        document.body.append(box);
        const v = await play(box, '/hls-test/master.m3u8', null, 'test clip');
        v.muted = true;
        await v.play().catch(() => {});
        const ok = await new Promise((res) => {
          const until = Date.now() + 15_000;
          const tick = () => {
            if (v.currentTime > 0.5) res(true);
            else if (Date.now() > until || v.error) res(false);
            else setTimeout(tick, 100);
          };
          tick();
        });
        const out = { ok, player: v.dataset.player, t: v.currentTime, error: v.error && v.error.code,
          message: box.textContent };
        box.remove();
        return out;
      }, hideNative);
      check(r.ok, `playback with ${r.player} did not pass 0.5 s: ${JSON.stringify(r)}`);
      seen.push(`${r.player} reached ${r.t.toFixed(2)} s`);
    }
    check(seen[0].startsWith('native') && seen[1].startsWith('hls.js'), `players used: ${seen}`);
    log(`      ${seen.join('; ')}`);
    await health.assertClean('after playback', { allowConsole: EXPECTED_CONSOLE });
  } finally {
    await page.unroute('**/hls-test/**');
    rmSync(dir, { recursive: true, force: true });
  }
}

async function studentSeesOnlyTheirIds() {
  // A student's stream names the ids on screen; with nothing remembered there is nothing to
  // watch, and the staff-only import form stays hidden.
  await page.goto('about:blank');
  await page.goto(`${fx.url}/#token=${fx.student_token}`);
  await waitFor(() => page.isVisible('[data-testid="identity-text"]'), 5000, 'student signed in');
  check(!(await page.isVisible('[data-testid="import-form"]')), 'students do not get the import form');
  const state = await page.evaluate(() => document.querySelector('[data-testid="connection-state"]').dataset.state);
  check(state === 'idle', `a student with no tasks opens no stream: ${state}`);
  // Tasks remembered in this tab (as after a reload): the stream names exactly those ids and
  // sends their current state first. The staff-only import is UNKNOWN to a student.
  await page.evaluate(() => sessionStorage.setItem('jobpulse.tasks', JSON.stringify({
    owner: '1/7', tasks: [{ kind: 'video', id: '101', created: 2 }, { kind: 'job', id: 'imp1', created: 1 }],
  })));
  const streams = [];
  page.on('request', (r) => {
    if (r.url().includes('/progress/stream')) streams.push(new URL(r.url()).searchParams);
  });
  await page.reload();
  const v = await waitRow(page, 'video', 101, (x) => x.status === 'PROCESSING' && x.step, 'its snapshot from the stream', 5000);
  check(v.step.startsWith('[7/7]'), `snapshot step: ${v.step}`);
  const j = await waitRow(page, 'job', 'imp1', (x) => x.status === 'UNKNOWN', 'UNKNOWN for a student', 5000);
  check(j.outcome === 'unknown' && !j.result, `a student must not see the import: ${JSON.stringify(j)}`);
  const q = streams.at(-1);
  check(q && q.get('videos') === '101' && q.get('jobs') === 'imp1' && !q.has('all'),
    `the student's stream watches the ids on screen: ${q}`);
  await fx.send({ kind: 'video', id: 101, status: 'READY', hls_path: 'tenants/1/video/hls/101/master.m3u8', duration: 3 });
  await waitRow(page, 'video', 101, (x) => x.status === 'READY' && x.bar === 100, 'READY over the ids-stream', 3000);
}

async function main() {
  const code = await runPhases('render.spec', [
    ['start the fixture server and Chromium', async () => {
      fx = await startFixture({ FIXTURE_STALLED_AFTER_MS: '1500' });
      browser = await launch();
    }],
    ['sign in through a #token= link', signInByLink],
    ['a PROCESSING video advances over SSE with steps and ETA', processingOverSse],
    ['UPLOADED (10 %) → PROCESSING → READY', uploadedToReady],
    ['retry wait, failures and hostile strings render as text', retryAndFailure],
    ['a quiet worker: "no sign of the worker for …", then alive again', stalledWorker],
    ['an Excel import shows its step and result summary', importSummary],
    ['keyboard: the delete button confirms in place', keyboard],
    ['screenshots (desktop and phone width)', screenshot],
    ['polling fallback when the stream is blocked', pollingFallback],
    ['polling pauses while the tab is hidden', hiddenTabPauses],
    ['inline playback: native HLS and hls.js under the CSP', playback],
    ['page health (no errors, no CSP violations)', () => health.assertClean('whole run', {
      allowConsole: EXPECTED_CONSOLE,
    })],
    ['a refused or expired token leads back to sign-in', refusedToken],
    ['students: no import form, a stream of their ids only', studentSeesOnlyTheirIds],
  ], {
    cleanup: async () => {
      if (browser) await browser.close();
      if (fx) await fx.stop();
    },
  });
  process.exit(code);
}

main().catch((e) => {
  log(`render.spec crashed: ${e && e.stack || e}`);
  process.exit(1);
});
