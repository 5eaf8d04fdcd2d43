-- Completion webhooks (docs/contract.md "Webhooks"): endpoints a tenant's staff register, and
-- the deliveries the state changes enqueue in their own transaction (the outbox of the
-- webhooks): one row per (event, endpoint), sent and retried by the webhook sender.
CREATE TABLE webhook_endpoints (
    id           TEXT   PRIMARY KEY,                -- ep_<hex>
    tenant_id    INTEGER NOT NULL REFERENCES tenants (id),
    url          TEXT   NOT NULL,
    secret       TEXT   NOT NULL,                   -- whsec_<base64 of 32 random bytes>
    events       TEXT   NOT NULL,                   -- JSON array of event types
    created_at   INTEGER NOT NULL,
    disabled_at  INTEGER NULL                        -- removed: no new deliveries
) STRICT;
CREATE INDEX webhook_endpoints_tenant ON webhook_endpoints (tenant_id) WHERE disabled_at IS NULL;

CREATE TABLE webhook_deliveries (
    id               TEXT   PRIMARY KEY,            -- msg_<hex>: the `webhook-id` header
    endpoint_id      TEXT   NOT NULL REFERENCES webhook_endpoints (id),
    tenant_id        INTEGER NOT NULL,
    event_type       TEXT   NOT NULL,
    payload          TEXT   NOT NULL,               -- the exact JSON body sent
    state            TEXT   NOT NULL DEFAULT 'PENDING'
        CHECK (state IN ('PENDING', 'DELIVERED', 'DEAD')),
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  INTEGER NOT NULL,               -- due time; a claim moves it by the lease
    lease_token      TEXT   NULL,                   -- the sender holding the claim
    first_attempt_at INTEGER NULL,
    last_status      INTEGER NULL,                  -- HTTP status of the last attempt
    last_error       TEXT   NULL,                   -- why the last attempt failed / why dead
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL
) STRICT;
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE state = 'PENDING';
CREATE INDEX webhook_deliveries_endpoint ON webhook_deliveries (endpoint_id, created_at, id);

-- Every attempt of a delivery (bounded: the sender gives up after the retry window).
CREATE TABLE webhook_attempts (
    delivery_id  TEXT    NOT NULL REFERENCES webhook_deliveries (id) ON DELETE CASCADE,
    attempt      INTEGER NOT NULL,
    at           INTEGER  NOT NULL,
    status       INTEGER NULL,
    error        TEXT    NULL,
    duration_ms  INTEGER  NOT NULL,
    PRIMARY KEY (delivery_id, attempt)
) STRICT;
