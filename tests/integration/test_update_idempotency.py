"""Issue 10 over HTTP, against the real CaseWorkflow and real PostgreSQL:

- item 2: Idempotency-Key scoped to (caller, operation, case) in common.idempotency_keys; the Update id is
  derived from the scope (no raw user id in Temporal);
- item 8: an Update that times out (no workflow worker on the case's queue) answers 503 "outcome unknown",
  leaves its scope pending, and the client's retry with the same key completes it: one event, rows once;
- item 7: a pending handoff invitee gets 403 on support's consent, support-plan and services endpoints,
  and may answer its handoff;
- item 9: a supervisor of another agency decides identification only with override_reason."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from temporalio.api.enums.v1 import EventType
from temporalio.client import (
    Client,
    Interceptor,
    OutboundInterceptor,
    StartWorkflowUpdateInput,
    WorkflowUpdateHandle,
)

from shared.contract import (
    CaseInput,
    Classification,
    ConsentPurpose,
    Decide,
    HandoffKind,
    ReceiveDecision,
    RecordConsent,
    RequestHandoff,
    VerifyDecision,
    VerifyResult,
)
from shared.domain import AgencyRole, Channel, Role
from tests.helpers.security_stack import bearer, service_stack
from tests.helpers.workflow_harness import actor, facts
from workflows.case_workflow import CaseWorkflow
from workflows.worker import build_worker

A = AgencyRole
TODAY = datetime.now(UTC).date().isoformat()
SERVICE = {
    "service_type": "essential_needs",
    "provider_agency": "social_protection",
    "delivered_on": TODAY,
}
DOC = {"kind": "signed_form", "signed_on": TODAY}
CONSENT = {"purpose": "support", "granted": True, "document": DOC}
PLAN = {
    "spl_Objectives": "safe housing",
    "spl_Type": ["SocialCare"],
    "spl_PlannedEndDate": "2030-01-01",
}


def key() -> dict[str, str]:
    return {"Idempotency-Key": f"k-{uuid.uuid4().hex[:12]}"}


async def _open_in_verify(st: Any, env: Any) -> str:
    """A case owned by social protection (verify stage), opened on the test's workflow queue."""
    cid = f"case-{uuid.uuid4().hex[:16]}"
    handle = await st.workers.open(facts(cid, now=await st.workers.server_now()))
    await handle.execute_update(
        CaseWorkflow.decide,
        Decide(
            actor=actor(A.hotline),
            justification="signs of trafficking",
            decision=ReceiveDecision(
                classification=Classification.trafficking_suspected, channel=Channel.hotline_111
            ),
        ),
    )
    return cid


async def _events(pool: Any, case_id: str, kind: str, at_least: int = 1) -> list[Any]:
    for _ in range(300):
        rows = await pool.fetch(
            "SELECT * FROM oversight.case_events WHERE case_id = $1 AND kind = $2 ORDER BY seq",
            case_id,
            kind,
        )
        if len(rows) >= at_least:
            return list(rows)
        await asyncio.sleep(0.05)
    return list(rows)


async def _accepted_updates(st: Any, case_id: str) -> int:
    history = await st.client.get_workflow_handle(case_id).fetch_history()
    return sum(
        1
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED
    )


async def _consents(pool: Any, case_id: str) -> int:
    return int(
        await pool.fetchval(
            "SELECT count(*) FROM support.consent_records WHERE case_id = $1", case_id
        )
    )


