-- services_delivered.provider_name and .supervisor_approval_reason are free text that people type names
-- into; they were plain text. From now on they are bytea written by
-- KeyRing.encrypt_field(value, "services_delivered.<column>").
-- Existing rows: the key ring is not in the database, so SQL cannot encrypt them. Their values are moved to
-- legacy_* columns, read from there until the support service encrypts them (repository.encrypt_legacy_text,
-- run in the background each time the support worker starts; idempotent), and erased by retention with the
-- rest of the case's personal data.
ALTER TABLE services_delivered RENAME COLUMN provider_name TO legacy_provider_name;
ALTER TABLE services_delivered RENAME COLUMN supervisor_approval_reason TO legacy_supervisor_approval_reason;
ALTER TABLE services_delivered DROP CONSTRAINT services_delivered_check;
ALTER TABLE services_delivered ADD COLUMN provider_name bytea;
ALTER TABLE services_delivered ADD COLUMN supervisor_approval_reason bytea;
-- the rule "case by case needs an approval" now reads the approver (the reason is erasable; who approved stays)
ALTER TABLE services_delivered ADD CONSTRAINT services_delivered_case_by_case_approved
    CHECK (entitled = 'yes' OR approved_by IS NOT NULL);
