"""KPIs (docs/reference/DOMAIN.md §5, formulas in services/oversight/kpis.yaml) against hand-computed figures, and the
steering-committee reports with small-cell suppression."""

from __future__ import annotations

import asyncio
import csv
import io
from datetime import timedelta

import pytest

from services.oversight.models import ReportKind
from services.oversight.reports import VN, period_end
from shared import criminal_proceedings as cp
from shared.contract import (
    Classification,
    Decide,
    EvidenceKind,
    EvidenceRef,
    IdentifyDecision,
    ProtectDecision,
    ReceiveDecision,
    RecordService,
    VerifyDecision,
    VerifyResult,
)
from shared.domain import AgencyRole, Channel, DecisionMakingOrg, Role, TraffickingStatus
from tests.conftest import new_case_id
from tests.helpers.oversight_stack import auth, oversight_api
from tests.helpers.workflow_harness import actor, facts, running_workers
from workflows.case_workflow import CaseWorkflow

HOTLINE, SP, POLICE, EMBASSY = (
    actor(AgencyRole.hotline),
    actor(AgencyRole.social_protection),
    actor(AgencyRole.police),
    actor(AgencyRole.embassy),
)
H = 1 / 60  # tolerance: one minute, in hours


def receive(who, channel=Channel.hotline_111, c=Classification.trafficking_suspected) -> Decide:
    return Decide(
        actor=who,
        justification="classified",
        decision=ReceiveDecision(classification=c, channel=channel),
    )


def verify(result) -> Decide:
    return Decide(
        actor=SP if result else POLICE,
        justification="police reply",
        decision=VerifyDecision(result=result),
    )


