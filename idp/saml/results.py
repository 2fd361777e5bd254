"""What the SAML engine is given and what it answers, in plain values: the web layer
(idp.web.saml) reads an HTTP request into ``Received`` and turns each result into a response.
No web framework here, so the engine runs and is tested without one.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT

from ..errors import new_reference

__all__ = [
    "BINDING_HTTP_POST",
    "BINDING_HTTP_REDIRECT",
    "Answer",
    "LoginNeeded",
    "LogoutPage",
    "PostForm",
    "Received",
    "Redirect",
    "Refused",
    "SignedOut",
    "Xml",
]


@dataclass(frozen=True, slots=True)
class Received:
    """A SAML message as one HTTP request carried it."""

    binding: str  # BINDING_HTTP_REDIRECT (a GET) or BINDING_HTTP_POST
    message: str | None  # the SAMLRequest / SAMLResponse parameter, still encoded
    relay_state: str | None  # RelayState beside it (query for Redirect, form for POST)
    # The raw query string: an HTTP-Redirect signature covers the parameters as they came.
    query_string: bytes = b""
    # RelayState from the query, else the form: what a SAML error status carries back.
    any_relay_state: str | None = None


@dataclass(frozen=True, slots=True)
class PostForm:
    """The HTTP-POST binding: a page that posts ``field=value`` (and RelayState) to ``action``."""

    action: str
    field: str
    value: str  # the message, base64
    relay_state: str | None
    # The signed-in user's profile language (the page is in it), when the engine read the user.
    user_locale: str | None = None


@dataclass(frozen=True, slots=True)
class Redirect:
    """The HTTP-Redirect binding: a message (or a signed query) in ``location``; never cached."""

    location: str


@dataclass(frozen=True, slots=True)
class LoginNeeded:
    """No usable SSO session: the login takes over the pending request ``rid``."""

    rid: str


@dataclass(frozen=True, slots=True)
class Xml:
    """A document served as it is (our metadata)."""

    body: str
    content_type: str
    cache_control: str


@dataclass(frozen=True, slots=True)
class Refused:
    """A request refused before anything may go to the SP: the error page shows ``message``
    and ``reference``; ``cause`` (logged with the reference) may say more than the page."""

    status: int
    message: str
    cause: str | None = None
    reference: str = field(default_factory=new_reference)
    user_locale: str | None = None  # as for PostForm


@dataclass(frozen=True, slots=True)
class LogoutPage:
    """The IdP's own sign-out page: asking (``token`` for the form) or done."""

    done: bool
    partial: bool = False
    token: str | None = None


@dataclass(frozen=True, slots=True)
class SignedOut:
    """The SSO session ended: ``then`` is the answer, and the browser's cookie goes."""

    then: Answer


Answer = PostForm | Redirect | LoginNeeded | Xml | Refused | LogoutPage | SignedOut