# ---- item 2 ------------------------------------------------------------------------------------
async def test_update_same_key_same_body_is_replayed_with_one_event(
    ts_env, db_pool, db_url, ring, task_queue
):
    async with service_stack(
        ts_env, db_pool, db_url, ring, task_queue, services=("support",)
    ) as st:
        cid = await _open_in_verify(st, ts_env)
        sp, k = bearer(ring, A.social_protection), key()
        body = CONSENT
        first = await st["support"].post(f"/cases/{cid}/consents", json=body, headers={**sp, **k})
        again = await st["support"].post(f"/cases/{cid}/consents", json=body, headers={**sp, **k})
        assert first.status_code == again.status_code == 201, (first.text, again.text)
        assert again.json()["consent_id"] == first.json()["consent_id"]
        assert again.json()["case"]["version"] == first.json()["case"]["version"]
        assert await _consents(db_pool, cid) == 1
        assert len(await _events(db_pool, cid, "consent_recorded")) == 1
        # the Update id is derived from the scope: neither the raw key nor the user id reaches Temporal
        history = await st.client.get_workflow_handle(cid).fetch_history()
        ids = [
            e.workflow_execution_update_accepted_event_attributes.accepted_request.meta.update_id
            for e in history.events
            if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED
        ]
        assert ids and ids[-1].startswith("idem-")
        assert k["Idempotency-Key"] not in ids[-1] and "social_protection" not in ids[-1]
        row = await db_pool.fetchrow(
            "SELECT * FROM common.idempotency_keys WHERE case_id = $1", cid
        )
        assert row["state"] == "applied" and "social_protection" not in row["scope"]


async def test_update_same_key_from_another_user_acts_separately(
    ts_env, db_pool, db_url, ring, task_queue
):
    async with service_stack(
        ts_env, db_pool, db_url, ring, task_queue, services=("support",)
    ) as st:
        cid = await _open_in_verify(st, ts_env)
        k = key()
        body = CONSENT
        one = await st["support"].post(
            f"/cases/{cid}/consents",
            json=body,
            headers={**bearer(ring, A.social_protection, user="sp-anh"), **k},
        )
        two = await st["support"].post(
            f"/cases/{cid}/consents",
            json=body,
            headers={**bearer(ring, A.social_protection, user="sp-binh"), **k},
        )
        assert one.status_code == two.status_code == 201, (one.text, two.text)
        assert one.json()["consent_id"] != two.json()["consent_id"]  # each user's own rows
        assert two.json()["case"]["version"] == one.json()["case"]["version"] + 1
        assert await _consents(db_pool, cid) == 2
        events = await _events(db_pool, cid, "consent_recorded", at_least=2)
        assert sorted(e["actor_user_id"] for e in events) == ["sp-anh", "sp-binh"]


async def test_update_same_key_to_another_endpoint_acts_separately(
    ts_env, db_pool, db_url, ring, task_queue
):
    async with service_stack(
        ts_env, db_pool, db_url, ring, task_queue, services=("support",)
    ) as st:
        cid = await _open_in_verify(st, ts_env)
        sp, k = bearer(ring, A.social_protection), key()
        r = await st["support"].post(f"/cases/{cid}/consents", json=CONSENT, headers={**sp, **k})
        assert r.status_code == 201, r.text
        r = await st["support"].post(f"/cases/{cid}/support-plan", json=PLAN, headers={**sp, **k})
        assert r.status_code == 201, r.text  # not the consent's result: the plan was written
        assert (
            await db_pool.fetchval(
                "SELECT count(*) FROM support.support_plans WHERE case_id = $1", cid
            )
            == 1
        )
        assert len(await _events(db_pool, cid, "note_added")) == 1
        # and the same key on another case is another request too
        other = await _open_in_verify(st, ts_env)
        r = await st["support"].post(f"/cases/{other}/consents", json=CONSENT, headers={**sp, **k})
        assert r.status_code == 201 and r.json()["case"]["case_id"] == other
        assert await _consents(db_pool, other) == 1


async def test_update_same_key_with_a_different_body_is_422(
    ts_env, db_pool, db_url, ring, task_queue
):
    async with service_stack(
        ts_env, db_pool, db_url, ring, task_queue, services=("support",)
    ) as st:
        cid = await _open_in_verify(st, ts_env)
        sp, k = bearer(ring, A.social_protection), key()
        r = await st["support"].post(f"/cases/{cid}/consents", json=CONSENT, headers={**sp, **k})
        assert r.status_code == 201, r.text
        version = r.json()["case"]["version"]
        r = await st["support"].post(
            f"/cases/{cid}/consents",
            json={**CONSENT, "document": {**DOC, "kind": "recorded_oral"}},
            headers={**sp, **k},
        )
        assert r.status_code == 422, r.text
        assert "Idempotency-Key" in r.json()["detail"] and "different request" in r.json()["detail"]
        assert await _consents(db_pool, cid) == 1
        state = await st.client.get_workflow_handle(cid).query(CaseWorkflow.state)
        assert state.version == version and state.consents["support"] is True
        # a body the command does not carry (the service's amount) counts too
        r = await st["support"].post(
            f"/cases/{cid}/services", json={**SERVICE, "amount_vnd": 100_000}, headers={**sp, **k}
        )
        assert r.status_code == 201, r.text
        r = await st["support"].post(
            f"/cases/{cid}/services", json={**SERVICE, "amount_vnd": 900_000}, headers={**sp, **k}
        )
        assert r.status_code == 422 and "different request" in r.json()["detail"], r.text


