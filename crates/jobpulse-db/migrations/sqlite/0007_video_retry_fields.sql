-- Retry-aware progress (issue 18 item 3, docs/contract.md §3b): a video row keeps what its
-- last state change said of the queue — how many attempts the transcode may take and, while
-- RETRY_WAIT, when the next attempt may start — so the read model's state (and a repair of
-- it) carries `max_attempts` and `retry_at` like an AI job's row does.
ALTER TABLE videos ADD COLUMN max_attempts INTEGER;
ALTER TABLE videos ADD COLUMN retry_at INTEGER;
