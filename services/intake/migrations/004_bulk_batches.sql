-- Mass arrivals (issue 13 item 3).
--
-- The entry decision: the receiving agency classifies at handover, so a case can open straight into its
-- next stage. The workflow is started with it (CaseInput.initial_decision) and applies it in its first
-- task, recorded as the opener's `stage_decided`; it is kept on the row because every start (the
-- request's own, a retry's, the reconcile loop's) rebuilds the workflow input from the row.
-- The justification is a reason, not personal data (it lands in the audit log as such).
ALTER TABLE intake_cases ADD COLUMN entry_classification text
    CHECK (entry_classification IN ('trafficking_suspected', 'other_crime', 'not_relevant'));
ALTER TABLE intake_cases ADD COLUMN entry_justification text;

-- A bulk batch processed in the background: the rows are stored first (encrypted), then opened
-- concurrently, each row's result committed in the transaction that opens its case, so a batch
-- survives a restart of the intake service and resumes where it stopped. Rows are keyed
-- <batch key>#<row index> (the caller's Idempotency-Key, or the batch id): a row committed before a
-- crash is never opened twice.
CREATE TABLE bulk_batches (
    batch_id             text PRIMARY KEY,              -- 'bb-' + uuid4 hex
    created_at           timestamptz NOT NULL DEFAULT now(),
    finished_at          timestamptz,                   -- every row has its result
    user_id              text NOT NULL,
    principal            jsonb NOT NULL,                -- who opens the rows (from the token: roles, agency, jurisdiction)
    source               text NOT NULL,                 -- bulk | csv (the rows' opening endpoint)
    idem_key             text,                          -- the caller's batch key (NULL: none given)
    request_hash         text,                          -- keyed hash of the batch header (entry decision, total)
    request_id           text,
    entry_classification text,
    entry_justification  text,
    total                integer NOT NULL CHECK (total >= 1),
    lease_until          timestamptz,                   -- the process working on it renews this; expired = taken over
    UNIQUE (user_id, source, idem_key)
);
CREATE INDEX bulk_batches_unfinished ON bulk_batches (lease_until) WHERE finished_at IS NULL;

CREATE TABLE bulk_rows (
    batch_id             text NOT NULL REFERENCES bulk_batches (batch_id),
    row_index            integer NOT NULL CHECK (row_index >= 0),
    payload              bytea,                         -- encrypted JSON of the row (personal data); NULL once done
    row_hash             text NOT NULL,                 -- keyed hash of the row: a re-sent chunk must be identical
    status               text NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'opened', 'duplicate_flagged', 'replayed', 'invalid', 'failed')),
    case_id              text,
    duplicates           jsonb NOT NULL DEFAULT '[]'::jsonb,  -- candidate ids, match kind, other case and province
    errors               jsonb NOT NULL DEFAULT '[]'::jsonb,  -- field and reason (never the input value)
    done_at              timestamptz,
    PRIMARY KEY (batch_id, row_index)
);
CREATE INDEX bulk_rows_pending ON bulk_rows (batch_id, row_index) WHERE status = 'pending';
