-- Support's own data: support plans (HTCDS spl_*), services delivered, follow-up notes, consent
-- documents. Free text is bytea written by KeyRing.encrypt_field(value, "<table>.<column>").

CREATE TABLE support_plans (
    plan_id             text PRIMARY KEY,
    case_id             text NOT NULL,
    objectives          bytea NOT NULL,      -- spl_Objectives
    action_plan         bytea,               -- spl_ActionPlan
    plan_types          text[] NOT NULL,     -- spl_Type
    planned_end_date    date NOT NULL,       -- spl_PlannedEndDate
    actual_end_date     date,                -- spl_ActualEndDate
    created_by          text NOT NULL,
    created_agency      text NOT NULL,
    created_at          timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX support_plans_case ON support_plans (case_id, created_at DESC);

CREATE TABLE services_delivered (
    service_id                 text PRIMARY KEY,
    case_id                    text NOT NULL,
    service_type               text NOT NULL,
    beneficiary                text NOT NULL CHECK (beneficiary IN ('person', 'accompanying_child')),
    provider_agency            text NOT NULL,
    provider_name              text,
    delivered_on               date NOT NULL,
    amount_vnd                 bigint CHECK (amount_vnd IS NULL OR amount_vnd >= 0),
    entitled                   text NOT NULL CHECK (entitled IN ('yes', 'case_by_case')),
    supervisor_approval_reason text,
    approved_by                text,
    note                       bytea,
    recorded_by                text NOT NULL,
    recorded_at                timestamptz NOT NULL DEFAULT clock_timestamp(),
    CHECK (entitled = 'yes' OR (supervisor_approval_reason IS NOT NULL AND approved_by IS NOT NULL))
);
CREATE INDEX services_delivered_case ON services_delivered (case_id, delivered_on);

CREATE TABLE follow_up_notes (
    note_id       text PRIMARY KEY,
    case_id       text NOT NULL,
    follow_up_id  text NOT NULL,
    outcome       text NOT NULL,
    note          bytea,
    recorded_by   text NOT NULL,
    recorded_at   timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX follow_up_notes_case ON follow_up_notes (case_id, follow_up_id);

CREATE TABLE consent_records (
    consent_id          text PRIMARY KEY,
    case_id             text NOT NULL,
    purpose             text NOT NULL CHECK (purpose IN ('support', 'data_sharing', 'research')),
    agency              text,
    granted             boolean NOT NULL,
    document_kind       text,
    document_signed_on  date,
    document_reference  bytea,
    document_language   text,
    recorded_by         text NOT NULL,
    recorded_at         timestamptz NOT NULL DEFAULT clock_timestamp(),
    CHECK ((purpose = 'data_sharing') = (agency IS NOT NULL))
);
CREATE INDEX consent_records_case ON consent_records (case_id, recorded_at);
