-- One idempotency-key store for every service (DESIGN.md "Data flow": keys are the caller's, scoped to
-- (caller, operation, case); a reused key with another request is a 422). No personal data and no raw
-- user id: `scope` is a keyed blind index (KeyRing.blind_index) of user id + operation + case id + key,
-- `request_hash` a keyed hash of the request (body and command, without per-request fields such as the
-- request id). The Temporal Update id is derived from `scope`.
--
-- `state` makes the outcome of an Update knowable: 'pending' from just before the Update is sent until
-- the workflow accepts it ('applied'). A rejected Update deletes its pending row (the key may be used
-- again); an Update whose answer never came (timeout, lost connection) stays 'pending' until the
-- client's retry with the same key re-sends the same Update id and completes it.
CREATE TABLE idempotency_keys (
    scope         text PRIMARY KEY,
    request_hash  text NOT NULL,
    operation     text NOT NULL,
    case_id       text NOT NULL,
    state         text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'applied')),
    created_at    timestamptz NOT NULL DEFAULT now(),
    completed_at  timestamptz
);
-- Updates whose outcome is still unknown, oldest first (for operators and a future reconciler)
CREATE INDEX idempotency_keys_pending ON idempotency_keys (created_at) WHERE state = 'pending';
CREATE INDEX idempotency_keys_case ON idempotency_keys (case_id);
