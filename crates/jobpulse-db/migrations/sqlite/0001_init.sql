-- jobpulse schema, SQLite dialect. Keep it in step with ../postgres/0001_init.sql.
--
-- Conventions:
-- * every time is INTEGER unix milliseconds (UTC), written by the application clock; the same
--   column type and meaning in both dialects keeps the SQL shared and the values portable;
-- * every integer is INTEGER so the Rust side decodes one integer type (i64) in both dialects;
-- * statuses are TEXT with CHECK constraints listing the contract's names;
-- * JSON is stored as TEXT (written and read by serde; the database never looks inside);
-- * SQLite specifics: INTEGER PRIMARY KEY AUTOINCREMENT (ids are never reused, like a sequence),
--   booleans are INTEGER 0/1, STRICT tables so a wrong type is an error as in PostgreSQL.

CREATE TABLE tenants (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    code        TEXT   NOT NULL UNIQUE,
    name        TEXT   NOT NULL,
    created_at  INTEGER NOT NULL
) STRICT;

CREATE TABLE lectures (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id   INTEGER NOT NULL REFERENCES tenants (id),
    title       TEXT   NOT NULL,
    created_at  INTEGER NOT NULL
) STRICT;
CREATE INDEX lectures_tenant ON lectures (tenant_id, id);

CREATE TABLE sessions (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id   INTEGER NOT NULL REFERENCES tenants (id),
    lecture_id  INTEGER NOT NULL REFERENCES lectures (id),
    title       TEXT   NOT NULL,
    created_at  INTEGER NOT NULL
) STRICT;
CREATE INDEX sessions_lecture ON sessions (lecture_id, id);

CREATE TABLE videos (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id      INTEGER NOT NULL REFERENCES tenants (id),
    session_id     INTEGER NULL REFERENCES sessions (id),
    title          TEXT   NOT NULL,
    status         TEXT   NOT NULL
        CHECK (status IN ('UPLOADED', 'PROCESSING', 'RETRY_WAIT', 'READY', 'FAILED')),
    file_key       TEXT   NOT NULL,
    hls_path       TEXT   NULL,
    duration_secs  INTEGER NULL,
    error_reason   TEXT   NULL,
    -- The attempt shown to users (0 before the first claim).
    attempt        INTEGER NOT NULL DEFAULT 0,
    -- The fence of the last state-change write, so repair reproduces that write exactly.
    generation     INTEGER NOT NULL DEFAULT 1 CHECK (generation >= 1),
    fence_attempt  INTEGER NOT NULL DEFAULT 0,
    fence_seq      INTEGER NOT NULL DEFAULT 1,
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL,
    deleted_at     INTEGER NULL
) STRICT;
CREATE INDEX videos_tenant_list ON videos (tenant_id, id) WHERE deleted_at IS NULL;
CREATE INDEX videos_updated ON videos (updated_at);

-- Transcode jobs. At most one active (QUEUED, RUNNING, RETRY_WAIT) job per video.
CREATE TABLE video_jobs (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id         INTEGER  NOT NULL REFERENCES tenants (id),
    video_id          INTEGER  NOT NULL REFERENCES videos (id),
    generation        INTEGER  NOT NULL,
    state             TEXT    NOT NULL
        CHECK (state IN ('QUEUED', 'RUNNING', 'RETRY_WAIT', 'SUCCEEDED', 'DEAD', 'CANCELLED')),
    attempt           INTEGER  NOT NULL DEFAULT 0,
    max_attempts      INTEGER  NOT NULL DEFAULT 5 CHECK (max_attempts >= 1),
    run_after         INTEGER  NOT NULL,
    lease_owner       TEXT    NULL,
    lease_until       INTEGER  NULL,
    heartbeat_at      INTEGER  NULL,
    cancel_requested  INTEGER NOT NULL DEFAULT 0,
    error_code        TEXT    NULL,
    error_message     TEXT    NULL,
    created_at        INTEGER  NOT NULL,
    updated_at        INTEGER  NOT NULL
) STRICT;
CREATE UNIQUE INDEX video_jobs_one_active ON video_jobs (video_id)
    WHERE state IN ('QUEUED', 'RUNNING', 'RETRY_WAIT');
CREATE INDEX video_jobs_active ON video_jobs (id)
    WHERE state IN ('QUEUED', 'RUNNING', 'RETRY_WAIT');
CREATE INDEX video_jobs_running ON video_jobs (tenant_id, lease_until) WHERE state = 'RUNNING';
CREATE INDEX video_jobs_video ON video_jobs (video_id, id);

