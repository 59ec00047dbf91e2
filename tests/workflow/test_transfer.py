"""Issue 18: a case travels with the person. A transfer to an agency of another province, on the
time-skipping server with the real audit log: request, accept, reject, revoke, no answer (escalation on
both sides), a transfer while the case is overdue, and transferred_jurisdiction kept for a case leaving
the country's system."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import timedelta
from typing import Any

import pytest
from temporalio.client import WorkflowHandle, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment

from services.oversight.audit_log import readable_event
from shared.access import can_act_on_case, can_read_case, can_respond_to_handoff, read_until
from shared.contract import (
    AddNote,
    CaseFacts,
    CaseState,
    Claim,
    Classification,
    ConsentPurpose,
    Decide,
    EndCase,
    EvidenceKind,
    EvidenceRef,
    ExtendDeadline,
    HandoffKind,
    HandoffState,
    IdentifyDecision,
    ProtectDecision,
    ReceiveDecision,
    RecordConsent,
    RecordFollowUp,
    ReintegrateDecision,
    RequestHandoff,
    RespondHandoff,
    RevokeHandoff,
    VerifyDecision,
    VerifyResult,
)
from shared.domain import (
    AgencyRole,
    CaseStatus,
    Channel,
    DecisionMakingOrg,
    Outcome,
    Role,
    Section,
    Stage,
    TraffickingStatus,
)
from tests.conftest import new_case_id
from tests.helpers.workflow_harness import Harness, actor, running_workers
from workflows.case_workflow import CaseWorkflow

A = AgencyRole
LANG_SON, NGHE_AN = "20", "40"  # a border province receives; the home province supports
BG = actor(A.border_guard, province=LANG_SON, user="bg-20")
BG_SUP = actor(A.border_guard, Role.supervisor, province=LANG_SON, user="bg-sup-20")
SP_20 = actor(A.social_protection, province=LANG_SON, user="sp-20")
SP_40 = actor(A.social_protection, province=NGHE_AN, user="sp-40")
SP_40_SUP = actor(A.social_protection, Role.supervisor, province=NGHE_AN, user="sp-sup-40")
POLICE_40 = actor(A.police, province=NGHE_AN, user="police-40")
RING: Any = None  # the test's key ring (set by the autouse fixture below)
NATIONAL = actor(A.steering_committee, Role.auditor, province="*", user="auditor-national")


@pytest.fixture(autouse=True)
def _ring(ring: Any) -> None:
    global RING
    RING = ring


async def _rejection(coro: Any) -> ApplicationError:
    with pytest.raises(WorkflowUpdateFailedError) as info:
        await coro
    cause = info.value.cause
    assert isinstance(cause, ApplicationError)
    return cause


async def _decide(handle: WorkflowHandle[Any, Any], decision: Any) -> CaseState:
    """The stage owner of the province that holds the case decides."""
    state: CaseState = await handle.query(CaseWorkflow.state)
    return await handle.execute_update(
        CaseWorkflow.decide,
        Decide(
            actor=actor(state.owner_agency, province=state.province),
            decision=decision,
            justification="recorded by the owning agency",
        ),
    )


async def _open_at_border(
    h: Harness, env: WorkflowEnvironment
) -> tuple[str, WorkflowHandle[Any, Any]]:
    """A border-guard handover in Lạng Sơn, classified and verified there: identification, border guard's."""
    cid = new_case_id()
    f = CaseFacts(
        case_id=cid,
        person_ref=f"p-{uuid.uuid4().hex[:12]}",
        province=LANG_SON,
        channel=Channel.border_guard_handover,
        opened_by=BG,
        opened_at=await env.get_current_time(),
    )
    handle = await h.open(f)
    await _decide(
        handle,
        ReceiveDecision(
            classification=Classification.trafficking_suspected,
            channel=Channel.border_guard_handover,
        ),
    )
    s = await _decide(handle, VerifyDecision(result=VerifyResult.confirmed))
    assert (s.stage, s.owner_agency, s.province) == (Stage.identify, A.border_guard, LANG_SON)
    return cid, handle


async def _consent_to_nghe_an(handle: WorkflowHandle[Any, Any]) -> CaseState:
    return await handle.execute_update(
        CaseWorkflow.record_consent,
        RecordConsent(
            actor=BG,
            purpose=ConsentPurpose.data_sharing,
            granted=True,
            agency=A.social_protection,
            province=NGHE_AN,
        ),
    )


