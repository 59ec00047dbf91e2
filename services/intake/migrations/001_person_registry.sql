-- The person registry: the one place a victim's personal data lives. Every PII column is bytea
-- written with ring.encrypt_field(value, 'persons.<column>'); equality search goes through keyed
-- blind indexes (never the clear text). Non-identifying facts stay in clear for statistics.
CREATE TABLE persons (
    person_id            text PRIMARY KEY,              -- opaque, random ('p-' + uuid4 hex)
    created_at           timestamptz NOT NULL DEFAULT now(),
    created_by           text NOT NULL,                 -- staff user id
    -- personal data (encrypted)
    first_name           bytea,
    middle_name          bytea,
    second_name          bytea,
    birthdate            bytea,                          -- ISO date
    birth_year           bytea,                          -- when only the year is known
    identity_number      bytea,
    mobile_phone         bytea,
    home_phone           bytea,
    email                bytea,
    mailing_street       bytea,
    mailing_city         bytea,
    mailing_state        bytea,
    mailing_postal_code  bytea,
    victim_context       bytea,                          -- JSON of the vic_* fields
    trafficking_events   bytea,                          -- JSON list of hte_* records
    -- blind indexes (keyed HMAC), for duplicate detection
    identity_bidx        text,
    name_year_bidx       text,                           -- normalised full name | birth year | province
    -- non-identifying facts (kept after erasure, for statistics)
    age_band             text NOT NULL,
    age_estimated        boolean NOT NULL DEFAULT false,
    estimated_age        integer,
    gender               text,
    citizenship          text[] NOT NULL DEFAULT '{}',
    primary_language     text,
    secondary_language   text,
    marital_status       text,
    education            text,
    number_of_children   integer,
    deceased             boolean,
    mailing_country      text,
    no_documents         boolean NOT NULL DEFAULT false,
    province             text NOT NULL,
    commune              text,
    agreement_to_manage_data boolean,
    consent              boolean,
    erased_at            timestamptz
);
CREATE INDEX persons_identity_bidx ON persons (identity_bidx) WHERE identity_bidx IS NOT NULL;
CREATE INDEX persons_name_year_bidx ON persons (name_year_bidx) WHERE name_year_bidx IS NOT NULL;

-- The intake registry: one row per opened case. The stage lives in the workflow, not here.
CREATE TABLE intake_cases (
    case_id              text PRIMARY KEY,              -- random ('c-' + uuid4 hex), never from personal data
    person_id            text NOT NULL REFERENCES persons (person_id),
    channel              text NOT NULL,
    province             text NOT NULL,
    commune              text,
    age_band             text NOT NULL,
    abroad               boolean NOT NULL,
    foreign_national     boolean NOT NULL,
    already_safe         boolean NOT NULL,
    opened_at            timestamptz NOT NULL DEFAULT now(),
    opened_by            text NOT NULL,
    opened_by_agency     text NOT NULL,
    opened_by_roles      text[] NOT NULL,
    opened_by_province   text NOT NULL,
    opened_by_commune    text,
    request_id           text,
    source               text NOT NULL DEFAULT 'api',    -- api | bulk | csv | htcds
    received_at          timestamptz,
    report_summary       bytea,                          -- encrypted narrative (intake_cases.report_summary)
    referring_organisation text,
    incoming_referral_reason text,
    incoming_referral_date date,
    incoming_referral_details bytea,                     -- encrypted
    workflow_started_at  timestamptz,
    -- idempotent opening: one case per (caller, key), whatever the concurrency
    idem_user            text NOT NULL,
    idem_key             text NOT NULL,
    request_hash         text NOT NULL,
    UNIQUE (idem_user, idem_key)
);
CREATE UNIQUE INDEX intake_cases_person ON intake_cases (person_id);
CREATE INDEX intake_cases_province_opened ON intake_cases (province, opened_at DESC);
CREATE INDEX intake_cases_channel ON intake_cases (channel, opened_at DESC);
CREATE INDEX intake_cases_unstarted ON intake_cases (opened_at) WHERE workflow_started_at IS NULL;

-- Possible duplicates, for a caseworker to link or keep apart; never merged silently.
CREATE TABLE duplicate_candidates (
    candidate_id         text PRIMARY KEY,
    case_id              text NOT NULL REFERENCES intake_cases (case_id),    -- the newer case
    person_id            text NOT NULL REFERENCES persons (person_id),
    other_case_id        text NOT NULL REFERENCES intake_cases (case_id),
    other_person_id      text NOT NULL REFERENCES persons (person_id),
    match_kind           text NOT NULL CHECK (match_kind IN ('identity_number', 'name_birth_year_province')),
    status               text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'linked', 'kept_apart')),
    flagged_at           timestamptz NOT NULL DEFAULT now(),
    decided_by           text,
    decided_at           timestamptz,
    reason               text,
    UNIQUE (person_id, other_person_id, match_kind)
);
CREATE INDEX duplicate_candidates_case ON duplicate_candidates (case_id);
CREATE INDEX duplicate_candidates_other_case ON duplicate_candidates (other_case_id);

-- Every read of personal data: who, which case and person, why, when, under which request.
CREATE TABLE access_log (
    access_id            bigserial PRIMARY KEY,
    accessed_at          timestamptz NOT NULL DEFAULT now(),
    user_id              text NOT NULL,
    agency               text NOT NULL,
    roles                text[] NOT NULL,
    case_id              text NOT NULL,
    person_id            text NOT NULL,
    case_province        text NOT NULL,
    action               text NOT NULL,                 -- read_person | read_case | export_htcds
    purpose              text,
    break_glass_reason   text,
    masked               boolean NOT NULL,
    sections             text[] NOT NULL DEFAULT '{}',
    request_id           text
);
CREATE INDEX access_log_case ON access_log (case_id, access_id DESC);
CREATE INDEX access_log_user ON access_log (user_id, access_id DESC);

CREATE FUNCTION access_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'access_log is append-only';
END $$;
CREATE TRIGGER access_log_no_update BEFORE UPDATE OR DELETE ON access_log
    FOR EACH ROW EXECUTE FUNCTION access_log_append_only();
