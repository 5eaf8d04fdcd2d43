// The per-task state rules of the client (src/progress.ts), on the built package: what a person
// sees when bodies arrive over SSE or polling, in any order.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import {
  displayPercent, fold, frontEndCadence, gaveUp, isTerminal, pollHint, stepOf, unknownBody, validId,
} from '../../dist/index.js';

const video = (status, extra = {}) => ({
  id: 7, status, progress: 0, encoding_progress: 0, encoding_remaining_seconds: null,
  encoding_step_index: null, encoding_step_total: null, encoding_step_name: null,
  encoding_step_percent: null, ...extra,
});
const processing = (p, extra = {}) => video('PROCESSING', {
  progress: p, encoding_progress: p, encoding_step_index: 4, encoding_step_total: 7,
  encoding_step_name: '인코딩', encoding_step_percent: 40, encoding_remaining_seconds: 84, ...extra,
});
const job = (status, extra = {}) => ({ job_id: 'a1', job_type: 'excel_parsing', status, progress: null, ...extra });
const running = (percent, extra = {}) => job('RUNNING', {
  progress: {
    step: 'enrolling', percent, step_index: 3, step_total: 4, step_name: 'enrolling',
    step_name_display: '등록', step_percent: 60, remaining_seconds: 12,
  },
  ...extra,
});

/** Folds bodies in order; returns every state and whether it was delivered. */
function run(kind, bodies) {
  let state;
  const out = [];
  for (const b of bodies) {
    const { next, deliver } = fold(state, kind, kind === 'video' ? '7' : 'a1', b, 'poll', 1000 + out.length);
    state = next;
    out.push({ state: next, deliver });
  }
  return out;
}

test('a video: UPLOADED is 10 %, the bar never moves back when encoding begins, READY is 100', () => {
  const r = run('video', [video('UPLOADED'), processing(3), processing(57), video('READY', { progress: 100, encoding_progress: 100 })]);
  assert.deepEqual(r.map((x) => x.state.percent), [10, 10, 57, 100]);
  assert.deepEqual(r.map((x) => x.deliver), [true, true, true, true]);
  assert.equal(r[3].state.terminal, true);
});

test('the percent never goes back within an attempt, whatever order the answers come in', () => {
  const r = run('video', [processing(57), processing(40), processing(61)]);
  assert.deepEqual(r.map((x) => x.state.percent), [57, 57, 61]);
});

test('a new attempt may show less: a higher attempt, or the first active state after a retry wait', () => {
  const byNumber = run('video', [processing(80, { attempt: 1 }), processing(12, { attempt: 2 })]);
  assert.deepEqual(byNumber.map((x) => x.state.percent), [80, 12]);
  assert.equal(byNumber[1].state.attempt, 2);
  const byWait = run('video', [processing(80), video('RETRY_WAIT', { progress: 80, encoding_progress: 80, attempt: 2 }), processing(15, { attempt: 2 })]);
  // The wait keeps the bar where the failed attempt left it; the next attempt starts over.
  assert.deepEqual(byWait.map((x) => x.state.percent), [80, 80, 15]);
  const job2 = run('job', [running(70, { attempt: 1 }), job('RETRYING', { attempt: 2 }), running(20, { attempt: 2 })]);
  assert.deepEqual(job2.map((x) => x.state.percent), [70, 70, 20]);
});

test('a terminal state is delivered once; a retried (new-run) task is news again', () => {
  const r = run('video', [
    processing(50), video('FAILED', { error_reason: 'boom' }), video('FAILED', { error_reason: 'boom' }),
    video('FAILED', { error_reason: 'other text, same run' }), video('UPLOADED'), processing(20),
  ]);
  assert.deepEqual(r.map((x) => x.deliver), [true, true, false, false, true, true]);
  // FAILED keeps the bar; the new run starts at UPLOADED's 10 % and goes on from there.
  assert.deepEqual(r.map((x) => x.state.percent), [50, 50, 50, 50, 10, 20]);
  assert.equal(r[3].state.body.error_reason, 'boom', 'the first terminal body stays');
});

test('an identical body is not delivered twice', () => {
  const r = run('job', [running(30), running(30), running(31)]);
  assert.deepEqual(r.map((x) => x.deliver), [true, false, true]);
});