CREATE TABLE ai_jobs (
    job_id            TEXT    PRIMARY KEY,
    tenant_id         INTEGER  NOT NULL REFERENCES tenants (id),
    job_type          TEXT    NOT NULL,
    status            TEXT    NOT NULL
        CHECK (status IN ('PENDING', 'RUNNING', 'RETRYING', 'DONE', 'FAILED',
                          'REJECTED_BAD_INPUT', 'FALLBACK_TO_GPU', 'REVIEW_REQUIRED')),
    payload           TEXT    NOT NULL,
    input_file_key    TEXT    NULL,
    lecture_id        INTEGER  NULL REFERENCES lectures (id),
    idempotency_key   TEXT    NULL,
    created_by        TEXT    NULL,
    generation        INTEGER  NOT NULL DEFAULT 1 CHECK (generation >= 1),
    fence_attempt     INTEGER  NOT NULL DEFAULT 0,
    fence_seq         INTEGER  NOT NULL DEFAULT 1,
    attempt           INTEGER  NOT NULL DEFAULT 0,
    max_attempts      INTEGER  NOT NULL DEFAULT 5 CHECK (max_attempts >= 1),
    run_after         INTEGER  NOT NULL,
    lease_owner       TEXT    NULL,
    lease_until       INTEGER  NULL,
    heartbeat_at      INTEGER  NULL,
    cancel_requested  INTEGER NOT NULL DEFAULT 0,
    error_message     TEXT    NULL,
    timeout_secs      INTEGER  NOT NULL,
    created_at        INTEGER  NOT NULL,
    updated_at        INTEGER  NOT NULL,
    UNIQUE (tenant_id, idempotency_key)
) STRICT;
CREATE INDEX ai_jobs_active ON ai_jobs (created_at, job_id)
    WHERE status IN ('PENDING', 'RUNNING', 'RETRYING');
CREATE INDEX ai_jobs_running ON ai_jobs (tenant_id, lease_until) WHERE status = 'RUNNING';
CREATE INDEX ai_jobs_tenant_list ON ai_jobs (tenant_id, created_at, job_id);
CREATE INDEX ai_jobs_updated ON ai_jobs (updated_at);

-- Full results (may hold secrets such as issued credentials) and the read-model projection of
-- the result (`summary`, a serialized jobpulse_domain::JobResult) so repair can rebuild it.
CREATE TABLE ai_results (
    job_id      TEXT   PRIMARY KEY REFERENCES ai_jobs (job_id),
    tenant_id   INTEGER NOT NULL REFERENCES tenants (id),
    result      TEXT   NULL,
    summary     TEXT   NULL,
    created_at  INTEGER NOT NULL
) STRICT;

CREATE TABLE students (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id       INTEGER NOT NULL REFERENCES tenants (id),
    name            TEXT   NOT NULL,
    phone           TEXT   NULL,
    parent_phone    TEXT   NOT NULL,
    school          TEXT   NULL,
    grade           TEXT   NULL,
    login_id        TEXT   NOT NULL,
    password_hash   TEXT   NOT NULL,
    created_by_job  TEXT   NULL,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    deleted_at      INTEGER NULL,
    UNIQUE (tenant_id, login_id)
) STRICT;
CREATE INDEX students_identity ON students (tenant_id, name, parent_phone);

CREATE TABLE enrollments (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id   INTEGER NOT NULL REFERENCES tenants (id),
    lecture_id  INTEGER NOT NULL REFERENCES lectures (id),
    student_id  INTEGER NOT NULL REFERENCES students (id),
    created_at  INTEGER NOT NULL,
    UNIQUE (lecture_id, student_id)
) STRICT;

-- One row per processed spreadsheet row of an import job: a retried attempt skips rows that are
-- done and can still report the credentials it issued.
CREATE TABLE import_rows (
    job_id            TEXT   NOT NULL REFERENCES ai_jobs (job_id),
    row_number        INTEGER NOT NULL,
    tenant_id         INTEGER NOT NULL REFERENCES tenants (id),
    outcome           TEXT   NOT NULL CHECK (outcome IN ('created', 'duplicate', 'restored', 'failed')),
    name              TEXT   NULL,
    student_id        INTEGER NULL REFERENCES students (id),
    login_id          TEXT   NULL,
    initial_password  TEXT   NULL,
    error             TEXT   NULL,
    created_at        INTEGER NOT NULL,
    PRIMARY KEY (job_id, row_number)
) STRICT;

-- Read-model writes committed with the state change they describe; the relay applies and deletes
-- them. `write_json` is a serialized jobpulse_domain::Write.
CREATE TABLE outbox (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id   INTEGER NOT NULL,
    write_json  TEXT   NOT NULL,
    created_at  INTEGER NOT NULL,
    attempts    INTEGER NOT NULL DEFAULT 0,
    last_error  TEXT   NULL
) STRICT;
