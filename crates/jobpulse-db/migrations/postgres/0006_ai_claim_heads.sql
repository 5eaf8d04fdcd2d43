-- The fair claim of an AI job looks only at each waiting tenant's oldest runnable jobs (their
-- "heads", `queue::table::ai`), not at the whole backlog: this index lists the waiting jobs of
-- each tenant in claim order, and also serves the walk over the tenants that have any.
CREATE INDEX ai_jobs_waiting ON ai_jobs (tenant_id, created_at, queue_seq)
    WHERE status IN ('PENDING', 'RETRYING');
