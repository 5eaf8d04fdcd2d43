-- AI jobs are claimed oldest first. `created_at` is in milliseconds, so jobs submitted within
-- the same millisecond tied and were taken in job-id (random) order; `queue_seq` breaks the tie
-- in insertion order. (SQLite uses its implicit `rowid` for the same purpose.)
ALTER TABLE ai_jobs ADD COLUMN queue_seq BIGSERIAL;
CREATE INDEX ai_jobs_claim_order ON ai_jobs (created_at, queue_seq);
