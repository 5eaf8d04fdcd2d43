// End-to-end flow of the dashboard against a full jobpulse (`jobpulse up`): sign in by link,
// upload a clip and watch it go through the steps to READY, screenshot the page, play the
// video, import a workbook and read its summary (and, for staff, download the credentials).
//
//   jobpulse up --data-dir /tmp/jp            # prints the URL and a staff token
//   cd tests/browser && npm ci
//   JOBPULSE_URL=http://127.0.0.1:8080 JOBPULSE_TOKEN=… \
//   JOBPULSE_CLIP=/path/clip.mp4 JOBPULSE_WORKBOOK=/path/students.xlsx node dashboard.spec.mjs
//
// Optional env: JOBPULSE_TIMEOUT (seconds a task may take, default 300), CHROMIUM_PATH,
// DASHBOARD_SCREENSHOT (default docs/dashboard.png at the repository root).
// Exits 0 when every phase passed, 1 with the failing phase and what the page showed otherwise.

import { existsSync, readFileSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import {
  check, fail, launch, log, readRow, runPhases, waitFor,
} from './lib.mjs';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const env = {
  url: (process.env.JOBPULSE_URL || '').replace(/\/$/, ''),
  token: process.env.JOBPULSE_TOKEN || '',
  clip: process.env.JOBPULSE_CLIP || '',
  workbook: process.env.JOBPULSE_WORKBOOK || '',
  timeoutMs: Number(process.env.JOBPULSE_TIMEOUT || 300) * 1000,
  screenshot: process.env.DASHBOARD_SCREENSHOT || join(ROOT, 'docs/dashboard.png'),
  // The README's picture is taken mid-encoding (steps and ETA visible) when the clip is long
  // enough to catch it; otherwise the READY page is used.
};

let browser;
let page;
let health;
let videoId;
let jobId;
const title = `E2E 클립 ${new Date().toISOString().slice(0, 19)}`;

const state = (sel) => page.evaluate((s) => {
  const el = document.querySelector(s);
  return el ? { text: el.textContent, hidden: el.hidden, state: el.dataset.state } : null;
}, sel);

async function configuration() {
  const missing = ['JOBPULSE_URL', 'JOBPULSE_TOKEN', 'JOBPULSE_CLIP', 'JOBPULSE_WORKBOOK']
    .filter((k) => !process.env[k]);
  check(!missing.length, `set ${missing.join(', ')} (see the header of this file)`);
  check(existsSync(env.clip), `JOBPULSE_CLIP does not exist: ${env.clip}`);
  check(existsSync(env.workbook), `JOBPULSE_WORKBOOK does not exist: ${env.workbook}`);
  check(/\.xlsx$/i.test(env.workbook), `JOBPULSE_WORKBOOK must be an .xlsx file: ${env.workbook}`);
  const res = await fetch(`${env.url}/healthz`).catch((e) => fail(`${env.url} is not reachable: ${e.message}`));
  check(res.ok, `${env.url}/healthz answered ${res.status}`);
  browser = await launch();
  ({ page, health } = browser);
}

async function signIn() {
  await page.goto(`${env.url}/#token=${env.token}`);
  await waitFor(() => page.isVisible('[data-testid="identity-text"]'), 10_000,
    async () => `signed-in page; sign-in message: ${JSON.stringify(await state('[data-testid="signin-message"]'))}`);
  check((await page.evaluate(() => location.hash)) === '', 'the #token= fragment must be cleared');
  const identity = await page.textContent('[data-testid="identity-text"]');
  log(`      identity: ${identity}`);
  await waitFor(async () => {
    const s = await state('[data-testid="connection-state"]');
    return s && ['live', 'polling', 'idle'].includes(s.state);
  }, 10_000, 'the live-update connection to settle');
  const conn = await state('[data-testid="connection-state"]');
  log(`      updates: ${conn.state}`);
}

async function workBox() {
  check(await page.isVisible('[data-testid="workbox"]') || await page.isVisible('[data-testid="tasks-empty"]'),
    'the work box (or its empty note) must be visible');
  const notice = await state('[data-testid="workbox-notice"]');
  check(notice.hidden, `the work box shows a problem: ${notice.text}`);
  const sessions = await page.$$eval('[data-testid="upload-session"] option', (o) => o.filter((x) => x.value).length);
  check(sessions > 0, 'the session list (from /api/v1/lectures/) must offer at least one session');
  const rows = await page.$$eval('[data-testid^="task-"]', (r) => r.length);
  log(`      ${rows} tasks listed, ${sessions} sessions to upload into`);
}

async function uploadClip() {
  await page.setInputFiles('[data-testid="upload-input"]', env.clip);
  await page.fill('[data-testid="upload-title"]', title);
  const session = await page.$eval('[data-testid="upload-session"]', (s) => [...s.options].find((o) => o.value).value);
  await page.selectOption('[data-testid="upload-session"]', session);
  await page.click('[data-testid="upload-button"]');
  await waitFor(async () => {
    const m = await state('[data-testid="upload-message"]');
    if (m && !m.hidden && !/Uploaded/.test(m.text)) fail(`upload refused: ${m.text}`);
    return m && !m.hidden;
  }, 120_000, 'the upload to finish');
  videoId = await waitFor(() => page.evaluate((t) => {
    const row = [...document.querySelectorAll('[data-kind="video"]')]
      .find((r) => r.querySelector('[data-testid="task-label"]').textContent === t);
    return row ? row.dataset.id : null;
  }, title), 3000, `a work-box row titled ${title} right after the upload`);
  const r = await readRow(page, 'video', videoId);
  check(r.bar >= 10, `a fresh upload is drawn at 10 % or more: ${JSON.stringify(r)}`);
  log(`      video ${videoId}: ${r.status} at ${r.bar} %`);
}

let processingShot = null;

async function watchToReady() {
  const seenSteps = [];
  const seenStatus = [];
  let last = null;
  const until = Date.now() + env.timeoutMs;
  for (;;) {
    const r = await readRow(page, 'video', videoId);
    check(r, `the row of video ${videoId} disappeared`);
    if (seenStatus.at(-1) !== r.status) seenStatus.push(r.status);
    if (r.step && seenSteps.at(-1) !== r.step.replace(/^\[\d+\/\d+\] /, '')) {
      seenSteps.push(r.step.replace(/^\[\d+\/\d+\] /, ''));
    }
    if (!processingShot && r.status === 'PROCESSING' && r.eta && r.bar != null && r.bar >= 30) {
      await page.screenshot({ path: env.screenshot, fullPage: true });
      processingShot = `${r.step} ${r.stepPercent} · ${r.eta}`;
    }
    const sameAttempt = last && last.status === r.status && last.attempt === r.attempt;
    if (sameAttempt && r.bar != null && last.bar != null) {
      check(r.bar >= last.bar, `the bar moved back within an attempt: ${last.bar} -> ${r.bar} (${r.step})`);
    }
    if (r.status === 'FAILED') fail(`the video failed: ${r.error} (statuses ${seenStatus.join(' → ')})`);
    if (r.status === 'READY') {
      check(r.bar === 100, `READY is drawn at 100 %: ${r.bar}`);
      break;
    }
    if (Date.now() > until) {
      fail(`not READY after ${env.timeoutMs / 1000} s; statuses ${seenStatus.join(' → ')}, steps ${seenSteps.join(', ')}, row ${JSON.stringify(r)}`);
    }
    last = r;
    await page.waitForTimeout(100);
  }
  check(seenStatus.includes('PROCESSING') || seenSteps.length > 0,
    `the page never showed processing: ${seenStatus.join(' → ')}`);
  log(`      statuses: ${seenStatus.join(' → ')}`);
  log(`      steps seen: ${seenSteps.join(' → ') || '(none: the clip was faster than one render)'}`);
}

async function screenshot() {
  if (processingShot) {
    log(`      screenshot while encoding (${processingShot}): ${env.screenshot}`);
    return;
  }
  // Let the bar's CSS transition finish before the picture.
  await page.waitForTimeout(800);
  await page.screenshot({ path: env.screenshot, fullPage: true });
  log(`      screenshot: ${env.screenshot}`);
}

async function playVideo() {
  const row = `[data-testid="task-video-${videoId}"]`;
  await waitFor(() => page.isVisible(`${row} [data-testid="play-button"]`), 10_000,
    'a Play button on the READY video (needs hls_url from GET /api/v1/media/videos/{id}/)');
  await page.click(`${row} [data-testid="play-button"]`);
  const r = await waitFor(() => page.evaluate((sel) => {
    const v = document.querySelector(`${sel} [data-testid="video-player"]`);
    const err = document.querySelector(`${sel} [data-testid="player-error"]`);
    if (err && !err.hidden) return { error: err.textContent };
    if (!v) return null;
    if (v.error) return { error: `media error ${v.error.code}` };
    return v.currentTime > 0.5 ? { t: v.currentTime, player: v.dataset.player, poster: Boolean(v.poster) } : null;
  }, row), 20_000, async () => `playback past 0.5 s; player: ${JSON.stringify(await page.evaluate((sel) => {
    const v = document.querySelector(`${sel} [data-testid="video-player"]`);
    return v && { t: v.currentTime, readyState: v.readyState, networkState: v.networkState, src: v.currentSrc };
  }, row))}`);
  check(!r.error, `the video cannot be played: ${r.error}`);
  log(`      played ${r.t.toFixed(2)} s with ${r.player}${r.poster ? ', thumbnail as poster' : ', no poster'}`);
}

async function importWorkbook() {
  check(await page.isVisible('[data-testid="import-form"]'), 'the import form is for staff: use a staff token');
  await page.setInputFiles('[data-testid="import-input"]', env.workbook);
  const lecture = await page.$eval('[data-testid="import-lecture"]', (s) => [...s.options].find((o) => o.value)?.value);
  check(lecture, 'the lecture list must offer a lecture');
  await page.selectOption('[data-testid="import-lecture"]', lecture);
  await page.click('[data-testid="import-button"]');
  const name = basename(env.workbook);
  await waitFor(async () => {
    const m = await state('[data-testid="import-message"]');
    if (m && !m.hidden && !/submitted/.test(m.text)) fail(`import refused: ${m.text}`);
    return m && !m.hidden;
  }, 30_000, 'the import to be submitted');
  jobId = await waitFor(() => page.evaluate((n) => {
    const row = [...document.querySelectorAll('[data-kind="job"]')]
      .find((r) => r.querySelector('[data-testid="task-label"]').textContent === n);
    return row ? row.dataset.id : null;
  }, name), 3000, `a work-box row for ${name}`);
  const r = await waitFor(async () => {
    const x = await readRow(page, 'job', jobId);
    if (x && x.outcome === 'failed') fail(`the import failed: ${x.badge}: ${x.error}`);
    return x && x.status === 'DONE' && x.result ? x : null;
  }, env.timeoutMs, async () => `the import to be DONE with a summary: ${JSON.stringify(await readRow(page, 'job', jobId))}`);
  const counts = await page.evaluate((id) => {
    const row = document.querySelector(`[data-testid="task-job-${id}"]`);
    const t = (k) => row.querySelector(`[data-testid="${k}"]`)?.textContent;
    return { created: t('result-created'), duplicates: t('result-duplicates'), restored: t('result-restored'),
      failed: t('result-failed'),
      failedRows: [...row.querySelectorAll('[data-testid="failed-rows"] tbody tr')].map((tr) => tr.textContent) };
  }, jobId);
  check(/^\d+ created$/.test(counts.created || ''), `summary: ${JSON.stringify(counts)}`);
  log(`      job ${jobId}: ${counts.created}, ${counts.duplicates}, ${counts.restored}, ${counts.failed}`);
  for (const f of counts.failedRows) log(`        failed row: ${f}`);
  // A staff member's finished import always offers its credentials (workbox.js); the created
  // students' rows must be in the file.
  check(r.buttons.includes('csv-button'), `no credentials CSV button on the DONE import: ${JSON.stringify(r.buttons)}`);
  const created = Number(/^(\d+) created$/.exec(counts.created)[1]);
  check(created > 0, `the workbook created no student: ${counts.created}`);
  await downloadCsv(created);
}

async function downloadCsv(created) {
  const [download] = await Promise.all([
    page.waitForEvent('download', { timeout: 10_000 }),
    page.click(`[data-testid="task-job-${jobId}"] [data-testid="csv-button"]`),
  ]);
  const path = await download.path();
  const bytes = readFileSync(path);
  check(bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf, 'the CSV must start with a UTF-8 BOM');
  const lines = bytes.toString('utf8').slice(1).split('\r\n').filter(Boolean);
  check(lines.length >= 1 && lines[0].includes('login_id'), `CSV header: ${lines[0]}`);
  check(lines.length - 1 === created, `the CSV holds ${lines.length - 1} rows for ${created} created students`);
  log(`      credentials CSV: ${lines.length - 1} rows (${download.suggestedFilename()})`);
}

async function pageHealth() {
  await health.assertClean('whole run');
}

const code = await runPhases('dashboard.spec', [
  ['configuration and Chromium', configuration],
  ['sign in through a #token= link', signIn],
  ['the work box and the forms are populated', workBox],
  ['upload the clip (JOBPULSE_CLIP)', uploadClip],
  ['watch the bar go through the steps to READY', watchToReady],
  ['screenshot', screenshot],
  ['play the first second of the video', playVideo],
  ['import the workbook (JOBPULSE_WORKBOOK) and read the summary', importWorkbook],
  ['page health (no errors, no CSP violations)', pageHealth],
], { cleanup: async () => browser && browser.close() });
process.exit(code);