async def _request(handle: WorkflowHandle[Any, Any], **kw: Any) -> CaseState:
    return await handle.execute_update(
        CaseWorkflow.request_handoff,
        RequestHandoff(
            actor=kw.pop("actor", BG),
            kind=HandoffKind.transfer,
            to_agency=A.social_protection,
            to_province=NGHE_AN,
            reason="the person lives in Nghệ An and goes home",
            **kw,
        ),
    )


async def _events(h: Harness, cid: str, seq: int) -> list[dict[str, Any]]:
    """The case's audit events as an authorised reader sees them (free text decrypted)."""
    rows = await h.events(cid, seq)
    return [{**dict(r), **readable_event(RING, r)} for r in rows]


async def _notifications(h: Harness, cid: str, kind: str, at_least: int) -> list[list[str]]:
    for _ in range(200):
        rows = await h.pool.fetch(
            "SELECT recipients, level FROM oversight.notification_outbox "
            "WHERE case_id = $1 AND kind = $2 ORDER BY level, created_at",
            cid,
            kind,
        )
        if len(rows) >= at_least:
            break
        await asyncio.sleep(0.05)
    return [
        json.loads(r["recipients"]) if isinstance(r["recipients"], str) else list(r["recipients"])
        for r in rows
    ]


async def test_transfer_requested_then_accepted_continues_the_same_case_in_the_receiving_province(
    ts_env, db_pool, ring, task_queue
):
    async with running_workers(ts_env.client, db_pool, ring, task_queue) as h:
        cid, handle = await _open_at_border(h, ts_env)
        # consent gate: none, or consent for the local social protection only, does not cover Nghệ An's
        err = await _rejection(_request(handle))
        assert err.type == "forbidden" and "consent" in err.message and "province 40" in err.message
        await handle.execute_update(
            CaseWorkflow.record_consent,
            RecordConsent(
                actor=BG,
                purpose=ConsentPurpose.data_sharing,
                granted=True,
                agency=A.social_protection,
            ),
        )
        assert (await _rejection(_request(handle))).type == "forbidden"
        # bad requests
        err = await _rejection(
            handle.execute_update(
                CaseWorkflow.request_handoff,
                RequestHandoff(
                    actor=BG,
                    kind=HandoffKind.referral,
                    to_agency=A.social_protection,
                    to_province=NGHE_AN,
                    reason="referral across provinces",
                ),
            )
        )
        assert err.type == "invalid" and "only a transfer" in err.message
        err = await _rejection(
            handle.execute_update(
                CaseWorkflow.request_handoff,
                RequestHandoff(
                    actor=BG,
                    kind=HandoffKind.transfer,
                    to_agency=A.social_protection,
                    to_province="99",
                    reason="no such province",
                ),
            )
        )
        assert err.type == "invalid" and "34 province codes" in err.message
        err = await _rejection(
            handle.execute_update(
                CaseWorkflow.request_handoff,
                RequestHandoff(
                    actor=BG,
                    kind=HandoffKind.transfer,
                    to_agency=A.social_protection,
                    to_province=LANG_SON,
                    reason="same province",
                ),
            )
        )
        assert err.type == "invalid" and "already in province 20" in err.message

        await _consent_to_nghe_an(handle)
        s = await _request(handle)
        h1 = s.handoffs[-1]
        assert (h1.state, h1.from_province, h1.to_province, h1.to_agency) == (
            HandoffState.requested,
            LANG_SON,
            NGHE_AN,
            A.social_protection,
        )
        assert s.pending_transfer() == h1 and s.province == LANG_SON
        assert (
            await _rejection(_request(handle))
        ).type == "conflict"  # one transfer waits at a time
        facts = s.access_facts()
        # pending: Nghệ An's social protection reads enough to decide and answers, nothing else
        assert can_read_case(SP_40, facts) and not can_act_on_case(SP_40, facts)
        assert can_respond_to_handoff(SP_40, facts, A.social_protection, NGHE_AN)
        assert not can_read_case(POLICE_40, facts) and not can_read_case(
            SP_40_SUP.model_copy(update={"agency": A.police}), facts
        )
        assert not can_respond_to_handoff(SP_20, facts, A.social_protection, NGHE_AN)
        assert can_act_on_case(BG, facts) and can_read_case(NATIONAL, facts)
        err = await _rejection(
            handle.execute_update(
                CaseWorkflow.add_note,
                AddNote(actor=SP_40, section=Section.case_notes, note_id="n-early"),
            )
        )
        assert err.type == "forbidden" and "only accept or reject" in err.message
        err = await _rejection(
            handle.execute_update(
                CaseWorkflow.respond_handoff,
                RespondHandoff(actor=SP_20, handoff_id=h1.handoff_id, accept=True),
            )
        )
        assert err.type == "forbidden" and "province 40" in err.message
        err = await _rejection(
            handle.execute_update(
                CaseWorkflow.respond_handoff,
                RespondHandoff(actor=POLICE_40, handoff_id=h1.handoff_id, accept=True),
            )
        )
        assert err.type == "forbidden"
        # the sending province's stage owner claimed the stage: the assignee is cleared on acceptance
        await handle.execute_update(CaseWorkflow.claim, Claim(actor=BG))

        accepted_at = await ts_env.get_current_time()
        before = await handle.query(CaseWorkflow.state)
        s = await handle.execute_update(
            CaseWorkflow.respond_handoff,
            RespondHandoff(actor=SP_40, handoff_id=h1.handoff_id, accept=True),
        )
        # the same case, in Nghệ An now
        assert s.case_id == cid and s.facts == before.facts and s.version > before.version
        assert (s.province, s.owner_agency, s.assignee, s.stage) == (
            NGHE_AN,
            A.social_protection,
            None,
            Stage.identify,
        )
        assert s.participants == [] and s.escalation_level == 0
        assert (
            s.stages[-1].owner_agency == A.social_protection
            and s.stages[-1].stage == Stage.identify
        )
        assert s.deadline is not None and s.deadline.stage == Stage.identify
        assert s.deadline.due_at - s.updated_at == timedelta(
            days=20
        )  # from the moment of acceptance
        assert s.deadline.due_at > before.deadline.due_at if before.deadline else True
        assert s.updated_at >= accepted_at
        assert [(j.province, j.until is None) for j in s.jurisdictions] == [
            (LANG_SON, False),
            (NGHE_AN, True),
        ]
        assert s.jurisdictions[0].until == s.jurisdictions[1].since == s.updated_at
        assert set(s.jurisdictions[0].agencies) == {A.border_guard}
        assert s.jurisdictions[1].arrived_by == h1.handoff_id
        h1 = s.handoffs[-1]
        assert (h1.state, h1.responded_by) == (HandoffState.accepted, "sp-40")
        # access moved with the case
        facts = s.access_facts()
        assert (
            can_act_on_case(SP_40, facts)
            and can_read_case(SP_40, facts)
            and read_until(SP_40, facts) is None
        )
        assert can_read_case(BG, facts) and not can_act_on_case(BG, facts)
        assert read_until(BG, facts) == s.updated_at
        assert can_read_case(BG_SUP, facts) and not can_act_on_case(BG_SUP, facts)
        assert not can_read_case(SP_20, facts)  # never took part in Lạng Sơn
        assert can_read_case(NATIONAL, facts) and read_until(NATIONAL, facts) is None
        err = await _rejection(handle.execute_update(CaseWorkflow.claim, Claim(actor=BG)))
        assert err.type == "forbidden" and "no longer acts" in err.message
        err = await _rejection(
            handle.execute_update(
                CaseWorkflow.extend_deadline,
                ExtendDeadline(
                    actor=BG_SUP, extend_by=timedelta(days=2), reason="border guard wants more time"
                ),
            )
        )
        assert err.type == "forbidden"
        s = await handle.execute_update(CaseWorkflow.claim, Claim(actor=SP_40))
        assert s.assignee == "sp-40"
        s = await handle.execute_update(
            CaseWorkflow.add_note, AddNote(actor=SP_40, section=Section.case_notes, note_id="n-40")
        )
        # one audit chain: who handed over to whom and when
        events = await _events(h, cid, s.last_event_seq)
        assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
        requested = next(
            e for e in events if e["kind"] == "handoff_requested" and e["data"].get("to_province")
        )
        assert (
            requested["data"]["from_province"] == LANG_SON and requested["actor_user_id"] == "bg-20"
        )
        accepted = next(e for e in events if e["kind"] == "handoff_accepted")
        d = accepted["data"]
        assert (d["from_province"], d["from_agency"], d["to_province"], d["to_agency"]) == (
            LANG_SON,
            "border_guard",
            NGHE_AN,
            "social_protection",
        )
        assert (
            accepted["actor_user_id"] == "sp-40"
            and d["accepted_by"] == "sp-40"
            and d["requested_by"] == "bg-20"
        )
        assert (
            d["jurisdiction_transfer"] is True
            and d["previous_assignee"] == "bg-20"
            and d["was_overdue"] is False
        )
        assert accepted["state"]["province"] == NGHE_AN
        notes = await _notifications(h, cid, "handoff_requested", 1)
        assert sorted(notes[-1]) == sorted(
            ["social_protection@40", "supervisor@40", "supervisor@20"]
        )
        notes = await _notifications(h, cid, "handoff_accepted", 1)
        assert "border_guard@20" in notes[-1] and "supervisor@40" in notes[-1]