async def test_update_rejected_request_leaves_the_key_free(
    ts_env, db_pool, db_url, ring, task_queue
):
    async with service_stack(
        ts_env, db_pool, db_url, ring, task_queue, services=("support",)
    ) as st:
        cid = await _open_in_verify(st, ts_env)
        sp, k = bearer(ring, A.social_protection), key()
        r = await st["support"].post(
            f"/cases/{cid}/consents", headers={**sp, **k}, json={**CONSENT, "expected_version": 99}
        )
        assert r.status_code == 409, r.text
        assert (
            await db_pool.fetchval(
                "SELECT count(*) FROM common.idempotency_keys WHERE case_id = $1", cid
            )
            == 0
        )
        r = await st["support"].post(f"/cases/{cid}/consents", headers={**sp, **k}, json=CONSENT)
        assert r.status_code == 201, r.text  # the corrected request is not a reuse


async def test_oversight_actions_use_the_scoped_update_id(
    ts_env, db_pool, db_url, ring, task_queue
):
    async with service_stack(
        ts_env, db_pool, db_url, ring, task_queue, services=("oversight",)
    ) as st:
        cid = await _open_in_verify(st, ts_env)
        await _events(db_pool, cid, "stage_decided")  # oversight reads the projection
        k = key()
        one = bearer(ring, A.social_protection, Role.supervisor, user="sup-anh")
        two = bearer(ring, A.social_protection, Role.supervisor, user="sup-binh")
        body = {"reason": "no progress for a week"}
        r1 = await st["oversight"].post(f"/cases/{cid}/escalate", json=body, headers={**one, **k})
        r1b = await st["oversight"].post(f"/cases/{cid}/escalate", json=body, headers={**one, **k})
        r2 = await st["oversight"].post(f"/cases/{cid}/escalate", json=body, headers={**two, **k})
        assert [r.status_code for r in (r1, r1b, r2)] == [200, 200, 200], (r1.text, r2.text)
        assert r1b.json() == r1.json() and r2.json()["version"] > r1.json()["version"]
        state = await ts_env.client.get_workflow_handle(cid).query(CaseWorkflow.state)
        assert state.escalation_level == 2
        r = await st["oversight"].post(
            f"/cases/{cid}/escalate",
            json={"reason": "another reason entirely"},
            headers={**one, **k},
        )
        assert r.status_code == 422 and "different request" in r.json()["detail"]
        assert len(await _events(db_pool, cid, "escalated_by_supervisor", at_least=2)) == 2


# ---- item 8 ------------------------------------------------------------------------------------
class StopWorkerBeforeUpdate(Interceptor):
    """Client interceptor: runs a hook (stopping the case's only workflow worker) right before the next
    Update is sent, after the service has read the case and written its rows, so the Update meets a real
    timeout at Temporal (no worker to answer it)."""

    def __init__(self) -> None:
        self.hook: Callable[[], Awaitable[None]] | None = None

    def intercept_client(self, next: OutboundInterceptor) -> OutboundInterceptor:
        return _StopBeforeUpdate(next, self)


class _StopBeforeUpdate(OutboundInterceptor):
    def __init__(self, next: OutboundInterceptor, owner: StopWorkerBeforeUpdate) -> None:
        super().__init__(next)
        self._owner = owner

    async def start_workflow_update(
        self, input: StartWorkflowUpdateInput
    ) -> WorkflowUpdateHandle[Any]:
        hook, self._owner.hook = self._owner.hook, None
        if hook is not None:
            await hook()
        return await super().start_workflow_update(input)


