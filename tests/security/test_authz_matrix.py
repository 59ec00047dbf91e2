"""Authorization matrix generated from the route table of the four service apps.

(a) Every route answers 401 without a token, with an expired token, a token signed by another key, an
    unsigned (alg=none) token and a malformed one, before it looks at the path (401 comes before 404).
(b) RULES declares, for every route, which kinds of principal pass its authorization gate (role, case
    access, section and agency rules). A route without a rule fails the test, so a new endpoint cannot
    ship without one; a rule for a route that no longer exists fails too. The rules are checked against
    the roles each route's `require_roles` dependency declares, and exercised on a real case for every
    route that has a request spec (all case-scoped routes, and the list/oversight reads).

"Passes the gate" means: not 401/403, and no server error. Action routes are sent with a stale
`expected_version` where they take one, so an admitted caller gets a 409 from the workflow and nothing
changes; routes without a version (rescue plan, perpetrators) really write."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from typing import Any

import jwt
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute

from nrm.service import build_app
from shared.auth import TokenVerifier, mint_token
from shared.config import Settings
from shared.contract import CaseState as CaseStateModel
from shared.crypto import KeyRing
from shared.domain import Role
from tests.helpers.security_stack import (
    OTHER_PROVINCE,
    PROVINCE,
    SERVICES,
    A,
    bearer,
    service_stack,
)

SKIP_PATHS = {"/healthz", "/readyz", "/docs", "/openapi.json", "/docs/oauth2-redirect", "/redoc"}


# ---- the principals ------------------------------------------------------------------------------
class K(StrEnum):
    """Kinds of caller, relative to the matrix case: opened by police in province 01, classified (so the
    verify stage moved it to social protection, police stays a participant), referred to legal aid with the
    person's data-sharing consent and accepted by legal aid, then referred to the commune (not answered)."""

    own = "own"  # social_protection caseworker, 01: the owning agency
    handed_off = "handed_off"  # legal_aid caseworker, 01: accepted the referral
    invitee = "invitee"  # commune caseworker, 01: asked (referral pending), not accepted yet
    opener = "opener"  # police caseworker, 01: opened it, participant since it moved on
    other_agency = "other_agency"  # womens_union caseworker, 01: never involved
    other_province = "other_province"  # social_protection caseworker, 79
    supervisor = "supervisor"  # social_protection supervisor, 01: the owning agency's
    supervisor_other_agency = (
        "supervisor_other_agency"  # womens_union supervisor, 01: not the stage's owner
    )
    supervisor_other = "supervisor_other"  # social_protection supervisor, 79
    auditor = "auditor"  # national auditor (steering committee, *)
    auditor_break_glass = (
        "auditor_break_glass"  # the same auditor, giving a break_glass_reason on reads
    )
    combined = "combined"  # womens_union caseworker + national auditor in one token


PRINCIPALS: dict[K, tuple[Any, tuple[Role, ...], str]] = {
    K.own: (A.social_protection, (Role.caseworker,), PROVINCE),
    K.handed_off: (A.legal_aid, (Role.caseworker,), PROVINCE),
    K.invitee: (A.commune, (Role.caseworker,), PROVINCE),
    K.opener: (A.police, (Role.caseworker,), PROVINCE),
    K.other_agency: (A.womens_union, (Role.caseworker,), PROVINCE),
    K.other_province: (A.social_protection, (Role.caseworker,), OTHER_PROVINCE),
    K.supervisor: (A.social_protection, (Role.supervisor,), PROVINCE),
    K.supervisor_other_agency: (A.womens_union, (Role.supervisor,), PROVINCE),
    K.supervisor_other: (A.social_protection, (Role.supervisor,), OTHER_PROVINCE),
    K.auditor: (A.steering_committee, (Role.auditor,), "*"),
    K.auditor_break_glass: (A.steering_committee, (Role.auditor,), "*"),
    K.combined: (A.womens_union, (Role.caseworker, Role.auditor), "*"),
}
BREAK_GLASS = {K.auditor_break_glass: {"break_glass_reason": "court order 12/2026, case review"}}

