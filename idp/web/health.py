"""Liveness and readiness probes."""

from __future__ import annotations

import logging

from flask import Blueprint, jsonify

from .current import svc as current_services

bp = Blueprint("health", __name__)
log = logging.getLogger("idp.health")


@bp.get("/healthz")
def healthz():
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz():
    svc = current_services()
    checks: dict[str, str] = {}
    for name, probe in (("database", svc.check_database), ("store", svc.store.ping)):
        try:
            probe()
            checks[name] = "ok"
        except Exception as exc:  # any failure means "not ready", with the reason
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            checks[name] = reason
            log.warning("readiness check %s failed: %s", name, reason)
    ready = all(v == "ok" for v in checks.values())
    return jsonify(status="ok" if ready else "unavailable", checks=checks), 200 if ready else 503
