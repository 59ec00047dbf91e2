"""The criminal-justice figures of the plans (DOMAIN.md §5; seed:000, seed:001, seed:003): crime reports
resolved, criminal cases investigated and solved, prosecuted, tried. Formulas in kpis.yaml.

Read from the floor's read model common.criminal_proceedings (shared/criminal_proceedings.py), which the
verification service writes in the same transaction as its own encrypted record of each proceeding. Why
not the audit log: the workflow's audit event for a proceeding (add_note) carries only the record's id,
never its content, and putting outcomes into the workflow would change what CaseWorkflow records for
running cases; the read model holds exactly the keys and dates the KPIs need and nothing personal.

A date (a Vietnamese calendar date) is in the period [from, to) when its midnight in Vietnam is; "by the
end of the period" means its midnight is before `to`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from shared.db import Conn


@dataclass(frozen=True)
class CriminalJusticeCounts:
    reports_received: int  # crime reports received in the period
    reports_decided: int  # of those, a decision to open a criminal case or not by the end
    cases_opened: int  # criminal cases opened (khởi tố) in the period
    cases_solved: int  # of those, investigation concluded as solved by the end
    cases_at_procuracy: (
        int  # investigations concluded as solved in the period (sent to the procuracy)
    )
    cases_indicted: int  # of those, indicted by the end
    cases_indicted_in_period: int  # indictments in the period (cases at court)
    cases_tried: int  # of those, tried (a verdict) by the end
    at_procuracy_tried: int  # of cases_at_procuracy, indicted and tried by the end


def _vn(column: str) -> str:
    return f"({column}::timestamp AT TIME ZONE 'Asia/Ho_Chi_Minh')"


async def counts(
    conn: Conn, province: str | None, start: datetime, end: datetime
) -> CriminalJusticeCounts:
    def within(col: str) -> str:
        return f"({_vn(col)} >= $2 AND {_vn(col)} < $3)"

    def by_end(col: str) -> str:
        return f"({col} IS NOT NULL AND {_vn(col)} < $3)"

    row = await conn.fetchrow(
        f"""SELECT
              count(*) FILTER (WHERE {within("report_received_on")}) AS reports_received,
              count(*) FILTER (WHERE {within("report_received_on")} AND {by_end("decided_on")})
                AS reports_decided,
              count(*) FILTER (WHERE decision = 'opened' AND {within("decided_on")}) AS cases_opened,
              count(*) FILTER (WHERE decision = 'opened' AND {within("decided_on")}
                               AND investigation = 'solved' AND {by_end("investigated_on")}) AS cases_solved,
              count(*) FILTER (WHERE investigation = 'solved' AND {within("investigated_on")})
                AS cases_at_procuracy,
              count(*) FILTER (WHERE investigation = 'solved' AND {within("investigated_on")}
                               AND prosecution = 'indicted' AND {by_end("prosecuted_on")}) AS cases_indicted,
              count(*) FILTER (WHERE prosecution = 'indicted' AND {within("prosecuted_on")})
                AS cases_indicted_in_period,
              count(*) FILTER (WHERE prosecution = 'indicted' AND {within("prosecuted_on")}
                               AND {by_end("tried_on")}) AS cases_tried,
              count(*) FILTER (WHERE investigation = 'solved' AND {within("investigated_on")}
                               AND prosecution = 'indicted' AND {by_end("tried_on")}) AS at_procuracy_tried
           FROM common.criminal_proceedings
           WHERE $1::text IS NULL OR province = $1""",
        province,
        start,
        end,
    )
    assert row is not None
    return CriminalJusticeCounts(**{k: int(v) for k, v in dict(row).items()})
