// Wire types of the progress routes, named from the generated OpenAPI types
// (`src/generated/openapi.ts`, made by `npm run gen` from `jobpulse openapi`): a change of a
// body on the server shows up here as a type error, not as a surprise in production.

import type { components } from './generated/openapi.js';

type Schemas = components['schemas'];

/** `GET /api/v1/media/videos/{id}/progress/` for a video the read model knows. */
export type VideoProgressBody = Schemas['VideoProgress'];
/** The same route for an unknown video (or another tenant's id: the bodies are identical). */
export type VideoUnknownBody = Schemas['VideoUnknown'];
/** `GET /api/v1/jobs/{job_id}/progress/` for a job the read model knows. */
export type JobProgressBody = Schemas['JobProgress'];
/** `progress` of a RUNNING job. */
export type JobStepProgressBody = Schemas['JobStepProgress'];
/** The same route for an unknown job. */
export type JobUnknownBody = Schemas['JobUnknown'];
/** The `{error: {code, message}}` envelope of every 4xx/5xx. */
export type ErrorBody = Schemas['ErrorBody'];

export type VideoBody = VideoProgressBody | VideoUnknownBody;
export type JobBody = JobProgressBody | JobUnknownBody;
export type ProgressBody = VideoBody | JobBody;

/**
 * `GET /api/v1/progress/?videos=…&jobs=…`. The server documents the maps as plain objects
 * (their values are raw JSON it copies from the single routes), so their value types are
 * narrowed here to the single routes' bodies.
 */
export type BatchResponse = Omit<Schemas['BatchResponse'], 'videos' | 'jobs'> & {
  videos: Record<string, VideoBody>;
  jobs: Record<string, JobBody>;
};

export type Kind = 'video' | 'job';

/** Video statuses of the contract (CONTRACT §2, §4), plus UNKNOWN. */
export type VideoStatus = 'PENDING' | 'UPLOADED' | 'PROCESSING' | 'RETRY_WAIT' | 'READY' | 'FAILED' | 'UNKNOWN';
/** Job statuses of the contract (CONTRACT §3), plus UNKNOWN. */
export type JobStatus = 'PENDING' | 'RUNNING' | 'RETRYING' | 'DONE' | 'FAILED' | 'REJECTED_BAD_INPUT'
  | 'FALLBACK_TO_GPU' | 'REVIEW_REQUIRED' | 'UNKNOWN';

/** The ids to watch. Video ids are positive integers; job ids `[A-Za-z0-9_-]{1,64}`. */
export interface WatchIds {
  videos?: Iterable<string | number>;
  jobs?: Iterable<string>;
}
