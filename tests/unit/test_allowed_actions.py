"""shared.access.allowed_actions: what the case read tells a user they may do now, checked against what the
action endpoints actually do (real PostgreSQL, real Temporal): every listed action passes every check the
endpoint and the workflow make before the case's version (sent stale, it answers 409 "stale"; with the right
version it is accepted); an action not listed, sent with the right version, is refused (403, or 409 for a
stage it does not belong to) and changes nothing."""

from __future__ import annotations

from typing import Any

import httpx

from services.intake.reads import progress_of
from shared.access import CaseAccessFacts, CaseProgress, PrincipalLike, allowed_actions
from shared.contract import CaseState
from shared.domain import AgencyRole, Role, Stage
from tests.helpers.intake_stack import intake_app, open_body
from tests.helpers.verification_stack import PROVINCE, Stack, auth, stack

A = AgencyRole
STALE = 9_999
CONSENT_DOC = {"kind": "signed_form", "signed_on": "2026-01-03", "reference": "DY-07/2026"}
PLAN = {
    "spl_Objectives": "safe housing, return to school",
    "spl_Type": ["SocialCare"],
    "spl_PlannedEndDate": "2027-12-31",
}


def who(
    agency: AgencyRole, *roles: Role, province: str = PROVINCE, user: str | None = None
) -> PrincipalLike:
    return PrincipalLike(
        user_id=user or f"{agency.value}-1",
        roles=frozenset(roles or (Role.caseworker,)),
        agency=agency,
        province=province,
    )


FACTS = CaseAccessFacts(province=PROVINCE, owner_agency=A.social_protection)


def at(stage: Stage, **kw: Any) -> CaseProgress:
    return CaseProgress(stage=stage, closed=False, has_deadline=True, **kw)


# ---- the rules, without I/O ---------------------------------------------------------------------------
def test_owner_caseworker_at_verify() -> None:
    got = allowed_actions(who(A.social_protection), FACTS, at(Stage.verify))
    assert got == ["claim", "verify", "consent", "transfer", "support_plan", "service"]


def test_legal_aid_needs_consent_unless_a_supervisor_overrides() -> None:
    assert "legal_aid" not in allowed_actions(who(A.social_protection), FACTS, at(Stage.protect))
    assert "legal_aid" in allowed_actions(
        who(A.social_protection), FACTS, at(Stage.protect, legal_aid_consent=True)
    )
    assert "legal_aid" in allowed_actions(who(A.police, Role.supervisor), FACTS, at(Stage.protect))
    waiting = at(Stage.protect, legal_aid_consent=True, waiting=((A.legal_aid, None, "referral"),))
    assert "legal_aid" not in allowed_actions(who(A.social_protection), FACTS, waiting)


def test_police_only_writes() -> None:
    police = FACTS.model_copy(update={"owner_agency": A.police})
    got = allowed_actions(who(A.police), police, at(Stage.rescue))
    assert {"rescue_plan", "rescue_complete", "rescue_not_needed", "perpetrator"} <= set(got)
    assert "support_plan" not in got and "service" not in got  # not a support agency
    sp = allowed_actions(who(A.social_protection, Role.supervisor), police, at(Stage.rescue))
    assert "rescue_complete" not in sp and "perpetrator" not in sp and "rescue_plan" not in sp
    assert "rescue_not_needed" in sp  # a supervisor's override


def test_police_record_rescues_and_protection_at_any_open_stage() -> None:
    got = allowed_actions(
        who(A.police), FACTS.model_copy(update={"participants": {A.police}}), at(Stage.verify)
    )
    assert {"rescue_complete", "rescue_plan", "protection_measures"} <= set(got)
    assert "verify" not in got  # not the stage's owner
    sp = allowed_actions(who(A.social_protection), FACTS, at(Stage.verify))
    assert not {"rescue_complete", "protection_measures"} & set(sp)
    # in the rescue stage the outcome is the stage's decision: its owner's (or a supervisor's override)
    police_rescue = allowed_actions(
        who(A.police), FACTS.model_copy(update={"participants": {A.police}}), at(Stage.rescue)
    )
    assert "rescue_complete" not in police_rescue and "protection_measures" in police_rescue


def test_claimed_by_someone_else() -> None:
    got = allowed_actions(who(A.social_protection), FACTS, at(Stage.verify, assignee="sp-9"))
    assert "claim" not in got and "verify" in got


def test_supervisor_actions_and_top_escalation() -> None:
    sup = who(A.police, Role.supervisor)
    got = allowed_actions(sup, FACTS, at(Stage.verify))
    assert {"reassign", "extend_deadline", "escalate", "verify", "claim"} <= set(got)
    top = allowed_actions(sup, FACTS, at(Stage.verify, escalation_level=3))
    assert "escalate" not in top
    assert "reassign" not in allowed_actions(who(A.social_protection), FACTS, at(Stage.verify))


