"""Temporal client, the encrypted pydantic data converter, search attributes and task queues."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from temporalio.api.common.v1 import Payload
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import (
    AddSearchAttributesRequest,
    ListSearchAttributesRequest,
)
from temporalio.client import Client
from temporalio.common import SearchAttributeKey
from temporalio.contrib.pydantic import PydanticPayloadConverter, pydantic_data_converter
from temporalio.converter import (
    DataConverter,
    DefaultFailureConverterWithEncodedAttributes,
    EncodingPayloadConverter,
    PayloadCodec,
)
from temporalio.service import RPCError, TLSConfig

from shared.crypto import CryptoError, KeyRing
from shared.tracing import tracing_interceptors

# One task queue for the workflow worker, one per service for the activities on its data.
WORKFLOW_TASK_QUEUE = "nrm-workflows"
INTAKE_TASK_QUEUE = "nrm-intake"
VERIFICATION_TASK_QUEUE = "nrm-verification"
SUPPORT_TASK_QUEUE = "nrm-support"
OVERSIGHT_TASK_QUEUE = "nrm-oversight"

# Non-PII search attributes only: they are never encrypted by the codec.
CASE_STAGE = SearchAttributeKey.for_keyword("CaseStage")
OWNER_AGENCY = SearchAttributeKey.for_keyword("OwnerAgency")
JURISDICTION = SearchAttributeKey.for_keyword("Jurisdiction")
DEADLINE_AT = SearchAttributeKey.for_datetime("DeadlineAt")
ESCALATION_LEVEL = SearchAttributeKey.for_int("EscalationLevel")
CASE_CATEGORY = SearchAttributeKey.for_keyword_list("CaseCategory")
CASE_STATUS = SearchAttributeKey.for_keyword("CaseStatus")
PENDING_HANDOFF_TO = SearchAttributeKey.for_keyword_list(
    "PendingHandoffTo"
)  # agency roles asked to accept
ASSIGNEE = SearchAttributeKey.for_keyword("Assignee")  # staff user id, not a person in the case

SEARCH_ATTRIBUTES: tuple[SearchAttributeKey, ...] = (  # type: ignore[type-arg]
    CASE_STAGE,
    OWNER_AGENCY,
    JURISDICTION,
    DEADLINE_AT,
    ESCALATION_LEVEL,
    CASE_CATEGORY,
    CASE_STATUS,
    PENDING_HANDOFF_TO,
    ASSIGNEE,
)
_INDEXED_TYPE = {
    "Keyword": IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
    "Datetime": IndexedValueType.INDEXED_VALUE_TYPE_DATETIME,
    "Int": IndexedValueType.INDEXED_VALUE_TYPE_INT,
    "KeywordList": IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD_LIST,
}


def search_attribute_cli_flags() -> list[str]:
    """`--search-attribute Name=Type` flags for `temporal server start-dev`."""
    flags: list[str] = []
    for key in SEARCH_ATTRIBUTES:
        flags += ["--search-attribute", f"{key.name}={_type_name(key)}"]
    return flags


def _type_name(key: SearchAttributeKey) -> str:  # type: ignore[type-arg]
    return {
        1: "Text",
        2: "Keyword",
        3: "Int",
        4: "Double",
        5: "Bool",
        6: "Datetime",
        7: "KeywordList",
    }[int(key.indexed_value_type)]


class UnencryptedPayloadError(CryptoError):
    """A payload that NRM's codec did not encrypt: whoever sent it does not hold the data key."""


REFUSED_ENCODING = b"binary/nrm-refused-unencrypted"


