-- The non-personal facts of each criminal proceeding (issue 15 item 1), written by the verification service
-- in the same transaction as its own encrypted record (shared/criminal_proceedings.py) and read by the
-- oversight KPIs: no service reads another's schema. Keys and dates only; no numbers, names or notes.
CREATE TABLE criminal_proceedings (
    proceeding_id      text PRIMARY KEY,
    case_id            text NOT NULL,
    province           text NOT NULL,
    report_received_on date NOT NULL,
    decision           text CHECK (decision IN ('opened', 'not_opened')),
    decided_on         date,
    investigation      text CHECK (investigation IN ('solved', 'suspended', 'discontinued')),
    investigated_on    date,
    prosecution        text CHECK (prosecution IN ('indicted', 'not_indicted')),
    prosecuted_on      date,
    verdict            text CHECK (verdict IN ('convicted', 'acquitted')),
    tried_on           date,
    updated_at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX criminal_proceedings_province ON criminal_proceedings (province, report_received_on);
