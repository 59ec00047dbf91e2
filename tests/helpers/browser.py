"""Driving the console in Debian's Chromium through Playwright (never `playwright install`: no browser
download), with screenshots of every page in Vietnamese and English, desktop and 360 px, and an
accessibility check with axe-core read from disk (installed by ./scripts/test with npm into
.venv/npm; never from a CDN, never committed)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from playwright.sync_api import Browser, BrowserContext, Page, Route, sync_playwright

from shared.config import REPO_ROOT

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SHOTS = REPO_ROOT / "docs" / "screenshots"
AXE = REPO_ROOT / ".venv" / "npm" / "node_modules" / "axe-core" / "axe.min.js"
DESKTOP = {"width": 1280, "height": 900}
MOBILE = {"width": 360, "height": 740}
LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}
T = TypeVar("T")


def in_browser(fn: Callable[[Browser], T]) -> T:
    """Run `fn` with a Chromium browser in a thread of its own: Playwright's sync API runs an event loop, and
    this test process's asyncio fixtures must not find one running in theirs."""

    def run() -> T:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(
                executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
            )
            try:
                return fn(browser)
            finally:
                browser.close()

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(run).result()


class Console:
    """One browser context (one user) on the console."""

    def __init__(self, browser: Browser, base: str, *, mobile: bool = False) -> None:
        self.base = base
        self.outside: list[str] = []
        self.context: BrowserContext = browser.new_context(
            viewport=MOBILE if mobile else DESKTOP, locale="vi-VN", bypass_csp=False
        )
        self.context.route("**/*", self._only_loopback)
        self.page: Page = self.context.new_page()

    def _only_loopback(self, route: Route) -> None:
        url = urlsplit(route.request.url)
        if url.scheme in ("data", "blob") or url.hostname in LOOPBACK:
            route.continue_()
        else:
            self.outside.append(route.request.url)
            route.abort("internetdisconnected")

    def close(self) -> None:
        self.context.close()

    def go(self, path: str) -> Page:
        self.page.goto(self.base + path, wait_until="load")
        return self.page

    def sign_in(self, persona: str) -> None:
        self.go("/signin")
        self.page.locator(f"#persona-{persona}").click()
        self.page.wait_for_load_state("load")

    def sign_in_as(self, role: str, agency: str, province: str, user_id: str) -> None:
        self.go("/signin")
        self.page.locator("details summary").click()
        self.page.select_option("#f-role", role)
        self.page.select_option("#f-agency", agency)
        self.page.select_option("#f-province", province)
        self.page.fill("#f-user_id", user_id)
        self.page.locator("details form button[type=submit]").click()
        self.page.wait_for_load_state("load")

    def lang(self, code: str) -> None:
        """The language switch in the header (a form post, remembered in a cookie)."""
        self.page.locator(f"form.lang button[value={code}]").click()
        self.page.wait_for_load_state("load")

    def submit(self, form_selector: str) -> Page:
        self.page.locator(f"{form_selector} button[type=submit]").first.click()
        self.page.wait_for_load_state("load")
        return self.page

    def text(self, selector: str = "main") -> str:
        return self.page.locator(selector).first.inner_text()

    def case_id(self) -> str:
        m = re.search(r"/cases/([^/?#]+)", self.page.url)
        assert m, self.page.url
        return m.group(1)

    # ---- evidence ---------------------------------------------------------------------------
    def shoot(self, name: str, *, both_languages: bool = True) -> None:
        """Screenshots of the current page: desktop and 360 px, in Vietnamese and (by reloading it with the
        other language cookie, for pages reached by GET) in English. The page is left as it was."""
        SHOTS.mkdir(parents=True, exist_ok=True)
        current = self._lang()
        langs = [current, "en" if current == "vi" else "vi"] if both_languages else [current]
        size = self.page.viewport_size or DESKTOP
        for lang in langs:
            if lang != current:
                self._set_lang_cookie(lang)
                self.page.reload(wait_until="load")
            for label, viewport in (("desktop", DESKTOP), ("360px", MOBILE)):
                self.page.set_viewport_size(viewport)
                self.page.screenshot(path=str(SHOTS / f"{name}.{lang}.{label}.png"), full_page=True)
        self.page.set_viewport_size(size)
        if len(langs) > 1:
            self._set_lang_cookie(current)
            self.page.reload(wait_until="load")

    def _lang(self) -> str:
        return str(self.page.locator("html").get_attribute("lang") or "vi")

    def _set_lang_cookie(self, lang: str) -> None:
        self.context.add_cookies([{"name": "nrm_lang", "value": lang, "url": self.base}])

    def no_horizontal_scroll(self) -> bool:
        self.page.set_viewport_size(MOBILE)
        width = int(self.page.evaluate("document.documentElement.scrollWidth"))
        self.page.set_viewport_size(DESKTOP)
        return width <= MOBILE["width"]

    def axe(self) -> list[dict[str, Any]]:
        """Serious and critical axe-core violations of the current page (WCAG 2.1 A/AA rules)."""
        assert AXE.exists(), (
            f"axe-core missing: run ./scripts/test (npm install --prefix .venv/npm axe-core@4); {AXE}"
        )
        self.page.evaluate(AXE.read_text(encoding="utf-8"))
        result = self.page.evaluate(
            "async () => JSON.stringify((await axe.run(document, {runOnly: {type: 'tag', values: "
            "['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa']}})).violations)"
        )
        return [v for v in json.loads(result) if v.get("impact") in ("serious", "critical")]


@contextmanager
def console(browser: Browser, base: str, **kw: Any) -> Iterator[Console]:
    c = Console(browser, base, **kw)
    try:
        yield c
    finally:
        c.close()


def shots_dir() -> Path:
    return SHOTS
