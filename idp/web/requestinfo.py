"""What the current request contributes: the client's address, the signed-in user, safe return
targets, absolute links for mail, and audit rows stamped with the request's ip, user agent and
id."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from flask import g, redirect, request, url_for
from sqlalchemy.orm import Session
from werkzeug.wrappers import Response

from ..core.iprules import parse_address
from ..core.policy import ACCOUNT_OK
from ..sso.network import Origin
from ..sso.users import load_user, state_of
from ..storage import audit as audit_rows
from ..storage.models import User
from .current import svc
from .i18n import locale_hints
from .sso import sessions

_CLIENT_IP = "idp.client_ip"  # environ key: (the REMOTE_ADDR it was read from, the address)


def client_ip() -> str | None:
    """The client's address, the one every part of the app uses (audit, sessions, lockout,
    rate limits, network rules): the peer, or what a trusted proxy said it is
    (``idp.web.proxies``, which has checked it). An IPv4 peer of a dual-stack socket
    (``::ffff:192.0.2.1``) is written as the IPv4 address. Worked out once per request (a
    token request asks four times)."""
    environ = request.environ
    peer = environ.get("REMOTE_ADDR")
    known = environ.get(_CLIENT_IP)
    if known is not None and known[0] == peer:
        return known[1]
    address = parse_address(peer)
    found = str(address) if address is not None else None
    environ[_CLIENT_IP] = (peer, found)
    return found


def origin() -> Origin:
    """Where this request came from, as the engines take it (network rules, their audit)."""
    return Origin(client_ip(), g.get("request_id"))


def user_agent() -> str | None:
    """The client's User-Agent header, for audit rows (None when it sent none)."""
    return request.headers.get("User-Agent") or None


def require_user(db: Session) -> User | Response:
    """The signed-in user whose account may still be used, or a redirect to the login."""
    result = sessions().current()
    user = load_user(db, uuid=result.user_uuid) if result else None
    if user is None or state_of(svc(), user) != ACCOUNT_OK:
        return redirect(url_for("login.login", next=request.full_path.rstrip("?")))
    g.signed_in_user = user
    g.sid = result.sid
    g.authn = result
    locale_hints(user_locale=user.locale or "")
    return user


def safe_next(target: str | None) -> str | None:
    """Accept a same-origin return target only: a path ("/account/x") or an absolute URL on the
    issuer's origin. Everything else ("//evil", "https://evil", "/\\evil", "javascript:") is
    dropped; relying parties' own URLs come back through their protocol's resume URL instead."""
    if not target or len(target) > 2000:
        return None
    if any(c in target for c in "\\\r\n\t") or any(ord(c) < 32 for c in target):
        return None
    parts = urlsplit(target)
    issuer = urlsplit(svc().settings.issuer)
    if not parts.scheme and not parts.netloc:
        return target if target.startswith("/") and not target.startswith("//") else None
    if (parts.scheme, parts.netloc) == (issuer.scheme, issuer.netloc):
        return target
    return None


def absolute(endpoint: str, **values: Any) -> str:
    """A link for a mail: the configured issuer plus the route, never the request's Host."""
    return svc().settings.issuer + url_for(endpoint, _external=False, **values)


def _stamp() -> dict[str, Any]:
    """When, from where and in which request: the columns every audit row of a request shares."""
    return {
        "at": svc().clock.utcnow(),
        "ip": client_ip(),
        "user_agent": user_agent(),
        "request_id": g.get("request_id"),
    }


def audit(
    db: Session, action: str, *, actor: str | None = None, target: str | None = None, **details: Any
) -> None:
    """An audit row from this request (idp.storage.audit.audit), in the caller's unit of work."""
    audit_rows.audit(db, action, actor=actor, target=target, **_stamp(), **details)


def audit_now(
    db: Session, action: str, *, actor: str | None = None, target: str | None = None, **details: Any
) -> None:
    """An audit row from this request sent at once (idp.storage.audit.audit_now: hot paths)."""
    audit_rows.audit_now(db, action, actor=actor, target=target, **_stamp(), **details)
