"""Single Logout endpoints (saml-profiles 4.4): /saml/slo (an SP's LogoutRequest or
LogoutResponse, HTTP-Redirect and HTTP-POST) and /saml/logout (logout started here: GET asks,
POST signs out)."""

from __future__ import annotations

from flask import request

from ...saml import logout as engine
from ..current import svc
from ..sso import sessions
from .respond import received, respond, session_id


def slo():
    field = "SAMLRequest" if "SAMLRequest" in request.values else "SAMLResponse"
    return respond(engine.slo(svc(), received(field), field, session_id(), sessions()))


def logout():
    if request.method == "GET":
        return respond(engine.logout_prompt(svc(), session_id(), sessions()))
    token = request.form.get("token", "")
    return respond(engine.logout(svc(), token, session_id(), sessions()))
