// CI's drift check (run by scripts/test): the committed generated files must be what the
// sources produce today.
//
// - openapi.json and src/generated/openapi.ts against a fresh `jobpulse openapi` (a server
//   change that alters a body must come with regenerated types: `npm run gen`);
// - crates/jobpulse-api/assets/jobpulse-client.js against a fresh bundle of src/ (`npm run build`).
//
// Exits 1 naming every file that differs.

import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import { bundle, DASHBOARD_BUNDLE } from './build.mjs';
import { generate } from './gen-types.mjs';

const PKG = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const tmp = mkdtempSync(join(tmpdir(), 'jobpulse-client-check-'));
const stale = [];
try {
  const gen = await generate(tmp);
  const pairs = [
    [join(PKG, 'openapi.json'), gen.json, 'npm run gen'],
    [join(PKG, 'src/generated/openapi.ts'), gen.ts, 'npm run gen'],
    [DASHBOARD_BUNDLE, await bundle(join(tmp, 'jobpulse-client.js')), 'npm run build'],
  ];
  for (const [committed, fresh, fix] of pairs) {
    let a = null;
    try {
      a = readFileSync(committed, 'utf8');
    } catch {
      // Missing counts as different.
    }
    if (a !== readFileSync(fresh, 'utf8')) stale.push(`${committed} (run \`${fix}\` in clients/js)`);
  }
} finally {
  rmSync(tmp, { recursive: true, force: true });
}
if (stale.length) {
  process.stderr.write(`out of date with its sources:\n  ${stale.join('\n  ')}\n`);
  process.exit(1);
}
process.stderr.write('generated types and the dashboard bundle match their sources\n');
