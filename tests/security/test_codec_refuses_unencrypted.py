"""Issue 10 item 6: a client that can reach Temporal but does not hold the data key cannot act on a case.

The worker's codec refuses payloads it did not encrypt: an Update whose actor claims admin in province *
(sent with the plain pydantic converter) is rejected and changes nothing, and the case keeps working; a
case started with a plain input never runs. Real time-skipping server, real workers."""

from __future__ import annotations

from datetime import timedelta

import pytest
from temporalio.api.common.v1 import Payload
from temporalio.api.enums.v1 import WorkflowExecutionStatus
from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.contrib.pydantic import pydantic_data_converter

from shared.contract import Actor, CaseInput, Escalate
from shared.crypto import CryptoError, KeyRing
from shared.domain import AgencyRole, Role
from shared.temporal import (
    REFUSED_ENCODING,
    KeyRingCodec,
    UnencryptedPayloadError,
    make_data_converter,
)
from tests.conftest import new_case_id
from tests.helpers.workflow_harness import actor, facts, running_workers
from workflows.case_workflow import CaseWorkflow

INTRUDER = Actor(
    user_id="intruder",
    agency=AgencyRole.steering_committee,
    roles=frozenset({Role.admin}),
    province="*",
)


def plain_client(client: Client) -> Client:
    """Same server and namespace, no data key: what anyone who reaches the frontend can build."""
    return Client(
        client.service_client, namespace=client.namespace, data_converter=pydantic_data_converter
    )


async def _failed_workflow_tasks(client: Client, case_id: str) -> int:
    n = 0
    async for ev in client.get_workflow_handle(case_id).fetch_history_events():
        n += ev.HasField("workflow_task_failed_event_attributes")
    return n


async def test_codec_refuses_a_payload_it_did_not_encrypt() -> None:
    ring = KeyRing.generate()
    plain = pydantic_data_converter.payload_converter.to_payloads([INTRUDER])
    with pytest.raises(UnencryptedPayloadError, match="refused an unencrypted Temporal payload"):
        await KeyRingCodec(ring).decode(plain)
    assert isinstance(UnencryptedPayloadError("x"), CryptoError)
    # ours still decode, and a payload whose metadata merely claims our encoding fails authentication
    ours = await KeyRingCodec(ring).encode(plain)
    assert await KeyRingCodec(ring).decode(ours) == plain
    claimed = Payload(
        metadata={"encoding": KeyRingCodec.ENCODING, "encryption-key-id": b"k1"},
        data=plain[0].SerializeToString(),
    )
    with pytest.raises(CryptoError, match="failed authentication"):
        await KeyRingCodec(ring).decode([claimed])
    # the codec server shows what a history holds, a stranger's plain payloads included
    assert await KeyRingCodec(ring, strict=False).decode(plain) == plain
    # the workers' converter: a refusal marker, which converting turns into the reason, for plain and forged
    converter = make_data_converter(ring)
    assert converter.payload_codec is not None
    for foreign, why in (
        (plain, "refused an unencrypted Temporal payload"),
        ([claimed], "failed authentication"),
    ):
        [marker] = await converter.payload_codec.decode(foreign)
        assert marker.metadata["encoding"] == REFUSED_ENCODING and marker.data == b""
        with pytest.raises(CryptoError, match=why):
            converter.payload_converter.from_payloads([marker], [Actor])
        with pytest.raises(
            KeyError
        ):  # a converter without NRM's marker converter does not accept it either
            pydantic_data_converter.payload_converter.from_payloads([marker], [Actor])


async def test_an_update_from_a_client_without_the_data_key_is_rejected(
    ts_env, db_pool, ring, task_queue
):
    async with running_workers(ts_env.client, db_pool, ring, task_queue) as h:
        cid = new_case_id()
        handle = await h.open(facts(cid))
        await h.events(cid, 1)
        before = await handle.query(CaseWorkflow.state)

        intruder = plain_client(ts_env.client).get_workflow_handle(cid)
        with pytest.raises(WorkflowUpdateFailedError) as rejected:
            await intruder.execute_update(
                "escalate",
                Escalate(actor=INTRUDER, reason="I say I am the national admin"),
                id="intruder-1",
                rpc_timeout=timedelta(seconds=30),
            )
        assert "Encoded failure" in str(
            rejected.value.cause
        )  # the reason is encrypted: not even that leaks

        assert await _failed_workflow_tasks(ts_env.client, cid) == 0  # rejected, not a wedged case
        after = await handle.query(CaseWorkflow.state)
        assert after.escalation_level == before.escalation_level == 0
        assert after.version == before.version and after.last_event_seq == before.last_event_seq
        kinds = [
            r["kind"]
            for r in await db_pool.fetch(
                "SELECT kind FROM oversight.case_events WHERE case_id = $1 ORDER BY seq", cid
            )
        ]
        assert "escalated_by_supervisor" not in kinds

        # the case is not wedged: a real supervisor's Update still applies
        supervisor = actor(AgencyRole.hotline, Role.supervisor)
        state = await handle.execute_update(
            CaseWorkflow.escalate, Escalate(actor=supervisor, reason="overdue, raising it by hand")
        )
        assert state.escalation_level == 1
        await handle.terminate()


