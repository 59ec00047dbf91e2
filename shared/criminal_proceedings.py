"""The non-personal read model of criminal proceedings (issue 15 item 1), in the floor's schema `common`.

The verification service records a case's crime report and the decisions of police, procuracy and court
on it (services/verification/proceedings.py, encrypted in its own schema) and, in the same transaction,
writes here the keys and dates only. The oversight KPIs (services/oversight/criminal_justice.py) read this
table: no service reads another's schema, and the audit events carry only the record id (add_note), which
is not enough to count what was prosecuted or tried."""

from __future__ import annotations

from datetime import date
from enum import StrEnum

from shared.db import Conn


class Step(StrEnum):
    """The steps of a criminal proceeding, in order; each is recorded once."""

    decision = "decision"  # khởi tố vụ án / không khởi tố vụ án
    investigation = "investigation"  # điều tra, khám phá
    prosecution = "prosecution"  # truy tố
    trial = "trial"  # xét xử


class DecisionOutcome(StrEnum):
    opened = "opened"  # quyết định khởi tố vụ án hình sự
    not_opened = "not_opened"  # quyết định không khởi tố vụ án hình sự


class InvestigationOutcome(StrEnum):
    solved = "solved"  # kết thúc điều tra, đề nghị truy tố (khám phá)
    suspended = "suspended"  # tạm đình chỉ điều tra
    discontinued = "discontinued"  # đình chỉ điều tra


class ProsecutionOutcome(StrEnum):
    indicted = "indicted"  # quyết định truy tố (cáo trạng)
    not_indicted = "not_indicted"  # đình chỉ vụ án, không truy tố


class TrialOutcome(StrEnum):
    convicted = "convicted"  # bản án tuyên có tội
    acquitted = "acquitted"  # tuyên không có tội


# the step before each step, and the outcome it needs
REQUIRES: dict[Step, tuple[Step, str] | None] = {
    Step.decision: None,
    Step.investigation: (Step.decision, DecisionOutcome.opened.value),
    Step.prosecution: (Step.investigation, InvestigationOutcome.solved.value),
    Step.trial: (Step.prosecution, ProsecutionOutcome.indicted.value),
}
_COLUMNS: dict[Step, tuple[str, str]] = {
    Step.decision: ("decision", "decided_on"),
    Step.investigation: ("investigation", "investigated_on"),
    Step.prosecution: ("prosecution", "prosecuted_on"),
    Step.trial: ("verdict", "tried_on"),
}


async def record_report(
    conn: Conn, proceeding_id: str, case_id: str, province: str, received_on: date
) -> None:
    """A crime report recorded on a case; idempotent (the id is fixed before the write)."""
    await conn.execute(
        """INSERT INTO common.criminal_proceedings (proceeding_id, case_id, province, report_received_on)
           VALUES ($1, $2, $3, $4) ON CONFLICT (proceeding_id) DO NOTHING""",
        proceeding_id,
        case_id,
        province,
        received_on,
    )


async def record_step(
    conn: Conn, proceeding_id: str, step: Step, outcome: str, occurred_on: date
) -> None:
    """One step's outcome and date; idempotent (a step is recorded once: an existing value stays)."""
    outcome_col, date_col = _COLUMNS[step]
    await conn.execute(
        f"""UPDATE common.criminal_proceedings
            SET {outcome_col} = coalesce({outcome_col}, $2), {date_col} = coalesce({date_col}, $3),
                updated_at = now()
            WHERE proceeding_id = $1""",
        proceeding_id,
        outcome,
        occurred_on,
    )