class PausableWorker:
    """The case's workflow worker on its own queue, which the test stops and starts again."""

    def __init__(self, client: Client, queue: str) -> None:
        self.client, self.queue = client, queue
        self.worker: Any = None
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.worker = build_worker(self.client, self.queue, max_cached_workflows=0)
        self.task = asyncio.create_task(self.worker.run())

    async def stop(self) -> None:
        if self.worker is not None and self.task is not None:
            await self.worker.shutdown()
            await self.task
            self.worker = self.task = None


async def _paused_case(st: Any, worker: PausableWorker) -> tuple[str, Any]:
    cid = f"case-{uuid.uuid4().hex[:16]}"
    handle = await st.client.start_workflow(
        CaseWorkflow.run,
        CaseInput(facts=facts(cid), oversight_task_queue=st.workers.oversight_task_queue),
        id=cid,
        task_queue=worker.queue,
    )
    await handle.execute_update(
        CaseWorkflow.decide,
        Decide(
            actor=actor(A.hotline),
            justification="signs of trafficking",
            decision=ReceiveDecision(
                classification=Classification.trafficking_suspected, channel=Channel.hotline_111
            ),
        ),
    )
    return cid, handle


def _intercepted(env: Any) -> tuple[Client, StopWorkerBeforeUpdate]:
    stopper = StopWorkerBeforeUpdate()
    config = env.client.config()
    config["interceptors"] = [*config["interceptors"], stopper]
    return Client(**config), stopper


async def test_update_timed_out_is_completed_by_the_retry_with_the_same_key(
    dev_env, db_pool, db_url, ring, task_queue
):
    """A real timeout: the case's only workflow worker stops just before the Update is sent."""
    client, stopper = _intercepted(dev_env)
    async with service_stack(
        dev_env, db_pool, db_url, ring, task_queue, services=("support",), client=client
    ) as st:
        st.runtimes["support"].extras["update_rpc_timeout"] = timedelta(seconds=2)
        worker = PausableWorker(client, f"{task_queue}-paused")
        await worker.start()
        try:
            cid, handle = await _paused_case(st, worker)
            sp, k = bearer(ring, A.social_protection), key()
            body = {
                "purpose": "data_sharing",
                "granted": True,
                "agency": "legal_aid",
                "document": DOC,
            }
            stopper.hook = worker.stop
            r = await st["support"].post(f"/cases/{cid}/consents", json=body, headers={**sp, **k})
            assert r.status_code == 503, r.text
            assert (
                "outcome is unknown" in r.json()["detail"]
                and "same Idempotency-Key" in r.json()["detail"]
            )
            assert await _consents(db_pool, cid) == 0  # nothing shown as done
            row = await db_pool.fetchrow(
                "SELECT state FROM common.idempotency_keys WHERE case_id = $1", cid
            )
            assert row["state"] == "pending"  # the outcome is knowable: sent, not confirmed

            await worker.start()  # the worker comes back and applies the Update that waited for it
            for _ in range(400):
                state = await handle.query(CaseWorkflow.state)
                if "data_sharing:legal_aid" in state.consents:
                    break
                await asyncio.sleep(0.05)
            assert state.consents.get("data_sharing:legal_aid") is True
            # the client's retry with the same key completes it: the same Update id, the rows written once
            r = await st["support"].post(f"/cases/{cid}/consents", json=body, headers={**sp, **k})
            assert r.status_code == 201, r.text
            assert r.json()["current"]["data_sharing:legal_aid"] is True
            r2 = await st["support"].post(f"/cases/{cid}/consents", json=body, headers={**sp, **k})
            assert r2.status_code == 201 and r2.json()["consent_id"] == r.json()["consent_id"]
            assert await _consents(db_pool, cid) == 1
            assert len(await _events(db_pool, cid, "consent_recorded")) == 1
            assert await _accepted_updates(st, cid) == 2  # classify + the consent, once
            row = await db_pool.fetchrow(
                "SELECT state FROM common.idempotency_keys WHERE case_id = $1", cid
            )
            assert row["state"] == "applied"
            await handle.terminate()
        finally:
            await worker.stop()