async def test_transfer_rejected_with_a_reason_leaves_the_case_where_it_is(
    ts_env, db_pool, ring, task_queue
):
    async with running_workers(ts_env.client, db_pool, ring, task_queue) as h:
        cid, handle = await _open_at_border(h, ts_env)
        # no consent: the sending supervisor overrides with a reason (the legal basis), audited
        err = await _rejection(
            _request(handle, consent_override_reason="child: protection law requires it")
        )
        assert err.type == "forbidden" and "supervisor" in err.message
        s = await _request(
            handle, actor=BG_SUP, consent_override_reason="child: protection law requires it"
        )
        hid = s.handoffs[-1].handoff_id
        assert s.handoffs[-1].consent_overridden
        err = await _rejection(
            handle.execute_update(
                CaseWorkflow.respond_handoff,
                RespondHandoff(actor=SP_40, handoff_id=hid, accept=False),
            )
        )
        assert err.type == "invalid" and "reason" in err.message
        s = await handle.execute_update(
            CaseWorkflow.respond_handoff,
            RespondHandoff(
                actor=SP_40_SUP,
                handoff_id=hid,
                accept=False,
                reason="the family moved to Thanh Hóa",
            ),
        )
        assert (
            s.handoffs[-1].state == HandoffState.rejected
            and s.handoffs[-1].responded_by == "sp-sup-40"
        )
        assert (s.province, s.owner_agency, len(s.jurisdictions)) == (LANG_SON, A.border_guard, 1)
        facts = s.access_facts()
        assert not can_read_case(SP_40, facts) and can_act_on_case(BG, facts)
        events = await _events(h, cid, s.last_event_seq)
        rejected = events[-1]
        assert (
            rejected["kind"] == "handoff_rejected"
            and rejected["reason"] == "the family moved to Thanh Hóa"
        )
        assert (
            rejected["data"]["to_province"] == NGHE_AN
            and rejected["data"]["from_province"] == LANG_SON
        )
        overridden = next(e for e in events if e["kind"] == "handoff_requested")
        assert overridden["data"]["consent_override_reason"] == "child: protection law requires it"
        notes = await _notifications(h, cid, "handoff_rejected", 1)
        assert sorted(notes[-1]) == ["border_guard@20", "supervisor@20"]
        # a new transfer may be asked for afterwards
        s = await handle.execute_update(
            CaseWorkflow.request_handoff,
            RequestHandoff(
                actor=BG_SUP,
                kind=HandoffKind.transfer,
                to_agency=A.social_protection,
                to_province="38",
                reason="the family lives in Thanh Hóa",
                consent_override_reason="child: protection law requires it",
            ),
        )
        assert s.pending_transfer() is not None and s.pending_transfer().to_province == "38"  # type: ignore[union-attr]


