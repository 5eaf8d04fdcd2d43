// URLs and the watch's argument checks (src/http.ts, src/watch.ts), on the built package.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import {
  batchPath, progressPath, streamPath, watch,
} from '../../dist/index.js';

test('route paths', () => {
  assert.equal(progressPath('video', '12'), '/api/v1/media/videos/12/progress/');
  assert.equal(progressPath('job', 'a_b-1'), '/api/v1/jobs/a_b-1/progress/');
  assert.equal(batchPath(['1', '2'], ['x']), '/api/v1/progress/?videos=1,2&jobs=x');
  assert.equal(batchPath([], []), '/api/v1/progress/');
});

test('the stream names its ids with literal commas, the resume position and the token', () => {
  assert.equal(
    streamPath({ videos: ['1', '2'], jobs: ['j'] }, 'a.b-c_d', null),
    '/api/v1/progress/stream?videos=1,2&jobs=j&access_token=a.b-c_d',
  );
  assert.equal(streamPath({ all: true }, null, '42'), '/api/v1/progress/stream?all=true&last_event_id=42');
  assert.equal(
    streamPath({ videos: [], jobs: ['j'] }, 't+/=', '1700000000000-0'),
    '/api/v1/progress/stream?jobs=j&last_event_id=1700000000000-0&access_token=t%2B%2F%3D',
  );
});

test('a malformed id is refused before anything is sent', () => {
  let fetched = 0;
  const fetch = async () => {
    fetched += 1;
    throw new Error('must not be called');
  };
  assert.throws(() => watch({ videos: ['abc'] }, () => {}, { fetch, transport: 'poll' }), /not a valid video id/);
  assert.throws(() => watch({ jobs: ['a/b'] }, () => {}, { fetch, transport: 'poll' }), /not a valid job id/);
  assert.equal(fetched, 0);
});

test('a watch with nothing to watch is idle and sends nothing; stop() ends it', () => {
  const modes = [];
  let fetched = 0;
  const w = watch({}, () => {}, {
    fetch: async () => { fetched += 1; throw new Error('no'); }, transport: 'poll', onMode: (m) => modes.push(m),
  });
  assert.equal(w.mode, 'idle');
  w.stop();
  assert.equal(w.mode, 'stopped');
  assert.deepEqual(modes, ['idle', 'stopped']);
  assert.equal(fetched, 0);
});