ALL = frozenset(K)
AUDITORS = frozenset({K.auditor, K.auditor_break_glass, K.combined})
CASEWORKERS_AND_SUPERVISORS = ALL - {K.auditor, K.auditor_break_glass}
# can_read_case: the agencies of the case (owner, participants, pending invitees) in the province,
# supervisors of the province, auditors
READ = (
    frozenset({K.own, K.handed_off, K.invitee, K.opener, K.supervisor, K.supervisor_other_agency})
    | AUDITORS
)
# can_act_on_case: owner and participants (not a pending invitee), supervisors of the province
ACT = frozenset({K.own, K.handed_off, K.opener, K.supervisor, K.supervisor_other_agency})
# the workflow's stage-owner rule: the owning agency (social protection owns verify); a supervisor of another
# agency only with override_reason (these requests give none)
STAGE_OWNER = frozenset({K.own, K.supervisor})
SUPERVISORS = frozenset({K.supervisor, K.supervisor_other_agency, K.supervisor_other})
OVERSEERS = SUPERVISORS | AUDITORS
# section readers among the kinds (shared/access.py SECTION_READERS; auditors read every section)
EVIDENCE = frozenset({K.own, K.opener, K.supervisor}) | AUDITORS
PERPETRATORS = frozenset({K.opener}) | AUDITORS
SUPPORT_PLAN = (
    frozenset({K.own, K.handed_off, K.invitee, K.supervisor, K.supervisor_other_agency}) | AUDITORS
)
SUPPORT_AGENCY_ACT = ACT & SUPPORT_PLAN
POLICE_ACT = frozenset({K.opener})


# ---- the rules -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Rule:
    allowed: frozenset[K]
    json: dict[str, Any] | None = None
    params: dict[str, Any] | None = None
    exercise: bool = (
        True  # False: a request here would open cases or needs visibility; checked statically
    )
    status: int | None = (
        None  # what an admitted caller gets; default 200 for GET, 409 (stale version) for POST
    )

    def expect(self, method: str) -> int:
        return self.status or (200 if method == "GET" else 409)


STALE = 9999
TODAY = date.today().isoformat()
REASON = "authorization matrix check"

