"""Web SSO endpoints (saml-profiles 4.1): /saml/sso (HTTP-Redirect and HTTP-POST),
/saml/resume (the login's way back), /saml/init (IdP-initiated SSO)."""

from __future__ import annotations

from urllib.parse import urlencode

from flask import request

from ...saml import sso as engine
from ..current import svc
from ..requestinfo import origin
from ..sso import sessions
from .respond import received, respond, session_id


def sso():
    answer = engine.sso(svc(), received("SAMLRequest"), session_id(), sessions(), origin=origin())
    return respond(answer)


def resume():
    answer = engine.resume(
        svc(), request.args.get("r", ""), session_id(), sessions(), origin=origin()
    )
    return respond(answer)


def idp_initiated():
    """IdP-initiated SSO to one SP (the app launcher's links): /saml/init?sp=<entityID>."""
    args = request.args
    answer = engine.idp_initiated(
        svc(), args.get("sp"), args.get("RelayState"), session_id(), sessions(), origin=origin()
    )
    return respond(answer)


def launcher_url(entity_id: str) -> str:
    """The IdP-initiated SSO link for the account page's app launcher."""
    return "/saml/init?" + urlencode({"sp": entity_id})
