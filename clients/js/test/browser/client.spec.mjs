// @jobpulse/client in headless Chromium against a real `jobpulse up` (no mocks): the page is
// served from another origin (a static server of this script on another port of localhost, as
// the academy front end is on another origin), loads the built package (dist/) and talks to
// the server over CORS. Progress is written the way a worker in
// another language writes it (the ingest API, fenced), and one real video is transcoded.
//
//   cargo build -p jobpulse-cli && cd clients/js && npm ci && npm run build && node test/browser/client.spec.mjs
//
// Env: JOBPULSE_BIN (default target/debug/jobpulse under CARGO_TARGET_DIR or the repository),
// CHROMIUM_PATH (default /usr/bin/chromium). Prints one line per phase and `N passed, N failed`.

import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { createHmac } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import { build } from 'esbuild';
import { chromium } from 'playwright-core';

import { Up } from './server.mjs';

const PKG = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
let APP;
let appServer;
const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';

class PhaseError extends Error {}
const check = (cond, message) => {
  if (!cond) throw new PhaseError(message);
};
const log = (...a) => process.stderr.write(`${a.join(' ')}\n`);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function waitFor(fn, ms, what) {
  const until = Date.now() + ms;
  let last;
  for (;;) {
    last = await fn().catch((e) => e);
    if (last && !(last instanceof Error)) return last;
    if (Date.now() > until) throw new PhaseError(`timed out after ${ms} ms: ${typeof what === 'function' ? await what(last) : what}`);
    await sleep(100);
  }
}

let up;
let context;
let page;
let profile;
const requests = [];

/** The test page: the package's modules from dist/, a React app bundled on the fly. */
async function servePage() {
  const react = await build({
    absWorkingDir: PKG,
    stdin: {
      contents: `
        import { createElement as h } from 'react';
        import { createRoot } from 'react-dom/client';
        import { useTaskProgress } from '@jobpulse/client/react';
        function Task({ options }) {
          const { get, mode, error } = useTaskProgress({ jobs: ['react1'] }, options);
          const t = get('job', 'react1');
          return h('p', { id: 'react-out', 'data-mode': mode },
            error ? 'error ' + error.status : t ? t.status + ' ' + t.percent : 'waiting');
        }
        window.mountReact = (options) => createRoot(document.getElementById('root')).render(h(Task, { options }));
      `,
      resolveDir: PKG,
      loader: 'js',
    },
    bundle: true,
    format: 'esm',
    write: false,
    define: { 'process.env.NODE_ENV': '"production"' },
    logLevel: 'warning',
  });
  const reactJs = react.outputFiles[0].text;
  const send = (res, status, type, body) => {
    res.writeHead(status, { 'Content-Type': type, 'Cache-Control': 'no-store' });
    res.end(body);
  };
  appServer = createServer((req, res) => {
    const { pathname } = new URL(req.url, 'http://x');
    if (pathname === '/') {
      return send(res, 200, 'text/html; charset=utf-8', `<!doctype html><meta charset="utf-8"><title>client test</title><div id="root"></div>
<script type="module">
  import * as jp from '/dist/index.js';
  window.jp = jp;
  window.runs = {};
  // Starts a named watch whose news, modes and errors the test reads back.
  window.startWatch = (name, ids, options = {}) => {
    const run = { updates: [], modes: [], errors: [] };
    window.runs[name] = run;
    run.watch = jp.watch(ids, (t) => run.updates.push(JSON.parse(JSON.stringify(t))), {
      ...options,
      onMode: (m) => run.modes.push(m),
      onError: (e) => run.errors.push({ status: e.status, code: e.code, message: e.message }),
    });
    return true;
  };
  window.ready = true;
</script>`);
    }
    if (pathname === '/react.js') return send(res, 200, 'text/javascript', reactJs);
    if (pathname.startsWith('/dist/') && !pathname.includes('..')) {
      try {
        return send(res, 200, 'text/javascript', readFileSync(join(PKG, pathname)));
      } catch {
        // Fall through to 404.
      }
    }
    return send(res, 404, 'text/plain', 'not found');
  });
  await new Promise((r) => appServer.listen(0, '127.0.0.1', r));
  // Another origin than the API (another host name and port), on the loopback like the server:
  // Chromium refuses a public page calling a loopback address (Private Network Access).
  APP = `http://localhost:${appServer.address().port}`;
}

