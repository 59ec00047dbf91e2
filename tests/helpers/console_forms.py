"""The console's HTML forms driven over plain HTTP (an in-process TestClient), for tests that need no
browser: a hidden field's value, and the open-case form of the border-guard persona, filled in."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient


def hidden(html: str, name: str) -> str:
    """The value of the first hidden (or other) input called `name` in `html`."""
    m = re.search(rf'name="{name}" value="([^"]*)"', html)
    assert m, f"no {name} in the page"
    return m.group(1)


def open_case_form(console: TestClient) -> dict[str, str]:
    """Signs in as the border-guard persona and returns the open-case form as the browser would send it
    (its CSRF token and Idempotency-Key, one person, already safe)."""
    page = console.get("/signin")
    r = console.post("/signin/dev", data={"persona": "bg", "csrf": hidden(page.text, "csrf")})
    assert r.status_code == 303, r.text
    page = console.get("/cases/new")
    assert page.status_code == 200
    return {
        "csrf": hidden(page.text, "csrf"),
        "idem": hidden(page.text, "idem"),
        "channel": "border_guard_handover",
        "province": "20",
        "person.prs_FirstName": "Lan",
        "person.prs_SecondName": "Nguyễn",
        "person.birth_year": "2008",
        "already_safe": "yes",
    }
