"""The structlog setup: JSON lines on stderr, and the PII safety net (keys and number patterns)."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
import structlog

from shared.logging import REDACTED, configure_logging, get_logger, redact_pii


@pytest.fixture
def logs(capsys: pytest.CaptureFixture[str]) -> Iterator[Any]:
    """Call it inside the test (capsys swaps sys.stderr per test phase): configures logging onto the
    captured stderr and returns a reader of the JSON lines written since."""
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level

    def start() -> Any:
        configure_logging("test-service", "DEBUG")
        capsys.readouterr()

        def lines() -> list[dict[str, Any]]:
            err = capsys.readouterr().err
            return [json.loads(line) for line in err.splitlines() if line.strip()]

        return lines

    yield start
    root.handlers, root.level = saved_handlers, saved_level
    structlog.contextvars.clear_contextvars()


def test_json_lines_with_service_level_and_timestamp(logs: Any) -> None:
    lines = logs()
    get_logger("t").info("case_opened", case_id="case-1")
    [line] = lines()
    assert line["event"] == "case_opened" and line["case_id"] == "case-1"
    assert line["service"] == "test-service" and line["level"] == "info"
    assert line["timestamp"].endswith("Z")


def test_pii_keys_are_redacted(logs: Any) -> None:
    lines = logs()
    get_logger("t").info(
        "person_registered",
        case_id="case-7",
        full_name="Nguyễn Thị Đào",
        Phone="+84 912",
        address="12 Hàng Bạc",
        narrative="she was taken across the border",
        person_ref="p-42",
    )
    [line] = lines()
    assert line["full_name"] == line["Phone"] == line["address"] == line["narrative"] == REDACTED
    assert line["case_id"] == "case-7" and line["person_ref"] == "p-42"
    raw = json.dumps(line, ensure_ascii=False)
    assert "Nguyễn" not in raw and "Hàng Bạc" not in raw and "border" not in raw


def test_nested_pii_keys_are_redacted(logs: Any) -> None:
    lines = logs()
    get_logger("t").info(
        "imported", rows=[{"name": "Đào", "row": 3}], meta={"contact": {"phone": "x"}, "n": 2}
    )
    [line] = lines()
    assert line["rows"] == [{"name": REDACTED, "row": 3}]
    assert line["meta"] == {"contact": REDACTED, "n": 2}


@pytest.mark.parametrize(
    "text",
    [
        "call 0912345678 now",
        "call +84912345678 now",
        "call 84912345678 now",  # mobile numbers
        "citizen id 001190012345 given",
        "old id 123456789 given",  # 12- and 9-digit identity numbers
    ],
)
def test_phone_and_id_patterns_are_scrubbed_from_values(logs: Any, text: str) -> None:
    lines = logs()
    get_logger("t").warning("free_text", detail=text)
    [line] = lines()
    prefix, suffix = text.split(" ")[0], text.split(" ")[-1]
    assert line["detail"].startswith(prefix) and line["detail"].endswith(suffix)
    assert REDACTED in line["detail"]
    assert not any(c.isdigit() for c in line["detail"])


def test_patterns_are_scrubbed_from_the_event_and_exceptions(logs: Any) -> None:
    lines = logs()
    try:
        raise ValueError("duplicate identity number 001190012345")
    except ValueError:
        get_logger("t").exception("lookup failed for 0912345678")
    [line] = lines()
    assert line["event"] == f"lookup failed for {REDACTED}"
    assert "001190012345" not in line["exception"] and REDACTED in line["exception"]


def test_ids_and_short_numbers_are_kept(logs: Any) -> None:
    lines = logs()
    get_logger("t").info(
        "tick",
        case_id="case-9f3a2b1c",
        count=12345678,
        http_status=503,
        port="8101",
        province="01",
        when="2025-07-01T10:00:00Z",
    )
    [line] = lines()
    assert line["case_id"] == "case-9f3a2b1c" and line["count"] == 12345678
    assert line["http_status"] == 503 and line["port"] == "8101" and line["province"] == "01"
    assert line["when"] == "2025-07-01T10:00:00Z"


def test_stdlib_loggers_get_the_same_net(logs: Any) -> None:
    lines = logs()
    logging.getLogger("third.party").info(
        "sms to 0987654321 sent", extra={"phone": "0987654321", "case_id": "c-3"}
    )
    [line] = lines()
    assert line["event"] == f"sms to {REDACTED} sent"
    assert line["phone"] == REDACTED and line["case_id"] == "c-3"
    assert line["service"] == "test-service"
    assert "0987654321" not in json.dumps(line)


def test_request_context_is_merged(logs: Any) -> None:
    lines = logs()
    structlog.contextvars.bind_contextvars(request_id="req-1")
    try:
        get_logger("t").info("handled")
    finally:
        structlog.contextvars.unbind_contextvars("request_id")
    [line] = lines()
    assert line["request_id"] == "req-1"


def test_redact_pii_processor_directly() -> None:
    out = redact_pii(
        None,
        "info",
        {
            "event": "e",
            "email": "a@b.c",
            "timestamp": "2025",
            "level": "info",
            "tags": ("ok", "0912345678"),
        },
    )
    assert out == {
        "event": "e",
        "email": REDACTED,
        "timestamp": "2025",
        "level": "info",
        "tags": ["ok", REDACTED],
    }


# ---- issue 10: the redactor mangled digit runs inside case ids ----------------------------------
def test_generated_case_ids_are_never_mangled() -> None:
    import uuid

    ids = [f"case-{uuid.uuid4().hex[:16]}" for _ in range(3000)] + [
        f"c-{uuid.uuid4().hex}" for _ in range(3000)
    ]
    ids += [
        "case-123456789012abcd",
        "c-0912345678",
        "c-001190012345",
        "req_123456789",
        "p-84912345678",
    ]
    for cid in ids:
        out = redact_pii(
            None,
            "info",
            {
                "event": f"case {cid} moved",
                "case_id": cid,
                "ids": [cid],
                "detail": f"see {cid}: done",
            },
        )
        assert out == {
            "event": f"case {cid} moved",
            "case_id": cid,
            "ids": [cid],
            "detail": f"see {cid}: done",
        }, cid


@pytest.mark.parametrize(
    "text, kept",
    [
        ("Chị Lan gọi từ số 0912345678 lúc 9h", ["Chị Lan gọi từ số ", " lúc 9h"]),
        ("SĐT: 0912 345 678, nhà ở Lào Cai", ["SĐT: ", ", nhà ở Lào Cai"]),
        ("call +84 91-234-5678 or 84912345678.", ["call ", " or ", "."]),
        ("CCCD số 001190012345 cấp tại Hà Nội", ["CCCD số ", " cấp tại Hà Nội"]),
        ("CMND 123456789; passport none", ["CMND ", "; passport none"]),
        ("(0987654321) in case-9f3a2b1c0912345678", ["(", ") in case-9f3a2b1c0912345678"]),
    ],
)
def test_phone_and_vietnamese_id_numbers_in_free_text_are_redacted(
    text: str, kept: list[str]
) -> None:
    out = redact_pii(None, "info", {"event": "free_text", "detail": text})["detail"]
    assert REDACTED in out and all(k in out for k in kept), out
    assert not any(
        n in out
        for n in ("0912345678", "345 678", "5678", "001190012345", "123456789", "0987654321")
        if n not in "".join(kept)
    ), out