async def test_transfer_revoked_by_the_sending_agency(ts_env, db_pool, ring, task_queue):
    async with running_workers(ts_env.client, db_pool, ring, task_queue) as h:
        cid, handle = await _open_at_border(h, ts_env)
        await _consent_to_nghe_an(handle)
        hid = (await _request(handle)).handoffs[-1].handoff_id
        err = await _rejection(
            handle.execute_update(
                CaseWorkflow.revoke_handoff,
                RevokeHandoff(actor=SP_40, handoff_id=hid, reason="we would rather not"),
            )
        )
        assert err.type == "forbidden"  # the receiving agency rejects; it does not revoke
        s = await handle.execute_update(
            CaseWorkflow.revoke_handoff,
            RevokeHandoff(
                actor=BG, handoff_id=hid, reason="the person stays in Lạng Sơn for the trial"
            ),
        )
        assert s.handoffs[-1].state == HandoffState.revoked and s.province == LANG_SON
        assert not can_read_case(SP_40, s.access_facts())
        err = await _rejection(
            handle.execute_update(
                CaseWorkflow.respond_handoff,
                RespondHandoff(actor=SP_40, handoff_id=hid, accept=True),
            )
        )
        assert err.type in ("conflict", "forbidden")
        events = await _events(h, cid, s.last_event_seq)
        assert (
            events[-1]["kind"] == "handoff_revoked" and events[-1]["data"]["to_province"] == NGHE_AN
        )
        # withdrawing the province's consent stops a waiting transfer
        hid2 = (await _request(handle)).handoffs[-1].handoff_id
        s = await handle.execute_update(
            CaseWorkflow.record_consent,
            RecordConsent(
                actor=BG,
                purpose=ConsentPurpose.data_sharing,
                granted=False,
                agency=A.social_protection,
                province=NGHE_AN,
            ),
        )
        assert next(x for x in s.handoffs if x.handoff_id == hid2).state == HandoffState.revoked