def test_nothing_for_auditors_other_provinces_and_outsiders() -> None:
    assert allowed_actions(who(A.police, Role.auditor, province="*"), FACTS, at(Stage.verify)) == []
    assert allowed_actions(who(A.social_protection, province="79"), FACTS, at(Stage.verify)) == []
    assert allowed_actions(who(A.legal_aid), FACTS, at(Stage.verify)) == []


def test_pending_invitee_may_only_answer() -> None:
    invited = FACTS.model_copy(update={"pending_invitees": frozenset({A.legal_aid})})
    progress = at(Stage.protect, waiting=((A.legal_aid, None, "referral"),))
    assert allowed_actions(who(A.legal_aid), invited, progress) == ["respond_handoff"]
    elsewhere = FACTS.model_copy(
        update={"invited_elsewhere": frozenset({("79", A.social_protection)})}
    )
    transfer = at(Stage.protect, waiting=((A.social_protection, "79", "transfer"),))
    got = allowed_actions(who(A.social_protection, province="79"), elsewhere, transfer)
    assert got == ["respond_handoff"]
    assert "transfer" not in allowed_actions(who(A.social_protection), elsewhere, transfer)


def test_closed_case() -> None:
    closed = CaseProgress(stage=Stage.closed, closed=True)
    assert allowed_actions(who(A.police, Role.supervisor), FACTS, closed) == [
        "perpetrator",
        "reopen",
    ]
    assert allowed_actions(who(A.womens_union, Role.supervisor), FACTS, closed) == [
        "support_plan",
        "reopen",
    ]
    assert allowed_actions(who(A.social_protection), FACTS, closed) == ["support_plan"]


def test_follow_ups_and_closure_at_reintegration() -> None:
    got = allowed_actions(
        who(A.social_protection), FACTS, at(Stage.reintegrate, pending_follow_ups=True)
    )
    assert {"closure", "follow_up"} <= set(got)
    assert "follow_up" not in allowed_actions(
        who(A.social_protection), FACTS, at(Stage.reintegrate)
    )
    assert "service" not in allowed_actions(
        who(A.social_protection), FACTS, at(Stage.reintegrate, support_ended=True)
    )


# ---- the rules against the endpoints -------------------------------------------------------------------
Probe = tuple[str, str, dict[str, Any]]  # service, path, body


def probes(case_id: str, version: int) -> dict[str, Probe]:
    v = {"expected_version": version}
    return {
        "claim": ("verification", f"/cases/{case_id}/claim", {**v}),
        "verify": (
            "verification",
            f"/cases/{case_id}/verification",
            {"result": "confirmed", "justification": "joint check on day 2", **v},
        ),
        "identify": (
            "verification",
            f"/cases/{case_id}/identification",
            {
                "status": "ActualVictimOfTrafficking",
                "deciding_org": "Police",
                "evidence": [
                    {"kind": "statement_of_person", "source": "interview", "date": "2026-01-02"}
                ],
                "justification": "statement and documents agree",
                **v,
            },
        ),
        "rescue_not_needed": (
            "verification",
            f"/cases/{case_id}/rescue-operations/not-needed",
            {"justification": "already in a safe place", **v},
        ),
        "protect": (
            "verification",
            f"/cases/{case_id}/protection",
            {"measures": ["safe_shelter"], "justification": "needs a safe place", **v},
        ),
        "protection_measures": (
            "verification",
            f"/cases/{case_id}/protection-measures",
            {"measures": ["confidential_location"], "justification": "recruiter called", **v},
        ),
        "consent": (
            "support",
            f"/cases/{case_id}/consents",
            {"purpose": "support", "granted": True, "document": CONSENT_DOC, **v},
        ),
        "legal_aid": (
            "support",
            f"/cases/{case_id}/legal-aid-referral",
            {"reason": "wants to claim unpaid wages", **v},
        ),
        "transfer": (
            "support",
            f"/cases/{case_id}/transfers",
            {"to_agency": "womens_union", "reason": "closer to her family", **v},
        ),
        "support_plan": ("support", f"/cases/{case_id}/support-plan", {**PLAN, **v}),
    }


