"""The web console's journeys in a real Chromium against `nrm up`'s real services (one stack for the module):
sign-in and sign-out, a border-guard officer opening a case (errors beside the fields, in Vietnamese) and
taking it through the stages, a social-protection officer's protection, consent, referral, support plan,
follow-ups and closure, legal aid answering the referral, a stale form, a supervisor's board, stuck list,
actions, KPIs and reports, an auditor's history, chain check, replay, break glass and access log. Each page
is saved to docs/screenshots/ in Vietnamese and English, desktop and 360 px; each is checked with axe-core.

The policy is the shipped one with the reflection and recovery period switched off, so that a case can be
closed the day it is opened."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from playwright.sync_api import Browser

from services.console.app import create_app
from tests.helpers.browser import Console, console, in_browser, shots_dir
from tests.helpers.console_forms import hidden, open_case_form
from tests.helpers.process_stack import RunningStack, free_ports, running_stack

pytestmark = pytest.mark.e2e


def no_reflection(policy: dict[str, Any]) -> None:
    policy["reflection_period"]["enabled"] = False


@pytest.fixture(scope="module")
def stack() -> Iterator[RunningStack]:
    with running_stack(policy_change=no_reflection) as s:
        yield s


@pytest.fixture(scope="module")
def base(stack: RunningStack) -> str:
    return stack.url("console")


A11Y: dict[str, list[dict[str, Any]]] = {}


def check_page(c: Console, name: str, *, shots: bool = True, both_languages: bool = True) -> None:
    """Screenshots, no serious accessibility violation, nothing asked of the internet, usable at 360 px."""
    if shots:
        c.shoot(name, both_languages=both_languages)
    violations = c.axe()
    assert violations == [], f"{name}: " + "; ".join(
        f"{v['id']}: {v['help']} ({len(v['nodes'])})" for v in violations
    )
    assert c.no_horizontal_scroll(), f"{name}: wider than 360 px"
    assert c.outside == [], f"{name} asked for outside resources: {c.outside}"


def open_case(c: Console, **fields: str) -> str:
    c.go("/cases/new")
    page = c.page
    page.select_option("#f-channel", fields.get("channel", "border_guard_handover"))
    page.select_option("#f-province", fields.get("province", "20"))
    page.fill("#f-person-prs_SecondName", fields.get("family", "Nguyễn"))
    page.fill("#f-person-prs_FirstName", fields.get("given", "Lan"))
    page.fill("#f-person-birth_year", fields.get("birth_year", "2008"))
    page.locator("label[for=f-already_safe-1]").click()
    page.locator("input[name='victim.vic_TypeOfExploitation'][value=ForcedMarriage]").check()
    page.fill("#f-report-summary", "Bàn giao tại cửa khẩu Hữu Nghị")
    c.submit("main form")
    assert "/cases/" in page.url and "done=opened" in page.url, c.text()
    return c.case_id()


def act(c: Console, action: str, **fill: str) -> None:
    """Fill the case page's form of `action` (by field name) and send it."""
    box = c.page.locator(f"#act-{action}").first
    if box.get_attribute("open") is None:
        box.locator(
            "summary"
        ).click()  # each action is a <details>: opened by its title, no script needed
    form = box.locator("form")
    for name, value in fill.items():
        field = form.locator(f"[name='{name}']")
        kind = field.first.get_attribute("type")
        if kind == "radio":
            form.locator(f"[name='{name}'][value='{value}']").check()
        elif kind == "checkbox":
            for v in value.split(","):
                form.locator(f"[name='{name}'][value='{v}']").check()
        elif field.first.evaluate("e => e.tagName") == "SELECT":
            field.select_option(value)
        else:
            field.fill(value)
    form.locator("button[type=submit]").click()
    c.page.wait_for_load_state("load")


def see_notification(c: Console, case_id: str, attempts: int = 60) -> bool:
    """Reload the bell's page until a notification about the case arrives (the workflow hands it to the
    notifications service through Temporal: it lands a moment after the action)."""
    for _ in range(attempts):
        c.go("/notifications")
        if case_id in c.text("main"):
            return True
        c.page.wait_for_timeout(500)
    return False


