"""Key rotation: what was written under key A stays readable after B becomes active (A kept), new writes
use B, and a ciphertext under a key the ring does not hold fails with an error naming that key."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

import pytest
from google.protobuf.message import Message
from temporalio.api.common.v1 import Payload
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from nrm.cli import main as nrm
from shared.contract import CaseState
from shared.crypto import CryptoError, KeyRing
from shared.temporal import KeyRingCodec, make_data_converter
from tests.helpers.intake_stack import open_body
from tests.helpers.security_stack import A, bearer, service_stack


def client_with(env: Any, ring: KeyRing) -> Client:
    """The environment's connection (and its interceptors) with this ring's codec."""
    config = env.client.config()
    config["data_converter"] = make_data_converter(ring)
    return Client(**config)


def field_key_id(ciphertext: bytes) -> str:
    assert ciphertext[:1] in (b"\x01", b"\x02")  # column-bound, or column- and row-bound
    return ciphertext[2 : 2 + ciphertext[1]].decode()


async def payload_key_ids(client: Client, case_id: str) -> set[str]:
    history = await client.get_workflow_handle(case_id).fetch_history()
    ids = set()
    for event in history.events:
        _collect_key_ids(event, ids)
    return ids


def _collect_key_ids(message: Message, ids: set[str]) -> None:
    """Every codec-encoded Payload anywhere in the message (single, repeated and map fields)."""
    if isinstance(message, Payload):
        if message.metadata.get("encoding") == KeyRingCodec.ENCODING:
            ids.add(message.metadata["encryption-key-id"].decode())
        return
    for _, value in message.ListFields():
        if isinstance(value, Message):
            _collect_key_ids(value, ids)
        elif not isinstance(value, str | bytes) and hasattr(
            value, "__len__"
        ):  # repeated or map (upb containers)
            items = value.values() if hasattr(value, "values") else value
            for item in items:
                if isinstance(item, Message):
                    _collect_key_ids(item, ids)


async def test_rotation_keeps_old_cases_readable(
    ts_env: Any, db_pool: Any, db_url: str, task_queue: str
) -> None:
    ring_a = KeyRing.generate()
    ring_b = ring_a.rotated()
    assert (ring_a.active_key_id, ring_b.active_key_id) == ("k1", "k2")
    assert (
        ring_b.data_keys["k1"] == ring_a.data_keys["k1"]
        and ring_b.blind_index_key == ring_a.blind_index_key
    )
    client_a, client_b = client_with(ts_env, ring_a), client_with(ts_env, ring_b)
    police, sp = (
        bearer(ring_a, A.police),
        bearer(ring_a, A.social_protection),
    )  # signing key is kept too

    # ---- under key A: a case opened and classified; its workers stop, the case stays open ------------
    async with service_stack(
        ts_env,
        db_pool,
        db_url,
        ring_a,
        task_queue,
        client=client_a,
        services=("intake", "oversight"),
        keep_cases=True,
    ) as st:
        r = await st["intake"].post("/cases", json=open_body(channel="walk_in"), headers=police)
        assert r.status_code == 201, r.text
        case_id, person_id = r.json()["case_id"], r.json()["person_ref"]
        r = await st["intake"].post(
            f"/cases/{case_id}/classify",
            headers=police,
            json={
                "classification": "trafficking_suspected",
                "justification": "signs of forced marriage",
            },
        )
        assert r.status_code == 200 and r.json()["stage"] == "verify", r.text
    row = await db_pool.fetchrow(
        "SELECT person_id, first_name, identity_number FROM intake.persons WHERE person_id = $1",
        person_id,
    )
    assert field_key_id(bytes(row["first_name"])) == "k1"
    assert await payload_key_ids(client_a, case_id) == {"k1"}

    # ---- a process with B active (A kept): reads A's data, advances A's workflow, writes under B ------
    async with service_stack(
        ts_env,
        db_pool,
        db_url,
        ring_b,
        task_queue,
        client=client_b,
        services=("intake", "verification", "oversight"),
    ) as st:
        st.workers.adopt(case_id)
        r = await st["intake"].get(f"/persons/{person_id}", headers=sp)
        assert r.status_code == 200, r.text
        identity = r.json()["person_identity"]
        assert (
            identity["prs_FirstName"] == "Lan" and identity["prs_IdentityNumber"] == "001300012345"
        )
        # the workflow's history (payloads under k1) is replayed by a worker whose codec writes k2
        r = await st["verification"].post(
            f"/cases/{case_id}/verification",
            headers=sp,
            json={"result": "confirmed", "justification": "joint check done"},
        )
        assert r.status_code == 200 and r.json()["stage"] == "identify", r.text
        state = await client_b.get_workflow_handle(case_id).query("state", result_type=CaseState)
        assert state.stage.value == "identify" and state.version == r.json()["version"]
        assert await payload_key_ids(client_b, case_id) == {"k1", "k2"}
        # a new case is written under B, in PostgreSQL and in Temporal
        r = await st["intake"].post(
            "/cases",
            json=open_body(channel="walk_in", person={"prs_IdentityNumber": "X9876"}),
            headers=police,
        )
        assert r.status_code == 201, r.text
        new_case, new_person = r.json()["case_id"], r.json()["person_ref"]
        new_row = await db_pool.fetchrow(
            "SELECT person_id, first_name FROM intake.persons WHERE person_id = $1", new_person
        )
        assert field_key_id(bytes(new_row["first_name"])) == "k2"
        assert await payload_key_ids(client_b, new_case) == {"k2"}

        # ---- a ring without B: a clear error naming the key, never garbage -------------------------
        with pytest.raises(CryptoError, match="unknown key id 'k2'"):
            ring_a.decrypt_field(
                bytes(new_row["first_name"]), "persons.first_name", row=new_row["person_id"]
            )
        with pytest.raises(CryptoError, match="unknown key id 'k2'"):
            await client_a.get_workflow_handle(case_id).query("state", result_type=CaseState)
        # and the old ring still reads what it wrote
        assert (
            ring_a.decrypt_field(
                bytes(row["first_name"]), "persons.first_name", row=row["person_id"]
            )
            == "Lan"
        )


async def test_unknown_or_tampered_key_is_a_clear_error() -> None:
    a, other = KeyRing.generate(), KeyRing.generate()
    b = a.rotated()
    blob = b.encrypt_field("Nguyễn Thị Lan", "persons.first_name")
    assert blob is not None and field_key_id(blob) == "k2"
    with pytest.raises(CryptoError) as err:
        a.decrypt_field(blob, "persons.first_name")
    assert str(err.value) == "unknown key id 'k2': this key ring holds ['k1']"
    # same key id, different key (another installation's k1): authentication fails, no garbage returned
    with pytest.raises(CryptoError, match="under key 'k1' failed authentication"):
        other.decrypt_field(a.encrypt_field("Lan", "persons.first_name"), "persons.first_name")
    # bound to the column: a value moved to another column does not decrypt
    with pytest.raises(CryptoError, match="failed authentication"):
        b.decrypt_field(blob, "persons.second_name")

    payloads = pydantic_data_converter.payload_converter.to_payloads([{"name": "Lan"}])
    encoded = await KeyRingCodec(b).encode(payloads)
    assert encoded[0].metadata["encryption-key-id"] == b"k2"
    with pytest.raises(CryptoError, match="cannot decrypt Temporal payload: unknown key id 'k2'"):
        await KeyRingCodec(a).decode(encoded)
    assert await KeyRingCodec(b).decode(encoded) == payloads
    # a payload without a key id, claiming our encoding
    forged = Payload(metadata={"encoding": KeyRingCodec.ENCODING}, data=encoded[0].data)
    with pytest.raises(CryptoError, match="unknown key id ''"):
        await KeyRingCodec(b).decode([forged])


def test_nrm_keys_rotate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "keys" / "keyring.json"
    monkeypatch.delenv("NRM_KEYRING_JSON", raising=False)
    monkeypatch.setenv("NRM_KEYRING_FILE", str(path))
    monkeypatch.setenv("NRM_DATA_DIR", str(tmp_path / "data"))
    original = KeyRing.generate()
    original.save(path)
    secret = original.encrypt_field("001300012345", "persons.identity_number")

    assert nrm(["keys", "rotate"]) == 0
    assert "active data key is now k2" in capsys.readouterr().out
    rotated = KeyRing.from_json(path.read_text())
    assert rotated.active_key_id == "k2" and sorted(rotated.data_keys) == ["k1", "k2"]
    assert rotated.data_keys["k1"] == original.data_keys["k1"]
    assert (rotated.blind_index_key, rotated.audit_key, rotated.signing_key_pem) == (
        original.blind_index_key,
        original.audit_key,
        original.signing_key_pem,
    )
    assert rotated.decrypt_field(secret, "persons.identity_number") == "001300012345"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert not path.with_suffix(".tmp").exists()

    assert nrm(["keys", "rotate"]) == 0
    again = json.loads(path.read_text())
    assert again["active_key_id"] == "k3" and sorted(again["data_keys"]) == ["k1", "k2", "k3"]
    assert (
        KeyRing.from_json(path.read_text()).decrypt_field(secret, "persons.identity_number")
        == "001300012345"
    )


def test_nrm_keys_rotate_without_a_ring(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NRM_KEYRING_JSON", raising=False)
    monkeypatch.setenv("NRM_KEYRING_FILE", str(tmp_path / "missing.json"))
    monkeypatch.setenv("NRM_DATA_DIR", str(tmp_path / "data"))
    with pytest.raises(CryptoError, match="no key ring at"):
        nrm(["keys", "rotate"])
    assert not (
        tmp_path / "missing.json"
    ).exists()  # rotation never invents a ring (old data would be lost)