class KeyRingCodec(PayloadCodec):
    """AES-GCM with the key id in the metadata: encrypt with the active key, decrypt by the stored id.

    The encryption is what authenticates a workflow's inputs: the actor in an Update is believed because
    only NRM's services hold the key that wrote it (AES-GCM is authenticated). So a payload that NRM did
    not encrypt is never passed on as if it were ours (issue 10 item 6: a client without the data key sent
    an Update claiming admin in province *). Two modes:

    - `refuse="marker"` (the data converter of every NRM client and worker, see make_data_converter): the
      payload, or one claiming our encoding that does not decrypt (forged, or a key this process lacks),
      is replaced by a refusal marker (encoding `binary/nrm-refused-unencrypted`, no data) that no payload converter
      accepts, so converting it raises where the value is used: an Update is *rejected* by the worker
      before its validator (the case keeps running), a workflow started with such an input fails its
      workflow task and never runs, a signal is dropped, an activity fails. Raising here instead would
      fail the whole workflow task that carries the Update, and Temporal would redeliver that task
      forever: anyone reaching the frontend could wedge any live case. The marker's `refused` metadata
      says why (never the content).
    - `refuse="raise"` (default): decoding raises UnencryptedPayloadError / CryptoError (tools, tests).
    - `strict=False`: pass the payload through as it is; for the codec server only, which shows operators
      what a history holds, a stranger's plain payloads included."""

    ENCODING = b"binary/encrypted"

    def __init__(self, ring: KeyRing, *, strict: bool = True, refuse: str = "raise") -> None:
        if refuse not in ("marker", "raise"):
            raise ValueError("refuse: 'marker' or 'raise'")
        self._ring = ring
        self._strict = strict
        self._refuse = refuse

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        out = []
        for p in payloads:
            kid, blob = self._ring.encrypt_bytes(p.SerializeToString(), b"temporal-payload")
            out.append(
                Payload(
                    metadata={"encoding": self.ENCODING, "encryption-key-id": kid.encode()},
                    data=blob,
                )
            )
        return out

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        out = []
        for p in payloads:
            if p.metadata.get("encoding") != self.ENCODING:
                if not self._strict:
                    out.append(p)
                    continue
                encoding = p.metadata.get("encoding", b"").decode(errors="replace")[:40]
                why = (
                    f"refused an unencrypted Temporal payload (encoding {encoding!r}): it was not sent by an "
                    "NRM client holding the data key"
                )
                if self._refuse == "raise":
                    raise UnencryptedPayloadError(why)
                out.append(self._refused(why))
                continue
            kid = p.metadata.get("encryption-key-id", b"").decode(errors="replace")
            try:
                out.append(
                    Payload.FromString(self._ring.decrypt_bytes(kid, p.data, b"temporal-payload"))
                )
            except CryptoError as exc:
                if self._refuse == "raise":
                    raise CryptoError(f"cannot decrypt Temporal payload: {exc}") from None
                out.append(self._refused(f"cannot decrypt Temporal payload: {exc}"))
        return out

    @staticmethod
    def _refused(why: str) -> Payload:
        return Payload(metadata={"encoding": REFUSED_ENCODING, "refused": why.encode()[:300]})


class _RefusedPayloadConverter(EncodingPayloadConverter):
    """Turns the codec's refusal marker back into the reason, as a CryptoError where the value is used
    (an Update rejected, a workflow task failed, a client's clear error). Never encodes anything."""

    @property
    def encoding(self) -> str:
        return REFUSED_ENCODING.decode()

    def to_payload(self, value: Any) -> Payload | None:
        return None

    def from_payload(self, payload: Payload, type_hint: type | None = None) -> Any:
        why = payload.metadata.get("refused", b"refused payload").decode(errors="replace")
        if why.startswith("refused an unencrypted"):
            raise UnencryptedPayloadError(why)
        raise CryptoError(why)


class NrmPayloadConverter(PydanticPayloadConverter):
    """pydantic JSON, plus the refusal marker's converter (last: it never encodes)."""

    def __init__(self) -> None:
        super().__init__()
        self._set_converters(*self.converters.values(), _RefusedPayloadConverter())


def make_data_converter(ring: KeyRing) -> DataConverter:
    return dataclasses.replace(
        pydantic_data_converter,
        payload_converter_class=NrmPayloadConverter,
        payload_codec=KeyRingCodec(ring, refuse="marker"),
        failure_converter_class=DefaultFailureConverterWithEncodedAttributes,
    )


