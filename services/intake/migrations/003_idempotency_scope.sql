-- Idempotency keys are the caller's, scoped to (caller, operation, case) (DESIGN.md "Data flow").
--
-- Opening: one case per (caller, opening endpoint, key); `source` is the opening endpoint
-- (api | bulk | csv | htcds). No key means a new case every time: nothing is deduplicated by content
-- (two unnamed rescued persons with the same facts are two people), so the keys that were derived
-- from the request body ('auto:' + hash) were never the caller's and are dropped, with their hash.
ALTER TABLE intake_cases DROP CONSTRAINT intake_cases_idem_user_idem_key_key;
ALTER TABLE intake_cases ALTER COLUMN idem_key DROP NOT NULL;
ALTER TABLE intake_cases ALTER COLUMN request_hash DROP NOT NULL;
UPDATE intake_cases SET idem_key = NULL, request_hash = NULL WHERE idem_key LIKE 'auto:%';
-- NULL keys are distinct from each other: they never conflict
ALTER TABLE intake_cases ADD CONSTRAINT intake_cases_idempotency UNIQUE (idem_user, source, idem_key);

-- The other write endpoints (classify, duplicate resolution): which key a caller used for which
-- operation on which target (a case, or a duplicate candidate), with a keyed hash of the request,
-- so a retry replays and a reused key with another body is refused (422). Written in the same
-- transaction as the action it guards: a refused action leaves no key behind.
CREATE TABLE request_keys (
    user_id              text NOT NULL,
    operation            text NOT NULL,                 -- classify | resolve_duplicate
    target_id            text NOT NULL,                 -- case_id or candidate_id
    idem_key             text NOT NULL,
    request_hash         text NOT NULL,                 -- keyed HMAC of the canonical request
    created_at           timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, operation, target_id, idem_key)
);
