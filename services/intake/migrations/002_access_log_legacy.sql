-- Reads of personal data are logged in the one access log, common.access_log (shared/access_log.py),
-- from this migration on: every service writes there and GET /access-log reads it. intake's own log
-- is kept, renamed, for audits of reads made before this change; nothing writes to it any more.
-- CAUTION: its purpose and break_glass_reason columns were stored in PLAINTEXT (common.access_log
-- encrypts them) and people type names into reasons: treat this table as personal data.
ALTER TABLE access_log RENAME TO access_log_legacy;
ALTER INDEX access_log_case RENAME TO access_log_legacy_case;
ALTER INDEX access_log_user RENAME TO access_log_legacy_user;
ALTER TRIGGER access_log_no_update ON access_log_legacy RENAME TO access_log_legacy_no_update;
-- still append-only, and now TRUNCATE is refused as well
CREATE TRIGGER access_log_legacy_no_truncate BEFORE TRUNCATE ON access_log_legacy
    FOR EACH STATEMENT EXECUTE FUNCTION access_log_append_only();
COMMENT ON TABLE access_log_legacy IS
    'reads before common.access_log existed; append-only; purpose and break_glass_reason are plaintext';