RULES: dict[tuple[str, str, str], Rule] = {
    # intake
    ("intake", "POST", "/cases"): Rule(
        CASEWORKERS_AND_SUPERVISORS - {K.other_province, K.supervisor_other}, exercise=False
    ),  # province 01 in the body: others are out of jurisdiction
    ("intake", "POST", "/cases/bulk"): Rule(
        CASEWORKERS_AND_SUPERVISORS, exercise=False
    ),  # per-row province check
    ("intake", "POST", "/cases/bulk.csv"): Rule(CASEWORKERS_AND_SUPERVISORS, exercise=False),
    # background batches: the role gate here; a batch is visible to its sender only (404 to anyone else,
    # tested in tests/integration/test_intake_bulk.py); per-row province and entry-decision checks as bulk
    ("intake", "POST", "/cases/bulk/batches"): Rule(CASEWORKERS_AND_SUPERVISORS, exercise=False),
    ("intake", "POST", "/cases/bulk/batches/{batch_id}/rows"): Rule(
        CASEWORKERS_AND_SUPERVISORS, exercise=False
    ),
    ("intake", "GET", "/cases/bulk/batches/{batch_id}"): Rule(
        CASEWORKERS_AND_SUPERVISORS, exercise=False
    ),
    ("intake", "POST", "/cases/import/htcds"): Rule(
        CASEWORKERS_AND_SUPERVISORS - {K.other_province, K.supervisor_other}, exercise=False
    ),
    ("intake", "GET", "/cases"): Rule(
        ALL
    ),  # a list of the caller's own jurisdiction, no personal data
    ("intake", "GET", "/cases/{case_id}"): Rule(READ),
    ("intake", "GET", "/persons/{person_id}"): Rule(READ),
    ("intake", "GET", "/cases/{case_id}/person"): Rule(READ),
    ("intake", "GET", "/cases/{case_id}/htcds"): Rule(
        READ, params={"break_glass_reason": "audit sample of HTCDS"}
    ),
    ("intake", "GET", "/cases/{case_id}/duplicates"): Rule(READ),
    ("intake", "POST", "/duplicates/{candidate_id}/resolve"): Rule(
        ACT, exercise=False
    ),  # needs a duplicate pair
    ("intake", "POST", "/cases/{case_id}/classify"): Rule(
        STAGE_OWNER,
        json={
            "classification": "trafficking_suspected",
            "justification": REASON,
            "expected_version": STALE,
        },
    ),
    ("intake", "GET", "/access-log"): Rule(OVERSEERS),
    # verification
    ("verification", "POST", "/cases/{case_id}/claim"): Rule(
        STAGE_OWNER, json={"expected_version": STALE}
    ),
    ("verification", "POST", "/cases/{case_id}/assign"): Rule(
        STAGE_OWNER, json={"assignee_user_id": "someone", "expected_version": STALE}
    ),
    ("verification", "POST", "/cases/{case_id}/verification"): Rule(
        STAGE_OWNER,
        json={"result": "confirmed", "justification": REASON, "expected_version": STALE},
    ),
    ("verification", "POST", "/cases/{case_id}/identification"): Rule(
        STAGE_OWNER,
        json={
            "status": "ActualVictimOfTrafficking",
            "deciding_org": "Police",
            "justification": REASON,
            "expected_version": STALE,
            "evidence": [{"kind": "statement_of_person", "source": "interview", "date": TODAY}],
        },
    ),
    ("verification", "GET", "/cases/{case_id}/evidence"): Rule(READ & EVIDENCE),
    ("verification", "POST", "/cases/{case_id}/rescue-operations"): Rule(
        POLICE_ACT,
        json={
            "planned_for": (datetime.now(UTC) + timedelta(days=1)).isoformat(),
            "location": "ward X",
        },
        status=201,
    ),
    ("verification", "GET", "/cases/{case_id}/rescue-operations"): Rule(READ & EVIDENCE),
    ("verification", "POST", "/cases/{case_id}/rescue-operations/{operation_id}/complete"): Rule(
        POLICE_ACT,
        json={"outcome": "not_found", "justification": REASON, "expected_version": STALE},
        status=404,
    ),  # no such operation: found only after the access check
    ("verification", "POST", "/cases/{case_id}/rescue-operations/not-needed"): Rule(
        STAGE_OWNER, json={"justification": REASON, "expected_version": STALE}
    ),
    ("verification", "POST", "/cases/{case_id}/protection"): Rule(
        STAGE_OWNER,
        json={"measures": ["safe_shelter"], "justification": REASON, "expected_version": STALE},
    ),
    # issue 15 item 3: the police decide protection measures at any stage (not the stage's owner)
    ("verification", "POST", "/cases/{case_id}/protection-measures"): Rule(
        POLICE_ACT,
        json={"measures": ["guard"], "justification": REASON, "expected_version": STALE},
    ),
    ("verification", "POST", "/cases/{case_id}/perpetrators"): Rule(
        POLICE_ACT,
        json={"roles": ["RecruiterOrIntermediary"], "name": "Matrix Suspect"},
        status=201,
    ),
    ("verification", "GET", "/cases/{case_id}/perpetrators"): Rule(READ & PERPETRATORS),
    ("verification", "GET", "/cases/{case_id}/linked-cases"): Rule(READ & PERPETRATORS),
    # criminal proceedings: police bodies record the report (really writes); a step on an unknown
    # proceeding is a 404 found only after the access checks; police data readers read them
    ("verification", "POST", "/cases/{case_id}/proceedings"): Rule(
        POLICE_ACT, json={"report_number": "TB-matrix", "report_received_on": TODAY}, status=201
    ),
    ("verification", "POST", "/cases/{case_id}/proceedings/{proceeding_id}/steps"): Rule(
        POLICE_ACT, json={"step": "decision", "outcome": "opened", "on": TODAY}, status=404
    ),
    ("verification", "POST", "/cases/{case_id}/proceedings/{proceeding_id}/perpetrators"): Rule(
        POLICE_ACT, json={"perpetrator_ids": ["per-x1"]}, status=422
    ),  # no such perpetrator on the case: found only after the access checks
    ("verification", "GET", "/cases/{case_id}/proceedings"): Rule(READ & PERPETRATORS),
    ("verification", "GET", "/inbox"): Rule(
        ALL, exercise=False
    ),  # visibility: not on the time-skipping server
    # support
    ("support", "GET", "/cases/{case_id}/entitlements"): Rule(READ),
    ("support", "POST", "/cases/{case_id}/services"): Rule(
        SUPPORT_AGENCY_ACT,
        json={
            "service_type": "essential_needs",
            "provider_agency": "social_protection",
            "delivered_on": TODAY,
            "expected_version": STALE,
        },
    ),
    ("support", "GET", "/cases/{case_id}/services"): Rule(READ & SUPPORT_PLAN),
    ("support", "POST", "/cases/{case_id}/support-plan"): Rule(
        SUPPORT_AGENCY_ACT,
        json={
            "spl_Objectives": "safe housing",
            "spl_Type": ["SocialCare"],
            "spl_PlannedEndDate": "2030-01-01",
            "expected_version": STALE,
        },
    ),
    ("support", "GET", "/cases/{case_id}/support-plan"): Rule(READ & SUPPORT_PLAN),
    ("support", "PUT", "/cases/{case_id}/legacy-identification"): Rule(
        SUPPORT_AGENCY_ACT, json={"identified_on": "2019-04-12", "expected_version": STALE}
    ),
    ("support", "POST", "/cases/{case_id}/legal-aid-referral"): Rule(
        STAGE_OWNER, json={"reason": REASON, "expected_version": STALE}
    ),
    ("support", "POST", "/cases/{case_id}/transfers"): Rule(
        STAGE_OWNER, json={"to_agency": "police", "reason": REASON, "expected_version": STALE}
    ),
    ("support", "GET", "/cases/{case_id}/handoffs"): Rule(READ),
    ("support", "POST", "/handoffs/{case_id}/{handoff_id}/respond"): Rule(
        frozenset({K.handed_off}), json={"accept": True, "expected_version": STALE}
    ),
    ("support", "GET", "/cases/{case_id}/follow-ups"): Rule(READ),
    ("support", "POST", "/cases/{case_id}/follow-ups/{follow_up_id}"): Rule(
        SUPPORT_AGENCY_ACT & STAGE_OWNER, json={"outcome": "done", "expected_version": STALE}
    ),
    ("support", "POST", "/cases/{case_id}/closure"): Rule(
        SUPPORT_AGENCY_ACT, json={"reason": REASON}
    ),  # 409: stage
    ("support", "POST", "/cases/{case_id}/consents"): Rule(
        ACT, json={"purpose": "research", "granted": False, "expected_version": STALE}
    ),
    ("support", "GET", "/cases/{case_id}/consents"): Rule(READ),
    # oversight
    ("oversight", "GET", "/stuck"): Rule(SUPERVISORS),
    ("oversight", "GET", "/board"): Rule(SUPERVISORS),
    ("oversight", "POST", "/cases/{case_id}/reassign"): Rule(
        STAGE_OWNER & SUPERVISORS, json={"assignee_user_id": "someone", "expected_version": STALE}
    ),
    ("oversight", "POST", "/cases/{case_id}/extend-deadline"): Rule(
        ACT & SUPERVISORS, json={"extend_by": "P2D", "reason": REASON, "expected_version": STALE}
    ),
    ("oversight", "POST", "/cases/{case_id}/escalate"): Rule(
        ACT & SUPERVISORS, json={"reason": REASON, "expected_version": STALE}
    ),
    ("oversight", "POST", "/cases/{case_id}/reopen"): Rule(
        ACT & SUPERVISORS, json={"to_stage": "verify", "reason": REASON, "expected_version": STALE}
    ),
    ("oversight", "GET", "/kpis"): Rule(
        OVERSEERS, params={"from": "2026-01-01T00:00:00+07:00", "to": "2027-01-01T00:00:00+07:00"}
    ),
    ("oversight", "GET", "/reports/{kind}"): Rule(OVERSEERS),
    ("oversight", "GET", "/cases/{case_id}/history"): Rule(READ & OVERSEERS),
    ("oversight", "GET", "/cases/{case_id}/as-of"): Rule(
        READ & OVERSEERS, params={"at": (datetime.now(UTC) + timedelta(days=36500)).isoformat()}
    ),
    ("oversight", "GET", "/audit/verify"): Rule(READ & OVERSEERS, params={"case_id": "{case_id}"}),
    ("oversight", "GET", "/audit/replay"): Rule(READ & OVERSEERS, params={"case_id": "{case_id}"}),
}


