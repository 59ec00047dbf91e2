-- Retention erases a closed case's personal data here too (activities.erase_support_pii): the plan's
-- objectives become NULL then, so they may no longer be NOT NULL. Existing rows are unchanged.
ALTER TABLE support_plans ALTER COLUMN objectives DROP NOT NULL;
-- one row per case whose personal data was erased, and when
CREATE TABLE erasures (
    case_id    text PRIMARY KEY,
    erased_at  timestamptz NOT NULL DEFAULT now()
);
