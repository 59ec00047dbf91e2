-- Issue 15 item 5. (1) A victim identified under the 2011 law keeps that law's support (Law 53/2024 Art. 63):
-- the support service records the identification date and the document it rests on (encrypted, bound to the
-- row, erased by retention). (2) Free legal aid is for victims with financial difficulty (Law on Legal Aid;
-- seed:003): the referral records whether the person is in financial hardship.
CREATE TABLE legacy_identifications (
    case_id            text PRIMARY KEY,
    identified_on      date NOT NULL CHECK (identified_on < DATE '2025-07-01'),
    document_reference bytea,
    recorded_by        text NOT NULL,
    recorded_at        timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE legal_aid_referrals (
    case_id            text NOT NULL,
    handoff_id         text NOT NULL,
    financial_hardship boolean,
    recorded_by        text NOT NULL,
    recorded_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (case_id, handoff_id)
);

-- (3) Relatives (thân nhân) receive services too, without being persons in the victim registry.
ALTER TABLE services_delivered DROP CONSTRAINT services_delivered_beneficiary_check;
ALTER TABLE services_delivered ADD CONSTRAINT services_delivered_beneficiary_check
    CHECK (beneficiary IN ('person', 'accompanying_child', 'relative'));