def stage_of(c: Console) -> str:
    return c.page.locator("dl.summary div").first.inner_text()


# ---- sign-in ---------------------------------------------------------------------------------------
def test_sign_in_language_and_sign_out(base: str) -> None:
    def journey(browser: Browser) -> None:
        with console(browser, base) as c:
            c.go("/inbox")
            assert c.page.url.endswith("/signin?next=/inbox")  # not signed in: to the sign-in page
            assert (
                "Đăng nhập môi trường phát triển" in c.text()
            )  # the dev issuer is on (no NRM_OIDC_JWKS_URL)
            check_page(c, "01-signin")
            c.sign_in("bg")
            assert c.page.url.endswith("/inbox")
            assert "Việc cần xử lý" in c.text("h1")
            assert "Bộ đội Biên phòng" in c.text("header") and "Lạng Sơn" in c.text("header")
            cookie = next(k for k in c.context.cookies() if k["name"] == "nrm_session")
            assert cookie["httpOnly"] and cookie["sameSite"] == "Lax"
            assert (
                cookie["secure"] is False
            )  # plain http on 127.0.0.1 (NRM_CONSOLE_COOKIE_SECURE turns it on)
            assert "eyJ" not in cookie["value"]  # the bearer token is sealed, not readable
            check_page(c, "02-inbox")
            c.lang("en")
            assert c.text("h1") == "Inbox" and "Border Guard" in c.text("header")
            c.go("/cases/new")
            assert c.text("h1") == "Open a case"  # remembered across pages
            c.lang("vi")
            assert c.text("h1") == "Lập hồ sơ vụ việc"
            # a form without its CSRF token is refused
            r = c.page.request.post(base + "/signout", form={"csrf": "forged"})
            assert r.status == 403 and "hết hạn" in r.text()
            c.page.locator("header form[action='/signout'] button").click()
            c.page.wait_for_load_state("load")
            assert "/signin" in c.page.url
            c.go("/inbox")
            assert "/signin" in c.page.url  # the session ended

    in_browser(journey)


# ---- caseworker: open a case, errors beside the fields ---------------------------------------------
def test_open_case_shows_each_error_beside_its_field(base: str) -> None:
    def journey(browser: Browser) -> None:
        with console(browser, base) as c:
            c.sign_in("bg")
            c.go("/cases/new")
            check_page(c, "03-open-case")
            for lang in ("vi", "en"):
                if lang == "en":
                    c.lang("en")
                c.go("/cases/new")
                c.page.select_option("#f-channel", "border_guard_handover")
                c.page.fill("#f-commune", "abc")
                c.page.fill("#f-person-birth_year", "3000")
                c.page.fill("#f-person-prs_MobilePhone", "call me")
                c.submit("main form")
                summary = c.text(".error-summary")
                commune = c.text("#f-commune-error")
                year = c.text("#f-person-birth_year-error")
                phone = c.text("#f-person-prs_MobilePhone-error")
                if lang == "vi":
                    assert "Có lỗi cần sửa" in summary
                    assert "Không có mã xã, phường này" in commune
                    assert "Không được quá 2100" in year
                    assert "Không đúng định dạng" in phone
                else:
                    assert "There is a problem" in summary and "Commune code not found" in commune
                    assert "Must be 2100 or less" in year
                assert (
                    c.page.input_value("#f-person-birth_year") == "3000"
                )  # what was typed is kept
                assert c.page.locator("#f-commune").get_attribute("aria-invalid") == "true"
                # the summary links to the field
                c.page.locator(".error-summary a").first.click()
                c.page.set_viewport_size({"width": 360, "height": 740})
                c.page.screenshot(
                    path=str(shots_dir() / f"04-open-case-errors.{lang}.360px.png"), full_page=True
                )
                c.page.set_viewport_size({"width": 1280, "height": 900})
                c.page.screenshot(
                    path=str(shots_dir() / f"04-open-case-errors.{lang}.desktop.png"),
                    full_page=True,
                )
                check_page(c, "04-open-case-errors", shots=False)
            c.lang("vi")
            case_id = open_case(c)
            assert "Đã lập hồ sơ" in c.text("#done")
            assert "Tiếp nhận" in stage_of(c) and "Bộ đội Biên phòng" in c.text("dl.summary")
            assert "Nguyễn Lan" in c.text(
                "aside"
            )  # the caseworker's own agency reads the person unmasked
            assert case_id.startswith("c-")

    in_browser(journey)


