// The front end's start calls from another origin (docs/contract.md §1, §7; docs/contract.md): a page
// served by this script on origin A (http://localhost:PAGE_PORT) drives a running jobpulse on
// origin B (http://127.0.0.1:…) with the headers the front end's axios wrapper sends on every
// request, and runs both video upload flows in Chromium:
//
//   single:    init → PUT upload_url (Content-Type, ETag read) → complete → UPLOADED
//   multipart: init → multipart/init → presign → parts PUT out of order without Content-Type,
//              ETags read from the answers → multipart/complete (parts in completion order)
//
// plus the hydration list (?status=PENDING) and the progress poll (Retry-After readable). With
// S3 storage (JOBPULSE_STORAGE=s3) the PUTs go straight to the bucket, whose CORS rule must allow
// origin A; with file storage to jobpulse's own signed URLs.
//
// Env: JOBPULSE_URL, JOBPULSE_TOKEN (staff of the demo tenant), PAGE_PORT, JOBPULSE_CLIP (a small
// video file), JOBPULSE_STORAGE (file|s3, for the messages and URL checks), CHROMIUM_PATH.
// Run by crates/jobpulse-cli/tests/e2e/upload_browser.rs.

import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';

import { check, launch, log, runPhases } from './lib.mjs';

const API = process.env.JOBPULSE_URL;
const TOKEN = process.env.JOBPULSE_TOKEN;
const PAGE_PORT = Number(process.env.PAGE_PORT);
const CLIP = process.env.JOBPULSE_CLIP;
const STORAGE = process.env.JOBPULSE_STORAGE || 'file';
if (!API || !TOKEN || !PAGE_PORT || !CLIP) {
  log('usage: JOBPULSE_URL=… JOBPULSE_TOKEN=… PAGE_PORT=… JOBPULSE_CLIP=… node upload.spec.mjs');
  process.exit(2);
}
const ORIGIN = `http://localhost:${PAGE_PORT}`;

const PAGE = `<!doctype html><meta charset="utf-8"><title>upload from another origin</title>
<script>
// What the front end's axios wrapper sends on every call.
window.api = async (path, { method = 'GET', body } = {}) => {
  const res = await fetch(window.cfg.api + path, {
    method,
    headers: {
      Authorization: 'Bearer ' + window.cfg.token,
      'Content-Type': 'application/json',
      'X-Client': 'academyfront',
      'X-Client-Version': '2.4.1',
      'X-Tenant-Code': 'demo',
    },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  let json = null;
  try { json = await res.json(); } catch {}
  return { status: res.status, json, retryAfter: res.headers.get('Retry-After') };
};
</script>
<p>origin A</p>`;

let server;
let browser;
let page;
const state = {};

async function startPage() {
  const clip = readFileSync(CLIP);
  server = createServer((req, res) => {
    if (req.url === '/clip.mp4') {
      res.writeHead(200, { 'Content-Type': 'video/mp4', 'Content-Length': clip.length });
      res.end(clip);
      return;
    }
    res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' });
    res.end(PAGE);
  });
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(PAGE_PORT, 'localhost', resolve);
  });
  browser = await launch();
  page = browser.page;
  await page.goto(`${ORIGIN}/`);
  await page.evaluate((cfg) => {
    window.cfg = cfg;
  }, { api: API, token: TOKEN });
  check(new URL(API).origin !== ORIGIN, `the page (${ORIGIN}) must be on another origin than the API (${API})`);
}

async function session() {
  const r = await page.evaluate(() => window.api('/api/v1/lectures/'));
  check(r.status === 200, `GET /api/v1/lectures/ from ${ORIGIN}: ${r.status} (a blocked preflight is status 0 / a TypeError)`);
  const s = r.json.results.flatMap((l) => l.sessions || [])[0];
  check(s && s.id, `the demo tenant has a session: ${JSON.stringify(r.json)}`);
  state.session = s.id;
  state.lecture = r.json.results[0].id;
}

