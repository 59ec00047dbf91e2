-- One access log for every service: each read of personal data (a person's registry record, suspected
-- perpetrators, evidence, rescue locations, refusal and consent documents, support plans, notes):
-- who, which case, which section, why, masked or not. Append-only; reasons are encrypted
-- (KeyRing.encrypt_field(..., "access_log.break_glass_reason")) because people type names into them.
CREATE TABLE access_log (
    access_id            bigserial PRIMARY KEY,
    accessed_at          timestamptz NOT NULL DEFAULT now(),
    service              text NOT NULL,
    user_id              text NOT NULL,
    agency               text NOT NULL,
    roles                text[] NOT NULL,
    case_id              text NOT NULL,
    case_province        text NOT NULL,
    person_id            text,
    action               text NOT NULL,
    sections             text[] NOT NULL DEFAULT '{}',
    purpose              bytea,
    break_glass          boolean NOT NULL DEFAULT false,
    break_glass_reason   bytea,
    masked               boolean NOT NULL,
    request_id           text
);
CREATE INDEX access_log_case ON access_log (case_id, access_id DESC);
CREATE INDEX access_log_user ON access_log (user_id, access_id DESC);
CREATE INDEX access_log_province ON access_log (case_province, access_id DESC);

CREATE FUNCTION access_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'common.access_log is append-only';
END $$;
CREATE TRIGGER access_log_no_update BEFORE UPDATE OR DELETE ON access_log
    FOR EACH ROW EXECUTE FUNCTION access_log_append_only();
CREATE TRIGGER access_log_no_truncate BEFORE TRUNCATE ON access_log
    FOR EACH STATEMENT EXECUTE FUNCTION access_log_append_only();
