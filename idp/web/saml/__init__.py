"""The SAML IdP's endpoints (docs/saml.md): each module reads the request into plain values,
calls the engine (idp.saml) and sends its answer (``respond``). The routes are listed here,
in one blueprint named ``saml`` (``url_for('saml.logout')``)."""

from __future__ import annotations

from flask import Blueprint

from . import logout, metadata, sso

bp = Blueprint("saml", __name__)
bp.add_url_rule("/saml/metadata", view_func=metadata.metadata, methods=["GET"])
bp.add_url_rule("/saml/sso", view_func=sso.sso, methods=["GET", "POST"])
bp.add_url_rule("/saml/resume", view_func=sso.resume, methods=["GET"])
bp.add_url_rule("/saml/init", view_func=sso.idp_initiated, methods=["GET"])
bp.add_url_rule("/saml/slo", view_func=logout.slo, methods=["GET", "POST"])
bp.add_url_rule("/saml/logout", view_func=logout.logout, methods=["GET", "POST"])
bp.add_url_rule(
    "/saml/logout/pending",
    endpoint="pending_logout",
    view_func=logout.pending_logout,
    methods=["GET"],
)
bp.before_app_request(logout.send_pending_logouts)


@bp.record_once
def _tell_sps_of_ended_sessions(state) -> None:
    logout.listen(state.app.extensions["idp"])


@bp.record_once
def _exempt_from_csrf(state) -> None:
    """SAML messages are cross-site POSTs by design; they carry their own integrity checks."""
    csrf = state.app.extensions.get("csrf")
    if csrf is not None:
        csrf.exempt(bp)
