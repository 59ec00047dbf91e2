"""Routes of the web console: thin. Each reads the session, calls the APIs through `client.Api` with the
user's token, and renders one template. What a user may do is decided by the APIs: a form is offered where
the case's state (as the APIs return it) makes it meaningful for the user's agency and role, and the API's
answer, accepted or refused, is what the page shows."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote

import structlog
from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.datastructures import FormData

from services.console import forms
from services.console.client import Api, ApiError
from services.console.forms import FormErrors, many, put, text, version, yes_no
from services.console.i18n import LANG_CHOICES, TZ, Lang, pick_lang, province_names
from services.console.session import LANG_COOKIE, Session, Sessions
from shared.auth import AuthError
from shared.domain import AgeBand, AgencyRole, Channel, Role, Stage

log = structlog.get_logger("console")
router = APIRouter()

CONSENT_PURPOSES = ("support", "data_sharing", "research")
GENDERS = (
    "Feminine",
    "Masculine",
    "TransgenderFeminine",
    "TransgenderMasculine",
    "NonConforming",
    "NonSpecifiedUnknown",
)
EXPLOITATION = (
    "ForcedLabour",
    "SexualExploitation",
    "ChildLabour",
    "ForcedMarriage",
    "Servitude",
    "ForcedMilitaryByNonStateActors",
    "OrganRemoval",
    "ForcedBegging",
    "ForcedAdoption",
    "Surrogacy",
    "Other",
)
CLASSIFICATIONS = ("trafficking_suspected", "other_crime", "not_relevant")
TRAFFICKING_STATUSES = ("ActualVictimOfTrafficking", "NotAVictimOfTrafficking")
DECISION_ORGS = (
    "Police",
    "NGO",
    "CourtOrProsecution",
    "NonPoliceGovernmentalOrganization",
    "Other",
)
EVIDENCE_KINDS = (
    "criminal_justice_material",
    "rescuer_information",
    "embassy_material",
    "domestic_or_foreign_body",
    "statement_of_person",
    "statement_of_relative",
    "statement_of_trafficker",
    "statement_of_other_victim",
    "statement_of_witness",
    "other_lawful",
)
MEASURES = (
    "safe_shelter",
    "confidential_location",
    "personal_information_protection",
    "guard",
    "relocation",
    "identity_change_of_documents",
    "closed_hearing",
    "protection_of_relatives",
    "other",
)
SUPPORT_TYPES = (
    "essential_needs",
    "medical_care",
    "interpretation",
    "legal_advice",
    "legal_aid",
    "travel_home",
    "psychological_support",
    "general_education",
    "vocational_training",
    "hardship_allowance",
)
PLAN_TYPES = (
    "Education",
    "Financial",
    "Health",
    "LabourExploitationRehabilitation",
    "Legal",
    "Livelihood",
    "RightsBasedTraining",
    "SexualExploitationRehabilitation",
    "SocialCare",
)
FOLLOW_UP_OUTCOMES = ("done", "missed", "not_reachable")
STUCK_REASONS = ("overdue", "due_soon", "handoff_waiting", "idle", "escalated", "technical")
CATEGORIES = ("child", "adult", "abroad", "domestic")
INBOX_VIEWS = ("in_progress", "waiting_acceptance", "due_soon", "overdue")
OPEN_STAGES = tuple(s.value for s in Stage if s != Stage.closed)
REPORT_KINDS = ("six_monthly", "annual", "ad_hoc")
CONSENT_DOC_KINDS = ("signed_form", "recorded_oral", "guardian_signed", "electronic")
RESCUE_OUTCOMES = ("rescued", "not_found", "postponed")
RESCUE_LEADS = ("police", "border_guard", "coast_guard")
PERPETRATOR_ROLES = (
    "RecruiterOrIntermediary",
    "BrokerTravelAgent",
    "Transporter",
    "TravellingPartner",
    "TransferredIndividual",
    "HarbouredIndividual",
    "SoldIndividual",
    "BoughtIndividual",
    "ReceivedIndividual",
    "ControlledIndividual",
    "Smuggler",
    "Abuser",
    "Kidnapper",
    "Exploiter",
    "Other",
)
REFUSAL_SIGNERS = ("person", "representative")
NOTIFICATION_KINDS = (
    "reminder",
    "escalation",
    "handoff_requested",
    "handoff_escalation",
    "follow_up_due",
    "handoff_accepted",
    "handoff_rejected",
)
# shared.access.allowed_actions names -> this console's form names (the others are the same)
FORM_OF = {"support_plan": "plan", "respond_handoff": "respond", "extend_deadline": "extend"}
SUPERVISOR_FORMS = frozenset({"reassign", "extend", "escalate", "reopen"})


# ---- plumbing ---------------------------------------------------------------------------------
class Ctx:
    """One request: session, language, the user's API client."""

    def __init__(self, request: Request) -> None:
        app = request.app
        self.request = request
        self.sessions: Sessions = app.state.sessions
        self.session: Session = self.sessions.load(request)
        self.t = Lang(pick_lang(request.cookies.get(LANG_COOKIE)))
        self.api = Api(
            app.state.api_http,
            app.state.config,
            self.session.token if self.session.signed_in else None,
        )
        self.config = app.state.config

    def render(self, template: str, status: int = 200, **kw: Any) -> HTMLResponse:
        env = self.request.app.state.templates
        html = env.get_template(template).render(
            _=self.t._,
            L=self.t.label,
            t=self.t,
            s=self.session,
            path=self.request.url.path,
            full_path=str(self.request.url.path)
            + (f"?{self.request.url.query}" if self.request.url.query else ""),
            dev_issuer=self.config.dev_issuer,
            lang_choices=LANG_CHOICES,
            new_key=lambda: uuid.uuid4().hex,
            opts=lambda context, keys: [(k, self.t.label(context, k)) for k in keys],
            provs=lambda national=False: [
                *([("*", self.t.province("*"))] if national else []),
                *province_names().items(),
            ],
            empty=lambda prefix="": FormErrors(prefix=prefix),
            is_err=lambda x: isinstance(x, ApiError),
            # `bell`: the unread count, on the pages that read it; `resend`: forms.send_failed
            **{"bell": None, "resend": None, **kw},
        )
        response = HTMLResponse(html, status_code=status)
        self.sessions.save(
            response, self.session
        )  # keeps the CSRF token (and a fresh anonymous session)
        return response

    async def form(self) -> FormData:
        """The posted form, after the CSRF check (403 page when it fails)."""
        form = await self.request.form()
        if not self.sessions.csrf_ok(self.session, forms.text(form, "csrf")):
            raise CsrfFailed
        return form

    def require(self, *roles: str) -> None:
        if not self.session.signed_in:
            raise SignInNeeded
        if roles and not any(self.session.has(r) for r in roles):
            raise WrongRole