async def check_against_endpoints(s: Stack, case_id: str, people: list[PrincipalLike]) -> None:
    state: CaseState = await s.state(case_id)
    for p in people:
        listed = allowed_actions(p, state.access_facts(), progress_of(state))
        headers = auth(s.ring, p.agency, *p.roles, user=p.user_id, province=p.province)
        stale, current = probes(case_id, STALE), probes(case_id, state.version)
        for action in stale:
            # listed: sent with a stale version, it must get past every other check; not listed: sent
            # with the right version, it must still be refused
            service, path, body = (stale if action in listed else current)[action]
            sent = dict(body)
            overriding = p.has(Role.supervisor) and p.agency != state.owner_agency
            if overriding and action not in ("consent", "support_plan", "protection_measures"):
                sent["override_reason"] = "owner unreachable for ten days"
                if action in ("legal_aid", "transfer"):
                    sent["consent_override_reason"] = "the person asked for it by phone"
            r: httpx.Response = await s.http[service].post(path, json=sent, headers=headers)
            detail = str(r.json().get("detail"))
            where = f"{p.agency.value} {sorted(p.roles)} {action} at {state.stage.value}: {r.text}"
            if action in listed:
                assert r.status_code == 409 and "stale" in detail, where
            else:
                assert r.status_code in (403, 409) and "stale" not in detail, where
    after = await s.state(case_id)
    assert after.version == state.version  # nothing listed or refused was applied


async def test_listed_actions_pass_every_check_but_the_version(
    ts_env, db_pool, db_url, ring, task_queue
):
    people = [
        who(A.social_protection),
        who(A.police),
        who(A.legal_aid),
        who(A.social_protection, Role.supervisor),
        who(A.police, Role.supervisor),
        who(A.police, Role.auditor),
        who(A.social_protection, province="79"),
    ]
    async with stack(ts_env, db_pool, db_url, ring, task_queue) as s:
        at_verify = await s.open_case()
        await s.to_verify(at_verify)
        await check_against_endpoints(s, at_verify, people)
        at_identify = await s.open_case()
        await s.to_identify(at_identify)
        await check_against_endpoints(s, at_identify, people)
        at_reintegrate = await s.open_case()
        await s.to_reintegrate(at_reintegrate)
        await check_against_endpoints(s, at_reintegrate, people)

        # and with the right version a listed action is accepted
        state = await s.state(at_verify)
        owner = who(A.social_protection)
        assert "claim" in allowed_actions(owner, state.access_facts(), progress_of(state))
        r = await s.ver.post(
            f"/cases/{at_verify}/claim",
            json={"expected_version": state.version},
            headers=auth(ring, A.social_protection),
        )
        assert r.status_code == 200, r.text
        after = await s.state(at_verify)
        assert after.assignee == "social_protection-1"
        # claimed: another caseworker of the agency may no longer claim it, and is refused
        other = who(A.social_protection, user="social_protection-2")
        assert "claim" not in allowed_actions(other, after.access_facts(), progress_of(after))
        r = await s.ver.post(
            f"/cases/{at_verify}/claim",
            json={"expected_version": after.version},
            headers=auth(ring, A.social_protection, user="social_protection-2"),
        )
        assert r.status_code == 409 and "already claimed" in r.text, r.text


async def test_intake_case_read_carries_deadline_level_and_actions(
    ts_env, db_pool, db_url, ring, task_queue
):
    async with intake_app(ts_env, db_pool, db_url, ring, task_queue) as it:
        bg = it.auth(A.border_guard)
        r = await it.open(open_body(), headers=bg)
        assert r.status_code == 201, r.text
        case_id = r.json()["case_id"]
        r = await it.http.get(f"/cases/{case_id}", headers=bg)
        assert r.status_code == 200, r.text
        wf = r.json()["workflow"]
        assert wf["deadline_at"] is not None and wf["escalation_level"] == 0
        assert wf["assignee"] is None
        assert "classify" in wf["allowed_actions"] and "claim" in wf["allowed_actions"]
        assert "reassign" not in wf["allowed_actions"] and "verify" not in wf["allowed_actions"]

        auditor = it.auth(A.police, Role.auditor, province="*")
        r = await it.http.get(f"/cases/{case_id}", headers=auditor)
        assert r.status_code == 200, r.text
        assert r.json()["workflow"]["allowed_actions"] == []

        sup = it.auth(A.police, Role.supervisor)
        r = await it.http.get(f"/cases/{case_id}", headers=sup)
        assert {"reassign", "extend_deadline", "escalate"} <= set(
            r.json()["workflow"]["allowed_actions"]
        )

        # listed: accepted; then no longer listed, and refused
        r = await it.http.post(
            f"/cases/{case_id}/classify",
            json={
                "classification": "trafficking_suspected",
                "justification": "signs of forced marriage",
                "expected_version": wf["version"],
            },
            headers=bg,
        )
        assert r.status_code == 200, r.text
        r = await it.http.get(f"/cases/{case_id}", headers=bg)
        wf = r.json()["workflow"]
        assert wf["stage"] == "verify" and "classify" not in wf["allowed_actions"]
        r = await it.http.post(
            f"/cases/{case_id}/classify",
            json={
                "classification": "trafficking_suspected",
                "justification": "signs of forced marriage",
                "expected_version": wf["version"],
            },
            headers=bg,
        )
        assert r.status_code in (403, 409) and "stale" not in r.text, r.text
