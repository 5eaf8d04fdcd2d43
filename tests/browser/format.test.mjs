// Unit tests of the dashboard's display rules (crates/jobpulse-api/assets/format.js), run by
// Node's own test runner: `node --test format.test.mjs` (no browser, no npm install needed).

import assert from 'node:assert/strict';
import { test } from 'node:test';

import {
  attemptText, barPercent, credentialsCsv, decodeToken, etaWords, importSummary, isStaff, isTerminal,
  livenessText, outcome, pollDelay, remainingSeconds, safeUrl, spanWords, stepInfo, tokenFromHash,
} from '../../crates/jobpulse-api/assets/format.js';

const video = (status, extra = {}) => ({ id: 1, status, progress: 0, encoding_progress: 0, ...extra });

test('video bar follows the front end: UPLOADED 10, PROCESSING clamped to 1..99, READY 100', () => {
  assert.equal(barPercent('video', video('UPLOADED')), 10);
  assert.equal(barPercent('video', video('PROCESSING', { encoding_progress: 0 })), 1);
  assert.equal(barPercent('video', video('PROCESSING', { encoding_progress: 57 })), 57);
  assert.equal(barPercent('video', video('PROCESSING', { encoding_progress: 100 })), 99);
  assert.equal(barPercent('video', video('READY', { progress: 100 })), 100);
  // Between attempts and on failure the bar stays where it was.
  assert.equal(barPercent('video', video('RETRY_WAIT'), 40), 40);
  assert.equal(barPercent('video', video('FAILED'), 63), 63);
  assert.equal(barPercent('video', video('UNKNOWN'), null), null);
});

test('job bar: PENDING 0, RUNNING from progress.percent, DONE 100, DONE with error keeps the bar', () => {
  assert.equal(barPercent('job', { status: 'PENDING', progress: null }), 0);
  assert.equal(barPercent('job', { status: 'RUNNING', progress: { percent: 73 } }), 73);
  assert.equal(barPercent('job', { status: 'RETRYING', progress: null }, 50), 50);
  assert.equal(barPercent('job', { status: 'DONE', progress: null }), 100);
  assert.equal(barPercent('job', { status: 'DONE', progress: null, error_message: 'x' }, 30), 30);
});

test('steps read from both body shapes', () => {
  assert.deepEqual(
    stepInfo('video', video('PROCESSING', {
      encoding_step_index: 4, encoding_step_total: 7, encoding_step_name: '인코딩', encoding_step_percent: 40,
    })),
    { text: '[4/7] 인코딩', percent: 40 },
  );
  assert.equal(stepInfo('video', video('PROCESSING', { encoding_step_index: null })), null);
  assert.deepEqual(
    stepInfo('job', { status: 'RUNNING', progress: {
      step: 'enrolling', percent: 73, step_index: 3, step_total: 4, step_name: 'enrolling',
      step_name_display: '등록', step_percent: 60,
    } }),
    { text: '[3/4] 등록', percent: 60 },
  );
  assert.equal(stepInfo('job', { status: 'DONE', progress: null }), null);
});

test('ETA in words', () => {
  assert.equal(etaWords(null), null);
  assert.equal(etaWords(undefined), null);
  assert.equal(etaWords(2), 'almost done');
  assert.equal(etaWords(40), 'about 40 s left');
  assert.equal(etaWords(43), 'about 45 s left');
  assert.equal(etaWords(84), 'about 1 min left');
  assert.equal(etaWords(180), 'about 3 min left');
  assert.equal(etaWords(4800), 'about 80 min left');
  assert.equal(etaWords(6000), 'about 1 h 40 min left');
  assert.equal(etaWords(7200), 'about 2 h left');
  assert.equal(remainingSeconds('video', video('PROCESSING', { encoding_remaining_seconds: 84 })), 84);
  assert.equal(remainingSeconds('job', { progress: { remaining_seconds: 9 } }), 9);
  assert.equal(remainingSeconds('job', { progress: null }), null);
});

test('polling cadence: 5 s for a minute, 15 s to ten minutes, 30 s after', () => {
  assert.equal(pollDelay(0), 5000);
  assert.equal(pollDelay(59_999), 5000);
  assert.equal(pollDelay(60_000), 15_000);
  assert.equal(pollDelay(599_999), 15_000);
  assert.equal(pollDelay(600_000), 30_000);
});

