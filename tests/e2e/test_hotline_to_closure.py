"""A hotline 111 report from intake to closure, over HTTP only, against the real `nrm up` stack (embedded
PostgreSQL, Temporal dev server, the four services, the workflow worker): intake opens and classifies,
verification verifies, identifies (police, with evidence) and decides protection, support records consent,
the support plan, services (one refused as not entitled), a legal-aid referral that legal aid accepts, the
three follow-ups and the closure. Oversight then shows every step in order with its actor, an intact hash
chain and a closed case summary. Each step uses the agency the policy file names as the stage owner."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import yaml

from shared.domain import AgencyRole, Role
from tests.helpers.process_stack import PROVINCE, RunningStack, running_stack

pytestmark = pytest.mark.e2e

A = AgencyRole
EVENT_WAIT = 60.0  # seconds for the audit projection to catch up (it runs as a Temporal activity)


def _no_reflection_period(policy: dict[str, Any]) -> None:
    # The 30-day reflection and recovery period (CoE Art. 13) starts when verification is confirmed and
    # blocks closure until it has run out, in real time: a real stack cannot skip 30 days. This stack
    # runs with a copy of shared/policy.yaml (NRM_POLICY_FILE) in which the period is switched off;
    # the rest of the policy (stage owners, deadlines, follow-ups at 3/6/12 months) is unchanged.
    policy["reflection_period"]["enabled"] = False


@pytest.fixture(scope="module")
def stack() -> Iterator[RunningStack]:
    with running_stack(_no_reflection_period) as s:
        yield s


@pytest.fixture(scope="module")
def http(stack: RunningStack) -> Iterator[dict[str, httpx.Client]]:
    clients = {
        name: stack.client(name) for name in ("intake", "verification", "support", "oversight")
    }
    try:
        yield clients
    finally:
        for c in clients.values():
            c.close()


def ok(r: httpx.Response, status: int = 200) -> Any:
    assert r.status_code == status, (
        f"{r.request.method} {r.request.url} -> {r.status_code}: {r.text}"
    )
    return r.json()


HOTLINE_REPORT: dict[str, Any] = {
    "channel": "hotline_111",
    "province": PROVINCE,
    "abroad": False,
    "already_safe": True,
    "person": {
        "prs_FirstName": "Mai",
        "prs_MiddleName": "Thị",
        "prs_SecondName": "Trần",
        "birth_year": 1999,
        "prs_Gender": "Feminine",
        "prs_Citizenship": ["VN"],
        "prs_PrimaryLanguage": "vie",
        "prs_MaritalStatus": "Single",
        "prs_HighestLevelOfEducation": "UpperSecondaryEducation",
        "prs_IdentityNumber": "001199033333",
        "prs_MobilePhone": "0987654321",
        "vic_AgreementToManagePersonalData": True,
    },
    "victim": {
        "vic_TypeOfExploitation": ["ForcedLabour"],
        "vic_ForcedLabourIndustry": "C_Manufacturing",
        "vic_MethodOfRecruitment": ["ThroughOnlineSocialNetworks"],
        "vic_RecruitmentWebsitesAndApps": ["Facebook"],
        "vic_MethodsOfControl": ["TakesEarnings"],
        "vic_RelationshipToTrafficker": "Unaquainted",
    },
    "events": [
        {"hte_Type": "Recruitment", "hte_Country": "VN"},
        {"hte_Type": "Exploitation", "hte_Country": "KH"},
    ],
    "report": {
        "summary": "Caller says she was recruited online for factory work and her wages were withheld; "
        "she got away and is back with her family.",
        "received_at": datetime.now(UTC).isoformat(),
    },
    "con_Consent": True,
}


def test_hotline_report_to_closure(stack: RunningStack, http: dict[str, httpx.Client]) -> None:
    intake, ver, sup, ovs = http["intake"], http["verification"], http["support"], http["oversight"]
    # the agencies that own each stage of a hotline case, as the policy file in use says
    owners = _stage_owners(stack, "hotline_111")
    assert owners == {
        "verify": A.social_protection,
        "identify": A.police,
        "protect": A.social_protection,
        "reintegrate": A.social_protection,
    }
    hotline = stack.auth(A.hotline, user="hotline-op-7")
    sp = stack.auth(owners["verify"], user="sp-worker-3")
    police = stack.auth(owners["identify"], user="police-inv-12")
    legal = stack.auth(A.legal_aid, user="legal-aid-2")
    sp_supervisor = stack.auth(A.social_protection, Role.supervisor, user="sp-supervisor-1")
    auditor = stack.auth(A.steering_committee, Role.auditor, user="auditor-1", province="*")
    today = date.today().isoformat()

    # ---- intake: the hotline operator opens the case and classifies the report --------------------
    opened = ok(
        intake.post(
            "/cases", json=HOTLINE_REPORT, headers={**hotline, "Idempotency-Key": "call-0001"}
        ),
        201,
    )
    cid = opened["case_id"]
    assert opened["created"] and opened["workflow_started"] and opened["age_band"] == "adult"
    assert opened["duplicates"] == []
    view = ok(intake.get(f"/cases/{cid}", headers=hotline))
    assert (
        view["facts"]["channel"] == "hotline_111" and view["facts"]["opened_by_agency"] == "hotline"
    )
    assert view["workflow"]["stage"] == "receive" and view["workflow"]["owner_agency"] == "hotline"
    person = ok(
        intake.get(f"/cases/{cid}/person", params={"purpose": "classify the call"}, headers=hotline)
    )
    assert person["person_identity"]["prs_SecondName"] == "Trần"
    assert person["report"]["victim"]["vic_TypeOfExploitation"] == ["ForcedLabour"]

    state = ok(
        intake.post(
            f"/cases/{cid}/classify",
            headers=hotline,
            json={
                "classification": "trafficking_suspected",
                "justification": "online recruitment, wages withheld",
                "expected_version": view["workflow"]["version"],
            },
        )
    )
    # verify: a person who comes forward is verified by social protection (policy.yaml stage_owners.verify)
    assert state["stage"] == "verify" and state["owner_agency"] == "social_protection"
    assert state["deadline_at"] is not None and "verify" in state["deadline_source"]

    # the hotline no longer owns the stage: it may not verify
    r = ver.post(
        f"/cases/{cid}/verification",
        headers=hotline,
        json={"result": "confirmed", "justification": "not our stage"},
    )
    assert r.status_code == 403, r.text

    # ---- verification: social protection claims and confirms ------------------------------------
    case = ok(ver.post(f"/cases/{cid}/claim", headers=sp, json={}))
    assert case["assignee"] == "sp-worker-3" and case["stage"] == "verify"
    case = ok(
        ver.post(
            f"/cases/{cid}/verification",
            headers={**sp, "Idempotency-Key": "verify-1"},
            json={
                "result": "confirmed",
                "justification": "call-back and commune check on day 1",
                "expected_version": case["version"],
            },
        )
    )
    assert case["stage"] == "identify" and case["owner_agency"] == "police"
    assert {"hotline", "social_protection"} <= set(case["participants"])

    # ---- identification by the police, with evidence ---------------------------------------------
    # a victim cannot be identified without evidence (Art. 32): 422 before anything reaches the workflow
    r = ver.post(
        f"/cases/{cid}/identification",
        headers=police,
        json={
            "status": "ActualVictimOfTrafficking",
            "deciding_org": "Police",
            "justification": "no evidence yet",
        },
    )
    assert r.status_code == 422 and "evidence" in r.text
    case = ok(ver.post(f"/cases/{cid}/claim", headers=police, json={}))
    ident = ok(
        ver.post(
            f"/cases/{cid}/identification",
            headers={**police, "Idempotency-Key": "ident-1"},
            json={
                "status": "ActualVictimOfTrafficking",
                "deciding_org": "Police",
                "evidence": [
                    {
                        "kind": "statement_of_person",
                        "source": "district police interview",
                        "date": today,
                        "reference": "BB-31/2026",
                    },
                    {
                        "kind": "criminal_justice_material",
                        "source": "bank transfer records",
                        "date": today,
                    },
                ],
                "justification": "statement and payment records consistent",
                "expected_version": case["version"],
            },
        )
    )
    case = ident["case"]
    assert len(ident["evidence_ids"]) == 2
    assert case["trafficking_status"] == "ActualVictimOfTrafficking"
    # already safe: rescue is skipped, protection is social protection's
    assert case["stage"] == "protect" and case["owner_agency"] == "social_protection"
    evidence = ok(ver.get(f"/cases/{cid}/evidence", headers=police))
    assert evidence["total"] == 2 and {e["kind"] for e in evidence["items"]} == {
        "statement_of_person",
        "criminal_justice_material",
    }

    # ---- protection: a supervisor assigns it, the caseworker decides the measures --------------------
    assigned = ok(
        ovs.post(
            f"/cases/{cid}/reassign",
            headers=sp_supervisor,
            json={"assignee_user_id": "sp-worker-3", "expected_version": case["version"]},
        )
    )
    assert assigned["assignee"] == "sp-worker-3"
    prot = ok(
        ver.post(
            f"/cases/{cid}/protection",
            headers=sp,
            json={
                "measures": ["safe_shelter", "personal_information_protection"],
                "justification": "recruiter knows the family address",
                "expected_version": assigned["version"],
            },
        )
    )
    case = prot["case"]
    assert prot["refusal_document_id"] is None
    assert case["stage"] == "reintegrate" and case["owner_agency"] == "social_protection"

    # ---- support: consents, plan, services, legal aid, follow-ups, closure -------------------------
    consent_doc = {"kind": "signed_form", "signed_on": today, "reference": "DY-11/2026"}
    got = ok(
        sup.post(
            f"/cases/{cid}/consents",
            headers=sp,
            json={"purpose": "support", "granted": True, "document": consent_doc},
        ),
        201,
    )
    assert got["current"] == {"support": True}
    got = ok(
        sup.post(
            f"/cases/{cid}/consents",
            headers=sp,
            json={
                "purpose": "data_sharing",
                "agency": "legal_aid",
                "granted": True,
                "document": consent_doc,
            },
        ),
        201,
    )
    assert got["current"] == {"support": True, "data_sharing:legal_aid": True}

    plan = ok(
        sup.post(
            f"/cases/{cid}/support-plan",
            headers=sp,
            json={
                "spl_Objectives": "safe housing, recover withheld wages, vocational course",
                "spl_ActionPlan": "monthly visits by the commune officer",
                "spl_Type": ["SocialCare", "Legal", "Livelihood"],
                "spl_PlannedEndDate": (date.today() + timedelta(days=400)).isoformat(),
            },
        ),
        201,
    )
    assert plan["current"] and plan["spl_Type"] == ["SocialCare", "Legal", "Livelihood"]

    rights = ok(sup.get(f"/cases/{cid}/entitlements", headers=sp))
    assert rights["status_column"] == "victim"
    assert all(i["entitled"] == "yes" for i in rights["items"])
    service = {
        "service_type": "essential_needs",
        "provider_agency": "social_protection",
        "provider_name": "Provincial social protection centre",
        "delivered_on": today,
    }
    delivered = ok(
        sup.post(
            f"/cases/{cid}/services", headers={**sp, "Idempotency-Key": "svc-1"}, json=service
        ),
        201,
    )
    assert delivered["entitled"] == "yes" and delivered["letter"] == "a"
    # her accompanying child is not entitled to vocational training (Art. 37 table): refused with the reason
    r = sup.post(
        f"/cases/{cid}/services",
        headers=sp,
        json={
            **service,
            "service_type": "vocational_training",
            "beneficiary": "accompanying_child",
        },
    )
    assert r.status_code == 422, r.text
    assert (
        r.json()["detail"].startswith("service_type: vocational_training")
        and "child_with_victim" in r.text
    )
    services = ok(sup.get(f"/cases/{cid}/services", headers=sp))
    assert [s["service_type"] for s in services["items"]] == ["essential_needs"]

    referral = ok(
        sup.post(
            f"/cases/{cid}/legal-aid-referral",
            headers=sp,
            json={"reason": "claim for the withheld wages"},
        ),
        201,
    )
    handoff = referral["handoff"]
    assert (
        handoff["to_agency"] == "legal_aid"
        and handoff["state"] == "requested"
        and handoff["kind"] == "referral"
    )
    # only legal aid answers its referral
    r = sup.post(
        f"/handoffs/{cid}/{handoff['handoff_id']}/respond", headers=sp, json={"accept": True}
    )
    assert r.status_code == 403, r.text
    accepted = ok(
        sup.post(
            f"/handoffs/{cid}/{handoff['handoff_id']}/respond", headers=legal, json={"accept": True}
        )
    )
    assert accepted["handoff"]["state"] == "accepted"
    handoffs = ok(sup.get(f"/cases/{cid}/handoffs", headers=legal))
    assert [h["state"] for h in handoffs["items"]] == ["accepted"]

    # closing with follow-ups pending is refused
    r = sup.post(f"/cases/{cid}/closure", headers=sp, json={"reason": "reintegrated"})
    assert r.status_code == 409 and "follow-ups still pending" in r.text
    follow_ups = ok(sup.get(f"/cases/{cid}/follow-ups", headers=sp))
    assert [f["follow_up_id"] for f in follow_ups["items"]] == ["fu-3m", "fu-6m", "fu-12m"]
    dues = [datetime.fromisoformat(f["due_at"]) for f in follow_ups["items"]]
    assert dues == sorted(dues) and dues[0] > datetime.now(UTC) + timedelta(days=80)
    for f, outcome in zip(follow_ups["items"], ("done", "not_reachable", "done"), strict=True):
        rec = ok(
            sup.post(
                f"/cases/{cid}/follow-ups/{f['follow_up_id']}",
                headers=sp,
                json={"outcome": outcome, "note": "home visit"},
            )
        )
        assert rec["outcome"] == outcome and rec["note_id"]
    assert (
        ok(sup.get(f"/cases/{cid}/follow-ups", params={"pending": "true"}, headers=sp))["total"]
        == 0
    )

    closed = ok(
        sup.post(
            f"/cases/{cid}/closure",
            headers=sp,
            json={"reason": "reintegrated: working, wages case with legal aid"},
        )
    )
    assert closed["plan_id"] == plan["plan_id"]
    assert closed["case"]["status"] == "Closed" and closed["case"]["stage"] == "closed"
    assert closed["case"]["services_delivered"] == 1
    assert ok(intake.get(f"/cases/{cid}", headers=hotline))["workflow"]["status"] == "Closed"

    # ---- oversight: the whole story, in order, with actors --------------------------------------
    expected = [
        ("case_opened", "hotline-op-7", "hotline", "receive"),
        ("stage_decided", "hotline-op-7", "hotline", "verify"),
        ("stage_claimed", "sp-worker-3", "social_protection", "verify"),
        ("stage_decided", "sp-worker-3", "social_protection", "identify"),
        ("stage_claimed", "police-inv-12", "police", "identify"),
        ("stage_decided", "police-inv-12", "police", "protect"),
        ("stage_assigned", "sp-supervisor-1", "social_protection", "protect"),
        ("stage_decided", "sp-worker-3", "social_protection", "reintegrate"),
        ("consent_recorded", "sp-worker-3", "social_protection", "reintegrate"),
        ("consent_recorded", "sp-worker-3", "social_protection", "reintegrate"),
        ("note_added", "sp-worker-3", "social_protection", "reintegrate"),
        ("service_delivered", "sp-worker-3", "social_protection", "reintegrate"),
        ("handoff_requested", "sp-worker-3", "social_protection", "reintegrate"),
        ("handoff_accepted", "legal-aid-2", "legal_aid", "reintegrate"),
        ("follow_up_recorded", "sp-worker-3", "social_protection", "reintegrate"),
        ("follow_up_recorded", "sp-worker-3", "social_protection", "reintegrate"),
        ("follow_up_recorded", "sp-worker-3", "social_protection", "reintegrate"),
        ("stage_decided", "sp-worker-3", "social_protection", "closed"),
    ]
    history = _history(ovs, auditor, cid, len(expected))
    assert [
        (e["kind"], e["actor_user_id"], e["actor_agency"], e["stage"]) for e in history
    ] == expected
    assert [e["seq"] for e in history] == list(range(1, len(expected) + 1))
    assert all(e["policy_version"] == "VN-2026.11-1" for e in history)
    times = [datetime.fromisoformat(e["occurred_at"]) for e in history]
    assert times == sorted(times)
    decisions = [e["data"]["decision"] for e in history if e["kind"] == "stage_decided"]
    assert [d["stage"] for d in decisions] == [
        "receive",
        "verify",
        "identify",
        "protect",
        "reintegrate",
    ]
    assert (
        decisions[2]["status"] == "ActualVictimOfTrafficking" and len(decisions[2]["evidence"]) == 2
    )
    assert decisions[3]["measures"] == ["safe_shelter", "personal_information_protection"]
    by_kind = {e["kind"]: e for e in history}
    assert by_kind["service_delivered"]["data"]["service_type"] == "essential_needs"
    assert by_kind["stage_decided"]["reason"] == "reintegrated: working, wages case with legal aid"
    assert "reflection_until" not in history[3]["data"]  # the period is off in this stack's policy

    chain = ok(ovs.get("/audit/verify", params={"case_id": cid}, headers=auditor))
    assert chain["ok"] and chain["checked"] == 1 and chain["broken"] == []
    assert chain["results"][0]["events"] == len(expected)

    as_of = ok(
        ovs.get(
            f"/cases/{cid}/as-of", params={"at": datetime.now(UTC).isoformat()}, headers=auditor
        )
    )
    assert as_of["event_seq"] == len(expected)
    assert as_of["state"]["status"] == "Closed" and as_of["state"]["outcome"] == "reintegrated"

    summary = _case_summary(stack, cid)
    assert (
        summary["status"] == "Closed"
        and summary["stage"] == "closed"
        and summary["outcome"] == "reintegrated"
    )

    # a caseworker gets nothing from oversight
    assert ovs.get(f"/cases/{cid}/history", headers=sp).status_code == 403


def _stage_owners(stack: RunningStack, channel: str) -> dict[str, AgencyRole]:
    policy = yaml.safe_load(Path(stack.env["NRM_POLICY_FILE"]).read_text(encoding="utf-8"))
    owners = policy["stage_owners"]
    return {
        stage: AgencyRole(owners[stage].get(channel, owners[stage]["default"]))
        for stage in ("verify", "identify", "protect", "reintegrate")
    }


def _history(
    ovs: httpx.Client, auditor: dict[str, str], cid: str, count: int
) -> list[dict[str, Any]]:
    """The case's audit events once `count` of them are recorded (the projection is asynchronous)."""
    deadline = time.monotonic() + EVENT_WAIT
    while True:
        page = ok(ovs.get(f"/cases/{cid}/history", params={"limit": 200}, headers=auditor))
        if page["total"] >= count or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert page["next_offset"] is None and page["total"] == len(page["items"])
    return list(page["items"])


def _case_summary(stack: RunningStack, cid: str) -> dict[str, Any]:
    """oversight.case_summary, the projection the board and stuck lists read, straight from PostgreSQL."""
    import asyncio

    async def fetch() -> dict[str, Any]:
        conn = await asyncpg.connect(stack.state()["database_url"])
        try:
            row = await conn.fetchrow(
                "SELECT stage, status, outcome FROM oversight.case_summary WHERE case_id = $1", cid
            )
            assert row is not None, f"no case_summary row for {cid}"
            return dict(row)
        finally:
            await conn.close()

    return asyncio.run(fetch())