# ---- caseworkers: the case from the border to closure --------------------------------------------
def test_case_from_border_to_closure(base: str, stack: RunningStack) -> None:
    def journey(browser: Browser) -> None:
        with (
            console(browser, base) as bg,
            console(browser, base) as sp,
            console(browser, base) as la,
        ):
            bg.sign_in("bg")
            case_id = open_case(bg, family="Trần", given="Mai")
            check_page(bg, "05-case-receive")
            act(bg, "claim")
            assert "Bạn đã nhận xử lý giai đoạn này." in bg.text("#done")
            act(
                bg,
                "classify",
                classification="trafficking_suspected",
                justification="dấu hiệu cưỡng ép kết hôn",
            )
            assert "Xác minh" in stage_of(bg)
            # the same form sent twice from an old page: the second is refused as stale
            stale = bg.context.new_page()
            stale.goto(f"{base}/cases/{case_id}")
            act(bg, "verify", result="confirmed", justification="xác minh cùng công an tỉnh")
            assert "Xác định nạn nhân" in stage_of(bg)
            bg.page, old = stale, bg.page
            act(bg, "verify", result="confirmed", justification="gửi lại từ trang cũ")
            assert "Có người khác vừa thay đổi vụ việc này, hãy tải lại" in bg.text(
                ".error-summary"
            )
            bg.page.screenshot(
                path=str(shots_dir() / "06-case-stale.vi.desktop.png"), full_page=True
            )
            bg.page = old
            stale.close()
            # identification: a victim needs evidence; the API's refusal lands beside the evidence
            act(
                bg,
                "identify",
                status="ActualVictimOfTrafficking",
                deciding_org="Police",
                justification="đủ căn cứ",
            )
            assert "Xác định là nạn nhân cần ít nhất một chứng cứ" in bg.text("#act-identify")
            check_page(bg, "07-case-identify-error", both_languages=False)
            act(
                bg,
                "identify",
                status="ActualVictimOfTrafficking",
                deciding_org="Police",
                justification="đủ căn cứ",
                **{
                    "evidence.0.kind": "statement_of_person",
                    "evidence.0.source": "biên bản lời khai",
                    "evidence.0.date": "2026-03-02",
                    "evidence.0.reference": "BB-12/2026",
                },
            )
            assert "Bảo vệ" in stage_of(bg) and "Cơ quan bảo trợ xã hội" in bg.text("dl.summary")
            assert "Nạn nhân" in bg.text("dl.summary")

            # the social-protection officer owns protection and reintegration now
            sp.sign_in("sp")
            sp.go("/inbox")
            assert case_id in sp.text("main")
            sp.go(f"/cases/{case_id}")
            check_page(sp, "08-case-protect")
            act(
                sp,
                "protect",
                measures="safe_shelter,personal_information_protection",
                justification="nguy cơ bị trả thù",
            )
            assert "Hỗ trợ, tái hòa nhập cộng đồng" in stage_of(sp)
            # referral to legal aid needs the person's consent first: the case read does not list it (no
            # form) until consent is recorded, then it does
            assert sp.page.locator("#act-legal_aid").count() == 0
            assert sp.page.locator("#act-transfer").count() == 1
            act(
                sp,
                "consent",
                purpose="data_sharing",
                agency="legal_aid",
                granted="yes",
                **{
                    "document.kind": "signed_form",
                    "document.signed_on": "2026-03-03",
                    "document.reference": "DY-07",
                },
            )
            assert "Đã ghi nhận sự đồng ý." in sp.text("#done")
            act(sp, "legal_aid", reason="yêu cầu bồi thường")
            assert "Đã chuyển tuyến đến Trợ giúp pháp lý." in sp.text("#done")

            # legal aid sees it waiting for acceptance; a rejection needs a reason
            la.sign_in_as("caseworker", "legal_aid", "20", "tgpl-langson-01")
            la.go(
                "/inbox"
            )  # the "in progress" tab open: the waiting tab still counts the invitation
            assert la.text("a[href='/inbox?view=waiting_acceptance'] .count") == "1"
            la.go("/inbox?view=waiting_acceptance")
            assert case_id in la.text("main")
            check_page(la, "09-inbox-waiting-acceptance")
            la.go(f"/cases/{case_id}")
            # invited, not yet taking part: answering the handoff is the only action offered
            assert la.page.locator("details.action:not(#act-respond)").count() == 0
            act(la, "respond", accept="no")
            assert "Cần nêu lý do khi từ chối" in la.text("#act-respond")
            act(la, "respond", accept="yes")
            assert "Đã gửi trả lời chuyển tuyến." in la.text("#done")
            assert "Trợ giúp pháp lý" in la.text("dl.summary")

            # support plan, a service, the three follow-ups, then closure
            sp.go(f"/cases/{case_id}")
            act(sp, "closure", cas_Status="Closed", reason="đã tái hòa nhập")
            assert "Cần lập kế hoạch hỗ trợ trước" in sp.text(
                ".error-summary"
            )  # no support plan yet
            act(
                sp,
                "plan",
                spl_Objectives="nơi ở an toàn, đi học lại",
                spl_Type="SocialCare,Education",
                spl_PlannedEndDate="2026-12-31",
            )
            act(sp, "closure", cas_Status="Closed", reason="đã tái hòa nhập")
            summary = sp.text(
                ".error-summary"
            )  # follow-ups still pending: the API's words under the headline
            assert (
                "Vụ việc hiện không cho phép thao tác này" in summary
                and "follow-ups still pending" in summary
            )
            act(
                sp,
                "service",
                service_type="travel_home",
                provider_agency="social_protection",
                delivered_on="2026-03-03",
            )
            assert "Bắt buộc với loại này" in sp.text("#act-service")  # amount_vnd for travel home
            act(
                sp,
                "service",
                service_type="travel_home",
                provider_agency="social_protection",
                delivered_on="2026-03-03",
                amount_vnd="500000",
            )
            assert "Đã ghi nhận hỗ trợ." in sp.text("#done")
            check_page(sp, "10-case-reintegrate")
            for _ in range(3):
                act(sp, "follow_up", outcome="done", note="ổn định")
            act(sp, "closure", cas_Status="Closed", reason="đã tái hòa nhập")
            assert "Đã kết thúc vụ việc." in sp.text("#done")
            assert "Đã kết thúc" in stage_of(sp)
            check_page(sp, "11-case-closed")
            # the person's data stays masked nowhere for the owning agency, and the timeline lists what happened
            assert "Trần Mai" in sp.text("aside")
            assert "Thực hiện hỗ trợ" in sp.text("ol.timeline")
            _CASES["closed"] = case_id

    in_browser(journey)