// A job submit (multipart form data, as the front end posts it) and its progress poll.
async function submit() {
  const out = await page.evaluate(async (lecture) => {
    const form = new FormData();
    form.append('job_type', 'attendance_excel_export');
    form.append('lecture_id', String(lecture));
    const res = await fetch(window.cfg.api + '/api/v1/jobs/', {
      method: 'POST',
      headers: {
        Authorization: 'Bearer ' + window.cfg.token,
        'X-Client': 'academyfront',
        'X-Client-Version': '2.4.1',
        'X-Tenant-Code': 'demo',
      },
      body: form,
    });
    const job = await res.json();
    for (let i = 0; i < 600; i += 1) {
      const p = await window.api(`/api/v1/jobs/${job.job_id}/progress/`);
      if (['DONE', 'FAILED', 'REJECTED_BAD_INPUT'].includes(p.json.status)) return { status: res.status, job, last: p.json };
      await new Promise((r) => setTimeout(r, 100));
    }
    return { status: res.status, job, last: null };
  }, state.lecture);
  check(out.status === 201, `POST /api/v1/jobs/ from ${ORIGIN}: ${out.status} ${JSON.stringify(out.job)}`);
  check(out.last && out.last.status === 'DONE', `the job ran to DONE: ${JSON.stringify(out.last)}`);
  log(`     job ${out.job.job_id}: ${out.job.status} → ${out.last.status}`);
}

