-- The committee's reports break figures down by sex (issue 15 item 6): the case carries the person's HTCDS
-- prs_Gender as a statistical fact (kept by retention like age band and province), so the workflow's facts
-- and the audit log's state hold it without reading the person registry.
ALTER TABLE intake_cases ADD COLUMN sex text;
UPDATE intake_cases c SET sex = p.gender FROM persons p WHERE p.person_id = c.person_id AND c.sex IS NULL;
