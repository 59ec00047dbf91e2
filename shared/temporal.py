"""Temporal client, the encrypted pydantic data converter, search attributes and task queues."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from temporalio.api.common.v1 import Payload
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest, ListSearchAttributesRequest
from temporalio.client import Client
from temporalio.common import SearchAttributeKey
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DataConverter, DefaultFailureConverterWithEncodedAttributes, PayloadCodec
from temporalio.service import RPCError

from shared.crypto import CryptoError, KeyRing

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
PENDING_HANDOFF_TO = SearchAttributeKey.for_keyword_list("PendingHandoffTo")  # agency roles asked to accept
ASSIGNEE = SearchAttributeKey.for_keyword("Assignee")  # staff user id, not a person in the case

SEARCH_ATTRIBUTES: tuple[SearchAttributeKey, ...] = (  # type: ignore[type-arg]
    CASE_STAGE, OWNER_AGENCY, JURISDICTION, DEADLINE_AT, ESCALATION_LEVEL, CASE_CATEGORY, CASE_STATUS,
    PENDING_HANDOFF_TO, ASSIGNEE,
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
    return {1: "Text", 2: "Keyword", 3: "Int", 4: "Double", 5: "Bool", 6: "Datetime", 7: "KeywordList"}[
        int(key.indexed_value_type)
    ]


class KeyRingCodec(PayloadCodec):
    """AES-GCM with the key id in the metadata: encrypt with the active key, decrypt by the stored id."""

    ENCODING = b"binary/encrypted"

    def __init__(self, ring: KeyRing) -> None:
        self._ring = ring

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        out = []
        for p in payloads:
            kid, blob = self._ring.encrypt_bytes(p.SerializeToString(), b"temporal-payload")
            out.append(Payload(metadata={"encoding": self.ENCODING, "encryption-key-id": kid.encode()}, data=blob))
        return out

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        out = []
        for p in payloads:
            if p.metadata.get("encoding") != self.ENCODING:
                out.append(p)
                continue
            kid = p.metadata.get("encryption-key-id", b"").decode()
            try:
                out.append(Payload.FromString(self._ring.decrypt_bytes(kid, p.data, b"temporal-payload")))
            except CryptoError as exc:
                raise CryptoError(f"cannot decrypt Temporal payload: {exc}") from None
        return out


def make_data_converter(ring: KeyRing) -> DataConverter:
    return dataclasses.replace(
        pydantic_data_converter,
        payload_codec=KeyRingCodec(ring),
        failure_converter_class=DefaultFailureConverterWithEncodedAttributes,
    )


async def connect(address: str, namespace: str, ring: KeyRing) -> Client:
    return await Client.connect(address, namespace=namespace, data_converter=make_data_converter(ring))


async def ensure_search_attributes(client: Client) -> list[str]:
    """Register the custom search attributes that are missing (idempotent). Returns those added."""
    try:
        existing = await client.operator_service.list_search_attributes(
            ListSearchAttributesRequest(namespace=client.namespace)
        )
        present = set(existing.custom_attributes)
    except RPCError:  # the time-skipping test server does not implement listing; adding still works
        present = set()
    missing = {k.name: _INDEXED_TYPE[_type_name(k)] for k in SEARCH_ATTRIBUTES if k.name not in present}
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
