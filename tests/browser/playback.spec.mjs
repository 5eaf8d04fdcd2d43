// Cross-origin playback the way the academy's video page does it: a page on origin A (a small
// Node server here, `http://localhost:<port>`) gets `hls_url` / `thumbnail_url` from the API on
// origin B and hands them, unchanged and without any token, to hls.js and to a plain <video>.
//
//   JOBPULSE_HLS_URL=…  JOBPULSE_THUMB_URL=…  node playback.spec.mjs
//
// Env: JOBPULSE_HLS_URL, JOBPULSE_THUMB_URL (absolute, signed — from the stats route);
// JOBPULSE_SEGMENT_ORIGIN (optional: the origin every media segment must come from, e.g. the
// S3 endpoint when playlists point at presigned segment URLs); JOBPULSE_FORGED_URL (optional: a
// tampered media URL that must answer 403 to the page); CHROMIUM_PATH.
//
// hls.js is the copy vendored in the dashboard's assets (crates/jobpulse-api/assets/vendor),
// served by origin A: nothing is fetched from a CDN.

import { createServer } from 'node:http';
import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import { check, fail, launch, log, runPhases, waitFor } from './lib.mjs';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const HLS_JS = readFileSync(join(ROOT, 'crates/jobpulse-api/assets/vendor/hls.light.min.js'));
const HLS_URL = process.env.JOBPULSE_HLS_URL || fail('JOBPULSE_HLS_URL is not set');
const THUMB_URL = process.env.JOBPULSE_THUMB_URL || fail('JOBPULSE_THUMB_URL is not set');
const SEGMENT_ORIGIN = process.env.JOBPULSE_SEGMENT_ORIGIN || '';
const FORGED_URL = process.env.JOBPULSE_FORGED_URL || '';

const PAGE = `<!doctype html><meta charset="utf-8"><title>video page</title>
<video id="v" muted playsinline controls width="320"></video>
<img id="poster" alt="">
<script src="/hls.js"></script>`;

/** Origin A: the app's page and the vendored hls.js. */
function startOriginA() {
  const server = createServer((req, res) => {
    if (req.url === '/hls.js') {
      res.writeHead(200, { 'content-type': 'text/javascript' });
      res.end(HLS_JS);
    } else if (req.url === '/') {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      res.end(PAGE);
    } else {
      res.writeHead(404);
      res.end();
    }
  });
  return new Promise((ok) => server.listen(0, '127.0.0.1', () => ok(server)));
}

const originOf = (u) => new URL(u).origin;
const isSegment = (u) => new URL(u).pathname.endsWith('.ts');

