"""RP-Initiated Logout 1.0 at /oauth2/logout: the confirmation and signed-out pages; the checks,
the front-channel frames and back-channel propagation are ``idp.oidc.logout``'s."""

from __future__ import annotations

from flask import Blueprint, redirect, request, url_for
from flask_wtf import FlaskForm
from wtforms import HiddenField, SubmitField

from ...oidc import logout as engine
from ...oidc.authorize import back_link
from ...oidc.clients import client_cache
from ...oidc.results import LoggedOut, LogoutConfirm, _
from ...sso import broker as broker_hub
from ...sso.sessions import COOKIE, session_manager
from .. import broker_start
from ..current import svc
from .respond import page, plain_request, session_id, to_response

bp = Blueprint("oidc_logout", __name__)


class LogoutForm(FlaskForm):
    post_logout_redirect_uri = HiddenField()
    state = HiddenField()
    client_id = HiddenField()
    confirm = SubmitField("Sign out")


@bp.record_once
def _register(state) -> None:
    engine.listen(state.app.extensions["idp"])


@bp.route("/oauth2/logout", methods=["GET", "POST"])
def end_session():
    services = svc()
    values = plain_request().values
    refused = engine.check_single_valued(values)
    if refused is not None:
        return to_response(refused)
    form = LogoutForm()
    if request.method == "POST" and "confirm" in request.form:
        if not form.validate_on_submit():
            return to_response(engine.refuse(_("The form expired. Please try again.")))
        return _logged_out(services, engine.logout(services, session_id()))
    result = engine.end_session(services, values, session_id())
    if isinstance(result, LogoutConfirm):
        form.client_id.data = result.client_id
        client = client_cache(services).get(result.client_id) if result.client_id else None
        return page(
            "logout_confirm.html",
            form=form,
            client_name=result.client_name,
            # Cancel goes back to the application at a verified address, else to the account.
            cancel_url=(back_link(client) if client else None) or url_for("account.index"),
        )
    if isinstance(result, LoggedOut):
        return _logged_out(services, result)
    return to_response(result)


def _logged_out(services, result: LoggedOut):
    # Signed in through an upstream (docs/brokering.md): its logout next, then on to the RP.
    sid = session_id()
    upstream = broker_hub.take_session(services, sid) if sid else None
    target = broker_start.upstream_logout(upstream, result.target) or result.target
    if target and not result.frames:
        resp = redirect(target, 303)
    else:
        resp = page("logged_out.html", frames=result.frames, target=target)
    resp.delete_cookie(COOKIE, **session_manager(services).cookie_attributes())
    resp.headers["Cache-Control"] = "no-store"
    return resp