_CASES: dict[str, str] = {}


# ---- police and social protection: rescue, perpetrators, written refusal, transfer to another province --
def test_rescue_perpetrator_refusal_and_transfer(base: str) -> None:
    def journey(browser: Browser) -> None:
        with (
            console(browser, base) as bg,
            console(browser, base) as police,
            console(browser, base) as sp,
        ):
            bg.sign_in("bg")
            bg.go("/cases/new")
            page = bg.page
            page.select_option("#f-channel", "border_guard_handover")
            page.select_option("#f-province", "20")
            page.fill("#f-person-prs_SecondName", "Vũ")
            page.fill("#f-person-prs_FirstName", "Hằng")
            page.fill("#f-person-birth_year", "2006")
            page.locator("label[for=f-already_safe-2]").click()  # not safe: a rescue is needed
            page.locator("input[name='victim.vic_TypeOfExploitation'][value=ForcedLabour]").check()
            page.fill("#f-report-summary", "Gia đình báo tin bị giữ tại xưởng may")
            bg.submit("main form")
            case_id = bg.case_id()
            act(bg, "classify", classification="trafficking_suspected", justification="tin báo")
            act(bg, "verify", result="confirmed", justification="xác minh cùng công an")
            act(
                bg,
                "identify",
                status="ActualVictimOfTrafficking",
                deciding_org="Police",
                justification="đủ căn cứ",
                **{
                    "evidence.0.kind": "statement_of_relative",
                    "evidence.0.source": "lời khai của mẹ",
                    "evidence.0.date": "2026-03-02",
                },
            )
            assert "Giải cứu" in stage_of(bg) and "Công an" in bg.text("dl.summary")
            # the rescue stage is the police's: the border guard is offered no rescue decision
            assert bg.page.locator("#act-rescue_complete").count() == 0
            assert bg.page.locator("#act-rescue_not_needed").count() == 0

            police.sign_in_as("caseworker", "police", "20", "ca-langson-01")
            police.go(f"/cases/{case_id}")
            assert police.page.locator("#act-rescue_complete").count() == 0  # nothing planned yet
            act(
                police,
                "rescue_plan",
                planned_for="2026-03-05T22:00",
                location="xưởng may, Bằng Tường",
            )
            assert police.text("#done") == "Đã lập kế hoạch giải cứu."
            ops = police.page.locator("#act-rescue_complete option").all_text_contents()
            assert any("22:00, 05/03/2026" in o and "Công an" in o for o in ops), ops
            check_page(police, "24-case-rescue")
            act(police, "rescue_complete", outcome="rescued", justification="đã đưa về an toàn")
            assert "Đã ghi nhận kết quả giải cứu." in police.text("main"), police.text("main")
            assert "Bảo vệ" in stage_of(police)
            act(police, "perpetrator", roles="RecruiterOrIntermediary,Exploiter")
            assert "Đã thêm đối tượng nghi vấn." in police.text("#done")
            perpetrators = police.text("aside")
            assert "Người tuyển mộ, môi giới" in perpetrators and "Người bóc lột" in perpetrators
            check_page(police, "25-case-perpetrator")
            # the police decide protection measures at the stage the case is in (it does not change)
            act(
                police,
                "protection_measures",
                measures="confidential_location",
                justification="đối tượng gọi điện đe dọa",
            )
            assert "Đã ghi nhận biện pháp bảo vệ." in police.text("main"), police.text("main")
            assert "Bảo vệ" in stage_of(police)

            # protection refused in writing: without the document the API's words land beside it
            sp.sign_in("sp")
            sp.go(f"/cases/{case_id}")
            assert sp.page.locator("#act-perpetrator").count() == 0  # police data only
            act(sp, "protect", declined="yes", justification="người đó từ chối")
            assert "Từ chối bảo vệ cần có văn bản cam kết" in sp.text("#act-protect")
            assert "Bảo vệ" in stage_of(sp)
            act(
                sp,
                "protect",
                declined="yes",
                justification="người đó từ chối",
                **{
                    "refusal_document.signed_on": "2026-03-06",
                    "refusal_document.reference": "CK-03/2026",
                    "refusal_document.signed_by": "person",
                },
            )
            assert "Hỗ trợ, tái hòa nhập cộng đồng" in stage_of(sp)
            # transfer to the social protection of Hà Nội, where she lives: consent naming Hà Nội first
            act(
                sp,
                "consent",
                purpose="data_sharing",
                agency="social_protection",
                province="01",
                granted="yes",
                **{
                    "document.kind": "signed_form",
                    "document.signed_on": "2026-03-06",
                    "document.reference": "DY-09",
                },
            )
            assert "Đã ghi nhận sự đồng ý." in sp.text("#done")
            act(
                sp,
                "transfer",
                to_agency="social_protection",
                to_province="01",
                reason="gia đình ở Hà Nội",
            )
            assert "Đã gửi đề nghị chuyển giao" in sp.text("#done")
            handoffs = sp.text("aside")
            assert "Chuyển giao" in handoffs and "Chờ chấp nhận" in handoffs
            assert "(Thành phố Hà Nội)" in handoffs  # the receiving province by its name
            assert "(Cơ quan bảo trợ xã hội, Thành phố Hà Nội)" in handoffs  # the consent names it
            assert sp.page.locator("#act-transfer").count() == 0  # one transfer waits: no second
            check_page(sp, "26-case-transfer-requested")

    in_browser(journey)


