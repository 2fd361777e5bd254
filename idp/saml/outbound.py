"""Messages to an SP's endpoint by the HTTP-POST or HTTP-Redirect binding (saml-bindings 3.5,
3.4), each endpoint checked again before it becomes a form action or a redirect."""

from __future__ import annotations

from saml2 import BINDING_HTTP_REDIRECT

from .bindings import redirect_url
from .engine import SamlIdp, SpInfo, b64
from .results import PostForm, Redirect, Refused
from .validate import unsafe_location


def refuse_location(sp: SpInfo, url: str, problem: str, user_locale: str | None = None) -> Refused:
    return Refused(
        400,
        "The address of this application is not acceptable, so nothing was sent to it. "
        "Please tell its administrator.",
        f"SP {sp.entity_id} endpoint {url[:200]!r} {problem}",
        user_locale=user_locale,
    )


def post_form(
    sp: SpInfo,
    action: str,
    field: str,
    xml: str | bytes,
    relay_state: str | None,
    user_locale: str | None = None,
) -> PostForm | Refused:
    problem = unsafe_location(sp, action)
    if problem:
        return refuse_location(sp, action, problem, user_locale)
    return PostForm(action, field, b64(xml), relay_state, user_locale)


def send(
    idp: SamlIdp,
    sp: SpInfo,
    binding: str,
    location: str,
    field: str,
    xml: str | bytes,
    relay: str | None,
) -> PostForm | Redirect | Refused:
    problem = unsafe_location(sp, location)
    if problem:
        return refuse_location(sp, location, problem)
    if binding == BINDING_HTTP_REDIRECT:
        return Redirect(redirect_url(location, field, xml, relay, idp.engine().signing_key))
    return post_form(sp, location, field, xml, relay)
