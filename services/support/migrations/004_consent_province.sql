-- Issue 18: a data-sharing consent may name the province of the agency it covers (a transfer of the case to
-- an agency of another province needs the person's consent to that province's agency, not only their local one).
ALTER TABLE consent_records ADD COLUMN province text CHECK (province IS NULL OR province ~ '^[0-9]{2}$');
ALTER TABLE consent_records ADD CONSTRAINT consent_records_province_needs_agency
    CHECK (province IS NULL OR agency IS NOT NULL);