# ---- the route table -----------------------------------------------------------------------------
def _apps() -> dict[str, FastAPI]:
    settings = Settings()
    apps = {}
    for service in SERVICES:
        app = build_app(service, settings)
        # no lifespan: authentication needs only the verifier (a route touching anything else first fails)
        app.state.token_verifier = TokenVerifier(RING, settings.jwt_issuer, settings.jwt_audience)
        apps[service] = app
    return apps


def _flatten(routes: list[Any]) -> list[tuple[str, APIRoute, Any]]:
    """(path as served, route, its dependant as served): FastAPI >= 0.16x keeps included routers lazily."""
    try:
        from fastapi.routing import iter_route_contexts
    except ImportError:  # older FastAPI: included routes are copied into app.routes
        return [(r.path, r, r.dependant) for r in routes if isinstance(r, APIRoute)]
    out = []
    for ctx in iter_route_contexts(routes):
        route = ctx.original_route
        if isinstance(route, APIRoute):
            out.append((ctx.path or route.path, route, getattr(ctx, "dependant", route.dependant)))
    return out


def route_table(apps: dict[str, FastAPI]) -> list[tuple[str, str, str, Any]]:
    out = []
    for service, app in apps.items():
        for path, route, dependant in _flatten(list(app.routes)):
            if path in SKIP_PATHS:
                continue
            for method in sorted(route.methods - {"HEAD", "OPTIONS"}):
                out.append((service, method, path, dependant))
    return out


RING = KeyRing.generate()  # the verifier's key for part (a); part (b) uses the session ring
APPS = _apps()
ROUTES = route_table(APPS)
DUMMY = {
    "case_id": f"c-{uuid.uuid4().hex}",
    "person_id": f"p-{uuid.uuid4().hex}",
    "candidate_id": "dup-x1",
    "handoff_id": "h1",
    "follow_up_id": "fu-3m",
    "operation_id": "op-x1",
    "proceeding_id": "proc-x1",
    "kind": "annual",
    "batch_id": "b-x1",
}


def fill(path: str, values: dict[str, str]) -> str:
    return path.format(**{k: v for k, v in values.items() if "{" + k + "}" in path})