async function freshPage() {
  if (page) await page.close();
  page = await context.newPage();
  page.on('request', (r) => {
    const u = new URL(r.url());
    if (u.origin === up.url) requests.push({ path: u.pathname, query: u.search, inm: r.headers()['if-none-match'] || null, at: Date.now() });
  });
  await page.goto(`${APP}/`);
  await waitFor(() => page.evaluate(() => window.ready === true), 5000, 'the test page to load the package');
}

const run = (name) => page.evaluate((n) => {
  const r = window.runs[n];
  return { updates: r.updates, modes: r.modes, errors: r.errors, mode: r.watch.mode };
}, name);

async function waitUpdate(name, pred, ms, what) {
  return waitFor(async () => {
    const r = await run(name);
    return r.updates.find(pred) || null;
  }, ms, async () => `${what}; updates so far: ${JSON.stringify((await run(name)).updates.map((u) => [u.status, u.percent, u.source]))}`);
}

async function waitMode(name, mode, ms) {
  return waitFor(async () => (await run(name)).mode === mode || null, ms,
    async () => `mode ${mode}; modes so far: ${(await run(name)).modes.join(' → ')}`);
}

const options = (extra = {}) => ({ baseUrl: up.url, token: up.token, reconnectMinMs: 300, reconnectMaxMs: 1500, ...extra });
const pollsOf = (since, id) => requests.filter((r) => r.at >= since && r.path === '/api/v1/progress/' && r.query.includes(id));
const streamOpens = (since, id) => requests.filter((r) => r.at >= since && r.path === '/api/v1/progress/stream' && r.query.includes(id));

function nonDecreasing(list) {
  const p = list.map((u) => u.percent).filter((x) => x != null);
  return p.every((x, i) => i === 0 || x >= p[i - 1]);
}

// ---- phases ----

async function ssePath() {
  await up.writeJob('sse1', 'RUNNING', { percent: 10, step: [1, 'downloading', '다운로드', 50], remaining: 90 });
  const t0 = Date.now();
  await page.evaluate((o) => window.startWatch('sse', { jobs: ['sse1'] }, o), options());
  await waitMode('sse', 'live', 5000);
  const first = await waitUpdate('sse', (u) => u.percent === 10, 3000, 'the snapshot over the stream');
  check(first.status === 'RUNNING' && first.step.name === '다운로드' && first.step.index === 1 && first.etaSeconds === 90,
    `snapshot: ${JSON.stringify(first)}`);
  await up.writeJob('sse1', 'RUNNING', { percent: 40, step: [2, 'parsing', '파싱', 20], remaining: 40 });
  await up.writeJob('sse1', 'RUNNING', { percent: 73, step: [3, 'enrolling', '등록', 60], remaining: 12 });
  const mid = await waitUpdate('sse', (u) => u.percent === 73, 3000, 'RUNNING 73 %');
  check(mid.step.name === '등록' && mid.step.percent === 60 && mid.etaSeconds === 12 && mid.attempt === 1, `73 %: ${JSON.stringify(mid)}`);
  await up.writeJob('sse1', 'DONE', { result: { created: 3, duplicates: [], restored: [], failed: [] } });
  const done = await waitUpdate('sse', (u) => u.status === 'DONE', 3000, 'DONE');
  check(done.percent === 100 && done.terminal && done.body.result.created === 3, `DONE: ${JSON.stringify(done)}`);
  await sleep(1500);
  const r = await run('sse');
  check(r.updates.every((u) => u.source === 'sse'), `every update came over the stream: ${r.updates.map((u) => u.source)}`);
  check(r.updates.filter((u) => u.status === 'DONE').length === 1, 'DONE is delivered exactly once');
  check(nonDecreasing(r.updates), `the percent never went back: ${r.updates.map((u) => u.percent)}`);
  check(pollsOf(t0, 'sse1').length === 0, 'no polling while the stream is live');
  check(!r.modes.includes('polling'), `modes: ${r.modes}`);
  // Finished: the ids-stream has nothing left to watch.
  await waitMode('sse', 'idle', 3000);
  log(`      updates ${r.updates.map((u) => `${u.status} ${u.percent}`).join(' → ')}; modes ${r.modes.join(' → ')}`);
}

