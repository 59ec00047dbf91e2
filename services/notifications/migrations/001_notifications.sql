-- Notification delivery: preferences, deliveries with their log, dead letters, digests and the in-app inbox.
-- No personal data of victims: case ids, codes and the staff contact each message went to.

CREATE TABLE preferences (
    user_id      text PRIMARY KEY,                -- a directory contact id or a token's user id
    channel      text NOT NULL DEFAULT 'email' CHECK (channel IN ('email', 'sms', 'inapp')),
    language     text CHECK (language IN ('vi', 'en')),
    quiet_start  time,                            -- local time (Asia/Ho_Chi_Minh); both or neither
    quiet_end    time,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    CHECK ((quiet_start IS NULL) = (quiet_end IS NULL))
);

CREATE TABLE deliveries (
    delivery_id      text PRIMARY KEY,            -- also the provider idempotency key / Message-ID
    notification_ids text[] NOT NULL,
    case_ids         text[] NOT NULL,
    digest           boolean NOT NULL DEFAULT false,
    recipient_id     text NOT NULL,
    recipient_group  text NOT NULL,
    province         text,
    channel          text NOT NULL CHECK (channel IN ('email', 'sms')),
    address          text NOT NULL,               -- the staff contact's e-mail or phone
    language         text NOT NULL,
    max_level        integer NOT NULL DEFAULT 0,
    subject          text NOT NULL,
    body             text NOT NULL,
    short_text       text NOT NULL,               -- the SMS
    status           text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sent', 'dead')),
    attempts         integer NOT NULL DEFAULT 0,
    provider_ref     text,
    last_error       text,
    not_before       timestamptz,
    resent           integer NOT NULL DEFAULT 0,
    created_at       timestamptz NOT NULL DEFAULT now(),
    sent_at          timestamptz,
    dead_at          timestamptz
);
CREATE INDEX deliveries_dead ON deliveries (province, dead_at DESC) WHERE status = 'dead';
CREATE INDEX deliveries_case ON deliveries USING gin (case_ids);

CREATE TABLE delivery_log (
    id           bigserial PRIMARY KEY,
    delivery_id  text NOT NULL REFERENCES deliveries (delivery_id),
    at           timestamptz NOT NULL DEFAULT now(),
    outcome      text NOT NULL CHECK (outcome IN ('sent', 'failed', 'dead', 'resend')),
    attempt      integer,
    detail       text
);
CREATE INDEX delivery_log_delivery ON delivery_log (delivery_id, id);

-- Items waiting for a group contact's digest; delivery_id is set when a digest took them.
CREATE TABLE digest_items (
    recipient_id     text NOT NULL,
    channel          text NOT NULL,
    recipient_group  text NOT NULL,
    province         text,
    address          text NOT NULL,
    language         text NOT NULL,
    notification_id  text NOT NULL,
    case_id          text NOT NULL,
    kind             text NOT NULL,
    level            integer NOT NULL,
    stage            text NOT NULL,
    due_at           timestamptz,
    added_at         timestamptz NOT NULL DEFAULT now(),
    delivery_id      text,
    PRIMARY KEY (recipient_id, channel, notification_id)
);
CREATE INDEX digest_items_pending ON digest_items (recipient_id, channel) WHERE delivery_id IS NULL;

-- The console's bell: one row per notification and contact (a group's row is shared by its members).
CREATE TABLE inbox (
    item_id          text PRIMARY KEY,
    recipient_id     text NOT NULL,
    recipient_group  text NOT NULL,
    province         text,
    notification_id  text NOT NULL,
    case_id          text NOT NULL,
    kind             text NOT NULL,
    level            integer NOT NULL,
    stage            text NOT NULL,
    due_at           timestamptz,
    created_at       timestamptz NOT NULL,
    read_at          timestamptz
);
CREATE INDEX inbox_unread_recipient ON inbox (recipient_id, created_at DESC) WHERE read_at IS NULL;
CREATE INDEX inbox_unread_group ON inbox (recipient_group, created_at DESC) WHERE read_at IS NULL;