async def test_unanswered_transfer_escalates_on_both_sides(ts_env, db_pool, ring, task_queue):
    async with running_workers(ts_env.client, db_pool, ring, task_queue) as h:
        cid, handle = await _open_at_border(h, ts_env)
        await _consent_to_nghe_an(handle)
        s = await _request(handle)
        accept_by = s.handoffs[-1].accept_by
        await ts_env.sleep(
            timedelta(days=9)
        )  # 2 working days to answer, then levels 1 (0), 2 (+1d), 3 (+3d)
        s = await handle.query(CaseWorkflow.state)
        assert (
            s.handoffs[-1].escalation_level == 3 and s.handoffs[-1].state == HandoffState.requested
        )
        events = await _events(h, cid, s.last_event_seq)
        esc = [e["data"] for e in events if e["kind"] == "handoff_escalated"]
        assert [e["level"] for e in esc] == [1, 2, 3]
        assert all(e["from_province"] == LANG_SON and e["to_province"] == NGHE_AN for e in esc)
        notes = await _notifications(h, cid, "handoff_escalation", 3)
        assert sorted(notes[0]) == sorted(
            ["social_protection@40", "supervisor@40", "supervisor@20"]
        )
        assert sorted(notes[1]) == ["agency_head@20", "agency_head@40"]
        assert sorted(notes[2]) == ["steering_committee@20", "steering_committee@40"]
        # the sending supervisor extends the acceptance deadline; the ladder starts again
        s = await handle.execute_update(
            CaseWorkflow.extend_deadline,
            ExtendDeadline(
                actor=BG_SUP,
                extend_by=timedelta(days=10),
                reason="Nghệ An's office reorganised",
                handoff_id=s.handoffs[-1].handoff_id,
            ),
        )
        assert s.handoffs[-1].escalation_level == 0 and s.handoffs[
            -1
        ].accept_by == accept_by + timedelta(days=10)
        # still answerable late: accepted, the case moves
        s = await handle.execute_update(
            CaseWorkflow.respond_handoff,
            RespondHandoff(actor=SP_40, handoff_id=s.handoffs[-1].handoff_id, accept=True),
        )
        assert s.province == NGHE_AN


async def test_transfer_while_overdue_restarts_the_deadline_under_the_receiving_province(
    ts_env, db_pool, ring, task_queue
):
    async with running_workers(ts_env.client, db_pool, ring, task_queue) as h:
        cid, handle = await _open_at_border(h, ts_env)
        await ts_env.sleep(timedelta(days=22))  # identification due after 20 days: levels 1 and 2
        s = await handle.query(CaseWorkflow.state)
        assert s.escalation_level == 2 and s.deadline is not None
        old_due = s.deadline.due_at
        await _consent_to_nghe_an(handle)
        hid = (await _request(handle)).handoffs[-1].handoff_id
        s = await handle.execute_update(
            CaseWorkflow.respond_handoff, RespondHandoff(actor=SP_40, handoff_id=hid, accept=True)
        )
        assert s.escalation_level == 0 and s.deadline is not None
        assert (
            s.deadline.due_at == s.updated_at + timedelta(days=20) and s.deadline.due_at > old_due
        )
        assert s.deadline.reminder_sent is False and s.policy_version
        seq_at_accept = s.last_event_seq
        events = await _events(h, cid, seq_at_accept)
        d = events[-1]["data"]
        assert events[-1]["kind"] == "handoff_accepted"
        assert d["was_overdue"] is True and d["previous_escalation_level"] == 2
        assert (
            d["previous_due_at"] == old_due.isoformat()
            and d["due_at"] == s.deadline.due_at.isoformat()
        )
        # nothing escalates again until the new deadline; the next level-1 escalation is Nghệ An's
        await ts_env.sleep(timedelta(days=10))
        s = await handle.query(CaseWorkflow.state)
        assert s.escalation_level == 0
        await ts_env.sleep(timedelta(days=11))
        s = await handle.query(CaseWorkflow.state)
        assert s.escalation_level >= 1 and s.province == NGHE_AN
        events = await _events(h, cid, s.last_event_seq)
        late = [e for e in events if e["seq"] > seq_at_accept and e["kind"] == "deadline_escalated"]
        assert late and late[0]["data"]["due_at"] == s.deadline.due_at.isoformat()  # type: ignore[union-attr]
        assert late[0]["state"]["province"] == NGHE_AN