async def test_a_case_started_with_an_unencrypted_input_does_not_run(
    ts_env, db_pool, ring, task_queue
):
    async with running_workers(ts_env.client, db_pool, ring, task_queue) as h:
        cid = new_case_id()
        f = facts(cid).model_copy(update={"opened_by": INTRUDER, "opened_at": await h.server_now()})
        handle = await plain_client(ts_env.client).start_workflow(
            "CaseWorkflow",
            CaseInput(facts=f, oversight_task_queue=h.oversight_task_queue),
            id=cid,
            task_queue=task_queue,
        )
        h.adopt(cid)
        for _ in range(500):  # until the worker has tried (and failed) its first workflow task
            if await _failed_workflow_tasks(ts_env.client, cid):
                break
            await ts_env.sleep(timedelta(seconds=1))
        assert await _failed_workflow_tasks(ts_env.client, cid) >= 1
        desc = await handle.describe()
        assert (
            desc.status == WorkflowExecutionStatus.WORKFLOW_EXECUTION_STATUS_RUNNING
        )  # never got past start
        assert (
            await db_pool.fetchval(
                "SELECT count(*) FROM oversight.case_events WHERE case_id = $1", cid
            )
            == 0
        )
        failure = None
        async for ev in ts_env.client.get_workflow_handle(cid).fetch_history_events():
            if ev.HasField("workflow_task_failed_event_attributes"):
                failure = ev.workflow_task_failed_event_attributes.failure
        assert failure is not None
        err: BaseException | None = await ts_env.client.data_converter.decode_failure(failure)
        messages = []
        while err is not None:
            messages.append(str(err))
            err = err.__cause__
        assert any("refused an unencrypted Temporal payload" in m for m in messages), messages
        await ts_env.client.get_workflow_handle(cid).terminate()


def test_temporal_mtls_and_token_come_from_the_environment(tmp_path) -> None:
    from shared.temporal import TemporalTLSError, temporal_transport

    assert temporal_transport({}) == (None, None)  # the embedded dev server: plain, on 127.0.0.1
    for name, content in (
        ("ca.pem", b"CA"),
        ("nrm.pem", b"CERT"),
        ("nrm.key", b"KEY"),
        ("token", b"tok\n"),
    ):
        (tmp_path / name).write_bytes(content)
    tls, token = temporal_transport(
        {
            "NRM_TEMPORAL_TLS_CA_FILE": str(tmp_path / "ca.pem"),
            "NRM_TEMPORAL_TLS_CERT_FILE": str(tmp_path / "nrm.pem"),
            "NRM_TEMPORAL_TLS_KEY_FILE": str(tmp_path / "nrm.key"),
            "NRM_TEMPORAL_TLS_SERVER_NAME": "temporal.nrm.internal",
            "NRM_TEMPORAL_API_KEY_FILE": str(tmp_path / "token"),
        }
    )
    assert tls is not None and (
        tls.server_root_ca_cert,
        tls.client_cert,
        tls.client_private_key,
        tls.domain,
    ) == (b"CA", b"CERT", b"KEY", "temporal.nrm.internal")
    assert token == "tok"
    with pytest.raises(TemporalTLSError, match="set both or neither"):
        temporal_transport({"NRM_TEMPORAL_TLS_CERT_FILE": str(tmp_path / "nrm.pem")})
    with pytest.raises(TemporalTLSError, match="NRM_TEMPORAL_TLS_CA_FILE: cannot read"):
        temporal_transport({"NRM_TEMPORAL_TLS_CA_FILE": str(tmp_path / "missing.pem")})