class TemporalTLSError(Exception):
    """The NRM_TEMPORAL_TLS_* / NRM_TEMPORAL_API_KEY* variables are incomplete or unreadable."""


def temporal_transport(env: dict[str, str] | None = None) -> tuple[TLSConfig | None, str | None]:
    """(mTLS config, bearer token) for reaching a production Temporal frontend (see deploy/README.md,
    "Temporal frontend"), from the environment (the secret store mounts the files):

    - NRM_TEMPORAL_TLS_CA_FILE: the CA that signed the frontend's certificate (server authentication)
    - NRM_TEMPORAL_TLS_CERT_FILE + NRM_TEMPORAL_TLS_KEY_FILE: this process's client certificate (mTLS)
    - NRM_TEMPORAL_TLS_SERVER_NAME: the frontend's name in its certificate, if not the address's host
    - NRM_TEMPORAL_API_KEY_FILE (or NRM_TEMPORAL_API_KEY): a token the frontend's authorizer maps to this
      service's permissions; sent as `Authorization: Bearer`.
    None of them set: plain connection (the embedded dev server on 127.0.0.1)."""
    env = dict(os.environ) if env is None else env

    def read(name: str) -> bytes | None:
        path = env.get(name)
        if not path:
            return None
        try:
            return Path(path).read_bytes()
        except OSError as exc:
            raise TemporalTLSError(f"{name}: cannot read {path}: {exc.strerror}") from None

    ca, cert, key = (
        read("NRM_TEMPORAL_TLS_CA_FILE"),
        read("NRM_TEMPORAL_TLS_CERT_FILE"),
        read("NRM_TEMPORAL_TLS_KEY_FILE"),
    )
    if (cert is None) != (key is None):
        raise TemporalTLSError(
            "NRM_TEMPORAL_TLS_CERT_FILE and NRM_TEMPORAL_TLS_KEY_FILE: set both or neither"
        )
    tls = None
    if ca or cert or env.get("NRM_TEMPORAL_TLS_SERVER_NAME"):
        tls = TLSConfig(
            server_root_ca_cert=ca,
            client_cert=cert,
            client_private_key=key,
            domain=env.get("NRM_TEMPORAL_TLS_SERVER_NAME") or None,
        )
    token = read("NRM_TEMPORAL_API_KEY_FILE")
    api_key = token.decode().strip() if token else (env.get("NRM_TEMPORAL_API_KEY") or None)
    return tls, api_key


async def connect(address: str, namespace: str, ring: KeyRing) -> Client:
    tls, api_key = temporal_transport()
    return await Client.connect(
        address,
        namespace=namespace,
        data_converter=make_data_converter(ring),
        tls=tls,
        api_key=api_key,  # tls None: plain, or TLS when an api key is set
        interceptors=tracing_interceptors(),
    )  # none unless NRM_OTLP_ENDPOINT is set


async def ensure_search_attributes(client: Client) -> list[str]:
    """Register the custom search attributes that are missing (idempotent). Returns those added."""
    try:
        existing = await client.operator_service.list_search_attributes(
            ListSearchAttributesRequest(namespace=client.namespace)
        )
        present = set(existing.custom_attributes)
    except RPCError:  # the time-skipping test server does not implement listing; adding still works
        present = set()
    missing = {
        k.name: _INDEXED_TYPE[_type_name(k)] for k in SEARCH_ATTRIBUTES if k.name not in present
    }
    if missing:
        try:
            await client.operator_service.add_search_attributes(
                AddSearchAttributesRequest(namespace=client.namespace, search_attributes=missing)
            )
        except RPCError as exc:
            if "already" not in str(exc).lower():
                raise
    return sorted(missing)


async def temporal_reachable(client: Client) -> bool:
    try:
        return bool(await client.service_client.check_health())
    except (RPCError, RuntimeError, OSError):
        return False
