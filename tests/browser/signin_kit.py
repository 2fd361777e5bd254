"""Module-scoped fixtures for the sign-in pages' browser tests (one server and one Chromium per
module) and the users their journeys need."""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from browser_kit import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS
from support import base_overrides, init_database, require


@contextmanager
def running_server(instance_dir, **extra: Any) -> Iterator[tuple[Any, str]]:
    """The app on a loopback port (issuer = that URL) for a whole module."""
    from werkzeug.serving import make_server

    from idp.app import create_app

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    overrides = base_overrides(instance_dir, issuer=f"http://127.0.0.1:{port}", **extra)
    init_database(overrides)
    app = create_app(overrides)
    httpd = make_server("127.0.0.1", port, app, threaded=True)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield app, f"http://127.0.0.1:{port}"
    finally:
        httpd.shutdown()
        queue = app.extensions["idp"].mail_queue
        if queue is not None:
            queue.wait_idle(15)
        app.extensions["idp"].engine.dispose()


@contextmanager
def chromium() -> Iterator[Any]:
    require(os.path.exists(CHROMIUM), "Debian's chromium is not installed")
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()
