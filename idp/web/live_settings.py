"""Settings changed in the database apply without a restart: before each request the app
compares the settings generation in the database (one primary-key read) and reloads when it moved
(``idp.manage.policies.LiveSettings``). Static files and health probes skip the check."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import Flask, current_app, request

from ..manage.policies import LiveSettings

_SKIP = ("/assets/", "/static/", "/healthz", "/favicon")


def install(app: Flask, svc: Any, overrides: Mapping[str, Any] | None) -> None:
    live = LiveSettings(svc, overrides)
    live.start()
    app.extensions["idp.live_settings"] = live

    @app.before_request
    def _current_settings() -> None:
        if not request.path.startswith(_SKIP):
            live.check()


def live_settings() -> LiveSettings:
    return current_app.extensions["idp.live_settings"]
