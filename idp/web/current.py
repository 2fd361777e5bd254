"""The running app's services, for code that runs in an app or request context."""

from __future__ import annotations

from flask import current_app

from ..services import Services


def svc() -> Services:
    return current_app.extensions["idp"]
