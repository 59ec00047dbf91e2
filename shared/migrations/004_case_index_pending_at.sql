-- A transfer to another province (issue 18) waits for an agency of *that* province: the index keeps where
-- each invitee is ("agency@province"), so the receiving province's inbox ("waiting for my acceptance") and
-- stuck list show the case before it has moved there.
ALTER TABLE case_index ADD COLUMN pending_at text[] NOT NULL DEFAULT '{}';
UPDATE case_index SET pending_at = ARRAY(SELECT a || '@' || province FROM unnest(pending_to) AS a)
    WHERE pending_to <> '{}';
CREATE INDEX case_index_pending_at ON case_index USING gin (pending_at) WHERE pending_at <> '{}';