test('terminal statuses and outcomes (DONE with error_message is a failure)', () => {
  for (const s of ['READY', 'FAILED']) assert.ok(isTerminal('video', s));
  for (const s of ['UPLOADED', 'PROCESSING', 'RETRY_WAIT', 'UNKNOWN']) assert.ok(!isTerminal('video', s));
  for (const s of ['DONE', 'FAILED', 'REJECTED_BAD_INPUT', 'FALLBACK_TO_GPU', 'REVIEW_REQUIRED']) {
    assert.ok(isTerminal('job', s), s);
  }
  assert.ok(!isTerminal('job', 'RETRYING'));
  assert.equal(outcome('job', { status: 'DONE' }), 'ok');
  assert.equal(outcome('job', { status: 'DONE', error_message: 'boom' }), 'failed');
  assert.equal(outcome('video', { status: 'RETRY_WAIT' }), 'retry');
  assert.equal(outcome('video', { status: 'UNKNOWN' }), 'unknown');
});

test('tokens are decoded for display only, and bad ones are refused clearly', () => {
  const payload = Buffer.from(JSON.stringify({ tenant_id: 3, role: 'teacher', tenant_code: '학원' })).toString('base64url');
  const claims = decodeToken(`eyJhbGciOiJIUzI1NiJ9.${payload}.sig`);
  assert.equal(claims.tenant_id, 3);
  assert.equal(claims.tenant_code, '학원');
  assert.ok(isStaff(claims));
  assert.ok(!isStaff({ role: 'student' }));
  assert.ok(!isStaff({}));
  assert.throws(() => decodeToken('abc'), /three dot-separated parts/);
  assert.throws(() => decodeToken('a.!!!.c'), /three dot-separated parts/);
  assert.throws(() => decodeToken(`a.${Buffer.from('[1]').toString('base64url')}.c`), /not a JSON object/);
  assert.equal(tokenFromHash('#token=a.b.c'), 'a.b.c');
  assert.equal(tokenFromHash('#x=1&token=a.b.c'), 'a.b.c');
  assert.equal(tokenFromHash(''), null);
});

test('credentials CSV: BOM, CRLF, quoting and defused formulas', () => {
  const csv = credentialsCsv([
    { name: '김철수', login_id: 'kim01', password: 'p,w"1' },
    { name: '=HYPERLINK("x")', login_id: '+82', password: '-1' },
  ]);
  assert.ok(csv.startsWith('\uFEFF'));
  const lines = csv.slice(1).split('\r\n');
  assert.equal(lines.length, 4);
  assert.equal(lines[3], '');
  assert.equal(lines[1], '김철수,kim01,"p,w""1"');
  assert.equal(lines[2], `"'=HYPERLINK(""x"")",'+82,'-1`);
});

test('import summary tolerates missing parts', () => {
  const s = importSummary({ created: 2, failed: [{ row: 5, name: '이영희', error: 'no phone' }] });
  assert.equal(s.created, 2);
  assert.deepEqual(s.duplicates, []);
  assert.deepEqual(s.failed, [{ row: 5, name: '이영희', error: 'no phone' }]);
  assert.equal(importSummary(null).created, 0);
});

test('only http(s) URLs reach src and poster', () => {
  assert.equal(safeUrl('/media/x.m3u8', 'http://h/'), 'http://h/media/x.m3u8');
  assert.equal(safeUrl('javascript:alert(1)', 'http://h/'), null);
  assert.equal(safeUrl('data:text/html,x', 'http://h/'), null);
  assert.equal(safeUrl(null, 'http://h/'), null);
});

test('issue 18: the worker liveness words (the CLI says the same)', () => {
  const stalled = video('PROCESSING', { stalled: true, worker_seen_seconds_ago: 65 });
  assert.equal(livenessText(stalled), 'no sign of the worker for 1 min');
  assert.equal(livenessText(stalled, 25), 'no sign of the worker for 25 s');
  assert.equal(livenessText(video('PROCESSING', { stalled: false, worker_seen_seconds_ago: 3 })), null);
  assert.equal(livenessText(video('READY')), null);
  assert.equal(spanWords(3900), '1 h 5 min');
  assert.equal(spanWords(7200), '2 h');
});

test('issue 18: the attempt words between and during retries (the CLI says the same)', () => {
  const now = 1_000_000;
  const wait = video('RETRY_WAIT', { attempt: 1, max_attempts: 3, retry_at: now + 19_200 });
  assert.equal(attemptText(wait, now), 'attempt 2 of 3 — retrying in 20 s');
  assert.equal(attemptText(wait, now + 60_000), 'attempt 2 of 3 — retrying now');
  const job = { job_id: 'a', status: 'RETRYING', attempt: 2, max_attempts: 3, retry_at: now + 90_000 };
  assert.equal(attemptText(job, now), 'attempt 3 of 3 — retrying in 1 min');
  assert.equal(attemptText({ status: 'RUNNING', attempt: 2, max_attempts: 3 }, now), 'attempt 2 of 3');
  assert.equal(attemptText(video('PROCESSING', { attempt: 1, max_attempts: 3 }), now), null);
  assert.equal(attemptText(video('PROCESSING', { attempt: 2 }), now), 'attempt 2');
  assert.equal(attemptText(video('RETRY_WAIT'), now), null);
});
