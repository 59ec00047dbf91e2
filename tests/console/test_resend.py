"""A form whose send has an unknown outcome is shown again with the same Idempotency-Key (and, for a case
action, the version the user acted on), so that sending it again completes the first send instead of applying
the action twice; any other refusal gets a new key. The console is the real app, in process; its intake is a
port nothing listens on, so every send to intake fails the way a service that does not answer does (503).
The API side of the same guarantee (the same key and request: applied once) is tests/integration/
test_update_idempotency.py."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from starlette.datastructures import FormData

from services.console import forms
from services.console.app import create_app
from services.console.client import ApiError
from services.console.i18n import Lang
from shared.config import Settings
from shared.crypto import KeyRing
from tests.helpers.console_forms import hidden, open_case_form
from tests.helpers.process_stack import free_ports

UNKNOWN_VI = "Hệ thống chưa xác nhận kịp: việc này có thể đã được thực hiện"


@pytest.fixture
def console() -> Iterator[TestClient]:
    settings = Settings(intake_port=free_ports(1)[0])
    with TestClient(create_app(settings, KeyRing.generate()), follow_redirects=False) as client:
        yield client


def test_open_case_not_answered_is_shown_again_with_the_same_key(console: TestClient) -> None:
    form = open_case_form(console)
    r = console.post("/cases/new", data=form)
    assert r.status_code == 503
    assert UNKNOWN_VI in r.text
    assert hidden(r.text, "idem") == form["idem"]  # sending it again is the same request
    assert 'value="Lan"' in r.text  # what the user typed is still there, unchanged
    again = console.post("/cases/new", data={**form, "csrf": hidden(r.text, "csrf")})
    assert again.status_code == 503 and hidden(again.text, "idem") == form["idem"]


def test_a_refusal_that_applied_nothing_gets_a_new_key() -> None:
    t = Lang("vi")
    form = FormData([("idem", "k-1"), ("expected_version", "7"), ("reason", "")])
    refused = ApiError(
        422,
        [{"loc": ["body", "reason"], "msg": "Field required", "type": "missing"}],
        "verification",
    )
    errors, resend = forms.send_failed(t, refused, form, ["reason"])
    assert resend is None and "reason" in errors.by_field
    stale = ApiError(409, "stale: the case is at version 8", "verification")
    assert forms.send_failed(t, stale, form, ["reason"])[1] is None


def test_unknown_outcome_keeps_the_key_and_the_version_acted_on() -> None:
    t = Lang("vi")
    form = FormData([("idem", "k-1"), ("expected_version", "7"), ("reason", "x")])
    unknown = ApiError(503, "the case workflow did not confirm this action in time", "support")
    errors, resend = forms.send_failed(t, unknown, form, ["reason"])
    assert resend == {"idem": "k-1", "expected_version": "7"}
    assert errors.by_field == {} and errors.general[0].startswith(UNKNOWN_VI)
    no_key = FormData([("expected_version", "7")])
    assert forms.send_failed(t, unknown, no_key, ["reason"])[1] is None
