"""Issue 18, end to end against the real `nrm up` stack, over HTTP only: a border-guard handover in Lạng Sơn
(20), verification there, a transfer to social protection of Nghệ An (40), acceptance, support and closure
there. Each step is checked from both provinces' tokens: who sees the case, who may act."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import pytest

from shared.domain import AgencyRole, Role
from tests.helpers.process_stack import RunningStack, running_stack

pytestmark = pytest.mark.e2e

A = AgencyRole
LANG_SON, NGHE_AN = "20", "40"
WAIT = 60.0  # seconds for the audit projection and the case index to catch up


def _no_reflection_period(policy: dict[str, Any]) -> None:
    policy["reflection_period"]["enabled"] = (
        False  # a real stack cannot skip 30 days (see test_hotline_to_closure)
    )


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


def refused(r: httpx.Response) -> None:
    assert r.status_code == 403, f"{r.request.method} {r.request.url} -> {r.status_code}: {r.text}"


HANDOVER: dict[str, Any] = {
    "channel": "border_guard_handover",
    "province": LANG_SON,
    "abroad": False,
    "already_safe": True,
    "person": {
        "prs_FirstName": "Lan",
        "prs_MiddleName": "Thị",
        "prs_SecondName": "Hồ",
        "birth_year": 2001,
        "prs_Gender": "Feminine",
        "prs_Citizenship": ["VN"],
        "prs_PrimaryLanguage": "vie",
        "prs_IdentityNumber": "040301012345",
    },
    "victim": {"vic_TypeOfExploitation": ["ForcedMarriage"]},
    "events": [{"hte_Type": "Exploitation", "hte_Country": "CN"}],
    "report": {
        "summary": "Handed over at the Hữu Nghị border gate; she comes from Nghệ An.",
        "received_at": datetime.now(UTC).isoformat(),
    },
    "con_Consent": True,
}


def _until(fetch: Any, predicate: Any) -> Any:
    deadline = time.monotonic() + WAIT
    while True:
        value = fetch()
        if predicate(value) or time.monotonic() > deadline:
            return value
        time.sleep(0.3)


def test_border_handover_transferred_home_and_closed_there(
    stack: RunningStack, http: dict[str, httpx.Client]
) -> None:
    intake, ver, sup, ovs = http["intake"], http["verification"], http["support"], http["oversight"]
    bg = stack.auth(A.border_guard, user="bg-huu-nghi-1", province=LANG_SON)
    bg_sup = stack.auth(A.border_guard, Role.supervisor, user="bg-sup-20", province=LANG_SON)
    sp_20 = stack.auth(A.social_protection, user="sp-20", province=LANG_SON)
    sp_40 = stack.auth(A.social_protection, user="sp-nghe-an-1", province=NGHE_AN)
    sp_sup_40 = stack.auth(A.social_protection, Role.supervisor, user="sp-sup-40", province=NGHE_AN)
    police_40 = stack.auth(A.police, user="police-40", province=NGHE_AN)
    auditor = stack.auth(A.steering_committee, Role.auditor, user="auditor-138", province="*")
    today = date.today().isoformat()

    # ---- Lạng Sơn: the border guard receives and verifies -----------------------------------------
    cid = ok(
        intake.post("/cases", json=HANDOVER, headers={**bg, "Idempotency-Key": "handover-1"}), 201
    )["case_id"]
    state = ok(
        intake.post(
            f"/cases/{cid}/classify",
            headers=bg,
            json={
                "classification": "trafficking_suspected",
                "justification": "handed over by the Chinese police",
            },
        )
    )
    assert (state["stage"], state["owner_agency"], state["province"]) == (
        "verify",
        "border_guard",
        LANG_SON,
    )
    refused(intake.get(f"/cases/{cid}", headers=sp_40))  # Nghệ An knows nothing of it yet
    case = ok(ver.post(f"/cases/{cid}/claim", headers=bg, json={}))
    case = ok(
        ver.post(
            f"/cases/{cid}/verification",
            headers=bg,
            json={
                "result": "confirmed",
                "justification": "statement and papers checked at the gate",
                "expected_version": case["version"],
            },
        )
    )
    assert (case["stage"], case["owner_agency"]) == ("identify", "border_guard")

    # ---- the transfer: consent to Nghệ An's social protection, then the request ---------------------
    body = {
        "to_agency": "social_protection",
        "to_province": NGHE_AN,
        "reason": "she lives in Nghệ An; support and reintegration at home",
    }
    r = sup.post(f"/cases/{cid}/transfers", headers=bg, json=body)
    assert r.status_code == 403 and "consent" in r.text, r.text
    got = ok(
        sup.post(
            f"/cases/{cid}/consents",
            headers=bg,
            json={
                "purpose": "data_sharing",
                "agency": "social_protection",
                "province": NGHE_AN,
                "granted": True,
                "document": {"kind": "signed_form", "signed_on": today, "reference": "BG-20/2026"},
            },
        ),
        201,
    )
    assert got["current"] == {f"data_sharing:social_protection@{NGHE_AN}": True}
    requested = ok(
        sup.post(
            f"/cases/{cid}/transfers", headers={**bg, "Idempotency-Key": "transfer-1"}, json=body
        ),
        201,
    )
    handoff = requested["handoff"]
    hid = handoff["handoff_id"]
    assert (
        handoff["kind"],
        handoff["state"],
        handoff["from_province"],
        handoff["to_province"],
    ) == ("transfer", "requested", LANG_SON, NGHE_AN)
    assert requested["case"]["province"] == LANG_SON

    # pending, from both sides: Nghệ An's social protection reads to decide and answers, nothing else
    assert ok(intake.get(f"/cases/{cid}", headers=sp_40))["workflow"]["stage"] == "identify"
    assert [
        h["handoff_id"] for h in ok(sup.get(f"/cases/{cid}/handoffs", headers=sp_40))["items"]
    ] == [hid]
    refused(intake.get(f"/cases/{cid}", headers=police_40))
    refused(ver.post(f"/cases/{cid}/claim", headers=sp_40, json={}))
    refused(
        sup.post(
            f"/cases/{cid}/consents", headers=sp_40, json={"purpose": "research", "granted": False}
        )
    )
    refused(sup.post(f"/handoffs/{cid}/{hid}/respond", headers=sp_20, json={"accept": True}))
    refused(sup.post(f"/handoffs/{cid}/{hid}/respond", headers=police_40, json={"accept": True}))
    # Lạng Sơn still holds it: its supervisor sees the transfer waiting
    stuck = _until(
        lambda: ok(ovs.get("/stuck", params={"reason": "handoff_waiting"}, headers=bg_sup)),
        lambda page: any(i["case_id"] == cid for i in page["items"]),
    )
    assert any(i["case_id"] == cid and i["province"] == LANG_SON for i in stuck["items"])

    # ---- Nghệ An accepts: the same case continues there -------------------------------------------
    accepted = ok(
        sup.post(
            f"/handoffs/{cid}/{hid}/respond",
            headers={**sp_40, "Idempotency-Key": "accept-1"},
            json={"accept": True},
        )
    )
    case = accepted["case"]
    assert (case["case_id"], case["province"], case["owner_agency"], case["stage"]) == (
        cid,
        NGHE_AN,
        "social_protection",
        "identify",
    )
    assert accepted["handoff"]["state"] == "accepted"
    future = (datetime.now(UTC) + timedelta(days=3650)).isoformat()
    now = _until(
        lambda: ok(ovs.get(f"/cases/{cid}/as-of", params={"at": future}, headers=auditor)),
        lambda v: v["event_kind"] == "handoff_accepted",
    )["state"]
    assert (now["province"], now["assignee"], now["escalation_level"]) == (NGHE_AN, None, 0)
    assert [j["province"] for j in now["jurisdictions"]] == [LANG_SON, NGHE_AN]
    due = datetime.fromisoformat(now["deadline"]["due_at"])
    assert due > datetime.now(UTC) + timedelta(days=19)  # identification: 20 days from acceptance

    # Lạng Sơn reads what it did, and acts no more
    assert (
        ok(intake.get(f"/cases/{cid}", headers=bg))["workflow"]["owner_agency"]
        == "social_protection"
    )
    refused(ver.post(f"/cases/{cid}/claim", headers=bg, json={}))
    refused(
        sup.post(
            f"/cases/{cid}/consents", headers=bg, json={"purpose": "research", "granted": False}
        )
    )
    refused(ovs.post(f"/cases/{cid}/escalate", headers=bg_sup, json={"reason": "we want it back"}))
    refused(intake.get(f"/cases/{cid}", headers=sp_20))  # never took part there
    refused(
        intake.get(f"/cases/{cid}", headers=police_40)
    )  # not (yet) an agency of the case in Nghệ An

    # ---- Nghệ An: identification, protection, support, closure --------------------------------------
    case = ok(ver.post(f"/cases/{cid}/claim", headers=sp_40, json={}))
    assert case["assignee"] == "sp-nghe-an-1"
    ident = ok(
        ver.post(
            f"/cases/{cid}/identification",
            headers=sp_40,
            json={
                "status": "ActualVictimOfTrafficking",
                "deciding_org": "Police",
                "evidence": [
                    {
                        "kind": "rescuer_information",
                        "source": "border guard handover record",
                        "date": today,
                    }
                ],
                "justification": "handover record and her statement",
                "expected_version": case["version"],
            },
        )
    )
    case = ident["case"]
    assert (case["stage"], case["owner_agency"]) == ("protect", "social_protection")
    board_40 = _until(
        lambda: ok(ovs.get("/board", headers=sp_sup_40)),
        lambda b: any(c["stage"] == "protect" for c in b["cells"]),
    )
    assert board_40["province"] == NGHE_AN and any(
        c["stage"] == "protect" and c["owner_agency"] == "social_protection"
        for c in board_40["cells"]
    )
    board_20 = ok(ovs.get("/board", headers=bg_sup))
    assert board_20["total_open"] == 0, board_20  # the case is no longer Lạng Sơn's
    prot = ok(
        ver.post(
            f"/cases/{cid}/protection",
            headers=sp_40,
            json={
                "measures": ["safe_shelter"],
                "justification": "shelter in Vinh",
                "expected_version": case["version"],
            },
        )
    )
    assert prot["case"]["stage"] == "reintegrate"
    ok(
        sup.post(
            f"/cases/{cid}/support-plan",
            headers=sp_40,
            json={
                "spl_Objectives": "home, vocational course",
                "spl_Type": ["SocialCare", "Livelihood"],
                "spl_PlannedEndDate": (date.today() + timedelta(days=400)).isoformat(),
            },
        ),
        201,
    )
    delivered = ok(
        sup.post(
            f"/cases/{cid}/services",
            headers=sp_40,
            json={
                "service_type": "essential_needs",
                "provider_agency": "social_protection",
                "provider_name": "Nghệ An social protection centre",
                "delivered_on": today,
            },
        ),
        201,
    )
    assert delivered["entitled"] == "yes"
    refused(
        sup.post(
            f"/cases/{cid}/services",
            headers=bg,
            json={
                "service_type": "essential_needs",
                "provider_agency": "social_protection",
                "delivered_on": today,
            },
        )
    )
    for f in ok(sup.get(f"/cases/{cid}/follow-ups", headers=sp_40))["items"]:
        ok(
            sup.post(
                f"/cases/{cid}/follow-ups/{f['follow_up_id']}",
                headers=sp_40,
                json={"outcome": "done"},
            )
        )
    closed = ok(
        sup.post(f"/cases/{cid}/closure", headers=sp_40, json={"reason": "reintegrated at home"})
    )
    assert (closed["case"]["status"], closed["case"]["province"]) == ("Closed", NGHE_AN)
    refused(sup.post(f"/cases/{cid}/closure", headers=bg, json={"reason": "not ours any more"}))

    # ---- one audit chain, with the handover recorded ------------------------------------------------
    page = _until(
        lambda: ok(ovs.get(f"/cases/{cid}/history", params={"limit": 200}, headers=auditor)),
        lambda p: any(e["kind"] == "stage_decided" and e["stage"] == "closed" for e in p["items"]),
    )
    events = page["items"]
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    transfer = next(e for e in events if e["kind"] == "handoff_accepted")
    assert transfer["actor_user_id"] == "sp-nghe-an-1"
    d = transfer["data"]
    assert (
        d["from_province"],
        d["from_agency"],
        d["to_province"],
        d["to_agency"],
        d["requested_by"],
    ) == (LANG_SON, "border_guard", NGHE_AN, "social_protection", "bg-huu-nghi-1")
    chain = ok(ovs.get("/audit/verify", params={"case_id": cid}, headers=auditor))
    assert chain["ok"] and chain["broken"] == []
    # the sending supervisor still reads its part: the history up to the transfer, not what Nghệ An did after
    theirs = ok(ovs.get(f"/cases/{cid}/history", params={"limit": 200}, headers=bg_sup))["items"]
    assert theirs and theirs[-1]["seq"] == transfer["seq"] and len(theirs) < len(events)
    as_of_now = ok(
        ovs.get(f"/cases/{cid}/as-of", params={"at": datetime.now(UTC).isoformat()}, headers=bg_sup)
    )
    assert as_of_now["event_seq"] == transfer["seq"] and as_of_now["state"]["status"] != "Closed"
    refused(
        ovs.get(
            f"/cases/{cid}/history", headers=stack.auth(A.police, Role.supervisor, province="79")
        )
    )
    # reports: received in Lạng Sơn, transferred out of it and into Nghệ An, not received twice
    start = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    end = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    rep_20 = ok(
        ovs.get(
            "/reports/ad_hoc", params={"from": start, "to": end, "format": "json"}, headers=bg_sup
        )
    )
    rep_40 = ok(
        ovs.get(
            "/reports/ad_hoc",
            params={"from": start, "to": end, "format": "json"},
            headers=sp_sup_40,
        )
    )
    assert rep_20["received"] >= 1 and rep_20["transfers"]["transferred_out"] >= 1
    assert rep_40["transfers"]["transferred_in"] >= 1