class SignInNeeded(Exception):
    pass


class WrongRole(Exception):
    pass


class CsrfFailed(Exception):
    pass


def redirect(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


def local(url: str | None, default: str = "/") -> str:
    """Only paths of this site (no open redirect)."""
    return url if url and url.startswith("/") and not url.startswith("//") else default


async def gather_sections(calls: dict[str, Awaitable[Any]]) -> dict[str, Any]:
    """Run the API reads together; a refused read keeps its ApiError (the page says why it is missing)."""
    names = list(calls)
    results = await asyncio.gather(*calls.values(), return_exceptions=True)
    out: dict[str, Any] = {}
    for name, res in zip(names, results, strict=True):
        if isinstance(res, BaseException) and not isinstance(res, ApiError):
            raise res
        out[name] = res
    return out


# ---- health, home, language, sign-in ---------------------------------------------------------
@router.get("/healthz", include_in_schema=False)
async def healthz() -> dict[str, str]:
    return {"status": "ok", "service": "console"}


@router.get("/", include_in_schema=False)
async def home(request: Request) -> Response:
    c = Ctx(request)
    return redirect(c.session.home if c.session.signed_in else "/signin")


@router.post("/lang")
async def set_lang(request: Request) -> Response:
    c = Ctx(request)
    form = await c.form()
    lang = pick_lang(text(form, "lang"))
    response = redirect(local(text(form, "next")))
    response.set_cookie(
        LANG_COOKIE,
        lang,
        max_age=400 * 24 * 3600,
        httponly=True,
        secure=c.config.cookie_secure,
        samesite="lax",
        path="/",
    )
    return response


PERSONAS: tuple[
    dict[str, str], ...
] = (  # "label" is translated; "name" is the (made-up) person's name
    {
        "id": "bg",
        "role": "caseworker",
        "agency": "border_guard",
        "province": "20",
        "user_id": "bp-langson-01",
        "label": "Border-guard officer, Lạng Sơn crossing",
        "name": "Hoàng Văn Nam",
    },
    {
        "id": "sp",
        "role": "caseworker",
        "agency": "social_protection",
        "province": "20",
        "user_id": "btxh-langson-01",
        "label": "Social-protection officer, provincial centre",
        "name": "Lương Thị Hạnh",
    },
    {
        "id": "sup",
        "role": "supervisor",
        "agency": "police",
        "province": "20",
        "user_id": "ca-langson-gs-01",
        "label": "Supervisor, provincial police",
        "name": "Vi Đức Thắng",
    },
    {
        "id": "aud",
        "role": "auditor",
        "agency": "steering_committee",
        "province": "*",
        "user_id": "bcd138-kt-01",
        "label": "Auditor, Steering Committee 138",
        "name": "Đỗ Minh Châu",
    },
)


@router.get("/signin")
async def signin_page(request: Request, error: str | None = None) -> Response:
    c = Ctx(request)
    return c.render(
        "signin.html",
        personas=PERSONAS,
        roles=("caseworker", "supervisor", "auditor"),
        agencies=[a.value for a in AgencyRole],
        provinces=province_names(),
        error=error,
        oidc_ready=c.config.oidc_ready,
    )


@router.post("/signin/dev")
async def signin_dev(request: Request) -> Response:
    c = Ctx(request)
    if not c.config.dev_issuer:  # production: only the identity provider signs people in
        raise HTTPException(404)
    form = await c.form()
    persona = next((p for p in PERSONAS if p["id"] == text(form, "persona")), None)
    values = (
        dict(persona)
        if persona
        else {k: text(form, k) or "" for k in ("role", "agency", "province", "user_id", "name")}
    )
    try:
        role, agency = Role(values["role"]), AgencyRole(values["agency"])
    except ValueError:
        return redirect("/signin?error=persona")
    province = values["province"]
    if province not in province_names() and province != "*":
        return redirect("/signin?error=persona")
    user_id = values["user_id"] or f"{agency.value}-{province.replace('*', 'vn')}-{role.value}"
    token = c.sessions.dev_token(role, agency, province, user_id, values["name"] or user_id)
    session = await c.sessions.signed_in_as(c.session, token, "dev")
    response = redirect(session.home)
    c.sessions.save(response, session)
    log.info("console_signed_in", via="dev", user_id=user_id, agency=agency.value, role=role.value)
    return response


@router.get("/signin/oidc")
async def signin_oidc(request: Request) -> Response:
    c = Ctx(request)
    if not c.config.oidc_ready:
        raise HTTPException(404)
    return c.sessions.oidc_start(redirect)


@router.get("/signin/callback")
async def signin_callback(request: Request) -> Response:
    c = Ctx(request)
    if not c.config.oidc_ready:
        raise HTTPException(404)
    try:
        access, id_token = await c.sessions.oidc_finish(request, request.app.state.http)
        session = await c.sessions.signed_in_as(c.session, access, "oidc", id_token)
    except AuthError as exc:
        log.warning("console_oidc_refused", reason=str(exc))
        return redirect("/signin?error=oidc")
    response = redirect(session.home)
    c.sessions.save(response, session)
    response.delete_cookie("nrm_oidc", path="/signin")
    return response


@router.post("/signout")
async def signout(request: Request) -> Response:
    c = Ctx(request)
    await c.form()
    end = c.config.own.oidc_end_session_url if c.session.via == "oidc" else None
    response = redirect(end or "/signin?signed_out=1")
    c.sessions.save(response, Session())  # a new anonymous session: new CSRF token, no bearer token
    return response


# ---- caseworker: inbox --------------------------------------------------------------------------
async def _inbox_view(api: Api, view: str, mine: bool, limit: int) -> dict[str, Any]:
    """The inbox API's views cover the verify..protect stages unless a stage is named; the console's "in
    progress" is every stage the agency owns, so the receive and reintegrate stages are asked for too and
    the three answers merged (sorted by deadline, as the API sorts)."""
    if view == "waiting_acceptance":
        return await api.inbox(view=view, assigned_to_me=mine or None, limit=limit)
    parts = await asyncio.gather(
        *(
            api.inbox(view=view, stage=stage, assigned_to_me=mine or None, limit=limit)
            for stage in (None, "receive", "reintegrate")
        )
    )
    items = sorted(
        (i for p in parts for i in p["items"]),
        key=lambda i: (i["deadline_at"] is None, i["deadline_at"] or "", i["case_id"]),
    )
    return {
        "view": view,
        "items": items[:limit],
        "total": sum(p["total"] for p in parts),
        "complete": all(p["complete"] for p in parts),
    }


@router.get("/inbox")
async def inbox(request: Request, view: str = "in_progress", mine: bool = False) -> Response:
    c = Ctx(request)
    c.require()
    view = view if view in INBOX_VIEWS else "in_progress"
    counts: dict[str, Any] = {}
    page: dict[str, Any] | ApiError
    # every tab shows its count (an overdue case must be visible at a glance, whichever tab is open): the
    # inbox reads the case index in PostgreSQL, so the other tabs' counts are cheap (limit 1, concurrently);
    # a tab whose count could not be read shows none rather than a wrong 0
    others = [v for v in INBOX_VIEWS if v != view]
    results, bell = await asyncio.gather(
        asyncio.gather(
            _inbox_view(c.api, view, mine, 100),
            *(_inbox_view(c.api, v, mine, 1) for v in others),
            return_exceptions=True,
        ),
        _bell(c.api),
    )
    first = results[0]
    if isinstance(first, ApiError):
        page = first
    elif isinstance(first, BaseException):
        raise first
    else:
        page = first
        counts[view] = first["total"]
    for v, got in zip(others, results[1:], strict=True):
        if isinstance(got, dict):
            counts[v] = got["total"]
    return c.render(
        "inbox.html",
        view=view,
        mine=mine,
        page=page,
        counts=counts,
        views=INBOX_VIEWS,
        bell=bell,
    )


# ---- the bell: the notifications service's inbox of this user -----------------------------------
async def _bell(api: Api) -> int | None:
    """How many unread notifications the user has (None: the notifications service did not answer)."""
    try:
        return int((await api.notifications(limit=1))["unread"])
    except ApiError:
        return None


@router.get("/notifications")
async def notifications(request: Request, all: bool = False) -> Response:
    c = Ctx(request)
    c.require()
    page: dict[str, Any] | ApiError
    try:
        page = await c.api.notifications(unread=not all, limit=100)
    except ApiError as exc:
        if exc.status == 401:
            raise SignInNeeded from None
        page = exc
    return c.render(
        "notifications.html",
        page=page,
        show_all=all,
        bell=page["unread"] if isinstance(page, dict) else None,
    )


@router.post("/notifications/{item_id}/read")
async def notification_read(request: Request, item_id: str) -> Response:
    """Mark one notification read, then open its case (or go back to the list)."""
    c = Ctx(request)
    c.require()
    form = await c.form()
    try:
        await c.api.mark_read(quote(item_id, safe=""))
    except ApiError as exc:
        if exc.status == 401:
            raise SignInNeeded from None
        log.info("console_notification_not_marked", status=exc.status)
    case_id = text(form, "case_id")
    return redirect(f"/cases/{quote(case_id)}" if case_id else "/notifications")


# ---- caseworker: open a case ------------------------------------------------------------------
OPEN_FIELDS = [
    "channel",
    "province",
    "commune",
    "abroad",
    "already_safe",
    "person.prs_SecondName",
    "person.prs_MiddleName",
    "person.prs_FirstName",
    "person.birth_year",
    "person.estimated_age",
    "person.prs_Gender",
    "person.prs_IdentityNumber",
    "person.no_documents",
    "person.prs_MobilePhone",
    "victim.vic_TypeOfExploitation",
    "report.summary",
    "con_Consent",
]


def open_body(form: FormData) -> dict[str, Any]:
    body: dict[str, Any] = {}
    for name in (
        "channel",
        "province",
        "commune",
        "person.prs_SecondName",
        "person.prs_MiddleName",
        "person.prs_FirstName",
        "person.birth_year",
        "person.estimated_age",
        "person.prs_Gender",
        "person.prs_IdentityNumber",
        "person.prs_MobilePhone",
        "report.summary",
    ):
        put(body, name, text(form, name))
    put(body, "abroad", yes_no(form, "abroad"))
    put(body, "already_safe", yes_no(form, "already_safe"))
    put(body, "con_Consent", yes_no(form, "con_Consent"))
    put(body, "victim.vic_TypeOfExploitation", many(form, "victim.vic_TypeOfExploitation"))
    body.setdefault("person", {})
    if form.get("person.no_documents"):
        body["person"]["no_documents"] = True
    return body


def open_form(
    c: Ctx,
    values: dict[str, Any] | None = None,
    errors: FormErrors | None = None,
    status: int = 200,
    resend: dict[str, str] | None = None,
) -> HTMLResponse:
    return c.render(
        "open_case.html",
        status=status,
        resend=resend,
        values=values or {"province": c.session.province or ""},
        errors=errors or FormErrors(),
        channels=[ch.value for ch in Channel],
        provinces=province_names(),
        genders=GENDERS,
        exploitation=EXPLOITATION,
    )


@router.get("/cases/new")
async def open_case_page(request: Request) -> Response:
    c = Ctx(request)
    c.require("caseworker", "supervisor")
    return open_form(c)


@router.post("/cases/new")
async def open_case(request: Request) -> Response:
    c = Ctx(request)
    c.require("caseworker", "supervisor")
    form = await c.form()
    try:
        out = await c.api.open_case(open_body(form), idem=text(form, "idem") or uuid.uuid4().hex)
    except ApiError as exc:
        if exc.status == 401:
            raise SignInNeeded from None
        errors, resend = forms.send_failed(c.t, exc, form, OPEN_FIELDS)
        return open_form(
            c, forms.values_of(form), errors, status=503 if resend else 422, resend=resend
        )
    note = "opened_dup" if out.get("duplicates") else "opened"
    return redirect(f"/cases/{quote(out['case_id'])}?done={note}")


# ---- caseworker: bulk upload (mass arrivals) ---------------------------------------------------
BULK_MAX_BYTES = (
    1_500_000  # under the services' request limit (NRM_MAX_BODY_BYTES, 2 MB by default)
)


@router.get("/cases/bulk")
async def bulk_page(request: Request) -> Response:
    c = Ctx(request)
    c.require("caseworker", "supervisor")
    return c.render("bulk.html", result=None, error=None)


@router.post("/cases/bulk")
async def bulk_upload(request: Request) -> Response:
    """The CSV goes to intake as it is; intake validates and opens each row and answers per row."""
    c = Ctx(request)
    c.require("caseworker", "supervisor")
    form = await c.form()
    upload = form.get("file")
    data = (
        await upload.read(BULK_MAX_BYTES + 1)
        if upload is not None and not isinstance(upload, str)
        else b""
    )
    if not data:
        return c.render("bulk.html", status=422, result=None, error=c.t._("Choose a CSV file"))
    if len(data) > BULK_MAX_BYTES:
        return c.render(
            "bulk.html", status=422, result=None, error=c.t._("The file is too large: split it")
        )
    try:
        result = await c.api.open_bulk_csv(data, text(form, "idem") or uuid.uuid4().hex)
    except ApiError as exc:
        if exc.status == 401:
            raise SignInNeeded from None
        errors, resend = forms.send_failed(c.t, exc, form, [])
        return c.render(
            "bulk.html",
            status=503 if resend else 422,
            result=None,
            error=errors.general[0] if resend else forms.refusal_message(c.t, exc),
            detail=forms.api_detail(exc) or (exc.detail if isinstance(exc.detail, str) else None),
            resend=resend,
        )
    rows = [
        {
            **r,
            "messages": [
                (".".join(str(p) for p in e.get("loc", [])[-1:]), forms.translate_error(c.t, e))
                for e in r.get("errors", [])
            ],
        }
        for r in result["results"]
    ]
    return c.render("bulk.html", result=result, rows=rows, error=None)


# ---- duplicates, side by side ----------------------------------------------------------------------
@router.get("/duplicates/{candidate_id}")
async def duplicate(request: Request, candidate_id: str, case_id: str) -> Response:
    """Both persons of a possible duplicate, each read through intake (each read access-logged)."""
    c = Ctx(request)
    c.require("caseworker", "supervisor")
    try:
        found = [d for d in await c.api.duplicates(case_id) if d["candidate_id"] == candidate_id]
    except ApiError as exc:
        return c.render(
            "error.html",
            status=exc.status if exc.status in (403, 404) else 502,
            message=forms.refusal_message(c.t, exc),
            detail=forms.api_detail(exc),
        )
    if not found or not found[0]["case_id"] or not found[0]["other_case_id"]:
        raise HTTPException(404)
    cand = found[0]
    people = await gather_sections(
        {
            side: c.api.person(cand[side], "duplicate comparison")
            for side in ("case_id", "other_case_id")
        }
    )
    return c.render(
        "duplicate.html", cand=cand, people=people, case_id=case_id, errors=FormErrors(), values={}
    )


# ---- the case page ------------------------------------------------------------------------------
def _live_facts(view: dict[str, Any], wf: dict[str, Any] | None) -> dict[str, Any] | None:
    """Deadline, assignee, escalation level and categories, from intake's case read (one call for every
    role: the workflow's state as the API returns it to this user)."""
    if wf is None:
        return None
    return {
        "deadline_at": wf.get("deadline_at"),
        "assignee": wf.get("assignee"),
        "escalation_level": wf.get("escalation_level", 0),
        "categories": _categories(view["facts"]),
    }


def _categories(facts: dict[str, Any]) -> list[str]:
    band = facts.get("age_band")
    cats = [
        "child" if band in (AgeBand.under_16.value, AgeBand.age_16_17.value) else "adult",
        "abroad" if facts.get("abroad") else "domestic",
    ]
    if band == AgeBand.under_16.value:
        cats.append("under_16")
    if facts.get("foreign_national"):
        cats.append("foreign")
    return cats


def _timeline(sections: dict[str, Any], view: dict[str, Any]) -> list[dict[str, Any]]:
    """A caseworker's timeline, from what their APIs return (the audit history is for supervisors and
    auditors): opening, handoffs, consents, support plans, services, follow-ups."""
    ev: list[dict[str, Any]] = [
        {
            "at": view["facts"]["opened_at"],
            "kind": "case_opened",
            "agency": view["facts"]["opened_by_agency"],
            "detail": None,
            "detail_ctx": "",
        }
    ]
    handoffs = sections.get("handoffs")
    if isinstance(handoffs, dict):
        for h in handoffs["items"]:
            ev.append(
                {
                    "at": h["requested_at"],
                    "kind": "handoff_requested",
                    "agency": h["from_agency"],
                    "detail": h["to_agency"],
                    "detail_ctx": "agency",
                }
            )
            if h.get("responded_at"):
                ev.append(
                    {
                        "at": h["responded_at"],
                        "kind": f"handoff_{h['state']}",
                        "agency": h["to_agency"],
                        "detail": None,
                        "detail_ctx": "",
                    }
                )
    consents = sections.get("consents")
    if isinstance(consents, dict):
        for r in consents["history"]:
            ev.append(
                {
                    "at": r["recorded_at"],
                    "kind": "consent_recorded",
                    "agency": None,
                    "detail": r["purpose"],
                    "detail_ctx": "consent_purpose",
                }
            )
    plans = sections.get("plans")
    if isinstance(plans, dict):
        for p in plans["items"]:
            ev.append(
                {
                    "at": p["created_at"],
                    "kind": "support_plan_written",
                    "agency": None,
                    "detail": None,
                    "detail_ctx": "",
                }
            )
    services = sections.get("services")
    if isinstance(services, dict):
        for sv in services["items"]:
            ev.append(
                {
                    "at": sv["recorded_at"],
                    "kind": "service_delivered",
                    "agency": sv["provider_agency"],
                    "detail": sv["service_type"],
                    "detail_ctx": "support_type",
                }
            )
    follow = sections.get("follow_ups")
    if isinstance(follow, dict):
        for f in follow["items"]:
            if f.get("recorded_at"):
                ev.append(
                    {
                        "at": f["recorded_at"],
                        "kind": "follow_up_recorded",
                        "agency": None,
                        "detail": f["outcome"],
                        "detail_ctx": "follow_up_outcome",
                    }
                )
    return sorted(ev, key=lambda e: str(e["at"]), reverse=True)


async def case_page(
    c: Ctx,
    case_id: str,
    *,
    break_glass: str | None = None,
    failed: str | None = None,
    errors: FormErrors | None = None,
    values: dict[str, Any] | None = None,
    status: int = 200,
    done: str | None = None,
    resend: dict[str, str] | None = None,
) -> HTMLResponse:
    # one round of concurrent reads: the case (with what this user may do now) and every section; only the
    # planned rescue operations wait for the case read, and only in the rescue stage (to complete one)
    reads: dict[str, Awaitable[Any]] = {
        "case": c.api.intake_case(case_id, break_glass),
        "person": c.api.person(case_id, "console case page", break_glass),
        "handoffs": c.api.support_get(case_id, "handoffs", break_glass),
        "consents": c.api.support_get(case_id, "consents", break_glass),
        "follow_ups": c.api.support_get(case_id, "follow-ups"),
        "plans": c.api.support_get(case_id, "support-plan", break_glass),
        "services": c.api.support_get(case_id, "services", break_glass),
        "duplicates": c.api.duplicates(case_id),
    }
    if c.session.has("supervisor") or c.session.has("auditor"):
        reads["history"] = c.api.history(case_id)
    if c.session.agency in (
        "police",
        "border_guard",
        "coast_guard",
        "prosecution",
    ) or c.session.has("auditor"):
        reads["perpetrators"] = c.api.perpetrators(case_id, break_glass)
        reads["linked"] = c.api.linked_cases(case_id)
    sections = await gather_sections(reads)
    view = sections.pop("case")
    if isinstance(view, ApiError):
        if view.status == 401:
            raise SignInNeeded from None
        return c.render(
            "error.html",
            status=view.status if view.status in (403, 404) else 502,
            message=forms.refusal_message(c.t, view),
            detail=forms.api_detail(view),
        )
    wf = view.get("workflow")
    if wf and "rescue_complete" in (wf.get("allowed_actions") or []):
        sections |= await gather_sections({"rescues": c.api.rescues(case_id)})
    live = _live_facts(view, wf)
    timeline = (
        _timeline(sections, view)
        if "history" not in sections or isinstance(sections["history"], ApiError)
        else None
    )
    return c.render(
        "case.html",
        status=status,
        case=view,
        wf=wf,
        sec=sections,
        live=live,
        timeline=timeline,
        offers=offers(c.session, wf, sections),
        failed=failed,
        errors=errors or FormErrors(),
        values=values or {},
        resend=resend,
        done=done,
        break_glass=break_glass,
        lists=LISTS,
        open_all=False,
        today=datetime.now(TZ).date().isoformat(),
        provinces=province_names(),
        actions=list(ACTIONS),
    )


LISTS: dict[str, Any] = {
    "classifications": CLASSIFICATIONS,
    "statuses": TRAFFICKING_STATUSES,
    "orgs": DECISION_ORGS,
    "evidence": EVIDENCE_KINDS,
    "measures": MEASURES,
    "support_types": SUPPORT_TYPES,
    "plan_types": PLAN_TYPES,
    "purposes": CONSENT_PURPOSES,
    "agencies": [a.value for a in AgencyRole],
    "follow_up": FOLLOW_UP_OUTCOMES,
    "stages": OPEN_STAGES,
    "doc_kinds": CONSENT_DOC_KINDS,
    "rescue_outcomes": RESCUE_OUTCOMES,
    "rescue_leads": RESCUE_LEADS,
    "perpetrator_roles": PERPETRATOR_ROLES,
    "refusal_signers": REFUSAL_SIGNERS,
}


def offers(s: Session, wf: dict[str, Any] | None, sec: dict[str, Any]) -> dict[str, Any]:
    """Which forms the page offers: exactly the actions intake's case read lists as allowed for this user
    now (`workflow.allowed_actions`, computed by the APIs' own rules in shared/access.py), each with what
    the form needs from the case (the handoffs addressed to the user's agency, the pending follow-ups, the
    planned rescue operations). The console adds no rule: the API still decides each request."""
    out: dict[str, Any] = {
        "can": set(),
        "respond": [],
        "follow_ups": [],
        "rescues": [],
        "supervisor": False,
        "override": False,
        "break_glass": s.has("auditor") and not (s.has("caseworker") or s.has("supervisor")),
    }
    if wf is None:
        return out
    can = {FORM_OF.get(a, a) for a in wf.get("allowed_actions") or []}
    out["override"] = s.has("supervisor") and wf["owner_agency"] != s.agency
    handoffs = sec.get("handoffs")
    if "respond" in can and isinstance(handoffs, dict):
        out["respond"] = [
            h for h in handoffs["items"] if h["state"] == "requested" and h["to_agency"] == s.agency
        ]
    follow = sec.get("follow_ups")
    if "follow_up" in can and isinstance(follow, dict):
        out["follow_ups"] = [f for f in follow["items"] if not f.get("outcome")]
    rescues = sec.get("rescues")
    if "rescue_complete" in can:
        out["rescues"] = (
            [r for r in rescues["items"] if r["status"] == "planned"]
            if isinstance(rescues, dict)
            else []
        )
        if not out["rescues"]:
            can.discard("rescue_complete")  # nothing planned to complete
    out["can"] = can
    out["supervisor"] = bool(can & SUPERVISOR_FORMS)
    return out


@router.get("/cases/{case_id}")
async def case(request: Request, case_id: str, done: str | None = None) -> Response:
    c = Ctx(request)
    c.require()
    return await case_page(c, case_id, done=done)


@router.post("/cases/{case_id}/unmask")
async def unmask(request: Request, case_id: str) -> Response:
    """Break glass: the person's data unmasked for this one page, with the reason recorded by the APIs."""
    c = Ctx(request)
    c.require("auditor")
    form = await c.form()
    reason = text(form, "break_glass_reason")
    if not reason or len(reason) < 10:
        errs = FormErrors(
            by_field={"break_glass_reason": c.t._("Too short: at least {n} characters", n=10)},
            prefix="unmask-",
        )
        return await case_page(
            c, case_id, failed="unmask", errors=errs, values=forms.values_of(form), status=422
        )
    return await case_page(c, case_id, break_glass=reason)


# ---- the case's actions: each a form that sends the API call ----------------------------------------
Builder = Callable[[FormData], dict[str, Any]]
Sender = Callable[[Api, str, dict[str, Any], str, FormData], Awaitable[Any]]


def _versioned(form: FormData, **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {}
    for k, v in fields.items():
        put(body, k.replace("__", "."), v)
    body["expected_version"] = version(form)
    if text(form, "override_reason"):
        body["override_reason"] = text(form, "override_reason")
    return body


def _evidence(form: FormData) -> list[dict[str, Any]]:
    item: dict[str, Any] = {}
    for k in ("kind", "source", "date", "reference"):
        put(item, k, text(form, f"evidence.0.{k}"))
    return [item] if item else []


def _consent(form: FormData) -> dict[str, Any]:
    body: dict[str, Any] = {
        "purpose": text(form, "purpose"),
        "granted": yes_no(form, "granted"),
        "expected_version": version(form),
    }
    put(body, "agency", text(form, "agency"))
    put(body, "province", text(form, "province"))
    if body["granted"]:
        doc: dict[str, Any] = {}
        for k in ("kind", "signed_on", "reference"):
            put(doc, k, text(form, f"document.{k}"))
        body["document"] = doc or None
    return {k: v for k, v in body.items() if v is not None}


def _extend(form: FormData) -> dict[str, Any]:
    days = text(form, "extend_by") or ""
    body = {
        "extend_by": f"P{days}D" if days.isdigit() else days,
        "reason": text(form, "reason"),
        "expected_version": version(form),
    }
    put(body, "handoff_id", text(form, "handoff_id"))
    return body


def _protect(form: FormData) -> dict[str, Any]:
    body = _versioned(
        form, measures=many(form, "measures"), justification=text(form, "justification")
    )
    if text(form, "declined") == "yes":
        body["declined"] = True
        doc: dict[str, Any] = {}
        for k in ("signed_on", "reference", "signed_by"):
            put(doc, k, text(form, f"refusal_document.{k}"))
        body["refusal_document"] = doc or None
    return body


def _planned_for(form: FormData) -> str | None:
    """A datetime-local value (Vietnam time, as the officer typed it) as an aware ISO time."""
    value = text(form, "planned_for")
    if value and len(value) == 16:  # yyyy-mm-ddThh:mm
        return f"{value}:00+07:00"
    return value


def _rescue_plan(form: FormData) -> dict[str, Any]:
    body: dict[str, Any] = {}
    put(body, "planned_for", _planned_for(form))
    put(body, "lead_agency", text(form, "lead_agency"))
    put(body, "location", text(form, "location"))
    put(body, "plan_notes", text(form, "plan_notes"))
    return body


def _perpetrator(form: FormData) -> dict[str, Any]:
    body: dict[str, Any] = {"roles": many(form, "roles")}
    for k in ("name", "role_details", "recruitment_channel"):
        put(body, k, text(form, k))
    phone = text(form, "phones.0")
    if phone:
        body["phones"] = [phone]
    return body


def _transfer(form: FormData) -> dict[str, Any]:
    body = _versioned(
        form,
        to_agency=text(form, "to_agency"),
        to_province=text(form, "to_province"),
        reason=text(form, "reason"),
    )
    put(body, "consent_override_reason", text(form, "consent_override_reason"))
    return body


def _respond(form: FormData) -> dict[str, Any]:
    return {
        "accept": text(form, "accept") == "yes",
        "reason": text(form, "reason"),
        "expected_version": version(form),
    }


ACTIONS: dict[str, tuple[Builder, Sender, list[str]]] = {
    "claim": (
        lambda f: _versioned(f),
        lambda a, cid, b, k, f: a.verification_post(cid, "claim", b, k),
        ["override_reason"],
    ),
    "classify": (
        lambda f: _versioned(
            f, classification=text(f, "classification"), justification=text(f, "justification")
        ),
        lambda a, cid, b, k, f: a.classify(
            cid, {x: y for x, y in b.items() if x != "override_reason"}, k
        ),
        ["classification", "justification"],
    ),
    "verify": (
        lambda f: _versioned(f, result=text(f, "result"), justification=text(f, "justification")),
        lambda a, cid, b, k, f: a.verification_post(cid, "verification", b, k),
        ["result", "justification", "override_reason"],
    ),
    "identify": (
        lambda f: {
            **_versioned(
                f,
                status=text(f, "status"),
                deciding_org=text(f, "deciding_org"),
                justification=text(f, "justification"),
            ),
            "evidence": _evidence(f),
        },
        lambda a, cid, b, k, f: a.verification_post(cid, "identification", b, k),
        [
            "status",
            "deciding_org",
            "evidence",
            "evidence.0.kind",
            "evidence.0.source",
            "evidence.0.date",
            "evidence.0.reference",
            "justification",
            "override_reason",
        ],
    ),
    "rescue_not_needed": (
        lambda f: _versioned(f, justification=text(f, "justification")),
        lambda a, cid, b, k, f: a.verification_post(cid, "rescue-operations/not-needed", b, k),
        ["justification", "override_reason"],
    ),
    "protect": (
        _protect,
        lambda a, cid, b, k, f: a.verification_post(cid, "protection", b, k),
        [
            "measures",
            "declined",
            "refusal_document",
            "refusal_document.signed_on",
            "refusal_document.reference",
            "refusal_document.signed_by",
            "justification",
            "override_reason",
        ],
    ),
    "protection_measures": (
        lambda f: {
            "measures": many(f, "measures"),
            "justification": text(f, "justification"),
            "expected_version": version(f),
        },
        lambda a, cid, b, k, f: a.verification_post(cid, "protection-measures", b, k),
        ["measures", "justification"],
    ),
    "rescue_plan": (
        _rescue_plan,
        lambda a, cid, b, k, f: a.verification_post(cid, "rescue-operations", b, k),
        ["planned_for", "lead_agency", "location", "plan_notes"],
    ),
    "rescue_complete": (
        lambda f: _versioned(f, outcome=text(f, "outcome"), justification=text(f, "justification")),
        lambda a, cid, b, k, f: a.verification_post(
            cid, f"rescue-operations/{quote(text(f, 'operation_id') or '-')}/complete", b, k
        ),
        ["outcome", "persons", "justification", "override_reason"],
    ),
    "perpetrator": (
        _perpetrator,
        lambda a, cid, b, k, f: a.verification_post(cid, "perpetrators", b, k),
        ["roles", "name", "role_details", "phones", "phones.0", "recruitment_channel"],
    ),
    "transfer": (
        _transfer,
        lambda a, cid, b, k, f: a.support_post(cid, "transfers", b, k),
        ["to_agency", "to_province", "reason", "consent_override_reason", "override_reason"],
    ),
    "consent": (
        _consent,
        lambda a, cid, b, k, f: a.support_post(cid, "consents", b, k),
        [
            "purpose",
            "agency",
            "province",
            "granted",
            "document",
            "document.kind",
            "document.signed_on",
            "document.reference",
        ],
    ),
    "legal_aid": (
        lambda f: _versioned(f, reason=text(f, "reason")),
        lambda a, cid, b, k, f: a.support_post(cid, "legal-aid-referral", b, k),
        ["reason", "override_reason"],
    ),
    "plan": (
        lambda f: _versioned(
            f,
            spl_Objectives=text(f, "spl_Objectives"),
            spl_Type=many(f, "spl_Type"),
            spl_PlannedEndDate=text(f, "spl_PlannedEndDate"),
        ),
        lambda a, cid, b, k, f: a.support_post(
            cid, "support-plan", {x: y for x, y in b.items() if x != "override_reason"}, k
        ),
        ["spl_Objectives", "spl_Type", "spl_PlannedEndDate"],
    ),
    "service": (
        lambda f: _versioned(
            f,
            service_type=text(f, "service_type"),
            provider_agency=text(f, "provider_agency"),
            delivered_on=text(f, "delivered_on"),
            amount_vnd=text(f, "amount_vnd"),
            note=text(f, "note"),
        ),
        lambda a, cid, b, k, f: a.support_post(
            cid, "services", {x: y for x, y in b.items() if x != "override_reason"}, k
        ),
        [
            "service_type",
            "provider_agency",
            "delivered_on",
            "amount_vnd",
            "note",
            "supervisor_approval_reason",
        ],
    ),
    "follow_up": (
        lambda f: _versioned(f, outcome=text(f, "outcome"), note=text(f, "note")),
        lambda a, cid, b, k, f: a.support_post(cid, f"follow-ups/{text(f, 'follow_up_id')}", b, k),
        ["outcome", "note", "override_reason"],
    ),
    "closure": (
        lambda f: _versioned(f, cas_Status=text(f, "cas_Status"), reason=text(f, "reason")),
        lambda a, cid, b, k, f: a.support_post(cid, "closure", b, k),
        ["cas_Status", "reason", "plan_id", "override_reason"],
    ),
    "respond": (
        _respond,
        lambda a, cid, b, k, f: a.respond_handoff(cid, str(text(f, "handoff_id")), b, k),
        ["accept", "reason"],
    ),
    "reassign": (
        lambda f: _versioned(f, assignee_user_id=text(f, "assignee_user_id")),
        lambda a, cid, b, k, f: a.oversight_act(cid, "reassign", b, k),
        ["assignee_user_id", "override_reason"],
    ),
    "extend": (
        _extend,
        lambda a, cid, b, k, f: a.oversight_act(cid, "extend-deadline", b, k),
        ["extend_by", "reason", "handoff_id"],
    ),
    "escalate": (
        lambda f: {"reason": text(f, "reason"), "expected_version": version(f)},
        lambda a, cid, b, k, f: a.oversight_act(cid, "escalate", b, k),
        ["reason"],
    ),
    "reopen": (
        lambda f: {
            "to_stage": text(f, "to_stage"),
            "reason": text(f, "reason"),
            "expected_version": version(f),
        },
        lambda a, cid, b, k, f: a.oversight_act(cid, "reopen", b, k),
        ["to_stage", "reason"],
    ),
}


@router.post("/cases/{case_id}/act/{action}")
async def act(request: Request, case_id: str, action: str) -> Response:
    c = Ctx(request)
    c.require("caseworker", "supervisor")
    if action not in ACTIONS:
        raise HTTPException(404)
    form = await c.form()
    build, send, names = ACTIONS[action]
    body = {k: v for k, v in build(form).items() if v is not None}
    try:
        await send(c.api, case_id, body, text(form, "idem") or uuid.uuid4().hex, form)
    except ApiError as exc:
        if exc.status == 401:
            raise SignInNeeded from None
        log.info("console_action_refused", action=action, case_id=case_id, status=exc.status)
        errors, resend = forms.send_failed(c.t, exc, form, names)
        return await case_page(
            c,
            case_id,
            failed=action,
            errors=errors,
            values=forms.values_of(form),
            resend=resend,
            status=exc.status if exc.status in (409, 503) else 422,
        )
    return redirect(f"/cases/{quote(case_id)}?done={action}")


@router.post("/duplicates/{candidate_id}/resolve")
async def resolve_duplicate(request: Request, candidate_id: str) -> Response:
    c = Ctx(request)
    c.require("caseworker", "supervisor")
    form = await c.form()
    case_id = text(form, "case_id") or ""
    try:
        await c.api.resolve_duplicate(
            candidate_id,
            {"decision": text(form, "decision"), "reason": text(form, "reason")},
            text(form, "idem") or uuid.uuid4().hex,
        )
    except ApiError as exc:
        errors, resend = forms.send_failed(c.t, exc, form, ["decision", "reason"])
        return await case_page(
            c,
            case_id,
            failed=f"dup-{candidate_id}",
            errors=errors,
            values=forms.values_of(form),
            resend=resend,
            status=503 if resend else 422,
        )
    return redirect(f"/cases/{quote(case_id)}?done=duplicate")


# ---- supervisor -------------------------------------------------------------------------------------
@router.get("/board")
async def board(request: Request) -> Response:
    c = Ctx(request)
    c.require("supervisor")
    got, bell = await asyncio.gather(c.api.board(), _bell(c.api), return_exceptions=True)
    if isinstance(got, BaseException) and not isinstance(got, ApiError):
        raise got
    b: dict[str, Any] | ApiError = got
    if not isinstance(bell, int):
        bell = None
    stages: list[str] = []
    agencies: list[str] = []
    cells: dict[tuple[str, str], dict[str, Any]] = {}
    if isinstance(b, dict):
        for cell in b["cells"]:
            cells[(cell["stage"], cell["owner_agency"])] = cell
        stages = [s for s in OPEN_STAGES if any(k[0] == s for k in cells)]
        agencies = sorted({k[1] for k in cells})
    return c.render("board.html", board=b, stages=stages, agencies=agencies, cells=cells, bell=bell)


@router.get("/stuck")
async def stuck(request: Request) -> Response:
    c = Ctx(request)
    c.require("supervisor")
    q = request.query_params
    filters = {
        "reason": [r for r in q.getlist("reason") if r in STUCK_REASONS],
        "category": [x for x in q.getlist("category") if x in CATEGORIES],
        "agency": q.get("agency") or None,
        "stage": q.get("stage") or None,
        "level": q.get("level") or None,
        "assignee": q.get("assignee") or None,
    }
    try:
        page: dict[str, Any] | ApiError = await c.api.stuck(**filters, limit=100)
    except ApiError as exc:
        page = exc
    return c.render(
        "stuck.html",
        page=page,
        f=filters,
        reasons=STUCK_REASONS,
        categories=CATEGORIES,
        agencies=[a.value for a in AgencyRole],
        stages=OPEN_STAGES,
    )


def _month_start(d: datetime, back: int = 0) -> datetime:
    """The first day of the month `back` months before d's (negative: after), Vietnam time."""
    index = d.year * 12 + d.month - 1 - back
    return datetime(index // 12, index % 12 + 1, 1, tzinfo=TZ)


@router.get("/kpis")
async def kpis(request: Request, months: int = 6) -> Response:
    c = Ctx(request)
    c.require("supervisor", "auditor")
    months = min(max(months, 1), 12)
    now = datetime.now(TZ)
    start = _month_start(now, months - 1)
    try:
        total: dict[str, Any] | ApiError = await c.api.kpis(
            start, now + timedelta(minutes=1), c.t.code
        )
        series = await gather_sections(
            {
                str(i): c.api.kpis(
                    _month_start(now, i),
                    min(_month_start(now, i - 1), now) + timedelta(minutes=1),
                    c.t.code,
                )
                for i in range(months - 1, -1, -1)
            }
        )
    except ApiError as exc:
        total, series = exc, {}
    by_kpi: dict[str, list[dict[str, Any]]] = {}
    for i, res in series.items():
        if isinstance(res, dict):
            for r in res["ratios"]:
                by_kpi.setdefault(r["id"], []).append({"month": _month_start(now, int(i)), **r})
    return c.render("kpis.html", total=total, by_kpi=by_kpi, start=start, now=now, months=months)


@router.get("/reports")
async def reports(request: Request, error: str | None = None) -> Response:
    c = Ctx(request)
    c.require("supervisor", "auditor")
    return c.render("reports.html", kinds=REPORT_KINDS, error=error)


@router.get("/reports/download")
async def report_download(
    request: Request,
    kind: str = "six_monthly",
    format: str = "html",
    lang: str = "vi",
    start: str | None = None,
    end: str | None = None,
) -> Response:
    c = Ctx(request)
    c.require("supervisor", "auditor")
    if kind not in REPORT_KINDS or format not in ("html", "csv", "json"):
        raise HTTPException(404)

    def at(d: str | None) -> str | None:
        return f"{d}T00:00:00+07:00" if d else None

    try:
        r = await c.api.report(kind, format, pick_lang(lang), at(start), at(end))
    except ApiError as exc:
        return c.render(
            "reports.html",
            status=422,
            kinds=REPORT_KINDS,
            error=forms.refusal_message(c.t, exc),
            detail=forms.api_detail(exc) or (exc.detail if isinstance(exc.detail, str) else None),
        )
    headers = {
        k: v for k, v in r.headers.items() if k.lower() in ("content-type", "content-disposition")
    }
    if "content-disposition" not in {k.lower() for k in headers} and format != "html":
        headers["Content-Disposition"] = f'attachment; filename="nrm-{kind}.{format}"'
    return Response(r.content, headers=headers)


# ---- auditor ---------------------------------------------------------------------------------------
@router.get("/audit")
async def audit(request: Request, case_id: str | None = None) -> Response:
    c = Ctx(request)
    c.require("auditor", "supervisor")
    if case_id:
        return redirect(f"/cases/{quote(case_id.strip())}/history")
    return c.render("audit.html")


@router.get("/audit/verify")
async def audit_verify_all(request: Request) -> Response:
    c = Ctx(request)
    c.require("auditor", "supervisor")
    try:
        result: dict[str, Any] | ApiError = await c.api.verify_chain()
    except ApiError as exc:
        result = exc
    return c.render("audit.html", verify=result)


@router.get("/cases/{case_id}/history")
async def history(
    request: Request, case_id: str, replay: bool = False, at: str | None = None
) -> Response:
    c = Ctx(request)
    c.require("auditor", "supervisor")
    reads: dict[str, Awaitable[Any]] = {
        "history": c.api.history(case_id),
        "verify": c.api.verify_chain(case_id),
    }
    if replay:
        reads["replay"] = c.api.replay(case_id)
    as_of_at = None
    if at:
        try:
            as_of_at = (
                datetime.fromisoformat(at).replace(tzinfo=TZ)
                if "T" in at
                else datetime.fromisoformat(at + "T23:59:59").replace(tzinfo=TZ)
            )
            reads["as_of"] = c.api.as_of(case_id, as_of_at)
        except ValueError:
            as_of_at = None
    sec = await gather_sections(reads)
    if isinstance(sec["history"], ApiError) and sec["history"].status in (403, 404):
        return c.render(
            "error.html",
            status=sec["history"].status,
            message=forms.refusal_message(c.t, sec["history"]),
            detail=forms.api_detail(sec["history"]),
        )
    return c.render("history.html", case_id=case_id, sec=sec, at=at, as_of_at=as_of_at)


@router.get("/access-log")
async def access_log(
    request: Request,
    case_id: str | None = None,
    user_id: str | None = None,
    cursor: int | None = None,
) -> Response:
    c = Ctx(request)
    c.require("auditor", "supervisor")
    try:
        page: dict[str, Any] | ApiError = await c.api.access_log(
            case_id=case_id, user_id=user_id, cursor=cursor, limit=50
        )
    except ApiError as exc:
        page = exc
    return c.render("access_log.html", page=page, case_id=case_id or "", user_id=user_id or "")
