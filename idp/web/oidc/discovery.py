"""Adds the OIDC provider metadata (``idp.oidc.discovery``) to the well-known documents served
by ``idp.web.wellknown``."""

from __future__ import annotations

from flask import Blueprint

from ...oidc.discovery import metadata

bp = Blueprint("oidc_discovery", __name__)


@bp.record_once
def _register(state) -> None:
    svc = state.app.extensions["idp"]
    svc.discovery.update(metadata(svc.settings.issuer, svc.settings.oidc,
                                  mtls=bool(svc.settings.mtls.client_cert_header)))
