"""The codec server (nrm/codec_server.py): decrypts Temporal payloads for admins only, and logs who."""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx
import pytest
from google.protobuf import json_format
from temporalio.api.common.v1 import Payload, Payloads
from temporalio.contrib.pydantic import pydantic_data_converter

from nrm.codec_server import build_codec_app
from shared.auth import mint_token
from shared.config import Settings
from shared.crypto import KeyRing
from shared.domain import AgencyRole, Role
from shared.temporal import KeyRingCodec
from tests.helpers.security_stack import json_logs

SECRET = "Nguyễn Thị Lan, CCCD 001300012345"


def token(
    ring: KeyRing,
    *roles: Role,
    agency: AgencyRole = AgencyRole.steering_committee,
    province: str = "*",
) -> str:
    return mint_token(
        ring,
        user_id=f"u-{'-'.join(r.value for r in roles)}",
        roles=list(roles),
        agency=agency,
        province=province,
    )


async def encrypted_body(ring: KeyRing, *values: Any) -> tuple[bytes, list[Payload]]:
    plain = pydantic_data_converter.payload_converter.to_payloads(list(values))
    encoded = await KeyRingCodec(ring).encode(plain)
    body = json_format.MessageToJson(Payloads(payloads=encoded)).encode()
    return body, plain


@pytest.fixture
def ring() -> KeyRing:  # its own ring: the codec app must decrypt with the ring it is given
    return KeyRing.generate()


async def test_decode_needs_an_admin_token(ring: KeyRing) -> None:
    app = build_codec_app(Settings(), ring)
    body, plain = await encrypted_body(ring, {"name": SECRET}, 42)
    assert SECRET.encode() not in body and SECRET.encode("utf-8") not in base64.b64decode(
        json.loads(body)["payloads"][0]["data"]
    )
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://codec"
    ) as http:
        r = await http.post("/decode", content=body, headers={"Content-Type": "application/json"})
        assert r.status_code == 401 and r.json()["detail"] == "missing bearer token"
        r = await http.post("/decode", content=body, headers={"Authorization": "Bearer garbage"})
        assert r.status_code == 401 and r.json()["detail"].startswith("invalid token")
        other = token(KeyRing.generate(), Role.admin)
        r = await http.post("/decode", content=body, headers={"Authorization": f"Bearer {other}"})
        assert r.status_code == 401
        for roles, agency, province in (
            ((Role.caseworker,), AgencyRole.police, "01"),
            ((Role.supervisor,), AgencyRole.social_protection, "01"),
            ((Role.auditor,), AgencyRole.steering_committee, "*"),
        ):
            r = await http.post(
                "/decode",
                content=body,
                headers={
                    "Authorization": f"Bearer {token(ring, *roles, agency=agency, province=province)}"
                },
            )
            assert r.status_code == 403 and "admin" in r.json()["detail"], roles
            assert SECRET not in r.text
            r = await http.post(
                "/encode",
                content=body,
                headers={
                    "Authorization": f"Bearer {token(ring, *roles, agency=agency, province=province)}"
                },
            )
            assert r.status_code == 403

        admin = {"Authorization": f"Bearer {token(ring, Role.admin)}"}
        with json_logs("codec-server") as logs:
            r = await http.post("/decode", content=body, headers=admin)
        assert r.status_code == 200, r.text
        decoded = json_format.ParseDict(r.json(), Payloads())
        assert list(decoded.payloads) == plain
        values = pydantic_data_converter.payload_converter.from_payloads(
            list(decoded.payloads), [dict, int]
        )
        assert values == [{"name": SECRET}, 42]
        # the decode is logged with who and how many, never the content
        lines = [json.loads(line) for line in logs.getvalue().splitlines() if line.startswith("{")]
        decoded_lines = [e for e in lines if e.get("event") == "payloads_decoded"]
        assert decoded_lines == [{**decoded_lines[0], "user_id": "u-admin", "count": 2}], lines
        assert SECRET not in logs.getvalue() and "Nguy" not in logs.getvalue()

        # round trip through the server's /encode: what it encrypts, it decrypts; the ciphertext names the key
        r = await http.post(
            "/encode",
            content=json_format.MessageToJson(Payloads(payloads=plain)).encode(),
            headers=admin,
        )
        assert r.status_code == 200
        encoded = json_format.ParseDict(r.json(), Payloads())
        assert all(
            p.metadata["encryption-key-id"] == ring.active_key_id.encode() for p in encoded.payloads
        )
        assert all(SECRET.encode() not in p.data for p in encoded.payloads)
        r = await http.post(
            "/decode", content=json_format.MessageToJson(encoded).encode(), headers=admin
        )
        assert list(json_format.ParseDict(r.json(), Payloads()).payloads) == plain


async def test_decode_errors_are_clear(ring: KeyRing) -> None:
    app = build_codec_app(Settings(), ring)
    admin = {"Authorization": f"Bearer {token(ring, Role.admin)}"}
    foreign_body, _ = await encrypted_body(
        KeyRing.generate().rotated(), "x"
    )  # key id k2, unknown here
    tampered = json.loads((await encrypted_body(ring, "y"))[0])
    data = bytearray(base64.b64decode(tampered["payloads"][0]["data"]))
    data[-1] ^= 1
    tampered["payloads"][0]["data"] = base64.b64encode(bytes(data)).decode()
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://codec"
    ) as http:
        r = await http.post("/decode", content=foreign_body, headers=admin)
        assert r.status_code == 422 and "unknown key id 'k2'" in r.json()["detail"]
        r = await http.post("/decode", content=json.dumps(tampered).encode(), headers=admin)
        assert r.status_code == 422 and "failed authentication" in r.json()["detail"]
        r = await http.post("/decode", content=b"not json", headers=admin)
        assert r.status_code == 400
        # payloads that are not ours pass through unchanged (the UI sends every payload)
        plain = pydantic_data_converter.payload_converter.to_payloads(["clear"])
        r = await http.post(
            "/decode",
            content=json_format.MessageToJson(Payloads(payloads=plain)).encode(),
            headers=admin,
        )
        assert (
            r.status_code == 200
            and list(json_format.ParseDict(r.json(), Payloads()).payloads) == plain
        )
