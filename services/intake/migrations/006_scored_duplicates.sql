-- Duplicate flags a caseworker can trust in a mass arrival (issue 15 item 9): each person keeps the keyed
-- blind indexes of its identity evidence (full name, given + family name, birth date, birth year, phone) and
-- the hashed blocking keys under which candidates are looked up; a candidate is flagged when the evidence
-- scores at least services/intake/dedupe.FLAG_THRESHOLD, with the score and its reasons kept for the
-- caseworker. Persons opened before this migration have no evidence columns: they are still matched by the
-- old keys (identity number, or name + birth year + province) and flagged as before.
ALTER TABLE persons
    ADD COLUMN ev_full_name text,
    ADD COLUMN ev_given_family text,
    ADD COLUMN ev_birth_date text,
    ADD COLUMN ev_birth_year text,
    ADD COLUMN ev_phone text,
    ADD COLUMN ev_blocking text[];
CREATE INDEX persons_ev_blocking ON persons USING gin (ev_blocking);

ALTER TABLE duplicate_candidates
    ADD COLUMN score double precision,
    ADD COLUMN reasons text[] NOT NULL DEFAULT '{}';
ALTER TABLE duplicate_candidates DROP CONSTRAINT duplicate_candidates_match_kind_check;
ALTER TABLE duplicate_candidates ADD CONSTRAINT duplicate_candidates_match_kind_check
    CHECK (match_kind IN ('identity_number', 'name_birth_year_province', 'evidence'));
