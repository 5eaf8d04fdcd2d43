-- Direct uploads (CONTRACT.md §7): a video starts PENDING at upload init and becomes UPLOADED
-- when the upload completes. `video_uploads` holds what only a PENDING video needs: the content
-- type its upload URL is signed for and the open multipart upload, if any. The row goes when the
-- upload completes, fails or is cleaned up as abandoned.
ALTER TABLE videos DROP CONSTRAINT videos_status_check;
ALTER TABLE videos ADD CONSTRAINT videos_status_check
    CHECK (status IN ('PENDING', 'UPLOADED', 'PROCESSING', 'RETRY_WAIT', 'READY', 'FAILED'));

CREATE TABLE video_uploads (
    video_id      BIGINT PRIMARY KEY REFERENCES videos (id),
    tenant_id     BIGINT NOT NULL REFERENCES tenants (id),
    content_type  TEXT   NOT NULL,
    -- The open multipart upload (S3's upload id, or file storage's staging id).
    multipart_id  TEXT   NULL,
    created_at    BIGINT NOT NULL
);
CREATE INDEX video_uploads_created ON video_uploads (created_at);