async def test_kpis_and_reports(ts_env, db_pool, ring, task_queue):
    async with (
        running_workers(ts_env.client, db_pool, ring, task_queue) as h,
        oversight_api(ts_env, db_pool, ring) as api,
    ):
        t0 = await ts_env.get_current_time()
        k = {}
        for name, kw in (
            ("K1", {}),
            ("K2", {}),
            ("K3", {}),
            (
                "K4",
                {
                    "channel": Channel.embassy_repatriation,
                    "abroad": True,
                    "opener": AgencyRole.embassy,
                },
            ),
            (
                "K5",
                {
                    "channel": Channel.embassy_repatriation,
                    "abroad": True,
                    "opener": AgencyRole.embassy,
                },
            ),
        ):
            k[name] = await h.open(facts(new_case_id(), now=t0, **kw))
        # t0: K1, K2 classified suspected -> verify (social protection, 3 days); K3 not relevant -> closed;
        # K4 returnee classified -> verify (police), supported at once; K5 returnee never classified
        await k["K1"].execute_update(CaseWorkflow.decide, receive(HOTLINE))
        await k["K2"].execute_update(CaseWorkflow.decide, receive(HOTLINE))
        await k["K3"].execute_update(
            CaseWorkflow.decide, receive(HOTLINE, c=Classification.not_relevant)
        )
        await k["K4"].execute_update(
            CaseWorkflow.decide, receive(EMBASSY, Channel.embassy_repatriation)
        )
        await k["K4"].execute_update(
            CaseWorkflow.record_service,
            RecordService(actor=POLICE, service_id="svc-1", service_type="essential_needs"),
        )
        # t0 + 1 day: K1 verified (24 h, on time), K2 unfounded (24 h, on time) -> closed
        await ts_env.sleep(timedelta(days=1))
        await k["K1"].execute_update(
            CaseWorkflow.decide,
            Decide(
                actor=SP,
                justification="police reply",
                decision=VerifyDecision(result=VerifyResult.confirmed),
            ),
        )
        await k["K2"].execute_update(
            CaseWorkflow.decide,
            Decide(
                actor=SP,
                justification="police reply",
                decision=VerifyDecision(result=VerifyResult.unfounded),
            ),
        )
        # t0 + 4 days: K4 verified by police (96 h, 1 day late); K1 identified (72 h) -> protect -> reintegrate
        await ts_env.sleep(timedelta(days=3))
        await k["K4"].execute_update(
            CaseWorkflow.decide,
            Decide(
                actor=POLICE,
                justification="MPS identity check",
                decision=VerifyDecision(result=VerifyResult.confirmed),
            ),
        )
        await k["K1"].execute_update(
            CaseWorkflow.decide,
            Decide(
                actor=POLICE,
                justification="statements",
                decision=IdentifyDecision(
                    status=TraffickingStatus.ActualVictimOfTrafficking,
                    deciding_org=DecisionMakingOrg.Police,
                    evidence=[
                        EvidenceRef(evidence_id="ev-1", kind=EvidenceKind.statement_of_person)
                    ],
                ),
            ),
        )
        await k["K1"].execute_update(
            CaseWorkflow.decide,
            Decide(
                actor=SP,
                justification="shelter",
                decision=ProtectDecision(measures=["safe_shelter"]),
            ),
        )
        # wait until every event has landed in the audit log
        for name, n in (("K1", 5), ("K2", 3), ("K3", 2), ("K4", 4), ("K5", 1)):
            await h.events(k[name].id, n)
        end = await ts_env.get_current_time()
        period = {
            "province": "01",
            "from": (t0 - timedelta(hours=1)).isoformat(),
            "to": (end + timedelta(hours=1)).isoformat(),
        }
        # a report leaving the province covers whole calendar months (Vietnam time)
        m0 = (
            (t0 - timedelta(hours=1))
            .astimezone(VN)
            .replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        )
        months = {
            "province": "01",
            "from": m0.isoformat(),
            "to": period_end(ReportKind.six_monthly, m0).isoformat(),
        }
        sup = auth(ring, Role.supervisor)

        r = await api.get("/kpis", params=period, headers=sup)
        assert r.status_code == 200, r.text
        body = r.json()
        ratios = {x["id"]: x for x in body["ratios"]}
        # received 5; classified: all but K5
        assert (
            ratios["reports_classified"]["numerator"],
            ratios["reports_classified"]["denominator"],
        ) == (4, 5)
        assert (
            ratios["reports_classified"]["value"] == 0.8
            and ratios["reports_classified"]["met"] is False
        )
        # resolved: K1 (identified as a victim), K2 (closed unfounded), K3 (closed not relevant)
        assert (
            ratios["resolution_rate"]["numerator"],
            ratios["resolution_rate"]["denominator"],
        ) == (3, 5)
        # (suspected) victims: K1 and K4 (K2 unfounded, K3 not relevant, K5 unclassified); full path: K1
        assert (
            ratios["victims_full_path"]["numerator"],
            ratios["victims_full_path"]["denominator"],
        ) == (1, 2)
        # returnees K4 (served at once) and K5 (not yet; its 7-day limit runs past the period: pending)
        rt = ratios["returnees_supported_in_time"]
        assert (rt["numerator"], rt["denominator"], rt["detail"]["pending"]) == (1, 2, 1)
        assert all(x["formula"] for x in body["ratios"])

        timing = {t["stage"]: t for t in body["time_in_stage"]}
        assert set(timing) == {"receive", "verify", "identify", "protect"}
        assert timing["receive"]["completed"] == 4 and timing["receive"]["p90_hours"] < H
        # verify took 24 h (K1), 24 h (K2), 96 h (K4): p50 = 24, p90 = 24 + 0.8 * (96 - 24) = 81.6
        assert timing["verify"]["completed"] == 3
        assert timing["verify"]["p50_hours"] == pytest.approx(24, abs=H)
        assert timing["verify"]["p90_hours"] == pytest.approx(81.6, abs=H)
        assert timing["identify"]["p50_hours"] == pytest.approx(72, abs=H)
        assert timing["protect"]["p50_hours"] == pytest.approx(0, abs=H)

        comp = {
            (c["stage"], c["agency"]): (c["completed"], c["on_time"])
            for c in body["deadline_compliance"]
        }
        assert comp == {
            ("receive", "hotline"): (3, 3),
            ("receive", "embassy"): (1, 1),
            ("verify", "social_protection"): (2, 2),
            ("verify", "police"): (1, 0),
            ("identify", "police"): (1, 1),
            ("protect", "social_protection"): (1, 1),
        }

        # a period that starts after the openings: nothing received; only the later stage decisions count
        later = {**period, "from": (t0 + timedelta(hours=1)).isoformat()}
        body = (await api.get("/kpis", params=later, headers=sup)).json()
        assert all(x["denominator"] == 0 and x["value"] is None for x in body["ratios"])
        assert {t["stage"]: t["completed"] for t in body["time_in_stage"]} == {
            "verify": 3,
            "identify": 1,
            "protect": 1,
        }

        # errors and access
        r = await api.get("/kpis", params={"province": "01", "from": period["from"]}, headers=sup)
        assert r.status_code == 422 and r.json()["detail"] == "to: required"
        r = await api.get("/kpis", params={**period, "to": period["from"]}, headers=sup)
        assert r.status_code == 422 and r.json()["detail"].startswith("to:")
        assert (
            await api.get("/kpis", params=period, headers=auth(ring, Role.caseworker))
        ).status_code == 403
        assert (
            await api.get(
                "/kpis", params=period, headers=auth(ring, Role.supervisor, province="79")
            )
        ).status_code == 403
        assert (
            await api.get("/kpis", params=period, headers=auth(ring, Role.auditor, province="*"))
        ).status_code == 200

        # ---- reports ---------------------------------------------------------------------------
        r = await api.get("/reports/ad_hoc", params={**period, "format": "json"}, headers=sup)
        assert r.status_code == 200, r.text
        rep = r.json()
        assert rep["suppressed"] is False and rep["received"] == 5
        assert rep["by_channel"] == {"embassy_repatriation": 2, "hotline_111": 3}
        assert rep["by_category"] == {"abroad": 2, "adult": 5, "domestic": 3}
        assert rep["outcomes"] == {
            "not_relevant": 1,
            "open:identify": 1,
            "open:receive": 1,
            "open:reintegrate": 1,
            "unfounded": 1,
        }
        # inside the province nothing is suppressed; outside (external=true, or another province) small cells are
        r = await api.get("/reports/ad_hoc", params={**period, "external": "true"}, headers=sup)
        assert r.status_code == 422 and r.json()["detail"].startswith(
            "from: a report outside your jurisdiction"
        )
        r = await api.get("/reports/ad_hoc", params={**months, "external": "true"}, headers=sup)
        ext = r.json()
        assert ext["suppressed"] is True and ext["received"] == 5
        assert ext["by_category"] == {"abroad": "<5", "adult": 5, "domestic": "<5"}
        classified = next(x for x in ext["kpis"] if x["id"] == "reports_classified")
        assert (
            classified["numerator"] == "<5"
            and classified["denominator"] == 5
            and classified["value"] == "<5"
        )
        other = await api.get(
            "/reports/ad_hoc", params=months, headers=auth(ring, Role.supervisor, province="79")
        )
        assert other.status_code == 200 and other.json()["suppressed"] is True
        national = await api.get(
            "/reports/ad_hoc", params=months, headers=auth(ring, Role.auditor, province="*")
        )
        assert (
            national.json()["suppressed"] is True
        )  # a national export of a province's report leaves it

        r = await api.get("/reports/ad_hoc", params={**period, "format": "csv"}, headers=sup)
        assert r.headers["content-type"].startswith("text/csv")
        rows = [
            row[:4] for row in csv.reader(io.StringIO(r.text))
        ]  # then the labels (test_reports_committee.py)
        assert rows[0] == ["section", "key", "column", "value"]
        assert ["kpis", "reports_classified", "numerator", "4"] in rows
        assert ["received", "total", "count", "5"] in rows
        r = await api.get(
            "/reports/ad_hoc", params={**months, "format": "csv", "external": "true"}, headers=sup
        )
        assert ["kpis", "reports_classified", "numerator", "<5"] in [
            row[:4] for row in csv.reader(io.StringIO(r.text))
        ]

        r = await api.get("/reports/ad_hoc", params={**period, "format": "html"}, headers=sup)
        assert r.headers["content-type"].startswith("text/html")
        assert (
            "Ban Chỉ đạo 138" in r.text
            and "Báo cáo đột xuất" in r.text
            and '<html lang="vi">' in r.text
        )
        r = await api.get(
            "/reports/ad_hoc",
            params={**months, "format": "html", "lang": "en", "external": "true"},
            headers=sup,
        )
        assert (
            "Ad hoc report" in r.text and "Steering Committee 138" in r.text and "&lt;5" in r.text
        )

        r = await api.get("/reports/six_monthly", params={"province": "01"}, headers=sup)
        assert r.status_code == 200
        assert r.json()["period_from"][5:10] in ("01-01", "07-01")
        r = await api.get(
            "/reports/annual",
            params={"province": "01", "from": "2026-01-01T00:00:00+07:00"},
            headers=sup,
        )
        assert r.json()["period_to"].startswith("2027-01-01")
        assert (
            await api.get("/reports/ad_hoc", params={"province": "01"}, headers=sup)
        ).status_code == 422
        assert (await api.get("/reports/monthly", params=period, headers=sup)).status_code == 422
        assert (
            await api.get("/reports/ad_hoc", params=period, headers=auth(ring, Role.caseworker))
        ).status_code == 403
        for hd in k.values():
            await hd.terminate()


