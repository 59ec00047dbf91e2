-- The entry decision's justification is typed by people (names slip into reasons), as every other reason
-- in the system: stored encrypted (KeyRing.encrypt_field, bound to the row) and erased by retention.
-- Rows written before this migration (only since 004, the same day) keep their text as UTF-8 bytes, which
-- opening.open_justification reads as legacy plain text.
ALTER TABLE intake_cases ALTER COLUMN entry_justification TYPE bytea USING convert_to(entry_justification, 'UTF8');
ALTER TABLE bulk_batches ALTER COLUMN entry_justification TYPE bytea USING convert_to(entry_justification, 'UTF8');
