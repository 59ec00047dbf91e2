-- Retention erases a closed case's personal data here too (activities.erase_verification_pii): these
-- encrypted columns become NULL then, so they may no longer be NOT NULL. Existing rows are unchanged.
ALTER TABLE evidence_items ALTER COLUMN source DROP NOT NULL;
ALTER TABLE rescue_operations ALTER COLUMN location DROP NOT NULL;
ALTER TABLE protection_refusals ALTER COLUMN reference DROP NOT NULL;
-- one row per case whose personal data was erased, and when; statistics (kinds, dates, counts) stay
CREATE TABLE erasures (
    case_id    text PRIMARY KEY,
    erased_at  timestamptz NOT NULL DEFAULT now()
);
