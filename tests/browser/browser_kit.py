"""What the browser tests share: a real threaded HTTP server around the app (with settings
overrides), Debian's Chromium driven by Playwright, screenshots into artifacts/browser/."""

from __future__ import annotations

import os
import socket
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from login_kit import GOOD  # noqa: E402
from support import base_overrides, init_database, require  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts" / "browser"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@contextmanager
def running_server(
    instance_dir, *, host: str = "127.0.0.1", **extra: Any
) -> Iterator[tuple[Any, str]]:
    """(app, base URL): the app on a loopback port, issuer = http://<host>:<port> (host
    "localhost" where the browser refuses IP addresses, as for WebAuthn), extra settings
    overrides; on exit the server stops, the mail queue drains and the engine is disposed."""
    from werkzeug.serving import make_server

    from idp.app import create_app

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    base = f"http://{host}:{port}"
    overrides = base_overrides(instance_dir, issuer=base, **extra)
    init_database(overrides)
    app = create_app(overrides)
    httpd = make_server("127.0.0.1", port, app, threaded=True)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield app, base
    finally:
        httpd.shutdown()
        queue = app.extensions["idp"].mail_queue
        if queue is not None:
            queue.wait_idle(15)
        app.extensions["idp"].engine.dispose()


@contextmanager
def chromium() -> Iterator[Any]:
    """Debian's Chromium through Playwright (the test is skipped when it is not installed)."""
    require(
        os.path.exists(CHROMIUM), "Debian's chromium is not installed (apt-get install chromium)"
    )
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def sign_in(page, base: str, username: str, password: str = GOOD, next: str | None = None):
    """Sign in through the login form and wait for the landing page (next, else /account/)."""
    page.goto(base + "/login" + (f"?next={next}" if next else ""))
    page.get_by_label("Username or e-mail").fill(username)
    page.get_by_label("Password", exact=True).fill(password)
    page.get_by_role("button", name="Sign in", exact=True).click()
    page.wait_for_url(base + (next or "/account/"))
    return page


# Fixtures carry a name= so test modules can import them without shadowing their parameters.
@pytest.fixture(name="serve")
def serve_fixture(instance_dir) -> Iterator[Callable[..., tuple[Any, str]]]:
    """serve(**overrides) -> (app, base URL): the app on a loopback port, issuer = that URL."""
    with ExitStack() as stack:
        yield lambda **extra: stack.enter_context(running_server(instance_dir, **extra))


@pytest.fixture(name="server")
def server_fixture(serve):
    return serve()


@pytest.fixture(name="browser")
def browser_fixture():
    with chromium() as browser:
        yield browser


@pytest.fixture(name="page")
def page_fixture(browser):
    """A page in an English-speaking browser (Accept-Language: en-US)."""
    context = browser.new_context(locale="en-US")
    yield context.new_page()
    context.close()


def shot(page, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


# --- the design system's checks: viewports, colour schemes, accessibility, reflow -----------

WIDE = {"width": 1280, "height": 900}
NARROW = {"width": 390, "height": 844}


def new_page(browser, *, viewport=WIDE, dark: bool = False, locale: str = "en-US"):
    """A page in its own context: viewport, light or dark colour scheme, browser language.
    Close it with ``page.context.close()``."""
    context = browser.new_context(
        viewport=viewport, color_scheme="dark" if dark else "light", locale=locale
    )
    return context.new_page()


def axe_violations(page, impacts: tuple[str, ...] = ("serious", "critical")) -> list[str]:
    """axe-core (the copy axe-playwright-python ships) over the page as it is now: one line per
    violation of the given impacts, naming the rule and the first offending elements."""
    from axe_playwright_python.sync_playwright import Axe

    found = Axe().run(page).response["violations"]
    return [
        f"{v['id']} ({v['impact']}): {v['help']} — "
        + "; ".join(" ".join(n["target"]) for n in v["nodes"][:3])
        for v in found
        if v.get("impact") in impacts
    ]


def scrolls_sideways(page) -> bool:
    """Does the page need horizontal scrolling (WCAG 1.4.10 reflow)?"""
    return page.evaluate(
        "document.documentElement.scrollWidth > document.documentElement.clientWidth + 1"
    )