async def test_returnee_and_criminal_justice_kpis(ts_env, db_pool, ring, task_queue):
    """Issue 15 items 1 and 2 on a built data set, figures computed by hand. Returnees: border-guard and
    coast-guard handovers and self-returns count, unfounded and not-trafficking cases are left out. The
    criminal-justice figures read common.criminal_proceedings, written here by the same functions the
    verification service calls (tests/integration/test_proceedings.py checks what its API writes there)."""
    border, coast = actor(AgencyRole.border_guard), actor(AgencyRole.coast_guard)
    async with (
        running_workers(ts_env.client, db_pool, ring, task_queue) as h,
        oversight_api(ts_env, db_pool, ring) as api,
    ):
        t0 = await ts_env.get_current_time()
        c = {
            name: await h.open(facts(new_case_id(), now=t0, **kw))
            for name, kw in (
                (
                    "R1",
                    {"channel": Channel.border_guard_handover, "opener": AgencyRole.border_guard},
                ),
                ("R2", {"channel": Channel.coast_guard_handover, "opener": AgencyRole.coast_guard}),
                ("R3", {"channel": Channel.walk_in, "abroad": True}),  # came back by themselves
                (
                    "R4",
                    {
                        "channel": Channel.embassy_repatriation,
                        "abroad": True,
                        "opener": AgencyRole.embassy,
                    },
                ),
                ("R5", {}),  # a hotline call in Vietnam: not a returnee
                (
                    "R6",
                    {"channel": Channel.border_guard_handover, "opener": AgencyRole.border_guard},
                ),
            )
        }
        await c["R1"].execute_update(
            CaseWorkflow.decide, receive(border, Channel.border_guard_handover)
        )
        await c["R2"].execute_update(
            CaseWorkflow.decide, receive(coast, Channel.coast_guard_handover)
        )
        await c["R3"].execute_update(CaseWorkflow.decide, receive(HOTLINE, Channel.walk_in))
        await c["R4"].execute_update(
            CaseWorkflow.decide, receive(EMBASSY, Channel.embassy_repatriation)
        )
        await c["R6"].execute_update(
            CaseWorkflow.decide,
            receive(border, Channel.border_guard_handover, c=Classification.not_relevant),
        )
        # R1 supported at once (in time); R4 found unfounded by the police (left out)
        await c["R1"].execute_update(
            CaseWorkflow.record_service,
            RecordService(actor=border, service_id="svc-r1", service_type="essential_needs"),
        )
        await c["R4"].execute_update(
            CaseWorkflow.decide,
            Decide(
                actor=POLICE,
                justification="no sign of trafficking",
                decision=VerifyDecision(result=VerifyResult.unfounded),
            ),
        )
        # day 8: R3 supported, a day after its 7-day limit (late); R2 never supported
        await ts_env.sleep(timedelta(days=8))
        await c["R3"].execute_update(
            CaseWorkflow.record_service,
            RecordService(actor=SP, service_id="svc-r3", service_type="medical_care"),
        )
        for name in c:
            await h.events(c[name].id, 1)
        await _landed(h, c["R3"].id, "service_delivered")
        await _landed(h, c["R4"].id, "stage_decided", 2)
        end = await ts_env.get_current_time()

        # criminal proceedings: day n = the Vietnamese calendar date of t0 + n days (in the period for
        # n = 1..7: its midnight in Vietnam is after t0; n = -1 is before the period, n = 30 after it)
        def day(n: int):
            return (t0 + timedelta(days=n)).astimezone(VN).date()

        S = cp.Step
        built = {
            "P1": ("01", 1, [(S.decision, "opened", 2), (S.investigation, "solved", 3),
                             (S.prosecution, "indicted", 4), (S.trial, "convicted", 5)]),
            "P2": ("01", 1, [(S.decision, "opened", 2), (S.investigation, "solved", 3),
                             (S.prosecution, "indicted", 4)]),
            "P3": ("01", 1, [(S.decision, "opened", 2), (S.investigation, "solved", 3)]),
            "P4": ("01", 1, [(S.decision, "opened", 2), (S.investigation, "suspended", 3)]),
            "P5": ("01", 1, [(S.decision, "not_opened", 2)]),
            "P6": ("01", 1, []),
            "P7": ("01", -1, [(S.decision, "opened", -1), (S.investigation, "solved", 2),
                              (S.prosecution, "indicted", 3), (S.trial, "acquitted", 30)]),
            "P8": ("79", 1, [(S.decision, "opened", 2)]),
        }  # fmt: skip
        for pid, (province, received, steps) in built.items():
            await cp.record_report(db_pool, pid, c["R1"].id, province, day(received))
            for step, outcome, n in steps:
                await cp.record_step(db_pool, pid, step, outcome, day(n))

        period = {
            "province": "01",
            "from": (t0 - timedelta(hours=1)).isoformat(),
            "to": (end + timedelta(hours=1)).isoformat(),
        }
        sup = auth(ring, Role.supervisor)
        by_lang = {}
        for lang in ("vi", "en"):
            r = await api.get("/kpis", params={**period, "lang": lang}, headers=sup)
            assert r.status_code == 200, r.text
            by_lang[lang] = {x["id"]: x for x in r.json()["ratios"]}
        ratios = by_lang["en"]

        def figures(kpi_id: str) -> tuple[int, int, bool | None]:
            x = ratios[kpi_id]
            return x["numerator"], x["denominator"], x["met"]

        # returnees: R1 (border guard), R2 (coast guard), R3 (self-return); R4 unfounded and R6 not
        # trafficking-related left out; R5 is not a returnee. In time: R1 only (R3 came a day late)
        rt = ratios["returnees_supported_in_time"]
        assert figures("returnees_supported_in_time") == (1, 3, False)
        assert rt["detail"]["not_victims_left_out"] == 2 and rt["detail"]["pending"] == 0
        assert "local practice" in rt["formula"] and "7 days" in rt["formula"]
        assert "thực tiễn địa phương" in by_lang["vi"]["returnees_supported_in_time"]["formula"]
        # crime reports received in the period: P1-P6 (P7 before it, P8 another province); decided: P1-P5
        assert figures("crime_reports_resolved") == (5, 6, False)
        # criminal cases opened in the period: P1-P4; solved by the end: P1-P3
        assert figures("criminal_cases_solved") == (3, 4, False)
        # at the procuracy (solved in the period): P1, P2, P3, P7; indicted: P1, P2, P7
        assert figures("criminal_cases_prosecuted") == (3, 4, False)
        # indicted in the period: P1, P2, P7; tried by the end: P1 (P7's trial comes after the period)
        assert figures("criminal_cases_tried") == (1, 3, False)
        assert figures("criminal_cases_prosecuted_and_tried") == (1, 4, False)
        assert ratios["criminal_cases_prosecuted"]["target"] == 0.95
        assert ratios["criminal_cases_solved"]["comparison"] == ">"
        # titles say what each figure counts, in both languages
        assert by_lang["vi"]["criminal_cases_solved"]["title"] == (
            "Tỷ lệ điều tra, khám phá các vụ án mua bán người"
        )
        assert by_lang["vi"]["crime_reports_resolved"]["title"] == (
            "Tỷ lệ giải quyết tố giác, tin báo về tội phạm mua bán người"
        )
        assert by_lang["en"]["criminal_cases_tried"]["title"] == (
            "Share of indicted trafficking criminal cases that were tried"
        )
        assert "NRM cases" in by_lang["en"]["reports_classified"]["title"]
        assert "hồ sơ vụ việc" in by_lang["vi"]["resolution_rate"]["title"]
        assert all(x["title"].startswith("Tỷ lệ ") for x in by_lang["vi"].values())

        # the whole country: P8 counts too (one more report received, one more case opened)
        r = await api.get(
            "/kpis",
            params={**period, "province": "*"},
            headers=auth(ring, Role.auditor, province="*"),
        )
        national = {x["id"]: x for x in r.json()["ratios"]}
        assert (
            national["crime_reports_resolved"]["denominator"],
            national["criminal_cases_solved"]["denominator"],
        ) == (7, 5)

        # the report lists them, with their keys in the CSV
        r = await api.get("/reports/ad_hoc", params={**period, "format": "csv"}, headers=sup)
        rows = [row[:4] for row in csv.reader(io.StringIO(r.text))]
        assert ["kpis", "criminal_cases_solved", "numerator", "3"] in rows
        assert ["kpis", "returnees_supported_in_time", "denominator", "3"] in rows
        for hd in c.values():
            await hd.terminate()


async def _landed(h, case_id: str, kind: str, n: int = 1) -> None:
    """Wait until the case has `n` audit events of `kind` (the audit activity runs after the Update)."""
    for _ in range(400):
        if sum(e["kind"] == kind for e in await h.events(case_id)) >= n:
            return
        await asyncio.sleep(0.05)
