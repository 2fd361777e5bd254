"""Rate limits of the running app (``idp.storage.ratelimit`` under ``[rate_limits]``), and the
429 answer with ``Retry-After`` in the form the path's caller reads: RFC 6749-style error JSON
on the OAuth endpoints, a SCIM error under ``/scim/v2``, a page with a reference id everywhere
else (the admin API raises its own problem+json from :func:`note`, :func:`detail` and
:func:`headers`: its module imports this one)."""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable
from typing import Any

from flask import Response, g, render_template, request
from flask_babel import ngettext

from .. import metrics
from ..core.ratelimit import Verdict, rules_from_settings
from ..errors import new_reference
from ..oidc.bearer import BearerRefusal
from ..scim.errors import ScimError
from ..storage.ratelimit import RateLimiter
from .current import svc
from .requestinfo import client_ip

log = logging.getLogger("idp.ratelimit")
_LIMITER = "_rate_limiter"  # Services.__dict__ key: (the parts it was built from, RateLimiter)


def limiter() -> RateLimiter:
    """The counters on this app's store under its current ``[rate_limits]`` settings (built
    again only when the settings, or a part it uses, were replaced)."""
    s = svc()
    parts = (s.settings, s.store, s.clock, s.hasher)
    built = s.__dict__.get(_LIMITER)
    if built is None or any(a is not b for a, b in zip(built[0], parts, strict=True)):
        rules = rules_from_settings(s.settings)
        built = s.__dict__[_LIMITER] = (parts, RateLimiter(s.store, s.clock, rules, s.hasher))
    return built[1]


def check(rule: str, account: str | None = None) -> Verdict | None:
    """Before an attempt whose failures count (``RateLimiter.check``), from this client."""
    return limiter().check(rule, client_ip(), account)


def fail(rule: str, account: str | None = None) -> None:
    limiter().fail(rule, client_ip(), account)


def hit(rule: str, account: str | None = None) -> Verdict | None:
    """Count a request that sends a message (``RateLimiter.hit``), from this client."""
    return limiter().hit(rule, client_ip(), account)


def note(verdict: Verdict) -> str:
    """Count and log a refusal; its reference id."""
    ref = new_reference()
    metrics.rate_limited(verdict.rule)
    log.warning(
        "rate limit %s reached per %s on %s",
        verdict.rule,
        verdict.scope,
        request.path,
        extra={"reference": ref, "request_id": g.get("request_id")},
    )
    return ref


def detail(verdict: Verdict) -> str:
    return f"Too many requests. Try again in {verdict.retry_after} seconds."


def headers(verdict: Verdict) -> dict[str, str]:
    return {"Retry-After": str(verdict.retry_after), "Cache-Control": "no-store"}


def too_many(verdict: Verdict) -> Response:
    """The 429 answer to a refused request, counted and logged under a reference id."""
    ref = note(verdict)
    path = request.path
    if path.startswith("/scim/"):
        resp = _json(ScimError(429, detail(verdict)).body(), "application/scim+json")
    elif path.startswith("/oauth2/"):
        body = {"error": "too_many_requests", "error_description": detail(verdict),
                "reference": ref}
        resp = _json(body, "application/json")
    else:
        minutes = math.ceil(verdict.retry_after / 60)
        message = ngettext(
            "Too many requests. Please try again in %(num)d minute.",
            "Too many requests. Please try again in %(num)d minutes.",
            minutes,
        )
        resp = Response(
            render_template(
                "error.html", code=429, title="Too Many Requests", message=message, reference=ref
            ),
            429,
            mimetype="text/html",
        )
    resp.status_code = 429
    resp.headers.update(headers(verdict))
    return resp


def _json(body: dict, mimetype: str) -> Response:
    return Response(json.dumps(body), status=429, mimetype=mimetype)


def client_auth_limited(client_id: str | None, answer: Callable[[], Response]) -> Response:
    """An OAuth endpoint that authenticates a client (token, device authorization,
    introspection, revocation): refused once the failed client authentications from this
    address, or for this client_id, reached their limit; else ``answer()``, whose
    ``invalid_client`` answers are counted. Failed grants (``invalid_grant``) are not: codes,
    refresh and device codes are 256-bit random values, nothing to guess, while one relying
    party's server refreshing for many people meets expired and revoked ones every day."""
    refused = check("client_auth", client_id)
    if refused is not None:
        return too_many(refused)
    resp = answer()
    if oauth_error(resp) == "invalid_client":
        fail("client_auth", client_id)
    return resp


def oauth_error(resp: Response) -> str | None:
    if resp.status_code not in (400, 401) or not resp.is_json:
        return None
    body = resp.get_json(silent=True)
    return body.get("error") if isinstance(body, dict) else None


def mfa_send_refused(user: Any) -> bool:
    """The e-mail / SMS code factors' limit (``otp_delivery.Refused``): count this send for the
    account and the address; True (counted and logged) when it is over a limit."""
    verdict = hit("mfa_send", f"u{user.id}")
    if verdict is None:
        return False
    note(verdict)
    return True


def count_bearer_refusal(refusal: BearerRefusal) -> None:
    """A token that was sent and refused (401) counts against the address; a request without
    one (a probe, a health check) and a valid token without the scope (403) do not."""
    if refusal.status == 401 and request.headers.get("Authorization"):
        fail("bearer")
