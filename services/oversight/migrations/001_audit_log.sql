-- The record of truth for auditors: append-only, hash-chained per case, keyed (HMAC) so a
-- database administrator cannot rewrite a chain unnoticed. Written only by record_event.
CREATE TABLE case_events (
    event_id        text PRIMARY KEY,            -- idempotency: a retried activity inserts nothing
    case_id         text NOT NULL,
    seq             integer NOT NULL CHECK (seq >= 1),
    occurred_at     timestamptz NOT NULL,
    recorded_at     timestamptz NOT NULL DEFAULT now(),
    kind            text NOT NULL,
    actor_user_id   text NOT NULL,
    actor_agency    text,
    stage           text NOT NULL,
    reason          text,
    request_id      text,
    policy_version  text NOT NULL,
    data            jsonb NOT NULL DEFAULT '{}'::jsonb,
    state           jsonb NOT NULL,               -- non-PII case state after the event (as-of rebuilds)
    prev_hash       text NOT NULL,
    hash            text NOT NULL,
    UNIQUE (case_id, seq)
);
CREATE INDEX case_events_case_time ON case_events (case_id, occurred_at);
CREATE INDEX case_events_actor ON case_events (actor_user_id, occurred_at);

-- Append-only: updates and deletes are refused at the database (tamper evidence still comes
-- from the keyed chain, since a superuser can drop this trigger).
CREATE FUNCTION case_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'case_events is append-only';
END $$;
CREATE TRIGGER case_events_no_update BEFORE UPDATE OR DELETE ON case_events
    FOR EACH ROW EXECUTE FUNCTION case_events_append_only();

-- The oversight projection: one row per case, kept current by record_event.
CREATE TABLE case_summary (
    case_id            text PRIMARY KEY,
    province           text NOT NULL,
    commune            text,
    stage              text NOT NULL,
    status             text NOT NULL,
    outcome            text,
    owner_agency       text NOT NULL,
    assignee           text,
    channel            text NOT NULL,
    age_band           text NOT NULL,
    is_child           boolean NOT NULL,
    is_abroad          boolean NOT NULL,
    trafficking_status text NOT NULL,
    deadline_at        timestamptz,
    escalation_level   integer NOT NULL DEFAULT 0,
    open_handoffs      integer NOT NULL DEFAULT 0,
    oldest_handoff_accept_by timestamptz,
    version            integer NOT NULL,
    last_event_seq     integer NOT NULL,
    last_event_at      timestamptz NOT NULL,
    stage_entered_at   timestamptz NOT NULL,
    opened_at          timestamptz NOT NULL,
    closed_at          timestamptz,
    policy_version     text NOT NULL,
    state              jsonb NOT NULL
);
CREATE INDEX case_summary_open_deadline ON case_summary (province, deadline_at) WHERE status <> 'Closed' AND status <> 'ClosedReferred';
CREATE INDEX case_summary_board ON case_summary (province, stage, owner_agency) WHERE status <> 'Closed' AND status <> 'ClosedReferred';
CREATE INDEX case_summary_idle ON case_summary (province, last_event_at);

-- Notifications go here first (transactional outbox); delivery channels come later.
CREATE TABLE notification_outbox (
    notification_id text PRIMARY KEY,
    case_id         text NOT NULL,
    kind            text NOT NULL,
    level           integer NOT NULL DEFAULT 0,
    recipients      jsonb NOT NULL,
    stage           text NOT NULL,
    due_at          timestamptz,
    created_at      timestamptz NOT NULL,
    delivered_at    timestamptz
);
CREATE INDEX notification_outbox_pending ON notification_outbox (created_at) WHERE delivered_at IS NULL;

-- At closure the workflow history is exported here, so replay works after Temporal's retention.
CREATE TABLE workflow_histories (
    case_id      text NOT NULL,
    run_id       text NOT NULL,
    exported_at  timestamptz NOT NULL DEFAULT now(),
    key_id       text NOT NULL,
    history      bytea NOT NULL,               -- encrypted JSON history (payloads are already encrypted)
    PRIMARY KEY (case_id, run_id)
);
