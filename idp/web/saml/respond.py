"""The SAML engine on the web: an HTTP request read into the engine's plain values
(``idp.saml.results.Received``, the SSO session cookie) and each of its answers turned into a
Flask response. The POST-binding page is the kept page (idp.web.kept)."""

from __future__ import annotations

import logging

from flask import Response, g, make_response, redirect, render_template, request

from ...saml.results import (
    BINDING_HTTP_POST,
    BINDING_HTTP_REDIRECT,
    Answer,
    LoginNeeded,
    LogoutPage,
    PostForm,
    Received,
    Redirect,
    Refused,
    SignedOut,
    Xml,
)
from ...saml.sso import NOT_ALLOWED
from ..i18n import locale_hints
from ..kept import render_kept
from ..netguard import not_allowed_page
from ..sso import browser_sid, sessions

log = logging.getLogger("idp.saml")


def received(field: str) -> Received:
    """The message ``field`` (SAMLRequest / SAMLResponse) of this request: HTTP-Redirect for a
    GET (query parameters), else HTTP-POST (form fields)."""
    if request.method == "GET":
        relay = request.args.get("RelayState")
        return Received(
            BINDING_HTTP_REDIRECT, request.args.get(field), relay, request.query_string, relay
        )
    form = request.form
    relay = form.get("RelayState")
    return Received(
        BINDING_HTTP_POST,
        form.get(field),
        relay,
        request.query_string,
        request.args.get("RelayState", relay),
    )


def session_id() -> str | None:
    """The id of the browser's SSO session (a hash of its cookie, never the cookie itself)."""
    return browser_sid()


def respond(answer: Answer) -> Response | tuple[str, int]:
    if isinstance(answer, PostForm):
        if answer.user_locale is not None:
            # The user is loaded already: the language selector need not read it again.
            locale_hints(user_locale=answer.user_locale)
        values = {
            "action": answer.action,
            "field": answer.field,
            "value": answer.value,
            "relay_state": answer.relay_state,
        }
        resp = Response(render_kept("saml_post.html", values, dict), mimetype="text/html")
        resp.headers["Cache-Control"] = "no-store"
        return resp
    if isinstance(answer, LoginNeeded):
        return redirect(f"/login?r={answer.rid}")
    if isinstance(answer, Refused):
        return _error_page(answer)
    if isinstance(answer, Redirect):
        resp = redirect(answer.location)
        resp.headers["Cache-Control"] = "no-store"
        return resp
    if isinstance(answer, SignedOut):
        resp = make_response(respond(answer.then))
        sessions().clear_cookie(resp)
        return resp
    if isinstance(answer, LogoutPage):
        page = render_template(
            "saml_logout.html", done=answer.done, partial=answer.partial, token=answer.token
        )
        return Response(page, mimetype="text/html")
    if isinstance(answer, Xml):
        resp = Response(answer.body, mimetype=answer.content_type)
        resp.headers["Cache-Control"] = answer.cache_control
        return resp
    raise TypeError(f"not a SAML answer: {answer!r}")


def _error_page(refused: Refused) -> Response | tuple[str, int]:
    log.info(
        "saml request refused: %s",
        refused.cause or refused.message,
        extra={"reference": refused.reference, "request_id": g.get("request_id")},
    )
    if refused.user_locale is not None:
        locale_hints(user_locale=refused.user_locale)
    if refused.message == NOT_ALLOWED:
        return not_allowed_page(refused.reference)
    code = refused.status
    title = "The sign-in request was refused" if code < 500 else "Something went wrong"
    page = render_template(
        "error.html", code=code, title=title, message=refused.message, reference=refused.reference
    )
    return page, code