async function realVideo() {
  const dir = mkdtempSync(join(tmpdir(), 'jobpulse-clip-'));
  try {
    const clip = join(dir, 'clip.mp4');
    // Asynchronously: a blocked event loop would keep Node's HTTP client from noticing that
    // the server closed an idle keep-alive connection, and the upload would go out on it.
    await promisify(execFile)('ffmpeg', ['-v', 'error', '-f', 'lavfi', '-i', 'testsrc2=size=640x360:rate=25',
      '-f', 'lavfi', '-i', 'sine', '-t', '6', '-shortest', '-pix_fmt', 'yuv420p', clip])
      .catch((e) => check(false, `ffmpeg could not make a clip (apt-get install ffmpeg): ${e.stderr || e.message}`));
    const id = await up.upload(clip);
    await page.evaluate(([o, v]) => window.startWatch('video', { videos: [v] }, o), [options(), id]);
    const ready = await waitUpdate('video', (u) => u.status === 'READY', 180_000, `video ${id} READY`);
    const r = await run('video');
    const statuses = r.updates.map((u) => u.status);
    check(ready.percent === 100 && ready.body.hls_path, `READY: ${JSON.stringify(ready)}`);
    check(nonDecreasing(r.updates), `the bar never went back: ${r.updates.map((u) => u.percent)}`);
    check(statuses.filter((s) => s === 'READY').length === 1, `READY once: ${statuses}`);
    const steps = [...new Set(r.updates.filter((u) => u.step).map((u) => u.step.index))];
    log(`      video ${id}: ${r.updates.length} updates, steps ${steps.join(',')}, percents ${r.updates.map((u) => u.percent).join(' ')}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

async function blockedThenBack() {
  await up.writeJob('poll1', 'RUNNING', { percent: 20, step: [2, 'parsing', '파싱', 10] });
  await page.route('**/api/v1/progress/stream**', (route) => route.abort('connectionrefused'));
  const t0 = Date.now();
  await page.evaluate((o) => window.startWatch('blocked', { jobs: ['poll1'] }, o), options());
  await waitMode('blocked', 'polling', 5000);
  await waitUpdate('blocked', (u) => u.percent === 20 && u.source === 'poll', 3000, 'the first poll');
  await up.writeJob('poll1', 'RUNNING', { percent: 60, step: [3, 'enrolling', '등록', 30] });
  const polled = await waitUpdate('blocked', (u) => u.percent === 60, 8000, 'the polled 60 %');
  check(polled.source === 'poll', `source: ${polled.source}`);
  await sleep(5500);
  const polls = pollsOf(t0, 'poll1');
  check(polls.length >= 3, `polls of the batch route: ${polls.length}`);
  check(polls.slice(1).every((p) => p.inm), `polls after the first send If-None-Match: ${JSON.stringify(polls)}`);
  for (let i = 1; i < polls.length; i += 1) {
    check(polls[i].at - polls[i - 1].at >= 4000, `polls at least ~5 s apart in the first minute: ${polls.map((p) => p.at - t0)}`);
  }
  check(requests.filter((r) => r.at >= t0 && r.path.endsWith('/progress/') && r.path.startsWith('/api/v1/jobs/')).length === 0,
    'the batch route is preferred over the per-task route');
  // The way is clear again: the watch returns to the stream and stops polling.
  await page.unroute('**/api/v1/progress/stream**');
  await waitMode('blocked', 'live', 8000);
  const liveAt = Date.now();
  await up.writeJob('poll1', 'DONE', { result: { created: 1, duplicates: [], restored: [], failed: [] } });
  const done = await waitUpdate('blocked', (u) => u.status === 'DONE', 3000, 'DONE after the stream came back');
  check(done.source === 'sse', `DONE came over the stream: ${done.source}`);
  await sleep(6000);
  check(pollsOf(liveAt, 'poll1').length <= 1, `no polling once live again: ${pollsOf(liveAt, 'poll1').length}`);
  const r = await run('blocked');
  check(r.updates.filter((u) => u.status === 'DONE').length === 1, 'DONE once');
  check(nonDecreasing(r.updates), `percent: ${r.updates.map((u) => u.percent)}`);
  log(`      modes ${r.modes.join(' → ')}; ${polls.length} polls, gaps ${polls.slice(1).map((p, i) => p.at - polls[i].at).join(', ')} ms`);
}

async function noEventSource() {
  await up.writeJob('poll2', 'RUNNING', { percent: 35 });
  const t0 = Date.now();
  await page.evaluate((o) => window.startWatch('noes', { jobs: ['poll2'] }, { ...o, EventSource: null }), options());
  await waitUpdate('noes', (u) => u.percent === 35, 3000, 'a polled answer without EventSource');
  await up.writeJob('poll2', 'FAILED', { error: 'the sheet has no header row' });
  await waitUpdate('noes', (u) => u.status === 'FAILED', 8000, 'FAILED by polling');
  const at = Date.now();
  await sleep(6000);
  const r = await run('noes');
  check(streamOpens(t0, 'poll2').length === 0, 'no stream without EventSource');
  check(pollsOf(at, 'poll2').length === 0, 'a terminal task is no longer polled');
  check(r.updates.filter((u) => u.status === 'FAILED').length === 1 && r.mode === 'idle',
    `FAILED once, then idle: ${r.mode} ${r.updates.map((u) => u.status)}`);
}

async function restart() {
  await up.writeJob('rs1', 'RUNNING', { percent: 25, step: [2, 'parsing', '파싱', 40] });
  await page.evaluate((o) => window.startWatch('restart', { jobs: ['rs1'] }, o), options());
  await waitMode('restart', 'live', 5000);
  await waitUpdate('restart', (u) => u.percent === 25, 3000, 'the snapshot');
  await up.kill();
  const down = Date.now();
  await waitFor(async () => ['connecting', 'polling'].includes((await run('restart')).mode) || null, 8000, 'the watch to notice');
  await sleep(2000);
  await up.launch();
  log(`      server back after ${Date.now() - down} ms`);
  // The in-process read model starts empty: the external "worker" publishes its task again.
  await up.writeJob('rs1', 'RUNNING', { percent: 70, step: [3, 'enrolling', '등록', 20] });
  await waitMode('restart', 'live', 15_000);
  await waitUpdate('restart', (u) => u.status === 'RUNNING' && u.percent === 70, 8000, '70 % after the restart');
  await up.writeJob('rs1', 'DONE', { result: { created: 2, duplicates: [], restored: [], failed: [] } });
  await waitUpdate('restart', (u) => u.status === 'DONE', 5000, 'DONE after the restart');
  await sleep(1000);
  const r = await run('restart');
  check(r.errors.length === 0, `no error: ${JSON.stringify(r.errors)}`);
  check(r.updates.filter((u) => u.status === 'DONE').length === 1, 'DONE once');
  check(nonDecreasing(r.updates), `the percent never went back across the restart: ${r.updates.map((u) => `${u.status} ${u.percent}`)}`);
  log(`      modes ${r.modes.join(' → ')}; updates ${r.updates.map((u) => `${u.status} ${u.percent} ${u.source}`).join(' → ')}`);
}

function hs256(claims, secret) {
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const body = `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64(claims)}`;
  return `${body}.${createHmac('sha256', secret).update(body).digest('base64url')}`;
}

async function unauthorized() {
  const forged = hs256({ exp: Math.floor(Date.now() / 1000) + 600, token_type: 'access', tenant_id: 1, role: 'teacher' },
    'not-the-server-secret-not-the-server-secret');
  for (const [name, extra] of [['401-sse', {}], ['401-poll', { transport: 'poll' }]]) {
    await page.evaluate(([n, o]) => window.startWatch(n, { jobs: ['sse1'] }, o), [name, options({ token: forged, ...extra })]);
    await waitFor(async () => (await run(name)).errors.length > 0 || null, 8000, `${name}: an error`);
    const at = Date.now();
    await sleep(4000);
    const r = await run(name);
    check(r.errors.length === 1 && r.errors[0].status === 401, `${name}: one 401 error: ${JSON.stringify(r.errors)}`);
    check(r.mode === 'stopped', `${name}: stopped, not looping: ${r.mode}`);
    check(r.updates.length === 0, `${name}: nothing delivered`);
    check(requests.filter((q) => q.at > at + 200 && q.query.includes('sse1')).length === 0, `${name}: no requests after the error`);
  }
  // A student may not watch a whole tenant: 403.
  const student = up.mint(['--tenant-id', '1', '--role', 'student']);
  await page.evaluate((o) => window.startWatch('403', {}, o), options({ token: student, all: true }));
  await waitFor(async () => (await run('403')).errors.length > 0 || null, 8000, 'a 403 error');
  const e = (await run('403')).errors[0];
  check(e.status === 403, `all=true as a student: ${JSON.stringify(e)}`);
}

async function foreignId() {
  // sse1 is tenant 1's (DONE); tenant 2 must see exactly what a never-written id shows.
  await page.evaluate((o) => window.startWatch('foreign', { jobs: ['sse1', 'never-written'] }, o),
    options({ token: up.otherTenantToken, giveUpAfterMs: 2500 }));
  const a = await waitUpdate('foreign', (u) => u.id === 'sse1', 5000, 'the foreign id');
  const b = await waitUpdate('foreign', (u) => u.id === 'never-written', 5000, 'the unknown id');
  check(a.status === 'UNKNOWN' && b.status === 'UNKNOWN', `both UNKNOWN: ${a.status} ${b.status}`);
  check(JSON.stringify({ ...a.body, job_id: 'x' }) === JSON.stringify({ ...b.body, job_id: 'x' }),
    `identical bodies: ${JSON.stringify(a.body)} vs ${JSON.stringify(b.body)}`);
  check(a.percent === null && !a.terminal, `no percent, not terminal: ${JSON.stringify(a)}`);
  const gave = await waitUpdate('foreign', (u) => u.id === 'sse1' && u.gaveUp, 6000, 'the give-up');
  check(gave.status === 'UNKNOWN', `gave up while UNKNOWN: ${gave.status}`);
  await waitMode('foreign', 'idle', 3000);
  const at = Date.now();
  await sleep(3000);
  const r = await run('foreign');
  check(r.updates.filter((u) => u.gaveUp).length === 2, `each id given up once: ${JSON.stringify(r.updates.map((u) => [u.id, u.gaveUp]))}`);
  check(requests.filter((q) => q.at > at && q.query.includes('never-written')).length === 0, 'nothing asked after giving up');
}

async function reactHook() {
  await up.writeJob('react1', 'RUNNING', { percent: 15 });
  await page.addScriptTag({ url: `${APP}/react.js`, type: 'module' });
  await page.evaluate((o) => window.mountReact(o), options());
  const text = () => page.evaluate(() => document.getElementById('react-out')?.textContent || '');
  await waitFor(async () => (await text()) === 'RUNNING 15' || null, 5000, async () => `the hook's first state; shows ${await text()}`);
  await up.writeJob('react1', 'RUNNING', { percent: 55 });
  await waitFor(async () => (await text()) === 'RUNNING 55' || null, 3000, async () => `55 %; shows ${await text()}`);
  await up.writeJob('react1', 'DONE', { result: { created: 1, duplicates: [], restored: [], failed: [] } });
  await waitFor(async () => (await text()) === 'DONE 100' || null, 3000, async () => `DONE; shows ${await text()}`);
  const mode = await page.evaluate(() => document.getElementById('react-out').dataset.mode);
  check(mode === 'idle' || mode === 'live', `hook mode: ${mode}`);
}

async function main() {
  const phases = [
    ['start jobpulse up and Chromium', async () => {
      up = await Up.start();
      profile = mkdtempSync(join(tmpdir(), 'jobpulse-client-chromium-'));
      context = await chromium.launchPersistentContext(profile, {
        executablePath: CHROMIUM,
        headless: true,
        args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
          '--disable-background-networking', '--disable-component-update', '--disable-sync'],
      });
      await servePage();
      await freshPage();
    }],
    ['SSE: snapshot, steps, ETA, DONE once, no polling', ssePath],
    ['SSE blocked → batch polling (If-None-Match, 5 s cadence) → back to SSE', blockedThenBack],
    ['no EventSource: polling until a terminal state, then nothing', noEventSource],
    ['server restart mid-watch: back to live, percent kept, DONE once', restart],
    ['401 (stream and polling) and 403 stop the watch with an error', unauthorized],
    ['a foreign id is UNKNOWN like a missing one, and is given up', foreignId],
    ['React hook useTaskProgress', reactHook],
    ['a real upload transcoded by the worker, watched to READY', realVideo],
  ];
  let current = '(setup)';
  let passed = 0;
  const started = Date.now();
  try {
    for (const [name, fn] of phases) {
      current = name;
      const t = Date.now();
      await fn();
      passed += 1;
      log(`  ok  ${name} (${Date.now() - t} ms)`);
    }
    log(`client.spec: ${passed} passed, 0 failed (${((Date.now() - started) / 1000).toFixed(1)} s)`);
    return 0;
  } catch (e) {
    log(`FAIL ${current}\n${(e instanceof PhaseError ? e.message : e.stack || String(e)).replace(/^/gm, '     ')}`);
    if (up) log(`--- jobpulse up (last lines) ---\n${up.logs()}`);
    log(`client.spec: ${passed} passed, 1 failed`);
    return 1;
  } finally {
    if (context) await context.close().catch(() => {});
    if (profile) rmSync(profile, { recursive: true, force: true });
    if (appServer) appServer.close();
    if (up) await up.stop().catch(() => {});
  }
}

process.exit(await main());