def required_roles(dependant: Any) -> tuple[Role, ...] | None:
    """The roles the route's `require_roles` dependency declares (None: any authenticated caller)."""
    stack = list(dependant.dependencies)
    while stack:
        dep = stack.pop()
        roles = getattr(dep.call, "required_roles", None)
        if roles is not None:
            return tuple(roles)
        stack.extend(dep.dependencies)
    return None


# ---- (a) authentication on every route -----------------------------------------------------------
def _bad_tokens() -> dict[str, dict[str, str]]:
    claims = dict(user_id="u-1", roles=[Role.admin], agency=A.police, province="*")
    past = datetime.now(UTC) - timedelta(days=2)
    none_alg = jwt.encode(
        {
            "sub": "u-1",
            "roles": ["admin"],
            "agency": "police",
            "province": "*",
            "iss": "nrm-dev",
            "aud": "nrm",
            "iat": int(past.timestamp()),
            "exp": int(past.timestamp()) + 10**6,
        },
        key=None,
        algorithm="none",
    )
    return {
        "missing": {},
        "expired": {
            "Authorization": "Bearer "
            + mint_token(RING, **claims, now=past, ttl=timedelta(hours=1))
        },
        "other_key": {"Authorization": "Bearer " + mint_token(KeyRing.generate(), **claims)},
        "alg_none": {"Authorization": f"Bearer {none_alg}"},
        "malformed": {"Authorization": "Bearer not.a.jwt"},
        "wrong_audience": {
            "Authorization": "Bearer " + mint_token(RING, **claims, audience="other-system")
        },
        "basic_scheme": {"Authorization": "Basic dXNlcjpwYXNz"},
    }


BAD_TOKENS = _bad_tokens()


@pytest.mark.parametrize(
    ("service", "method", "path"),
    [(s, m, p) for s, m, p, _ in ROUTES],
    ids=[f"{s}:{m}:{p}" for s, m, p, _ in ROUTES],
)
async def test_every_route_refuses_bad_tokens(service: str, method: str, path: str) -> None:
    app = APPS[service]
    import httpx

    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://t"
    ) as http:
        for label, headers in BAD_TOKENS.items():
            r = await http.request(method, fill(path, DUMMY), json={}, headers=headers)
            assert r.status_code == 401, (label, r.status_code, r.text)
            assert r.headers.get("www-authenticate", "").lower().startswith("bearer"), label
            detail = r.json()["detail"]
            if label == "expired":
                assert detail == "token expired"
            elif label in ("other_key", "alg_none", "malformed", "wrong_audience"):
                assert detail.startswith("invalid token"), (label, detail)
            else:
                assert detail == "missing bearer token"


def test_route_table_is_complete() -> None:
    assert {s for s, *_ in ROUTES} == set(SERVICES)
    assert len(ROUTES) >= 50, len(ROUTES)


# ---- (b) the declared rules ----------------------------------------------------------------------
def test_every_route_has_a_rule_and_every_rule_a_route() -> None:
    present = {(s, m, p) for s, m, p, _ in ROUTES}
    missing = sorted(present - RULES.keys())
    assert not missing, f"routes without an authorization rule in RULES: {missing}"
    stale = sorted(RULES.keys() - present)
    assert not stale, f"rules for routes that do not exist: {stale}"


def test_rules_agree_with_declared_roles() -> None:
    """No rule admits a kind of caller whom the route's require_roles dependency refuses."""
    for service, method, path, dependant in ROUTES:
        roles = required_roles(dependant)
        if roles is None:
            continue
        for kind in RULES[(service, method, path)].allowed:
            held = PRINCIPALS[kind][1]
            assert any(r in held or Role.admin in held for r in roles), (
                f"{service} {method} {path}: rule admits {kind} but the route requires {roles}"
            )