async def test_after_transfer_the_receiving_province_closes_the_case(
    ts_env, db_pool, ring, task_queue
):
    async with running_workers(ts_env.client, db_pool, ring, task_queue) as h:
        cid, handle = await _open_at_border(h, ts_env)
        await _consent_to_nghe_an(handle)
        hid = (await _request(handle)).handoffs[-1].handoff_id
        await handle.execute_update(
            CaseWorkflow.respond_handoff, RespondHandoff(actor=SP_40, handoff_id=hid, accept=True)
        )
        s = await _decide(
            handle,
            IdentifyDecision(  # by social protection of 40, the stage owner now
                status=TraffickingStatus.ActualVictimOfTrafficking,
                deciding_org=DecisionMakingOrg.Police,
                evidence=[EvidenceRef(evidence_id="ev-1", kind=EvidenceKind.statement_of_person)],
            ),
        )
        assert (
            s.stage == Stage.protect
            and s.province == NGHE_AN
            and s.owner_agency == A.social_protection
        )
        s = await _decide(handle, ProtectDecision(measures=["safe_shelter"]))
        assert s.stage == Stage.reintegrate
        err = await _rejection(
            handle.execute_update(
                CaseWorkflow.end_case,
                EndCase(
                    actor=BG_SUP, outcome=Outcome.deceased, reason="recorded in the wrong province"
                ),
            )
        )
        assert err.type == "forbidden"  # Lạng Sơn no longer acts
        for f in s.follow_ups:
            await handle.execute_update(
                CaseWorkflow.record_follow_up,
                RecordFollowUp(actor=SP_40, follow_up_id=f.follow_up_id, outcome="done"),
            )
        await ts_env.sleep(
            timedelta(days=31)
        )  # the reflection period began at verification in Lạng Sơn
        s = await _decide(
            handle, ReintegrateDecision(support_plan_ref="plan-1", reason="reintegrated at home")
        )
        assert (s.status, s.outcome, s.province) == (
            CaseStatus.Closed,
            Outcome.reintegrated,
            NGHE_AN,
        )
        assert [j.province for j in s.jurisdictions] == [LANG_SON, NGHE_AN]
        events = await _events(h, cid, s.last_event_seq)
        assert (
            events[-1]["actor_agency"] == "social_protection"
            and events[-1]["state"]["province"] == NGHE_AN
        )


async def test_transferred_jurisdiction_is_for_leaving_the_country_only(
    ts_env, db_pool, ring, task_queue
):
    async with running_workers(ts_env.client, db_pool, ring, task_queue) as h:
        cid, handle = await _open_at_border(h, ts_env)
        for kw, field in (
            ({"to_province": NGHE_AN}, "to_country"),
            ({"to_country": "KH", "to_province": NGHE_AN}, "to_province"),
            ({"to_country": "VN"}, "to_country"),
        ):
            err = await _rejection(
                handle.execute_update(
                    CaseWorkflow.end_case,
                    EndCase(
                        actor=BG_SUP,
                        outcome=Outcome.transferred_jurisdiction,
                        reason="handed to another system",
                        **kw,
                    ),
                )
            )
            assert err.type == "invalid" and err.message.startswith(field), (kw, err.message)
        s = await handle.execute_update(
            CaseWorkflow.end_case,
            EndCase(
                actor=BG_SUP,
                outcome=Outcome.transferred_jurisdiction,
                to_country="KH",
                reason="Cambodian national returned under the Viet Nam-Cambodia SOP",
            ),
        )
        assert (s.status, s.outcome) == (
            CaseStatus.ClosedReferred,
            Outcome.transferred_jurisdiction,
        )
        events = await _events(h, cid, s.last_event_seq)
        assert events[-1]["kind"] == "case_ended" and events[-1]["data"]["to_country"] == "KH"
        assert events[-1]["reason"] == "Cambodian national returned under the Viet Nam-Cambodia SOP"