async function main() {
  const server = await startOriginA();
  const originA = `http://localhost:${server.address().port}`;
  check(originOf(HLS_URL) !== originA, `the API must be on another origin than ${originA}`);
  const browser = await launch();
  const { page } = browser;
  const requests = [];
  page.on('request', (r) => {
    if (!r.url().startsWith(originA)) {
      requests.push({ url: r.url(), headers: r.headers(), type: r.resourceType() });
    }
  });
  const responses = [];
  page.on('response', (r) => {
    if (!r.url().startsWith(originA)) {
      responses.push({ url: r.url(), status: r.status(), headers: r.headers(), range: r.request().headers().range });
    }
  });

  const playedTo = async (what) => waitFor(
    () => page.evaluate(() => {
      const v = document.getElementById('v');
      return v.currentTime > 1.0 && v.readyState >= 2 ? v.currentTime : 0;
    }),
    60_000,
    async () => `${what}: not playing past 1 s: ${await page.evaluate(() => {
      const v = document.getElementById('v');
      return JSON.stringify({ t: v.currentTime, rs: v.readyState, err: v.error && v.error.code, log: window.__log || [] });
    })}`,
  );

  const phases = [
    ['origin A loads its page', async () => {
      await page.goto(`${originA}/`);
      check(await page.evaluate(() => typeof window.Hls === 'function'), 'hls.js did not load from origin A');
    }],
    ['the thumbnail URL shows as an image, without a token', async () => {
      await page.evaluate((u) => { document.getElementById('poster').src = u; }, THUMB_URL);
      await waitFor(() => page.evaluate(() => document.getElementById('poster').naturalWidth > 0), 20_000,
        'the thumbnail did not load');
    }],
    ['hls.js plays hls_url from origin A', async () => {
      requests.length = 0;
      responses.length = 0;
      const supported = await page.evaluate((src) => {
        window.__log = [];
        if (!window.Hls.isSupported()) return false;
        const v = document.getElementById('v');
        const hls = new window.Hls({ enableWorker: true });
        window.__hls = hls;
        hls.on(window.Hls.Events.ERROR, (_e, d) => window.__log.push(`${d.fatal ? 'FATAL ' : ''}${d.type}:${d.details}`));
        hls.loadSource(src);
        hls.attachMedia(v);
        v.play().catch((e) => window.__log.push(`play: ${e.name}`));
        return true;
      }, HLS_URL);
      check(supported, 'hls.js says MediaSource playback is unsupported');
      const t = await playedTo('hls.js');
      const fatal = await page.evaluate(() => (window.__log || []).filter((l) => l.startsWith('FATAL')));
      check(!fatal.length, `hls.js reported fatal errors: ${fatal}`);
      const segs = requests.filter((r) => isSegment(r.url));
      check(segs.length > 0, `no segment requests seen: ${requests.map((r) => r.url).join('\n')}`);
      for (const r of requests) {
        check(!r.headers.authorization, `a media request carried a token: ${r.url}`);
      }
      if (SEGMENT_ORIGIN) {
        const elsewhere = segs.filter((r) => originOf(r.url) !== SEGMENT_ORIGIN);
        check(!elsewhere.length, `segments not from ${SEGMENT_ORIGIN}: ${elsewhere.map((r) => r.url).join(', ')}`);
      }
      const cors = responses.filter((r) => isSegment(r.url) || /\.m3u8/.test(r.url));
      for (const r of cors) {
        check(r.status === 200 || r.status === 206, `${r.url} answered ${r.status}`);
        check(r.headers['access-control-allow-origin'], `no CORS header on ${r.url}`);
      }
      log(`     hls.js played to ${t.toFixed(2)} s; ${segs.length} segment request(s) from ${[...new Set(segs.map((r) => originOf(r.url)))].join(', ')}`);
      await page.evaluate(() => { window.__hls.destroy(); });
    }],
    ['a plain <video> plays hls_url natively (or says it cannot)', async () => {
      await page.goto(`${originA}/`);
      requests.length = 0;
      responses.length = 0;
      const can = await page.evaluate(() => document.getElementById('v').canPlayType('application/vnd.apple.mpegurl'));
      if (!can) {
        log('     this Chromium has no native HLS (canPlayType is ""): the byte-range phase below stands in for it');
        return;
      }
      await page.evaluate((src) => {
        const v = document.getElementById('v');
        v.src = src;
        v.play().catch(() => {});
      }, HLS_URL);
      let t;
      try {
        t = await playedTo('native');
      } catch (e) {
        const seen = responses.map((r) => `${r.status} ${r.range || ''} ${r.url.slice(0, 160)}`).join('\n  ');
        throw new Error(`${e.message}\n  requests answered:\n  ${seen}`);
      }
      const media = requests.filter((r) => r.type === 'media' || isSegment(r.url));
      check(media.length > 0, 'the native player made no requests we could see');
      const ranged = responses.filter((r) => r.range);
      const bad = ranged.filter((r) => r.status !== 206);
      check(!bad.length, `ranged requests not answered 206: ${bad.map((r) => `${r.range} ${r.url} → ${r.status}`).join('\n')}`);
      log(`     native HLS (canPlayType "${can}") played to ${t.toFixed(2)} s; ${media.length} media request(s), ${ranged.length} with Range, each answered 206; segments from ${[...new Set(media.filter((r) => isSegment(r.url)).map((r) => originOf(r.url)))].join(', ')}`);
    }],
    ['a <video crossorigin> plays hls_url natively too (CORS mode)', async () => {
      await page.goto(`${originA}/`);
      const can = await page.evaluate(() => document.getElementById('v').canPlayType('application/vnd.apple.mpegurl'));
      if (!can) {
        log('     no native HLS in this Chromium: skipped (hls.js and byte ranges cover playback)');
        return;
      }
      requests.length = 0;
      responses.length = 0;
      await page.evaluate((src) => {
        const v = document.getElementById('v');
        v.crossOrigin = 'anonymous';
        v.src = src;
        v.play().catch(() => {});
      }, HLS_URL);
      const t = await playedTo('native with crossorigin');
      const segs = requests.filter((r) => isSegment(r.url));
      if (SEGMENT_ORIGIN) {
        const elsewhere = segs.filter((r) => originOf(r.url) !== SEGMENT_ORIGIN);
        check(!elsewhere.length, `segments not from ${SEGMENT_ORIGIN}: ${elsewhere.map((r) => r.url).join(', ')}`);
      }
      log(`     native HLS in CORS mode played to ${t.toFixed(2)} s; segments from ${[...new Set(segs.map((r) => originOf(r.url)))].join(', ')}`);
    }],
    ['byte ranges from origin A: 206 with exactly the bytes asked', async () => {
      // The first segment URL as the playlist names it (presigned on S3, signed jobpulse URL on
      // file storage), fetched whole and by range from the page.
      const out = await page.evaluate(async (src) => {
        const master = await (await fetch(src)).text();
        const variant = new URL(master.split('\n').find((l) => l.endsWith('.m3u8')), src).href;
        const media = await (await fetch(variant)).text();
        const seg = new URL(media.split('\n').find((l) => l && !l.startsWith('#')), variant).href;
        // no-store: the server answers, not Chromium's cache (which serves ranges of a
        // cached whole file itself).
        const opts = (range) => ({ cache: 'no-store', headers: range ? { Range: range } : {} });
        const whole = new Uint8Array(await (await fetch(seg, opts())).arrayBuffer());
        const part = await fetch(seg, opts('bytes=100-199'));
        const bytes = new Uint8Array(await part.arrayBuffer());
        const same = bytes.length === 100 && bytes.every((b, i) => b === whole[100 + i]);
        // A bucket may answer an unsatisfiable range without CORS headers (moto does): then
        // the page cannot read the status at all.
        const past = await fetch(seg, opts(`bytes=${whole.length + 10}-`))
          .then((r) => r.status, (e) => `unreadable (${e.message})`);
        return { seg, status: part.status, len: bytes.length, same, past, size: whole.length };
      }, HLS_URL);
      check(out.status === 206, `Range answered ${out.status}: ${JSON.stringify(out)}`);
      check(out.same, `the range's bytes differ from the file's: ${JSON.stringify(out)}`);
      const fromApi = originOf(out.seg) === originOf(HLS_URL);
      check(out.past === 416 || (!fromApi && String(out.past).startsWith('unreadable')),
        `a range past the end answered ${out.past}`);
      if (SEGMENT_ORIGIN) check(originOf(out.seg) === SEGMENT_ORIGIN, `segment URL ${out.seg}`);
      log(`     ${originOf(out.seg)}: 206 for bytes=100-199 of ${out.size}; past the end: ${out.past}`);
    }],
  ];
  if (FORGED_URL) {
    phases.push(['a forged link answers 403 to the page', async () => {
      const status = await page.evaluate(async (u) => (await fetch(u)).status, FORGED_URL);
      check(status === 403, `forged link answered ${status}`);
    }]);
  }
  const code = await runPhases('playback.spec', phases, {
    cleanup: async () => {
      await browser.close();
      server.close();
    },
  });
  process.exit(code);
}

main().catch((e) => {
  log(`playback.spec: ${e.stack || e}`);
  process.exit(1);
});