async def test_rules_hold_on_a_real_case(
    ts_env: Any, db_pool: Any, db_url: str, ring: KeyRing, task_queue: str
) -> None:
    from tests.helpers.intake_stack import open_body

    async with service_stack(ts_env, db_pool, db_url, ring, task_queue) as st:
        police = bearer(ring, A.police)
        sp = bearer(ring, A.social_protection)
        la = bearer(ring, A.legal_aid)
        r = await st["intake"].post("/cases", json=open_body(channel="walk_in"), headers=police)
        assert r.status_code == 201, r.text
        case_id, person_id = r.json()["case_id"], r.json()["person_ref"]
        r = await st["intake"].post(
            f"/cases/{case_id}/classify",
            headers=police,
            json={
                "classification": "trafficking_suspected",
                "justification": "signs of trafficking",
            },
        )
        assert r.status_code == 200 and r.json()["owner_agency"] == "social_protection", r.text
        r = await st["support"].post(
            f"/cases/{case_id}/consents",
            headers=sp,
            json={
                "purpose": "data_sharing",
                "granted": True,
                "agency": "legal_aid",
                "document": {"kind": "signed_form", "signed_on": TODAY},
            },
        )
        assert r.status_code == 201, r.text
        r = await st["support"].post(
            f"/cases/{case_id}/legal-aid-referral",
            headers=sp,
            json={"reason": "wants to claim unpaid wages"},
        )
        assert r.status_code == 201, r.text
        handoff_id = r.json()["handoff"]["handoff_id"]
        r = await st["support"].post(
            f"/handoffs/{case_id}/{handoff_id}/respond", headers=la, json={"accept": True}
        )
        assert r.status_code == 200, r.text
        state = r.json()["case"]
        assert state["owner_agency"] == "social_protection", state
        r = await st["support"].post(
            f"/cases/{case_id}/consents",
            headers=sp,
            json={
                "purpose": "data_sharing",
                "granted": True,
                "agency": "commune",
                "document": {"kind": "signed_form", "signed_on": TODAY},
            },
        )
        assert r.status_code == 201, r.text
        from shared.contract import HandoffKind, RequestHandoff
        from tests.helpers.workflow_harness import actor

        invited = await st.client.get_workflow_handle(case_id).execute_update(
            "request_handoff",
            RequestHandoff(
                actor=actor(A.social_protection),
                kind=HandoffKind.referral,
                to_agency=A.commune,
                reason="commune support at home",
            ),
            result_type=CaseStateModel,
        )
        assert A.commune in invited.access_facts().pending_invitees
        await st.wait_event(
            db_pool, case_id, "handoff_requested"
        )  # oversight reads the audit log's state
        for _ in range(300):  # the projection holds the last event (the pending commune referral)
            if (
                await db_pool.fetchval(
                    "SELECT count(*) FROM oversight.case_events WHERE case_id = $1", case_id
                )
                >= invited.last_event_seq
            ):
                break
            await asyncio.sleep(0.05)

        tokens = {
            k: bearer(ring, agency, *roles, province=prov)
            for k, (agency, roles, prov) in PRINCIPALS.items()
        }
        values = {**DUMMY, "case_id": case_id, "person_id": person_id, "handoff_id": handoff_id}
        failures = []
        exercised = 0
        for service, method, path, _ in ROUTES:
            rule = RULES[(service, method, path)]
            if not rule.exercise:
                continue
            exercised += 1
            url = fill(path, values)
            params = {k: fill(v, values) for k, v in (rule.params or {}).items()}
            for kind, headers in tokens.items():
                extra = BREAK_GLASS.get(kind, {}) if method == "GET" else {}
                r = await st[service].request(
                    method,
                    url,
                    headers=headers,
                    params={**params, **extra},
                    json=rule.json if method in ("POST", "PUT") else None,
                )
                admitted = r.status_code not in (401, 403)
                if r.status_code == 422 and isinstance(r.json().get("detail"), list):
                    # request validation: the request never reached the authorization gate (fix the spec)
                    failures.append(
                        f"{service} {method} {path} as {kind}: invalid request {r.text[:200]}"
                    )
                elif admitted != (kind in rule.allowed):
                    failures.append(
                        f"{service} {method} {path} as {kind}: {r.status_code} {r.text[:160]}"
                    )
                elif admitted and r.status_code != rule.expect(method):
                    failures.append(
                        f"{service} {method} {path} as {kind}: admitted, but {r.status_code} instead "
                        f"of {rule.expect(method)}: {r.text[:160]}"
                    )
                elif not admitted and r.status_code != 403:
                    failures.append(
                        f"{service} {method} {path} as {kind}: a valid token got {r.status_code}"
                    )
        assert not failures, "\n".join(failures)
        assert exercised >= 40, exercised


# ---- (c) a case transferred to another province (issue 18), route by route ------------------------------
class T(StrEnum):
    """Kinds of caller relative to a case opened by police in 01, classified there (social protection owns
    verification, police takes part), then transferred to social protection of 79, which accepted."""

    receiving_owner = "receiving_owner"  # social_protection caseworker, 79: owns the case now
    receiving_supervisor = "receiving_supervisor"  # social_protection supervisor, 79
    receiving_other = "receiving_other"  # police caseworker, 79: never involved
    sending_owner = "sending_owner"  # social_protection caseworker, 01: owned it until the transfer
    sending_opener = "sending_opener"  # police caseworker, 01: opened it, took part
    sending_supervisor = "sending_supervisor"  # social_protection supervisor, 01
    sending_never = "sending_never"  # womens_union caseworker, 01: never involved
    auditor = "auditor"  # national auditor


