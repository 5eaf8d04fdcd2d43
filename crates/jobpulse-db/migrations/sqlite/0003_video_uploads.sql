-- no-transaction
-- Direct uploads (CONTRACT.md §7): a video starts PENDING at upload init and becomes UPLOADED
-- when the upload completes. SQLite cannot change a CHECK constraint in place, so `videos` is
-- rebuilt the documented way (https://sqlite.org/lang_altertable.html#otheralter): foreign keys
-- off outside the transaction, new table, copy, drop, rename, indexes, check, commit.
PRAGMA foreign_keys = OFF;
BEGIN IMMEDIATE;
CREATE TABLE videos_new (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id      INTEGER NOT NULL REFERENCES tenants (id),
    session_id     INTEGER NULL REFERENCES sessions (id),
    title          TEXT   NOT NULL,
    status         TEXT   NOT NULL
        CHECK (status IN ('PENDING', 'UPLOADED', 'PROCESSING', 'RETRY_WAIT', 'READY', 'FAILED')),
    file_key       TEXT   NOT NULL,
    hls_path       TEXT   NULL,
    duration_secs  INTEGER NULL,
    error_reason   TEXT   NULL,
    attempt        INTEGER NOT NULL DEFAULT 0,
    generation     INTEGER NOT NULL DEFAULT 1 CHECK (generation >= 1),
    fence_attempt  INTEGER NOT NULL DEFAULT 0,
    fence_seq      INTEGER NOT NULL DEFAULT 1,
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL,
    deleted_at     INTEGER NULL
) STRICT;
INSERT INTO videos_new (id, tenant_id, session_id, title, status, file_key, hls_path,
                        duration_secs, error_reason, attempt, generation, fence_attempt,
                        fence_seq, created_at, updated_at, deleted_at)
    SELECT id, tenant_id, session_id, title, status, file_key, hls_path, duration_secs,
           error_reason, attempt, generation, fence_attempt, fence_seq, created_at,
           updated_at, deleted_at
    FROM videos;
DROP TABLE videos;
ALTER TABLE videos_new RENAME TO videos;
CREATE INDEX videos_tenant_list ON videos (tenant_id, id) WHERE deleted_at IS NULL;
CREATE INDEX videos_updated ON videos (updated_at);

-- What only a PENDING video needs: the content type its upload URL is signed for and the open
-- multipart upload, if any. The row goes when the upload completes, fails or is cleaned up.
CREATE TABLE video_uploads (
    video_id      INTEGER PRIMARY KEY REFERENCES videos (id),
    tenant_id     INTEGER NOT NULL REFERENCES tenants (id),
    content_type  TEXT    NOT NULL,
    multipart_id  TEXT    NULL,
    created_at    INTEGER NOT NULL
) STRICT;
CREATE INDEX video_uploads_created ON video_uploads (created_at);
COMMIT;
PRAGMA foreign_keys = ON;
