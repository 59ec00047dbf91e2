-- The per-case read model every people's screen reads (DESIGN.md "Data flow": people's screens read
-- PostgreSQL, operators read Temporal). Non-PII only: ids, codes, agencies, times, counts.
--
-- Two writers, both through shared/case_index.py, both idempotent upserts guarded by (version,
-- last_event_seq): only a newer state of the workflow wins, so the order in which they land never matters.
--   (a) the oversight audit activity, in the transaction of each audit event (every change, including
--       timer escalations and reminders, which no API call causes);
--   (b) the service API right after the workflow accepted an Update, from the CaseState the Update
--       returned (read-your-writes: the caller's next read sees its action), and intake right after it
--       started a case's workflow (version 0, no deadline yet: the receive deadline arrives with (a)).
-- Temporal visibility (search attributes) stays for operators: `temporal workflow list`, `nrm` CLI.
CREATE TABLE case_index (
    case_id                  text PRIMARY KEY,
    province                 text NOT NULL,
    commune                  text,
    stage                    text NOT NULL,
    status                   text NOT NULL,          -- HTCDS cas_Status: Active, FollowUp, Closed, ClosedReferred
    outcome                  text,
    owner_agency             text NOT NULL,
    participants             text[] NOT NULL DEFAULT '{}',
    pending_to               text[] NOT NULL DEFAULT '{}',   -- agencies invited by a handoff not yet answered
    pending_handoffs         jsonb NOT NULL DEFAULT '[]',    -- [{handoff_id, to_agency, kind, accept_by, escalation_level}]
    oldest_handoff_accept_by timestamptz,
    assignee                 text,
    deadline_at              timestamptz,            -- current stage's deadline, while the case is open
    reminder_at              timestamptz,
    escalation_level         integer NOT NULL DEFAULT 0,
    categories               text[] NOT NULL DEFAULT '{}',
    is_child                 boolean NOT NULL,
    is_abroad                boolean NOT NULL,
    channel                  text NOT NULL,
    age_band                 text NOT NULL,
    trafficking_status       text NOT NULL,
    version                  integer NOT NULL,
    last_event_seq           integer NOT NULL,
    stage_entered_at         timestamptz NOT NULL,
    opened_at                timestamptz NOT NULL,
    updated_at               timestamptz NOT NULL,   -- the workflow's time of its last change (= last audit event)
    closed_at                timestamptz,
    written_by               text NOT NULL CHECK (written_by IN ('audit', 'update', 'open')),
    indexed_at               timestamptz NOT NULL DEFAULT now()
);

-- Verification inbox (GET /inbox), one index per view; each serves the filter and the deadline order
-- (ASC, and DESC by a backward scan), so a page is read in index order with no sort.
-- in_progress / due_soon / overdue, provincial user: owner agency + province, active cases
CREATE INDEX case_index_inbox ON case_index (owner_agency, province, deadline_at, case_id)
    WHERE status = 'Active';
-- the same for national users (no province filter)
CREATE INDEX case_index_inbox_national ON case_index (owner_agency, deadline_at, case_id)
    WHERE status = 'Active';
-- assigned_to_me ("my cases")
CREATE INDEX case_index_assignee ON case_index (assignee, deadline_at, case_id)
    WHERE status = 'Active' AND assignee IS NOT NULL;
-- waiting_acceptance: handoffs not yet answered are few; the partial GIN finds an agency's invitations
CREATE INDEX case_index_pending ON case_index USING gin (pending_to) WHERE pending_to <> '{}';

-- Oversight (GET /stuck, GET /board): open = not Closed / ClosedReferred, written exactly as in the
-- queries (shared/case_index.py OPEN) so the planner matches the partial indexes.
CREATE INDEX case_index_stuck ON case_index
    (province, (LEAST(deadline_at, oldest_handoff_accept_by)), case_id)
    WHERE status <> 'Closed' AND status <> 'ClosedReferred';
CREATE INDEX case_index_stuck_national ON case_index
    ((LEAST(deadline_at, oldest_handoff_accept_by)), case_id)
    WHERE status <> 'Closed' AND status <> 'ClosedReferred';
CREATE INDEX case_index_board ON case_index (province, stage, owner_agency)
    INCLUDE (deadline_at)
    WHERE status <> 'Closed' AND status <> 'ClosedReferred';