async def test_update_timed_out_then_retried_before_the_worker_returns_applies_once(
    dev_env, db_pool, db_url, ring, task_queue
):
    client, stopper = _intercepted(dev_env)
    async with service_stack(
        dev_env, db_pool, db_url, ring, task_queue, services=("support",), client=client
    ) as st:
        st.runtimes["support"].extras["update_rpc_timeout"] = timedelta(seconds=1)
        worker = PausableWorker(client, f"{task_queue}-paused")
        await worker.start()
        try:
            cid, handle = await _paused_case(st, worker)
            sp, k = bearer(ring, A.social_protection), key()
            stopper.hook = worker.stop
            r = await st["support"].post(
                f"/cases/{cid}/consents", json=CONSENT, headers={**sp, **k}
            )
            assert r.status_code == 503, r.text
            assert await _consents(db_pool, cid) == 0
            await worker.start()
            st.runtimes["support"].extras["update_rpc_timeout"] = timedelta(seconds=15)
            r = await st["support"].post(
                f"/cases/{cid}/consents", json=CONSENT, headers={**sp, **k}
            )
            assert r.status_code == 201, r.text
            assert await _consents(db_pool, cid) == 1
            assert len(await _events(db_pool, cid, "consent_recorded")) == 1
            assert await _accepted_updates(st, cid) == 2
            await handle.terminate()
        finally:
            await worker.stop()


# ---- item 7 ------------------------------------------------------------------------------------
async def test_pending_invitee_gets_403_on_support_actions_until_it_accepts(
    ts_env, db_pool, db_url, ring, task_queue
):
    async with service_stack(
        ts_env, db_pool, db_url, ring, task_queue, services=("support",)
    ) as st:
        cid = await _open_in_verify(st, ts_env)
        handle = st.client.get_workflow_handle(cid)
        await handle.execute_update(
            CaseWorkflow.record_consent,
            RecordConsent(
                actor=actor(A.social_protection),
                purpose=ConsentPurpose.data_sharing,
                granted=True,
                agency=A.legal_aid,
            ),
        )
        s = await handle.execute_update(
            CaseWorkflow.request_handoff,
            RequestHandoff(
                actor=actor(A.social_protection),
                kind=HandoffKind.referral,
                to_agency=A.legal_aid,
                reason="wages",
            ),
        )
        version = s.version
        la = bearer(ring, A.legal_aid)
        attempts = [
            ("/consents", CONSENT),
            ("/support-plan", PLAN),
            (
                "/services",
                {**SERVICE, "service_type": "legal_advice", "provider_agency": "legal_aid"},
            ),
        ]
        for path, body in attempts:
            r = await st["support"].post(f"/cases/{cid}{path}", json=body, headers={**la, **key()})
            assert r.status_code == 403, (path, r.text)
            assert "has not accepted the handoff yet" in r.json()["detail"], r.text
        assert (await handle.query(CaseWorkflow.state)).version == version
        assert (
            await _consents(db_pool, cid) == 0
        )  # none from the invitee (the owner recorded its consent in the workflow)
        # it may read enough to decide, and answer
        r = await st["support"].get(f"/cases/{cid}/handoffs", headers=la)
        assert r.status_code == 200 and r.json()["items"][0]["state"] == "requested"
        r = await st["support"].post(
            f"/handoffs/{cid}/h1/respond", json={"accept": True}, headers=la
        )
        assert r.status_code == 200, r.text
        r = await st["support"].post(f"/cases/{cid}/consents", json=CONSENT, headers=la)
        assert r.status_code == 201, r.text


