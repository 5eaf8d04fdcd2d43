// @jobpulse/client: live progress of jobpulse tasks in the browser (see README.md).
//
// - `watch({videos, jobs}, onUpdate, options)`: SSE with resume, polling as the fallback.
// - `fold`, `displayPercent`, …: the per-task state rules, for code that reads bodies itself.
// - The wire types, generated from the server's OpenAPI document.

export { watch, key, MAX_IDS } from './watch.js';
export type { Mode, OnUpdate, ResetInfo, Watch, WatchOptions } from './watch.js';
export {
  displayPercent, etaOf, fold, frontEndCadence, gaveUp, idOf, isTerminal, JOB_TERMINAL, pollHint,
  stepOf, unknownBody, validId, VIDEO_TERMINAL,
} from './progress.js';
export type { Folded, Source, Step, TaskProgress } from './progress.js';
export {
  ApiError, batchPath, getJson, progressPath, streamPath,
} from './http.js';
export type { Connection, Got, StreamScope } from './http.js';
export type * from './types.js';
