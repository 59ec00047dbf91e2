-- Criminal proceedings (issue 15 item 1): per case, the crime report (tố giác, tin báo về tội phạm) and what
-- police, procuracy and court decided on it, linked to the case's suspected perpetrators. Reference numbers
-- and notes are bytea written by KeyRing.encrypt_field(value, "<table>.<column>", row=<primary key>); the
-- step and outcome keys and the dates are not personal data. The non-personal facts the KPIs need are
-- copied, in the same transaction, to common.criminal_proceedings (shared/criminal_proceedings.py).

CREATE TABLE criminal_proceedings (
    proceeding_id      text PRIMARY KEY,
    case_id            text NOT NULL,
    province           text NOT NULL,
    report_number      bytea,               -- the crime report's number (số tin báo); encrypted
    report_received_on date NOT NULL,
    perpetrator_ids    text[] NOT NULL DEFAULT '{}',
    notes              bytea,               -- encrypted
    recorded_by        text NOT NULL,
    recorded_agency    text NOT NULL,
    recorded_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX criminal_proceedings_case ON criminal_proceedings (case_id, report_received_on);

-- One row per step, each recorded once: the decision to open a criminal case or not (khởi tố vụ án /
-- không khởi tố), the investigation's result (điều tra, khám phá), prosecution (truy tố) and trial (xét xử).
CREATE TABLE criminal_proceeding_steps (
    proceeding_id   text NOT NULL REFERENCES criminal_proceedings (proceeding_id),
    step            text NOT NULL CHECK (step IN ('decision', 'investigation', 'prosecution', 'trial')),
    outcome         text NOT NULL,
    occurred_on     date NOT NULL,
    reference       bytea,                  -- the decision's / indictment's / judgment's number; encrypted
    notes           bytea,                  -- encrypted
    recorded_by     text NOT NULL,
    recorded_agency text NOT NULL,
    recorded_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (proceeding_id, step),
    CHECK (
        (step = 'decision' AND outcome IN ('opened', 'not_opened'))
        OR (step = 'investigation' AND outcome IN ('solved', 'suspended', 'discontinued'))
        OR (step = 'prosecution' AND outcome IN ('indicted', 'not_indicted'))
        OR (step = 'trial' AND outcome IN ('convicted', 'acquitted'))
    )
);
