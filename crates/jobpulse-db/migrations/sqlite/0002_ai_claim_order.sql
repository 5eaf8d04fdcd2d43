-- AI jobs are claimed oldest first: `created_at` (milliseconds), ties broken by the implicit
-- `rowid`, which follows insertion order. (PostgreSQL adds a `queue_seq` column instead.)
CREATE INDEX ai_jobs_claim_order ON ai_jobs (created_at);