# ---- caseworker: mass arrival by CSV, duplicates side by side -----------------------------------
ARRIVALS = (
    "channel,province,prs_FirstName,prs_SecondName,birth_year,prs_Gender\n"
    "rescue_operation,20,Hương,Đinh,2007,Feminine\n"
    "rescue_operation,20,Hương,Đinh,2007,Feminine\n"
    "rescue_operation,20,Ngọc,Đinh,3000,Feminine\n"
)


def test_bulk_upload_and_duplicates_side_by_side(base: str) -> None:
    def journey(browser: Browser) -> None:
        with console(browser, base) as c:
            c.sign_in("bg")
            c.go("/cases/bulk")
            check_page(c, "21-bulk")
            c.submit("main form")  # no file chosen
            assert "Hãy chọn tệp CSV" in c.text(".error-summary")
            c.page.set_input_files(
                "#f-file",
                files=[
                    {"name": "arrivals.csv", "mimeType": "text/csv", "buffer": ARRIVALS.encode()}
                ],
            )
            c.submit("main form")
            table = c.text("table.list")
            assert "Có lỗi" in table and "birth_year: Không được quá 2100" in table
            assert "Đã lập, có thể trùng" in table
            c.page.screenshot(
                path=str(shots_dir() / "22-bulk-result.vi.desktop.png"), full_page=True
            )
            check_page(c, "22-bulk-result", shots=False)
            c.page.locator("table.list tr", has_text="Đã lập, có thể trùng").locator(
                "a"
            ).first.click()
            c.page.wait_for_load_state("load")
            assert "Có thể trùng hồ sơ" in c.text("aside")
            c.page.locator("a", has_text="So sánh song song").first.click()
            c.page.wait_for_load_state("load")
            compare = c.text("table.compare")
            assert compare.count("Hương") == 2 and "=" in compare
            check_page(c, "23-duplicate-compare")
            c.page.locator("label[for=f-decision-2]").click()  # different people: keep apart
            c.page.fill("#f-reason", "khác ngày sinh trên giấy tờ")
            c.submit("main form")
            assert "Đã ghi nhận quyết định về hồ sơ trùng." in c.text("#done")
            assert "Giữ riêng" in c.text("aside")

    in_browser(journey)


