"""What the OIDC engine answers, as typed data; ``idp.web.oidc.respond`` turns each into an
HTTP response. Texts meant for people are ``Message``s (a msgid and its parameters) that the
web layer translates: the engine knows no locale and no template engine."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

# RFC 6749 §5.2: error_description holds %x20-21 / %x23-5B / %x5D-7E only.
_NOT_NQSCHAR = re.compile(r"[^\x20-\x21\x23-\x5B\x5D-\x7E]")


def description_text(text: str, limit: int = 500) -> str:
    """``text`` fit for an error_description (it may quote client input): characters outside
    the RFC 6749 §5.2 set become ``?``, and it is cut at ``limit``."""
    return _NOT_NQSCHAR.sub("?", text[:limit])


@dataclass(frozen=True, slots=True)
class Message:
    """A text for people: ``msgid`` (extracted for translation by ``_``) and its parameters."""

    msgid: str
    params: dict[str, Any] = field(default_factory=dict)


def _(msgid: str, **params: Any) -> Message:
    """Mark a text for translation (pybabel extracts ``_``); translated by the web layer."""
    return Message(msgid, params)


@dataclass(frozen=True, slots=True)
class JsonResult:
    """A JSON answer (RFC 6749 §5.1/§5.2 and the other back-channel endpoints)."""

    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class BodyResult:
    """Any other body: a signed JWT (userinfo), an empty 200 or 204."""

    status: int
    body: str = ""
    content_type: str | None = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Redirect:
    """Send the browser on (RFC 6749 §4.1.2 query response, to the login, to consent)."""

    location: str
    status: int = 302
    no_store: bool = False


@dataclass(frozen=True, slots=True)
class FormPost:
    """OAuth 2.0 Form Post Response Mode: an auto-submitting form to ``action``."""

    action: str
    fields: list[tuple[str, str]]


@dataclass(frozen=True, slots=True)
class ErrorPage:
    """A refusal shown to the person at the browser, never redirected; ``reference`` is also
    in the log line that records it."""

    title: Message
    message: Message
    reference: str
    status: int = 400
    # A verified address of the application (its client_uri or a registered redirect origin)
    # the page may link back to; None: the page links to the sign-in.
    back_url: str | None = None


@dataclass(frozen=True, slots=True)
class ConsentPrompt:
    """Ask the user to allow ``client`` the ``scopes`` and, one by one, the ``claims``
    (OIDC Core §5.5) beyond them."""

    rid: str
    client: Any
    user: Any
    scopes: list[str]
    claims: list[str]


@dataclass(frozen=True, slots=True)
class LogoutConfirm:
    """RP-Initiated Logout without proof of the session: the user confirms first."""

    client_id: str
    client_name: str | None


@dataclass(frozen=True, slots=True)
class LoggedOut:
    """The SSO session ended (its cookie is cleared): front-channel logout ``frames`` to load,
    then ``target`` (the RP's post_logout_redirect_uri with state), if any."""

    frames: list[str]
    target: str | None


Result = (
    JsonResult
    | BodyResult
    | Redirect
    | FormPost
    | ErrorPage
    | ConsentPrompt
    | LogoutConfirm
    | LoggedOut
)
