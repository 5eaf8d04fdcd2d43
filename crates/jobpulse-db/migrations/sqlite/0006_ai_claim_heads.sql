-- The waiting jobs of each tenant in claim order (PostgreSQL's fair claim reads each waiting
-- tenant's oldest jobs through it; SQLite keeps the schema parallel, its `rowid` breaking ties).
CREATE INDEX ai_jobs_waiting ON ai_jobs (tenant_id, created_at)
    WHERE status IN ('PENDING', 'RETRYING');
