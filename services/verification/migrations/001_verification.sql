-- Verification's own data: evidence metadata, rescue operations, protection refusals, suspected
-- perpetrators. Free text and anything that identifies a person is bytea written by
-- KeyRing.encrypt_field(value, "<table>.<column>"); equality search uses keyed blind indexes.

CREATE TABLE evidence_items (
    evidence_id     text PRIMARY KEY,
    case_id         text NOT NULL,
    kind            text NOT NULL,
    source          bytea NOT NULL,
    evidence_date   date NOT NULL,
    reference       bytea,
    description     bytea,
    recorded_by     text NOT NULL,
    recorded_agency text NOT NULL,
    recorded_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX evidence_items_case ON evidence_items (case_id, recorded_at);

CREATE TABLE rescue_operations (
    operation_id  text PRIMARY KEY,
    case_id       text NOT NULL,
    status        text NOT NULL CHECK (status IN ('planned', 'done')),
    planned_for   timestamptz NOT NULL,
    lead_agency   text NOT NULL,
    location      bytea NOT NULL,
    plan_notes    bytea,
    outcome       text CHECK (outcome IN ('rescued', 'not_found', 'postponed')),
    completed_at  timestamptz,
    created_by    text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    CHECK ((status = 'done') = (outcome IS NOT NULL))
);
CREATE INDEX rescue_operations_case ON rescue_operations (case_id, planned_for);

CREATE TABLE rescued_persons (
    operation_id text NOT NULL REFERENCES rescue_operations (operation_id),
    case_id      text NOT NULL,
    relation     text NOT NULL CHECK (relation IN ('existing', 'new')),
    PRIMARY KEY (operation_id, case_id)
);
CREATE INDEX rescued_persons_case ON rescued_persons (case_id);

CREATE TABLE protection_refusals (
    document_id  text PRIMARY KEY,
    case_id      text NOT NULL,
    signed_on    date NOT NULL,
    signed_by    text NOT NULL CHECK (signed_by IN ('person', 'representative')),
    reference    bytea NOT NULL,
    description  bytea,
    recorded_by  text NOT NULL,
    recorded_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX protection_refusals_case ON protection_refusals (case_id);

CREATE TABLE perpetrators (
    perpetrator_id      text PRIMARY KEY,
    case_id             text NOT NULL,
    province            text NOT NULL,
    roles               text[] NOT NULL,
    role_details        bytea,
    full_name           bytea,
    aliases             bytea,            -- encrypted JSON list
    phones              bytea,            -- encrypted JSON list
    recruitment_channel bytea,
    nationality         text,
    recorded_by         text NOT NULL,
    recorded_agency     text NOT NULL,
    recorded_at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX perpetrators_case ON perpetrators (case_id, recorded_at);

-- One row per blind index of a perpetrator: normalised name / alias, normalised phone, channel.
CREATE TABLE perpetrator_identifiers (
    perpetrator_id text NOT NULL REFERENCES perpetrators (perpetrator_id),
    case_id        text NOT NULL,
    kind           text NOT NULL CHECK (kind IN ('name', 'phone', 'recruitment_channel')),
    bidx           text NOT NULL,
    PRIMARY KEY (perpetrator_id, kind, bidx)
);
CREATE INDEX perpetrator_identifiers_lookup ON perpetrator_identifiers (kind, bidx);
