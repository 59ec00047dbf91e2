"""The one module that calls the four services' APIs, always with the signed-in user's bearer token: every
access rule, mask and access-log line applies to a console user exactly as to an API caller. The console
adds no rule of its own; an API's refusal comes back as an `ApiError` the page shows."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx

from services.console.settings import ConsoleConfig

TIMEOUT = httpx.Timeout(30.0, connect=5.0)


@dataclass
class ApiError(Exception):
    """A refusal (4xx) or failure (5xx, unreachable) of a service API, with its detail as the API gave it."""

    status: int
    detail: Any
    service: str

    @property
    def stale(self) -> bool:
        return (
            self.status == 409 and isinstance(self.detail, str) and self.detail.startswith("stale")
        )

    @property
    def field_errors(self) -> list[dict[str, Any]]:
        """422 validation errors ({loc, msg, type}); a plain-text 422 naming a field ("amount_vnd: ...")
        becomes one error on that field."""
        if isinstance(self.detail, list):
            return [e for e in self.detail if isinstance(e, dict)]
        if self.status == 422 and isinstance(self.detail, str):
            head, sep, rest = self.detail.partition(": ")
            if sep and head.replace("_", "").replace(".", "").isalnum() and " " not in head:
                return [{"loc": ["body", *head.split(".")], "msg": rest, "type": "value_error"}]
        return []

    def __str__(self) -> str:
        return f"{self.service} {self.status}: {self.detail}"


class Api:
    """One signed-in user's view of the APIs (their token on every call)."""

    def __init__(
        self,
        http: Mapping[str, httpx.AsyncClient],
        config: ConsoleConfig,
        token: str | None,
        request_id: str | None = None,
    ) -> None:
        self.http, self.config, self.token, self.request_id = http, config, token, request_id

    async def call(
        self,
        service: str,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json: Any = None,
        idem: str | None = None,
        content: bytes | None = None,
        content_type: str | None = None,
        raw: bool = False,
    ) -> Any:
        headers = {"Accept": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        if idem:
            headers["Idempotency-Key"] = idem
        if self.request_id:
            headers["X-Request-ID"] = self.request_id
        if content_type:
            headers["Content-Type"] = content_type
        clean = {k: v for k, v in (params or {}).items() if v not in (None, "", [])}
        try:
            r = await self.http[service].request(
                method,
                self.config.api_url(service) + path,
                params=clean,
                json=json,
                content=content,
                headers=headers,
                timeout=TIMEOUT,
            )
        except httpx.HTTPError as exc:
            raise ApiError(503, f"{service} unreachable: {type(exc).__name__}", service) from None
        if r.status_code >= 400:
            try:
                detail = r.json().get("detail", r.text)
            except ValueError:
                detail = r.text
            raise ApiError(r.status_code, detail, service)
        if raw:
            return r
        return r.json() if r.content else None

    # ---- intake -----------------------------------------------------------------------------
    async def open_case(self, body: dict[str, Any], idem: str) -> dict[str, Any]:
        return dict(await self.call("intake", "POST", "/cases", json=body, idem=idem))

    async def open_bulk_csv(self, data: bytes, idem: str) -> dict[str, Any]:
        return dict(
            await self.call(
                "intake",
                "POST",
                "/cases/bulk.csv",
                content=data,
                content_type="text/csv",
                idem=idem,
            )
        )

    async def intake_case(self, case_id: str, break_glass: str | None = None) -> dict[str, Any]:
        return dict(
            await self.call(
                "intake", "GET", f"/cases/{case_id}", params={"break_glass_reason": break_glass}
            )
        )

    async def person(
        self, case_id: str, purpose: str, break_glass: str | None = None
    ) -> dict[str, Any]:
        return dict(
            await self.call(
                "intake",
                "GET",
                f"/cases/{case_id}/person",
                params={"purpose": purpose, "break_glass_reason": break_glass},
            )
        )

    async def duplicates(self, case_id: str) -> list[dict[str, Any]]:
        return list(await self.call("intake", "GET", f"/cases/{case_id}/duplicates"))

    async def resolve_duplicate(
        self, candidate_id: str, body: dict[str, Any], idem: str
    ) -> dict[str, Any]:
        return dict(
            await self.call(
                "intake", "POST", f"/duplicates/{candidate_id}/resolve", json=body, idem=idem
            )
        )

    async def classify(self, case_id: str, body: dict[str, Any], idem: str) -> dict[str, Any]:
        return dict(
            await self.call("intake", "POST", f"/cases/{case_id}/classify", json=body, idem=idem)
        )

    async def access_log(self, **params: Any) -> dict[str, Any]:
        return dict(await self.call("intake", "GET", "/access-log", params=params))

    # ---- verification ---------------------------------------------------------------------------
    async def inbox(self, **params: Any) -> dict[str, Any]:
        return dict(await self.call("verification", "GET", "/inbox", params=params))

    async def verification_post(
        self, case_id: str, what: str, body: dict[str, Any], idem: str
    ) -> dict[str, Any]:
        return dict(
            await self.call(
                "verification", "POST", f"/cases/{case_id}/{what}", json=body, idem=idem
            )
        )

    async def perpetrators(self, case_id: str, break_glass: str | None = None) -> dict[str, Any]:
        return dict(
            await self.call(
                "verification",
                "GET",
                f"/cases/{case_id}/perpetrators",
                params={"break_glass_reason": break_glass},
            )
        )

    async def rescues(self, case_id: str) -> dict[str, Any]:
        return dict(await self.call("verification", "GET", f"/cases/{case_id}/rescue-operations"))

    async def linked_cases(self, case_id: str) -> dict[str, Any]:
        return dict(await self.call("verification", "GET", f"/cases/{case_id}/linked-cases"))

    # ---- support --------------------------------------------------------------------------------
    async def support_get(
        self, case_id: str, what: str, break_glass: str | None = None
    ) -> dict[str, Any]:
        return dict(
            await self.call(
                "support",
                "GET",
                f"/cases/{case_id}/{what}",
                params={"break_glass_reason": break_glass},
            )
        )

    async def support_post(
        self, case_id: str, what: str, body: dict[str, Any], idem: str
    ) -> dict[str, Any]:
        return dict(
            await self.call("support", "POST", f"/cases/{case_id}/{what}", json=body, idem=idem)
        )

    async def respond_handoff(
        self, case_id: str, handoff_id: str, body: dict[str, Any], idem: str
    ) -> dict[str, Any]:
        return dict(
            await self.call(
                "support", "POST", f"/handoffs/{case_id}/{handoff_id}/respond", json=body, idem=idem
            )
        )

    # ---- notifications (the bell) ---------------------------------------------------------------
    async def notifications(self, unread: bool = True, limit: int = 50) -> dict[str, Any]:
        return dict(
            await self.call(
                "notifications",
                "GET",
                "/inbox",
                params={"unread": "true" if unread else "false", "limit": limit},
            )
        )

    async def mark_read(self, item_id: str) -> None:
        await self.call("notifications", "POST", f"/inbox/{item_id}/read")

    # ---- oversight ------------------------------------------------------------------------------
    async def board(self, province: str | None = None) -> dict[str, Any]:
        return dict(await self.call("oversight", "GET", "/board", params={"province": province}))

    async def stuck(self, **params: Any) -> dict[str, Any]:
        return dict(await self.call("oversight", "GET", "/stuck", params=params))

    async def oversight_act(
        self, case_id: str, what: str, body: dict[str, Any], idem: str
    ) -> dict[str, Any]:
        return dict(
            await self.call("oversight", "POST", f"/cases/{case_id}/{what}", json=body, idem=idem)
        )

    async def kpis(
        self, start: datetime, end: datetime, lang: str, province: str | None = None
    ) -> dict[str, Any]:
        return dict(
            await self.call(
                "oversight",
                "GET",
                "/kpis",
                params={
                    "from": start.isoformat(),
                    "to": end.isoformat(),
                    "lang": lang,
                    "province": province,
                },
            )
        )

    async def report(
        self, kind: str, fmt: str, lang: str, start: str | None, end: str | None
    ) -> httpx.Response:
        r: httpx.Response = await self.call(
            "oversight",
            "GET",
            f"/reports/{kind}",
            raw=True,
            params={"format": fmt, "lang": lang, "from": start, "to": end},
        )
        return r

    async def history(self, case_id: str, limit: int = 200, offset: int = 0) -> dict[str, Any]:
        return dict(
            await self.call(
                "oversight",
                "GET",
                f"/cases/{case_id}/history",
                params={"limit": limit, "offset": offset},
            )
        )

    async def as_of(self, case_id: str, at: datetime) -> dict[str, Any]:
        return dict(
            await self.call(
                "oversight", "GET", f"/cases/{case_id}/as-of", params={"at": at.isoformat()}
            )
        )

    async def verify_chain(
        self, case_id: str | None = None, province: str | None = None
    ) -> dict[str, Any]:
        return dict(
            await self.call(
                "oversight",
                "GET",
                "/audit/verify",
                params={"case_id": case_id, "province": province},
            )
        )

    async def replay(self, case_id: str) -> list[dict[str, Any]]:
        return list(
            await self.call("oversight", "GET", "/audit/replay", params={"case_id": case_id})
        )