# ---- supervisor ------------------------------------------------------------------------------------
def test_supervisor_board_stuck_actions_kpis_reports(base: str) -> None:
    def journey(browser: Browser) -> None:
        with console(browser, base) as bg, console(browser, base) as sup:
            bg.sign_in("bg")
            case_id = open_case(bg, family="Lê", given="Hoa")
            sup.sign_in("sup")
            assert sup.page.url.endswith("/board")
            assert "Bảng tổng hợp" in sup.text("h1")
            check_page(sup, "12-board")
            sup.page.locator("table.board a").first.click()
            sup.page.wait_for_load_state("load")
            assert "/stuck" in sup.page.url
            sup.go("/stuck?agency=border_guard&stage=receive")
            assert case_id in sup.text("main")
            check_page(sup, "13-stuck")
            sup.go(f"/cases/{case_id}")
            check_page(sup, "14-case-supervisor")
            act(sup, "extend", extend_by="2", reason="chờ phiên dịch")
            assert "Đã gia hạn." in sup.text("#done")
            act(sup, "escalate", reason="ab")
            assert "Quá ngắn: cần ít nhất 3 ký tự" in sup.text("#act-escalate")
            act(sup, "escalate", reason="chậm trễ kéo dài")
            assert "Đã chuyển cấp trên." in sup.text("#done")
            assert "Cấp 1" in sup.text("dl.summary")
            # the bell: the escalation reaches the owning agency's desk (the border guard) in its inbox
            assert see_notification(bg, case_id), bg.text("main")
            item = bg.page.locator("li.note", has_text=case_id)
            # escalated by hand: not labelled as a missed deadline
            assert "Chuyển cấp trên" in item.inner_text() and "quá hạn" not in item.inner_text()
            assert "Cấp 1" in item.inner_text() and "Tiếp nhận" in item.inner_text()
            assert int(bg.text("header a.bell .count").split()[0]) >= 1
            check_page(bg, "27-notifications")
            item.locator("button").click()  # opens the case and marks the item read
            bg.page.wait_for_load_state("load")
            assert bg.page.url.endswith(f"/cases/{case_id}")
            bg.go("/notifications")
            assert case_id not in bg.text("main")  # read: no longer among the unread
            bg.go("/notifications?all=true")
            assert case_id in bg.text("main")
            act(
                sup,
                "reassign",
                assignee_user_id="bp-langson-02",
                override_reason="đơn vị thiếu người",
            )
            assert "bp-langson-02" in sup.text("dl.summary")
            # the supervisor's timeline is the audit history
            assert "Lãnh đạo chuyển cấp trên" in sup.text("ol.timeline")
            sup.go("/kpis")
            assert "Chỉ số đánh giá" in sup.text("h1") and "Chỉ tiêu" in sup.text("main")
            check_page(sup, "15-kpis")
            sup.go("/reports")
            check_page(sup, "16-reports")
            with sup.page.expect_download() as dl:
                sup.page.locator("label[for=f-format-2]").click()  # CSV
                sup.submit("main form")
            assert dl.value.suggested_filename.endswith(".csv")
            sup.go("/reports/download?kind=six_monthly&format=html&lang=vi")
            assert "Ban Chỉ đạo 138" in sup.text("body")
            sup.go("/reports/download?kind=ad_hoc&format=html&lang=vi")
            assert "Yêu cầu không được chấp nhận" in sup.text(
                "main"
            )  # an ad hoc report needs its period

    in_browser(journey)