TRANSFER_PRINCIPALS: dict[T, tuple[Any, tuple[Role, ...], str]] = {
    T.receiving_owner: (A.social_protection, (Role.caseworker,), OTHER_PROVINCE),
    T.receiving_supervisor: (A.social_protection, (Role.supervisor,), OTHER_PROVINCE),
    T.receiving_other: (A.police, (Role.caseworker,), OTHER_PROVINCE),
    T.sending_owner: (A.social_protection, (Role.caseworker,), PROVINCE),
    T.sending_opener: (A.police, (Role.caseworker,), PROVINCE),
    T.sending_supervisor: (A.social_protection, (Role.supervisor,), PROVINCE),
    T.sending_never: (A.womens_union, (Role.caseworker,), PROVINCE),
    T.auditor: (A.steering_committee, (Role.auditor,), "*"),
}
# For the transferred case each kind stands where a kind of the matrix case stands, with one difference:
# the sending province's kinds read as before (up to the transfer) and may act on nothing.
AS_MATRIX_KIND: dict[T, K] = {
    T.receiving_owner: K.own,
    T.receiving_supervisor: K.supervisor,
    T.receiving_other: K.other_agency,
    T.sending_owner: K.own,
    T.sending_opener: K.opener,
    T.sending_supervisor: K.supervisor,
    T.sending_never: K.other_province,
    T.auditor: K.auditor,
}
SENDING = frozenset({T.sending_owner, T.sending_opener, T.sending_supervisor, T.sending_never})
CASE_SCOPED_LISTS = {
    ("intake", "GET", "/cases"),
    ("oversight", "GET", "/stuck"),
    ("oversight", "GET", "/board"),
    ("oversight", "GET", "/kpis"),
    ("oversight", "GET", "/reports/{kind}"),
    ("intake", "GET", "/access-log"),
}
RESPOND = ("support", "POST", "/handoffs/{case_id}/{handoff_id}/respond")


def transferred_allowed(route: tuple[str, str, str], kind: T) -> bool:
    """Who passes a route's gate on the transferred case: the matrix rule of the equivalent kind, except that
    the province the case left never acts, and only the receiving agency answers its (accepted) transfer."""
    _, method, _ = route
    if (
        route == RESPOND
    ):  # the invited agency in the receiving province (it gets 409: already accepted)
        return kind in (T.receiving_owner, T.receiving_supervisor)
    if method != "GET" and kind in SENDING and route not in CASE_SCOPED_LISTS:
        return False
    return AS_MATRIX_KIND[kind] in RULES[route].allowed