async def test_only_the_invited_agency_answers_a_handoff_over_http(
    ts_env, db_pool, db_url, ring, task_queue
):
    async with service_stack(
        ts_env, db_pool, db_url, ring, task_queue, services=("support",)
    ) as st:
        cid = await _open_in_verify(st, ts_env)
        handle = st.client.get_workflow_handle(cid)
        await handle.execute_update(
            CaseWorkflow.record_consent,
            RecordConsent(
                actor=actor(A.social_protection),
                purpose=ConsentPurpose.data_sharing,
                granted=True,
                agency=A.legal_aid,
            ),
        )
        await handle.execute_update(
            CaseWorkflow.request_handoff,
            RequestHandoff(
                actor=actor(A.social_protection),
                kind=HandoffKind.referral,
                to_agency=A.legal_aid,
                reason="wages",
            ),
        )
        for who in (
            bearer(ring, A.womens_union),
            bearer(ring, A.legal_aid, province="79"),
            bearer(ring, A.legal_aid, Role.auditor),
        ):
            r = await st["support"].post(
                f"/handoffs/{cid}/h1/respond", json={"accept": True}, headers=who
            )
            assert r.status_code == 403, r.text
        r = await st["support"].post(
            f"/handoffs/{cid}/h9/respond", json={"accept": True}, headers=bearer(ring, A.legal_aid)
        )
        assert r.status_code == 404


# ---- item 9 ------------------------------------------------------------------------------------
IDENTIFY = {
    "status": "ActualVictimOfTrafficking",
    "deciding_org": "Police",
    "justification": "statements heard",
    "evidence": [{"kind": "statement_of_person", "source": "interview", "date": TODAY}],
}


async def test_commune_supervisor_decides_identification_only_with_an_override_reason(
    ts_env, db_pool, db_url, ring, task_queue
):
    async with service_stack(
        ts_env, db_pool, db_url, ring, task_queue, services=("verification",)
    ) as st:
        cid = await _open_in_verify(st, ts_env)
        handle = st.client.get_workflow_handle(cid)
        s = await handle.execute_update(
            CaseWorkflow.decide,
            Decide(
                actor=actor(A.social_protection),
                justification="police reply",
                decision=VerifyDecision(result=VerifyResult.confirmed),
            ),
        )
        assert s.owner_agency == A.police
        commune_sup = bearer(ring, A.commune, Role.supervisor, user="commune-sup")
        r = await st["verification"].post(
            f"/cases/{cid}/identification", json=IDENTIFY, headers=commune_sup
        )
        assert r.status_code == 403, r.text
        assert "override_reason" in r.json()["detail"] and "owned by police" in r.json()["detail"]
        assert (
            await db_pool.fetchval(
                "SELECT count(*) FROM verification.evidence_items WHERE case_id = $1", cid
            )
            == 0
        )  # rolled back with the refusal
        r = await st["verification"].post(
            f"/cases/{cid}/identification",
            headers=commune_sup,
            json={
                **IDENTIFY,
                "override_reason": "police unit disbanded; provincial instruction 12/2026",
            },
        )
        assert r.status_code == 200, r.text
        assert r.json()["case"]["trafficking_status"] == "ActualVictimOfTrafficking"
        decided = (await _events(db_pool, cid, "stage_decided", at_least=3))[-1]
        data = decided["data"] if isinstance(decided["data"], dict) else json.loads(decided["data"])
        assert (
            data["override"]["by_agency"] == "commune"
            and data["override"]["owner_agency"] == "police"
        )
        assert decided["actor_user_id"] == "commune-sup"


async def test_police_supervisor_decides_police_identification_without_override(
    ts_env, db_pool, db_url, ring, task_queue
):
    async with service_stack(
        ts_env, db_pool, db_url, ring, task_queue, services=("verification",)
    ) as st:
        cid = await _open_in_verify(st, ts_env)
        await st.client.get_workflow_handle(cid).execute_update(
            CaseWorkflow.decide,
            Decide(
                actor=actor(A.social_protection),
                justification="police reply",
                decision=VerifyDecision(result=VerifyResult.confirmed),
            ),
        )
        r = await st["verification"].post(
            f"/cases/{cid}/identification",
            json=IDENTIFY,
            headers=bearer(ring, A.police, Role.supervisor),
        )
        assert r.status_code == 200, r.text
        decided = (await _events(db_pool, cid, "stage_decided", at_least=3))[-1]
        data = decided["data"] if isinstance(decided["data"], dict) else json.loads(decided["data"])
        assert "override" not in data