# ---- auditor --------------------------------------------------------------------------------------
def test_auditor_history_chain_replay_break_glass_access_log(base: str) -> None:
    def journey(browser: Browser) -> None:
        with console(browser, base) as bg, console(browser, base) as aud:
            bg.sign_in("bg")
            case_id = _CASES.get("closed") or open_case(bg, family="Phạm", given="Thu")
            aud.sign_in("aud")
            assert aud.page.url.endswith("/audit")
            check_page(aud, "17-audit")
            aud.page.fill("#f-case_id", case_id)
            aud.submit("main form")
            assert "Lịch sử xử lý" in aud.text("h1")
            assert "Nhật ký toàn vẹn" in aud.text("#chain-result")
            assert "Tiếp nhận, lập hồ sơ" in aud.text("ol.timeline")
            aud.page.locator("a[href$='replay=true']").click()
            aud.page.wait_for_load_state("load")
            assert "cho kết quả như cũ" in aud.text("#replay-result")
            check_page(aud, "18-history")
            aud.page.fill("#f-at", "2020-01-01")
            aud.submit("form.inline-form")
            assert "Không tìm thấy" in aud.text("main")  # the case did not exist then
            # the person is masked for an auditor; break glass needs a reason of 10 characters
            aud.go(f"/cases/{case_id}")
            person = aud.text("aside")
            assert (
                "Đã che thông tin" in person
                and "Phạm Thu" not in person
                and "Trần Mai" not in person
            )
            check_page(aud, "19-case-auditor")
            assert aud.page.locator("details.action").count() == 0  # an auditor never acts
            assert "Hiện bạn không có việc gì với vụ việc này." in aud.text("section.actions")
            aud.page.fill("#f-unmask-break_glass_reason", "ngắn")
            aud.submit("form.bg-form")
            assert "Quá ngắn: cần ít nhất 10 ký tự" in aud.text("aside")
            aud.page.fill("#f-unmask-break_glass_reason", "kiểm tra khiếu nại số 12/2026")
            aud.submit("form.bg-form")
            assert "Truy cập khẩn cấp" in aud.text("aside")
            assert ("Phạm Thu" in aud.text("aside")) or ("Trần Mai" in aud.text("aside"))
            aud.go(f"/access-log?case_id={case_id}")
            log = aud.text("main")
            assert (
                "bcd138-kt-01" in log and "kiểm tra khiếu nại số 12/2026" in log
            )  # newest first: the break glass
            aud.go(f"/access-log?case_id={case_id}&user_id=bp-langson-01")
            assert "bp-langson-01" in aud.text(
                "table.list"
            )  # the officer who opened it read the person too
            check_page(aud, "20-access-log")
            aud.go("/audit/verify")
            assert "toàn vẹn" in aud.text("main")
            aud.go("/inbox")  # not an auditor's page: the API refuses, the page says so
            aud.go("/board")
            assert "không dành cho vai trò của bạn" in aud.text("main")

    in_browser(journey)