test('UNKNOWN keeps what was shown and starts the give-up clock once', () => {
  const r = run('video', [processing(57), unknownBody('video', '7'), unknownBody('video', '7'), processing(58)]);
  assert.deepEqual(r.map((x) => x.state.status), ['PROCESSING', 'UNKNOWN', 'UNKNOWN', 'PROCESSING']);
  assert.deepEqual(r.map((x) => x.state.percent), [57, 57, 57, 58]);
  assert.equal(r[1].state.unknownSince, 1001);
  assert.equal(r[2].deliver, false);
  assert.equal(r[3].state.unknownSince, null);
  const g = gaveUp(r[2].state, 5000);
  assert.equal(g.gaveUp, true);
  // Still unknown after the give-up: nothing new; known again: news.
  assert.equal(fold(g, 'video', '7', unknownBody('video', '7'), 'poll', 6000).deliver, false);
  const back = fold(g, 'video', '7', processing(60), 'poll', 7000);
  assert.equal(back.deliver, true);
  assert.equal(back.next.gaveUp, false);
  assert.equal(back.next.percent, 60);
  const never = run('job', [unknownBody('job', 'a1')]);
  assert.equal(never[0].state.percent, null, 'nothing known: no percent');
  assert.equal(never[0].state.terminal, false);
});

test('steps and ETA from both body shapes; a job DONE with an error keeps its bar', () => {
  const v = run('video', [processing(57)])[0].state;
  assert.deepEqual(v.step, { index: 4, total: 7, name: '인코딩', percent: 40 });
  assert.equal(v.etaSeconds, 84);
  const j = run('job', [running(73), job('DONE', { error_message: 'half the rows failed', result: {} })]);
  assert.deepEqual(j[0].state.step, { index: 3, total: 4, name: '등록', percent: 60 });
  assert.equal(j[0].state.etaSeconds, 12);
  assert.equal(j[1].state.percent, 73);
  assert.equal(j[1].state.step, null);
  assert.equal(run('job', [job('DONE', { result: { created: 3 } })])[0].state.percent, 100);
  assert.equal(stepOf('video', video('UPLOADED')), null);
  assert.equal(displayPercent('job', job('PENDING')), 0);
  assert.equal(displayPercent('video', processing(0)), 1);
  assert.equal(displayPercent('video', processing(100)), 99);
});

test('terminal sets follow the contract', () => {
  for (const s of ['READY', 'FAILED']) assert.ok(isTerminal('video', s), s);
  for (const s of ['DONE', 'FAILED', 'REJECTED_BAD_INPUT', 'FALLBACK_TO_GPU', 'REVIEW_REQUIRED']) assert.ok(isTerminal('job', s), s);
  for (const s of ['PENDING', 'UPLOADED', 'PROCESSING', 'RETRY_WAIT', 'UNKNOWN']) assert.ok(!isTerminal('video', s), s);
  for (const s of ['PENDING', 'RUNNING', 'RETRYING', 'UNKNOWN', 'READY']) assert.ok(!isTerminal('job', s), s);
});

test('poll timing: the front end cadence and the server hints', () => {
  assert.deepEqual([0, 59_999, 60_000, 599_999, 600_000].map(frontEndCadence), [5000, 5000, 15000, 15000, 30000]);
  assert.equal(pollHint('2', '3'), 2000);
  assert.equal(pollHint('stop', '3'), 'stop');
  assert.equal(pollHint(null, '3'), 3000);
  assert.equal(pollHint(null, null), null);
  assert.equal(pollHint('soon', null), null);
  assert.equal(pollHint('99999', null), 3_600_000, 'a hint is capped at an hour');
});

test('ids are checked before anything is sent', () => {
  assert.ok(validId('video', '321'));
  for (const bad of ['0', '-1', '1.5', 'abc', '', '1'.repeat(19)]) assert.ok(!validId('video', bad), bad);
  assert.ok(validId('job', 'a1b2_-X'));
  for (const bad of ['', 'a:b', 'a/b', 'x'.repeat(65), 'a b']) assert.ok(!validId('job', bad), bad);
});
