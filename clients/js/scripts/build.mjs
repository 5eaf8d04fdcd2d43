// Builds the package and the dashboard's copy of it:
//
//   1. `tsc` → dist/ (ES modules + .d.ts, one file per source file);
//   2. esbuild → crates/jobpulse-api/assets/jobpulse-client.js: the client as one ES module,
//      committed, so the dashboard (compiled into the jobpulse binary) needs no Node at run
//      time and no CDN. The bundle is deterministic (same sources and esbuild version → same
//      bytes); CI rebuilds it and fails on any difference (scripts/check.mjs).
//
//   node scripts/build.mjs [--bundle-to FILE]   # FILE instead of the dashboard's asset
//   node scripts/build.mjs --dist-only          # only dist/ (what the tests import)

import { execFileSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import { build } from 'esbuild';

const PKG = resolve(dirname(fileURLToPath(import.meta.url)), '..');
export const DASHBOARD_BUNDLE = resolve(PKG, '../../crates/jobpulse-api/assets/jobpulse-client.js');

const BANNER = '// @jobpulse/client, bundled for the dashboard from clients/js/src by clients/js/scripts/build.mjs.\n'
  + '// Do not edit: change clients/js/src and run `npm run build` there (CI checks this file matches).';

export async function bundle(outfile = DASHBOARD_BUNDLE) {
  await build({
    absWorkingDir: PKG,
    entryPoints: ['src/index.ts'],
    bundle: true,
    format: 'esm',
    target: 'es2020',
    platform: 'browser',
    charset: 'utf8',
    legalComments: 'none',
    banner: { js: BANNER },
    outfile,
    logLevel: 'warning',
  });
  return outfile;
}

export function compile() {
  rmSync(join(PKG, 'dist'), { recursive: true, force: true });
  execFileSync(process.execPath, [join(PKG, 'node_modules/typescript/bin/tsc'), '-p', PKG], { stdio: 'inherit' });
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const i = process.argv.indexOf('--bundle-to');
  compile();
  if (process.argv.includes('--dist-only')) {
    process.stderr.write('built dist/\n');
  } else {
    const out = await bundle(i > 0 ? resolve(process.argv[i + 1]) : DASHBOARD_BUNDLE);
    process.stderr.write(`built dist/ and ${out}\n`);
  }
}