async def test_rules_hold_on_a_case_transferred_to_another_province(
    ts_env: Any, db_pool: Any, db_url: str, ring: KeyRing, task_queue: str
) -> None:
    from tests.helpers.intake_stack import open_body

    async with service_stack(ts_env, db_pool, db_url, ring, task_queue) as st:
        police = bearer(ring, A.police)
        sp = bearer(ring, A.social_protection)
        sp_79 = bearer(ring, A.social_protection, province=OTHER_PROVINCE)
        police_79 = bearer(ring, A.police, province=OTHER_PROVINCE)
        r = await st["intake"].post("/cases", json=open_body(channel="walk_in"), headers=police)
        assert r.status_code == 201, r.text
        case_id, person_id = r.json()["case_id"], r.json()["person_ref"]
        r = await st["intake"].post(
            f"/cases/{case_id}/classify",
            headers=police,
            json={
                "classification": "trafficking_suspected",
                "justification": "signs of trafficking",
            },
        )
        assert r.status_code == 200, r.text
        # consent to the local social protection does not cover 79's; consent naming 79 does
        r = await st["support"].post(
            f"/cases/{case_id}/transfers",
            headers=sp,
            json={
                "to_agency": "social_protection",
                "to_province": OTHER_PROVINCE,
                "reason": "the person lives there",
            },
        )
        assert r.status_code == 403 and "consent" in r.text, r.text
        r = await st["support"].post(
            f"/cases/{case_id}/consents",
            headers=sp,
            json={
                "purpose": "data_sharing",
                "granted": True,
                "agency": "social_protection",
                "province": OTHER_PROVINCE,
                "document": {"kind": "signed_form", "signed_on": TODAY},
            },
        )
        assert r.status_code == 201 and r.json()["current"] == {
            f"data_sharing:social_protection@{OTHER_PROVINCE}": True
        }, r.text
        r = await st["support"].post(
            f"/cases/{case_id}/transfers",
            headers=police,
            json={
                "to_agency": "social_protection",
                "to_province": OTHER_PROVINCE,
                "reason": "the person lives there",
            },
        )
        assert r.status_code == 403, r.text  # police does not own verification
        r = await st["support"].post(
            f"/cases/{case_id}/transfers",
            headers=sp,
            json={
                "to_agency": "social_protection",
                "to_province": OTHER_PROVINCE,
                "reason": "the person lives there",
            },
        )
        assert r.status_code == 201, r.text
        handoff = r.json()["handoff"]
        assert (handoff["from_province"], handoff["to_province"], handoff["state"]) == (
            PROVINCE,
            OTHER_PROVINCE,
            "requested",
        )
        handoff_id = handoff["handoff_id"]
        # pending: the receiving agency reads enough to decide and answers; nothing else; others of 79 nothing
        for service, path in (
            ("intake", f"/cases/{case_id}"),
            ("support", f"/cases/{case_id}/handoffs"),
            ("support", f"/cases/{case_id}/consents"),
        ):
            assert (await st[service].get(path, headers=sp_79)).status_code == 200, path
            assert (await st[service].get(path, headers=police_79)).status_code == 403, path
        for path, body in (
            (f"/cases/{case_id}/consents", {"purpose": "research", "granted": False}),
            (f"/cases/{case_id}/transfers", {"to_agency": "police", "reason": REASON}),
            (f"/cases/{case_id}/follow-ups/fu-3m", {"outcome": "done"}),
        ):
            r = await st["support"].post(path, headers=sp_79, json=body)
            assert r.status_code == 403, (path, r.text)
        r = await st["support"].post(
            f"/handoffs/{case_id}/{handoff_id}/respond", headers=police_79, json={"accept": True}
        )
        assert r.status_code == 403, r.text
        r = await st["support"].post(
            f"/handoffs/{case_id}/{handoff_id}/respond", headers=sp, json={"accept": True}
        )
        assert r.status_code == 403, (
            r.text
        )  # the sending province's own agency does not answer for 79
        r = await st["support"].post(
            f"/handoffs/{case_id}/{handoff_id}/respond", headers=sp_79, json={"accept": True}
        )
        assert r.status_code == 200, r.text
        case = r.json()["case"]
        assert (case["province"], case["owner_agency"], case["case_id"]) == (
            OTHER_PROVINCE,
            "social_protection",
            case_id,
        )
        version = case["version"]
        for _ in range(
            300
        ):  # oversight reads the projection: wait until it holds the accepted transfer
            if (
                await db_pool.fetchval(
                    "SELECT max(seq) FROM oversight.case_events WHERE case_id = $1", case_id
                )
                == version
            ):
                break
            await asyncio.sleep(0.05)
        await st.wait_event(db_pool, case_id, "handoff_accepted")

        tokens = {
            k: bearer(ring, agency, *roles, province=prov)
            for k, (agency, roles, prov) in TRANSFER_PRINCIPALS.items()
        }
        values = {**DUMMY, "case_id": case_id, "person_id": person_id, "handoff_id": handoff_id}
        failures = []
        exercised = 0
        for service, method, path, _ in ROUTES:
            route = (service, method, path)
            rule = RULES.get(route)  # a route without a rule fails test_every_route_has_a_rule_...
            if rule is None or not rule.exercise:
                continue
            exercised += 1
            url = fill(path, values)
            params = {k: fill(v, values) for k, v in (rule.params or {}).items()}
            for kind, headers in tokens.items():
                r = await st[service].request(
                    method,
                    url,
                    headers=headers,
                    params=params,
                    json=rule.json if method in ("POST", "PUT") else None,
                )
                admitted = r.status_code not in (401, 403)
                allowed = transferred_allowed(route, kind)
                if r.status_code == 422 and isinstance(r.json().get("detail"), list):
                    failures.append(
                        f"{service} {method} {path} as {kind}: invalid request {r.text[:200]}"
                    )
                elif admitted != allowed:
                    failures.append(
                        f"{service} {method} {path} as {kind}: {r.status_code} {r.text[:160]}"
                    )
                elif admitted and r.status_code >= 500:
                    failures.append(
                        f"{service} {method} {path} as {kind}: {r.status_code} {r.text[:160]}"
                    )
        assert not failures, "\n".join(failures)
        assert exercised >= 40, exercised
        # what the province the case left reads ends at the transfer: no later handoff shows there
        r = await st["support"].post(
            f"/cases/{case_id}/consents",
            headers=sp_79,
            json={
                "purpose": "data_sharing",
                "granted": True,
                "agency": "legal_aid",
                "document": {"kind": "signed_form", "signed_on": TODAY},
            },
        )
        assert r.status_code == 201, r.text
        r = await st["support"].post(
            f"/cases/{case_id}/legal-aid-referral",
            headers=sp_79,
            json={"reason": "unpaid wages claim at home"},
        )
        assert r.status_code == 201, r.text
        seen_79 = (await st["support"].get(f"/cases/{case_id}/handoffs", headers=sp_79)).json()[
            "items"
        ]
        seen_01 = (await st["support"].get(f"/cases/{case_id}/handoffs", headers=sp)).json()[
            "items"
        ]
        assert [h["handoff_id"] for h in seen_79] == [handoff_id, "h2"]
        assert [h["handoff_id"] for h in seen_01] == [handoff_id]
