"""Who may use the console, checked before every ``/admin/`` request, in this order:

1. the client address is inside ``[admin] allowed_networks`` (when the list is not empty),
   else 403 — before anything else is read, so a blocked network learns nothing;
2. a signed-in user whose account may be used, else a redirect to the login page;
3. the permission ``console:admin:access`` (administering templates hold it), else 403;
4. when ``[admin] require_mfa`` is on, a session whose sign-in used a second factor (its acr
   is ``urn:idp:acr:mfa``: the amr holds two factors), else the sign-in hub's step-up (a pending
   request asking for that acr: the login asks for the password and the second factor, then
   comes back here) or, for an administrator without any second factor, the account's MFA
   page to set one up first;
5. on every change (POST), the form's CSRF token.

Then ``console()`` gives each screen an ``idp.manage`` :class:`Context` for the signed-in
administrator."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from flask import abort, current_app, flash, g, redirect, request, url_for
from flask_babel import gettext as _
from flask_wtf.csrf import CSRFError, generate_csrf, validate_csrf
from wtforms import ValidationError as CsrfInvalid

from ...core.authn import ACR_MFA, AuthnRequest
from ...core.steps import enrolled_factors
from ...manage.context import Actor, Context, transaction
from ...sso import network
from ..current import svc
from ..netguard import refused
from ..requestinfo import client_ip, require_user, user_agent
from ..sso import sessions
from .blueprint import bp
from .nav import NAV, SECTIONS

CONSOLE_PERMISSION = "console:admin:access"


@bp.before_request
def _guard():
    refusal = network.check_networks("admin", svc().settings.admin.allowed_networks, client_ip())
    if refusal is not None:
        return refused(refusal)
    with svc().sessions() as db:
        user = require_user(db)
        if not hasattr(user, "id"):
            return user  # the redirect to the login page
        g.admin_actor = Actor.user(
            user.id,
            user.uuid,
            ip=client_ip(),
            request_id=g.get("request_id"),
            user_agent=user_agent(),
        )
        ctx = Context(db, svc(), g.admin_actor)
        if not ctx.allowed(CONSOLE_PERMISSION):
            abort(403)
        if svc().settings.admin.require_mfa and not _second_factor_used():
            return _step_up(db, user)
        g.admin_nav = _nav(ctx)
    if request.method not in ("GET", "HEAD", "OPTIONS"):
        _check_csrf()
    return None


def _second_factor_used() -> bool:
    """Did this session's sign-in use a second factor? (``require_user`` read the session.)"""
    return g.authn.acr == ACR_MFA


def _step_up(db, user):
    """Send a single-factor session through the hub's step-up, back to this page after (a
    change that was under way is not replayed: the console's start page instead)."""
    if not enrolled_factors(svc(), user, db):
        flash(_("The admin console needs a second factor. Please set one up first."), "warning")
        return redirect(url_for("account.mfa"))
    back = request.full_path.rstrip("?") if request.method == "GET" else url_for("admin.dashboard")
    rid = sessions().save_request(
        AuthnRequest(
            protocol="admin",
            resume_url=back,
            acr_values=[ACR_MFA],
            login_hint=user.username,
        )
    )
    return redirect(url_for("login.login", r=rid))


def _check_csrf() -> None:
    """Every console form carries the session's CSRF token (``csrf_token()`` in templates, or
    the ``X-CSRFToken`` header of a script's request); a change without it is refused (400)."""
    token = request.form.get("csrf_token") or request.headers.get("X-CSRFToken")
    try:
        validate_csrf(token)
    except CsrfInvalid as exc:
        raise CSRFError(str(exc)) from None


@bp.context_processor
def _console_context() -> dict[str, object]:
    return {"csrf_token": generate_csrf}


def may_open_console(user_id: int) -> bool:
    """Does this user hold the console permission (the account area links to the console)?"""
    with svc().sessions() as db:
        return Context(db, svc(), Actor.user(user_id, "")).allowed(CONSOLE_PERMISSION)


def _nav(ctx: Context) -> list[tuple[str, list[tuple[str, object]]]]:
    """The sidebar this administrator sees: [(section label, [(endpoint, label)])]."""
    views = current_app.view_functions
    sections: dict[str, list[tuple[str, object]]] = {}
    for section, endpoint, label, permission in NAV:
        if endpoint in views and (permission is None or ctx.allowed(permission)):
            sections.setdefault(section, []).append((endpoint, label))
    return [(str(SECTIONS[s]), entries) for s, entries in sections.items()]


@contextmanager
def console() -> Iterator[Context]:
    """One unit of work of the signed-in administrator (``idp.manage.context.transaction``):
    committed when the block ends, rolled back with its audit rows when it raises."""
    with transaction(svc(), g.admin_actor) as ctx:
        yield ctx