async function single() {
  const out = await page.evaluate(async (session) => {
    const log = [];
    const init = await window.api('/api/v1/media/videos/upload/init/', {
      method: 'POST',
      body: { session, title: '브라우저 업로드', filename: 'clip.mp4', content_type: 'video/mp4',
              show_watermark: true, allow_skip: false, max_speed: 1.5 },
    });
    log.push(['init', init.status]);
    if (init.status !== 201) return { log, init };
    const id = init.json.video.id;
    const listed = await window.api('/api/v1/media/videos/?status=PENDING');
    const pendingPoll = await window.api(`/api/v1/media/videos/${id}/progress/`);
    const file = await (await fetch('/clip.mp4')).blob();
    const put = await fetch(init.json.upload_url, {
      method: 'PUT', headers: { 'Content-Type': init.json.content_type }, body: file,
    });
    const etag = put.headers.get('ETag');
    const afterPut = await window.api(`/api/v1/media/videos/${id}/progress/`);
    const done = await window.api(`/api/v1/media/videos/${id}/upload/complete/`, { method: 'POST', body: { ok: true } });
    const poll = await window.api(`/api/v1/media/videos/${id}/progress/`);
    return {
      log, id, init: init.json, listed: listed.json, pendingPoll: pendingPoll.json,
      putStatus: put.status, etag, afterPut: afterPut.json, done, poll,
    };
  }, state.session);
  check(out.init && out.init.video, `init: ${JSON.stringify(out)}`);
  check(out.init.video.status === 'PENDING', `init answers a PENDING video: ${JSON.stringify(out.init)}`);
  check(/^https?:\/\//.test(out.init.upload_url), `upload_url is absolute: ${out.init.upload_url}`);
  if (STORAGE === 's3') {
    check(out.init.upload_url.includes('X-Amz-Signature='), `a presigned S3 URL: ${out.init.upload_url}`);
  } else {
    check(out.init.upload_url.startsWith(API), `jobpulse's own upload URL: ${out.init.upload_url}`);
  }
  check(out.listed.results.some((v) => v.id === out.id), `hydration (?status=PENDING) lists ${out.id}: ${JSON.stringify(out.listed)}`);
  check(out.pendingPoll.status === 'PENDING', `progress before the PUT: ${JSON.stringify(out.pendingPoll)}`);
  check(out.putStatus === 200, `PUT upload_url from ${ORIGIN}: ${out.putStatus}`);
  check(out.etag && out.etag.length > 2, `the PUT's ETag is readable from ${ORIGIN} (exposed): ${out.etag}`);
  check(out.afterPut.status === 'PENDING', `progress after the PUT, before complete: ${JSON.stringify(out.afterPut)}`);
  check(out.done.status === 200 && out.done.json.video.status === 'UPLOADED' && out.done.json.queued === true,
    `complete: ${JSON.stringify(out.done)}`);
  check(out.poll.status === 200 && out.poll.json.status !== 'PENDING', `progress after complete: ${JSON.stringify(out.poll)}`);
  check(out.poll.retryAfter === '3', `Retry-After readable from ${ORIGIN}: ${out.poll.retryAfter}`);
  log(`     video ${out.id}: PENDING → PUT ${out.etag} → ${out.done.json.video.status} (poll: ${out.poll.json.status})`);
}

async function multipart() {
  const out = await page.evaluate(async (session) => {
    const init = await window.api('/api/v1/media/videos/upload/init/', {
      method: 'POST',
      body: { session, title: 'multipart', filename: 'big.mp4', content_type: 'video/mp4',
              show_watermark: false, allow_skip: true, max_speed: 2 },
    });
    if (init.status !== 201) return { stage: 'init', init };
    const id = init.json.video.id;
    const mp = await window.api(`/api/v1/media/videos/${id}/upload/multipart/init/`, {
      method: 'POST', body: { content_type: 'video/mp4' },
    });
    if (mp.status !== 200) return { stage: 'multipart/init', mp };
    const uploadId = mp.json.upload_id;
    const signed = await window.api(`/api/v1/media/videos/${id}/upload/multipart/presign/`, {
      method: 'POST', body: { upload_id: uploadId, part_numbers: [1, 2] },
    });
    if (signed.status !== 200) return { stage: 'presign', signed };
    const part = (n, size) => {
      const b = new Uint8Array(size);
      for (let i = 0; i < size; i += 1) b[i] = (i * 31 + n) & 255;
      return b;
    };
    const sizes = { 1: 5 * 1024 * 1024, 2: 300 * 1024 };
    // Both in flight at once; part 2 finishes first. No Content-Type, as the front end sends.
    const order = [];
    const puts = await Promise.all([2, 1].map(async (n) => {
      const res = await fetch(signed.json.urls[String(n)], { method: 'PUT', body: part(n, sizes[n]) });
      order.push(n);
      return { n, status: res.status, etag: res.headers.get('ETag') };
    }));
    const parts = order.map((n) => {
      const p = puts.find((x) => x.n === n);
      return { ETag: p.etag, PartNumber: n };
    });
    const done = await window.api(`/api/v1/media/videos/${id}/upload/multipart/complete/`, {
      method: 'POST', body: { upload_id: uploadId, parts },
    });
    const poll = await window.api(`/api/v1/media/videos/${id}/progress/`);
    return { id, puts, parts, done, poll };
  }, state.session);
  check(out.puts, `multipart stopped at ${out.stage}: ${JSON.stringify(out)}`);
  for (const p of out.puts) {
    check(p.status === 200, `part ${p.n} PUT from ${ORIGIN}: ${p.status}`);
    check(p.etag && p.etag.length > 2, `part ${p.n}'s ETag is readable (exposed): ${p.etag}`);
  }
  check(out.done.status === 200 && out.done.json.video.status === 'UPLOADED' && out.done.json.queued === true,
    `multipart/complete (parts ${JSON.stringify(out.parts.map((p) => p.PartNumber))}): ${JSON.stringify(out.done)}`);
  check(out.poll.json.status !== 'PENDING', `progress after multipart/complete: ${JSON.stringify(out.poll)}`);
  log(`     video ${out.id}: parts completed in order ${out.parts.map((p) => p.PartNumber).join(',')} → ${out.done.json.video.status}`);
}

const code = await runPhases(`upload.spec (${STORAGE} storage)`, [
  ['page on another origin', startPage],
  ['API reachable with the front end headers', session],
  ['job submit (multipart form) and its progress', submit],
  ['single upload: init, PUT, complete', single],
  ['multipart upload: init, presign, parts out of order, complete', multipart],
  ['page healthy', async () => {
    const errs = browser.health.errors;
    check(!errs.length, `uncaught page errors: ${errs.join('; ')}`);
    const cors = browser.health.console.filter((c) => /CORS|Access-Control/i.test(c));
    check(!cors.length, `CORS errors in the console: ${cors.join('; ')}`);
  }],
], {
  cleanup: async () => {
    if (browser) await browser.close();
    if (server) server.close();
  },
});
process.exit(code);
