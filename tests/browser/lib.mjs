// Shared pieces of the browser scripts: launching Debian's Chromium through playwright-core,
// phases with clear failure messages, and a watch on the page's health (uncaught errors,
// console errors, Content-Security-Policy violations, dialogs).

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { chromium } from 'playwright-core';

export const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';

const FLAGS = [
  '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
  // Let the first second of a video play without a user gesture in a headless run.
  '--autoplay-policy=no-user-gesture-required',
];

/** A failure of one phase, with what was expected and what the page showed. */
export class PhaseError extends Error {}

export function fail(message) {
  throw new PhaseError(message);
}

export function check(cond, message) {
  if (!cond) fail(message);
}

export function log(...args) {
  process.stderr.write(`${args.join(' ')}\n`);
}

/**
 * Launches Chromium headless with a fresh profile directory (removed by `close`).
 * Returns `{context, page, health, close}`.
 */
export async function launch({ viewport = { width: 1280, height: 900 } } = {}) {
  const profile = mkdtempSync(join(tmpdir(), 'jobpulse-chromium-'));
  let context;
  try {
    context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: FLAGS,
      viewport,
      locale: 'ko-KR',
      acceptDownloads: true,
    });
  } catch (e) {
    rmSync(profile, { recursive: true, force: true });
    throw new PhaseError(`could not start Chromium at ${CHROMIUM} (apt-get install -y chromium): ${e.message}`);
  }
  const page = context.pages()[0] || (await context.newPage());
  const health = watchHealth(page);
  return {
    context,
    page,
    health,
    close: async () => {
      await context.close().catch(() => {});
      rmSync(profile, { recursive: true, force: true });
    },
  };
}

/** A host no page of ours loads from: the probe that shows the CSP watch works. */
const CANARY = 'jobpulse-csp-canary.invalid';

/** Collects what must never happen on the page. */
export function watchHealth(page) {
  const h = { errors: [], console: [], csp: [], dialogs: [] };
  page.on('pageerror', (e) => h.errors.push(String(e && e.stack || e)));
  page.on('console', (m) => {
    const canary = m.text().includes(CANARY) || (m.location().url || '').includes(CANARY);
    if (m.type() === 'error' && !canary) h.console.push(m.text());
  });
  page.on('dialog', async (d) => {
    h.dialogs.push(`${d.type()}: ${d.message()}`);
    await d.dismiss().catch(() => {});
  });
  // Runs before the page's scripts; CDP-injected, so the CSP does not apply to it.
  page.addInitScript(() => {
    window.__csp = [];
    document.addEventListener('securitypolicyviolation', (e) => {
      window.__csp.push(`${e.violatedDirective} ${e.blockedURI}`);
    });
  });
  h.assertClean = async (what, { allowConsole = [] } = {}) => {
    // Not being able to read the violations is a failure, not "none".
    let csp;
    try {
      csp = await page.evaluate(() => window.__csp);
    } catch (e) {
      fail(`${what}: could not read the page's CSP violations: ${e.message}`);
    }
    check(Array.isArray(csp), `${what}: the CSP watch is not installed on ${page.url()}`);
    csp = csp.filter((v) => !v.includes(CANARY));
    const consoleErrors = h.console.filter((c) => !allowConsole.some((re) => re.test(c)));
    check(!h.errors.length, `${what}: uncaught page errors:\n  ${h.errors.join('\n  ')}`);
    check(!csp.length, `${what}: Content-Security-Policy violations:\n  ${csp.join('\n  ')}`);
    check(!h.dialogs.length, `${what}: unexpected dialogs (script ran?):\n  ${h.dialogs.join('\n  ')}`);
    check(!consoleErrors.length, `${what}: console errors:\n  ${consoleErrors.join('\n  ')}`);
    await assertCspWatched(page, what);
  };
  return h;
}

/**
 * Shows that "no violations" was measured: an image from a host the page's CSP does not allow
 * (img-src 'self' data: blob:) must show up as a violation. Its console message and its entry
 * are left out of the checks above.
 */
async function assertCspWatched(page, what) {
  const seen = await page.evaluate(async (host) => {
    const before = window.__csp.filter((v) => v.includes(host)).length;
    new Image().src = `http://${host}/probe.png?${before}`;
    for (let i = 0; i < 50; i++) {
      if (window.__csp.filter((v) => v.includes(host)).length > before) return true;
      await new Promise((r) => setTimeout(r, 20));
    }
    return false;
  }, CANARY);
  check(seen, `${what}: a blocked image did not show up as a CSP violation on ${page.url()}: the watch sees nothing`);
}

/** Runs named phases in order; on the first failure prints which one and exits non-zero. */
export async function runPhases(name, phases, { cleanup } = {}) {
  let current = '(setup)';
  const started = Date.now();
  try {
    for (const [phase, fn] of phases) {
      current = phase;
      const t = Date.now();
      await fn();
      log(`  ok  ${phase} (${Date.now() - t} ms)`);
    }
    log(`${name}: ${phases.length} passed, 0 failed (${((Date.now() - started) / 1000).toFixed(1)} s)`);
    return 0;
  } catch (e) {
    const msg = e instanceof PhaseError ? e.message : (e && e.stack) || String(e);
    log(`FAIL ${current}\n${msg.replace(/^/gm, '     ')}`);
    log(`${name}: ${phases.findIndex(([p]) => p === current)} passed, 1 failed`);
    return 1;
  } finally {
    if (cleanup) await cleanup().catch((err) => log(`cleanup: ${err}`));
  }
}

/** Polls `fn` (async, returns a truthy value when done) until `timeoutMs`; then fails with `describe()`. */
export async function waitFor(fn, timeoutMs, describe) {
  const until = Date.now() + timeoutMs;
  let last;
  for (;;) {
    try {
      last = await fn();
      if (last) return last;
    } catch (e) {
      last = e;
    }
    if (Date.now() > until) {
      const detail = typeof describe === 'function' ? await describe(last) : describe;
      fail(`timed out after ${timeoutMs} ms: ${detail}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** What one task row shows, read from its data-testid parts. */
export async function readRow(page, kind, id) {
  return page.evaluate(([k, i]) => {
    const row = document.querySelector(`[data-testid="task-${k}-${i}"]`);
    if (!row) return null;
    const t = (id) => {
      const el = row.querySelector(`[data-testid="${id}"]`);
      return el && !el.hidden ? el.textContent : '';
    };
    const bar = row.querySelector('[data-testid="progress-bar"]');
    return {
      label: t('task-label'),
      badge: t('status-badge'),
      status: row.dataset.status,
      outcome: row.dataset.outcome,
      bar: bar && bar.hasAttribute('value') ? Number(bar.value) : null,
      step: t('step-text'),
      stepPercent: t('step-percent'),
      eta: t('eta'),
      attempt: t('attempt'),
      liveness: t('liveness'),
      stalled: row.dataset.stalled === 'true',
      error: t('error'),
      result: t('result-summary'),
      buttons: [...row.querySelectorAll('button')].map((b) => b.dataset.testid),
      images: row.querySelectorAll('img').length,
      scripts: row.querySelectorAll('script').length,
    };
  }, [kind, String(id)]);
}
