"""The API reference pages work on a network without internet: each service's /docs (Swagger UI) and /redoc,
rendered by a real headless Chromium (Debian's `chromium` package, driven by Playwright) with every request
to anything but this machine refused, list every operation of the service's OpenAPI document, and the page
asked for nothing outside the machine."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.sync_api import Route, sync_playwright

from shared.config import SERVICE_NAMES
from tests.helpers.process_stack import RunningStack, running_stack

pytestmark = pytest.mark.e2e

CHROMIUM = "/usr/bin/chromium"  # Debian's package; `./scripts/test` installs it. Never `playwright install`.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}
RENDER_TIMEOUT_MS = 90_000


@pytest.fixture(scope="module")
def stack() -> Iterator[RunningStack]:
    with running_stack() as s:
        yield s


@dataclass
class Rendered:
    title: str
    swagger_operations: set[tuple[str, str]]
    redoc_operations: int


def render_all(stack: RunningStack) -> tuple[dict[str, Rendered], list[str]]:
    """Each service's /docs and /redoc in Chromium, with every request outside the machine aborted (and
    remembered). Runs in a thread of its own: Playwright's sync API runs an event loop, and this test
    process's asyncio fixtures must not find one running in theirs."""
    outside: list[str] = []

    def only_loopback(route: Route) -> None:
        url = urlsplit(route.request.url)
        if url.scheme in ("data", "blob") or url.hostname in LOOPBACK:
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort("internetdisconnected")

    out: dict[str, Rendered] = {}
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            context = browser.new_context()
            context.route("**/*", only_loopback)
            page = context.new_page()
            for service in SERVICE_NAMES:
                page.goto(f"{stack.url(service)}/docs", wait_until="load")
                page.wait_for_selector(".opblock-summary-path", timeout=RENDER_TIMEOUT_MS)
                title = page.locator(".information-container .title").first.inner_text()
                blocks = page.locator(".opblock-summary")
                ops = {
                    (
                        blocks.nth(i)
                        .locator(".opblock-summary-method")
                        .inner_text()
                        .strip()
                        .upper(),
                        str(
                            blocks.nth(i)
                            .locator(".opblock-summary-path")
                            .get_attribute("data-path")
                        ),
                    )
                    for i in range(blocks.count())
                }
                page.goto(f"{stack.url(service)}/redoc", wait_until="load")
                page.wait_for_selector("[data-section-id^='operation/']", timeout=RENDER_TIMEOUT_MS)
                out[service] = Rendered(
                    title, ops, page.locator("[data-section-id^='operation/']").count()
                )
        finally:
            browser.close()
    return out, outside


@pytest.fixture(scope="module")
def rendered(stack: RunningStack) -> tuple[dict[str, Rendered], list[str]]:
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(render_all, stack).result()


def operations(stack: RunningStack, service: str) -> set[tuple[str, str]]:
    spec: dict[str, Any] = httpx.get(f"{stack.url(service)}/openapi.json", timeout=30).json()
    return {
        (method.upper(), path)
        for path, item in spec["paths"].items()
        for method in item
        if method in ("get", "post", "put", "patch", "delete")
    }


def test_nothing_is_fetched_from_outside(rendered: tuple[dict[str, Rendered], list[str]]) -> None:
    pages, outside = rendered
    assert set(pages) == set(SERVICE_NAMES)
    assert outside == [], f"the pages asked for outside resources: {outside}"


@pytest.mark.parametrize("service", SERVICE_NAMES)
def test_docs_list_every_operation(
    stack: RunningStack, rendered: tuple[dict[str, Rendered], list[str]], service: str
) -> None:
    page = rendered[0][service]
    expected = operations(stack, service)
    assert ("GET", "/readyz") in expected and len(expected) > 3
    assert page.title.startswith(f"NRM {service}")
    assert page.swagger_operations == expected
    assert page.redoc_operations == len(expected)
