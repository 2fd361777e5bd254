"""The one adapter between Flask and the OIDC engine: a Flask request as plain data, and the
engine's typed results as Flask responses (pages rendered, texts translated here)."""

from __future__ import annotations

from flask import Response, current_app, g, redirect, render_template, request
from flask_babel import gettext

from ...oidc.http import Headers, HttpRequest
from ...oidc.results import (
    BodyResult,
    ErrorPage,
    FormPost,
    JsonResult,
    Message,
    Redirect,
)
from ...oidc.sender import Presentation
from ..current import svc
from ..proxies import CLIENT_CERT_KEY
from ..requestinfo import client_ip
from ..sso import browser_sid


def plain_request(*, with_json: bool = False) -> HttpRequest:
    """The current request as the engine reads it (``with_json``: parse a JSON body)."""
    return HttpRequest(
        method=request.method,
        uri=request.url,
        headers=Headers(request.headers.items()),
        query=request.args.to_dict(flat=False),
        form=request.form.to_dict(flat=False),
        content_type=request.mimetype,
        content_length=request.content_length,
        json=request.get_json(silent=True) if with_json else None,
        remote_addr=client_ip(),
        request_id=g.get("request_id"),
        client_cert=request.environ.get(CLIENT_CERT_KEY),
    )


def presentation() -> Presentation:
    """What the current request shows besides its access token, for the IdP's own APIs (admin
    API, SCIM): a DPoP proof must name this URL under the issuer (RFC 9449 §4.3)."""
    dpop = request.headers.getlist("DPoP")
    return Presentation(
        request.method,
        svc().settings.issuer + request.path,
        ", ".join(dpop) if dpop else None,
        request.environ.get(CLIENT_CERT_KEY),
    )


def session_id() -> str | None:
    """The id of the browser's SSO session (a hash of its cookie, never the cookie itself)."""
    return browser_sid()


def text(message: Message) -> str:
    return gettext(message.msgid, **message.params)


def no_store(resp: Response) -> Response:
    resp.headers["Cache-Control"] = "no-store"
    return resp


def page(template: str, status: int = 200, **context) -> Response:
    return no_store(Response(render_template(template, **context), status=status))


def to_response(result) -> Response:
    """A JSON, body, redirect, form-post or error-page result as a Flask response."""
    if isinstance(result, JsonResult):
        body = result.body
        if isinstance(body, str):
            resp = Response(body, status=result.status, headers=result.headers)
            if body.startswith("{"):
                resp.mimetype = "application/json"
            return resp
        resp = current_app.json.response(body)
        resp.status_code = result.status
        resp.headers.update(result.headers)
        return resp
    if isinstance(result, BodyResult):
        return Response(
            result.body, status=result.status, headers=result.headers, mimetype=result.content_type
        )
    if isinstance(result, Redirect):
        resp = redirect(result.location, result.status)
        return no_store(resp) if result.no_store else resp
    if isinstance(result, FormPost):
        return page("form_post.html", action=result.action, fields=result.fields)
    if isinstance(result, ErrorPage):
        return page(
            "error.html",
            result.status,
            code=result.status,
            title=text(result.title),
            message=text(result.message),
            reference=result.reference,
            back_url=result.back_url,
        )
    raise TypeError(f"no response for {type(result).__name__}")