def test_console_adds_no_database_and_calls_apis_with_the_users_token(stack: RunningStack) -> None:
    """The console's health answers without PostgreSQL or Temporal, and a page without a session never reaches
    an API: it sends the browser to sign in."""
    with httpx.Client(base_url=stack.url("console"), timeout=30, follow_redirects=False) as http:
        assert http.get("/healthz").json() == {"status": "ok", "service": "console"}
        r = http.get("/board")
        assert r.status_code == 303 and r.headers["location"].startswith("/signin")
        page = http.get("/signin")
        assert "default-src 'none'" in page.headers["content-security-policy"]
        assert page.headers["cache-control"] == "no-store"


def test_an_action_not_answered_is_sent_again_as_the_same_request(stack: RunningStack) -> None:
    """A case action whose service did not answer (here verification is a port nothing listens on, for a
    second console in this process; intake, support and oversight are the stack's) comes back as 503 with
    the same Idempotency-Key and the version the user acted on in that action's form, so sending it again
    completes the first send instead of applying it twice; every other form on the page has a new key."""
    settings = stack.settings().model_copy(update={"verification_port": free_ports(1)[0]})

    def claim_form(html: str, case_id: str) -> str:
        m = re.search(rf'action="/cases/{case_id}/act/claim".*?</form>', html, re.S)
        assert m, "no claim form on the case page"
        return m.group(0)

    with TestClient(create_app(settings, stack.ring), follow_redirects=False) as second:
        r = second.post("/cases/new", data=open_case_form(second))
        assert r.status_code == 303 and "done=opened" in r.headers["location"], r.text
        case_id = r.headers["location"].split("/cases/")[1].split("?")[0]
        page = second.get(f"/cases/{case_id}")
        assert page.status_code == 200, page.text
        form = claim_form(page.text, case_id)
        sent = {
            "csrf": hidden(form, "csrf"),
            "idem": hidden(form, "idem"),
            "expected_version": hidden(form, "expected_version"),
        }
        assert sent["expected_version"]

        r = second.post(f"/cases/{case_id}/act/claim", data=sent)

        assert r.status_code == 503, r.text
        assert "Hệ thống chưa xác nhận kịp" in r.text
        again = claim_form(r.text, case_id)
        assert hidden(again, "idem") == sent["idem"]
        assert hidden(again, "expected_version") == sent["expected_version"]
        keys = re.findall(r'name="idem" value="([^"]*)"', r.text)
        assert len(keys) > 1 and keys.count(sent["idem"]) == 1  # the other forms: new keys
