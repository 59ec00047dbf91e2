-- Audit log integrity, second pass (issue 10 items 4 and 5).
--
-- 1. Free text (reasons, typed parts of `data` and `state`) is stored encrypted and hashed as a keyed
--    digest, so retention can erase it without breaking the chain. The hash format is per event:
--      hash_version 1: HMAC over the event with its free text in clear (every event written before this
--                      migration; they keep verifying exactly as before)
--      hash_version 2: `reason`/`data`/`state` hold markers where free text was, `free_text` holds the
--                      texts encrypted (KeyRing.encrypt_field, column oversight.case_events.free_text,
--                      row = event_id), and the chain hashes `free_text_digest` (HMAC of the texts).
--    `free_text_erased_at` is set when retention removed the texts (the digest stays). A version-1 event
--    whose texts are erased is resealed: `reseal` is an HMAC over its redacted content, its digest and
--    its unchanged chain hash, written only after its original hash was checked.
ALTER TABLE case_events
    ADD COLUMN hash_version smallint NOT NULL DEFAULT 1 CHECK (hash_version IN (1, 2)),
    ADD COLUMN free_text bytea,
    ADD COLUMN free_text_digest text,
    ADD COLUMN free_text_erased_at timestamptz,
    ADD COLUMN reseal text;

-- 2. Append-only, including TRUNCATE (a statement-level trigger: row triggers never see a TRUNCATE).
--    The one UPDATE allowed is retention's erasure of free text, inside a transaction that declared it
--    (SET LOCAL nrm.audit_erasure = 'on'), which may neither touch the chain columns nor bring text back.
--    This is a guard against mistakes and casual edits; tamper evidence is the keyed chain plus the
--    count check of `nrm audit verify` (a superuser can drop any trigger).
CREATE OR REPLACE FUNCTION case_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' THEN
        IF current_setting('nrm.audit_erasure', true) = 'on'
           AND NEW.event_id = OLD.event_id AND NEW.case_id = OLD.case_id AND NEW.seq = OLD.seq
           AND NEW.occurred_at = OLD.occurred_at AND NEW.kind = OLD.kind
           AND NEW.actor_user_id = OLD.actor_user_id AND NEW.prev_hash = OLD.prev_hash AND NEW.hash = OLD.hash
           AND NEW.hash_version = OLD.hash_version AND NEW.free_text IS NULL
           AND NEW.free_text_erased_at IS NOT NULL
           AND (OLD.free_text_digest IS NULL OR NEW.free_text_digest = OLD.free_text_digest) THEN
            RETURN NEW;
        END IF;
    END IF;
    RAISE EXCEPTION 'case_events is append-only (% refused)', TG_OP;
END $$;
CREATE TRIGGER case_events_no_truncate BEFORE TRUNCATE ON case_events
    FOR EACH STATEMENT EXECUTE FUNCTION case_events_append_only();

-- 3. The projection is the count the workflow emitted (last_event_seq, written in the event's
--    transaction): it is never deleted, truncated or moved backwards.
CREATE FUNCTION case_summary_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' THEN
        IF NEW.case_id = OLD.case_id AND NEW.last_event_seq >= OLD.last_event_seq THEN
            RETURN NEW;
        END IF;
        RAISE EXCEPTION 'case_summary.last_event_seq never moves backwards';
    END IF;
    RAISE EXCEPTION 'case_summary rows are never removed (% refused)', TG_OP;
END $$;
CREATE TRIGGER case_summary_no_rewind BEFORE UPDATE OR DELETE ON case_summary
    FOR EACH ROW EXECUTE FUNCTION case_summary_guard();
CREATE TRIGGER case_summary_no_truncate BEFORE TRUNCATE ON case_summary
    FOR EACH STATEMENT EXECUTE FUNCTION case_summary_guard();

-- 4. The exported histories are the independent count for closed cases: no TRUNCATE either.
CREATE FUNCTION workflow_histories_no_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'workflow_histories is an archive (TRUNCATE refused)';
END $$;
CREATE TRIGGER workflow_histories_no_truncate BEFORE TRUNCATE ON workflow_histories
    FOR EACH STATEMENT EXECUTE FUNCTION workflow_histories_no_truncate();
