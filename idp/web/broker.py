"""Coming back from an upstream identity provider (docs/brokering.md): the OIDC / OAuth 2
callback (``/broker/<alias>/callback``), ``complete`` — where every upstream protocol hands over
the person it vouched for — and the first-login link confirmation (``/broker/link``: the local
account's password, or a link mailed to its address).

``complete(flight, identity)`` is the one entry point for a protocol's own return route (SAML's
assertion consumer service): it asks the sign-in hub (``idp.sso.broker.resolve``) what the
identity means here and finishes through the normal login steps (``start_pending``: local MFA
and the other steps still apply per policy), which resume the OIDC / SAML request.
"""

from __future__ import annotations

import logging
import secrets
from typing import Any

from flask import Blueprint, redirect, render_template, request, session, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from werkzeug.wrappers import Response
from wtforms import PasswordField, SubmitField
from wtforms.validators import Length

from ..backends.chain import credential_chain
from ..backends.lockout import lock_key
from ..broker import UpstreamError, protocol
from ..core.broker import AMR_FEDERATED, UpstreamIdentity
from ..core.credentials import Outcome
from ..sso import broker as hub
from ..sso.broker import Flight, PendingLink, Resolution
from ..storage.models import User
from .broker_start import BROWSER_KEY, browser_secret, refused_page
from .current import svc
from .guard import lockout
from .login import _expired_request, start_pending
from .mailing import queue_mail
from .requestinfo import absolute, audit
from .sso import sessions

log = logging.getLogger("idp.broker")

bp = Blueprint("broker", __name__)

_LINK_KEY = "broker_link"
_MAIL_SENT = "broker:linkmail:"
REFUSALS = {
    hub.REFUSED_NO_ACCOUNT: _l(
        "There is no account here for the identity you signed in with, and none may be "
        "created for it. Please contact your administrator."
    ),
    hub.REFUSED_UNVERIFIED_EMAIL: _l(
        "An account with this e-mail address already exists here, but the identity provider "
        "did not confirm that the address is yours, so the accounts were not linked. Sign in "
        "with your password instead."
    ),
    hub.REFUSED_ALREADY_LINKED: _l(
        "The account here is already linked to another account at this identity provider."
    ),
    hub.REFUSED_LINK_OFF: _l(
        "An account with this e-mail address already exists here and cannot be linked to "
        "this identity provider. Sign in with your password instead."
    ),
}
ACCOUNT_REFUSED = _l("This account cannot be used to sign in. Please contact your administrator.")


class LinkForm(FlaskForm):
    password = PasswordField(_l("Password"), validators=[Length(max=1024)])
    submit = SubmitField(_l("Link and sign in"))
    mail = SubmitField(_l("E-mail me a confirmation link"))


def _refusal_page(reason: str) -> Response:
    message = REFUSALS.get(reason, ACCOUNT_REFUSED)
    page = render_template("message.html", title=_("You were not signed in"), message=message)
    return Response(page, status=403, mimetype="text/html")


@bp.get("/broker/<alias>/callback")
def callback(alias: str) -> Any:
    """The OIDC / OAuth 2 redirect back (RFC 6749 §4.1.2): a known, unused state of this
    browser's, for this upstream; then the protocol checks the answer."""
    flight = hub.take_flight(svc(), request.args.get("state"), session.get(BROWSER_KEY))
    if flight is None or flight.provider != alias:
        with svc().sessions.begin() as db:
            audit(db, "broker.refused", provider=alias[:64], reason="unknown_state")
        return refused_page(400)
    with svc().sessions() as db:
        prov = hub.provider(db, alias)
    if prov is None or not prov.enabled:
        with svc().sessions.begin() as db:
            audit(db, "broker.refused", provider=alias, reason=hub.REFUSED_DISABLED)
        return refused_page()
    try:
        identity = protocol(prov.kind).finish(svc(), prov, flight, request.args.to_dict())
    except UpstreamError as exc:
        log.info("upstream %s sign-in refused: %s", alias, exc)
        with svc().sessions.begin() as db:
            audit(db, "broker.refused", provider=alias, reason=exc.reason)
        return refused_page()
    return complete(flight, identity)


def complete(flight: Flight, identity: UpstreamIdentity) -> Any:
    """Sign in (or link, or refuse) the person ``identity`` names, for ``flight``'s request.
    Every upstream protocol ends here once it has verified the upstream's answer."""
    req = sessions().load_request(flight.rid) if flight.rid else None
    if flight.rid and req is None:
        return _expired_request()
    with svc().sessions() as db:
        prov, why = hub.usable(db, req, flight.provider)
        if prov is None or identity.provider != flight.provider:
            audit(db, "broker.refused", provider=flight.provider, reason=why or "wrong_provider")
            db.commit()
            return refused_page()
        result = hub.resolve(svc(), db, prov, identity, audit)
        if result.outcome == "confirm":
            assert result.user is not None
            db.commit()
            pending = PendingLink(user_id=result.user.id, identity=identity.to_dict(),
                                  rid=flight.rid, next_url=flight.next_url,
                                  browser=svc().hasher.hash(browser_secret()))
            session[_LINK_KEY] = hub.save_link(svc(), pending)
            return redirect(url_for("broker.link"), 303)
        return _signed_in(db, result, identity, flight.rid, flight.next_url)


def _signed_in(db: Any, result: Resolution, identity: UpstreamIdentity, rid: str | None,
               next_url: str | None) -> Any:
    if result.outcome != "signin" or result.user is None:
        db.commit()
        return _refusal_page(result.reason)
    db.commit()
    upstream = {"provider": identity.provider, "ref": identity.session_ref,
                "subject": identity.subject}
    return start_pending(db, result.user, [AMR_FEDERATED], rid=rid, next_url=next_url,
                         local_password=False, data={"upstream": upstream})


# --- first-login linking: prove the local account -----------------------------------------------


def _pending_link() -> tuple[str, PendingLink] | None:
    key = session.get(_LINK_KEY)
    pending = hub.load_link(svc(), key, session.get(BROWSER_KEY))
    return (key, pending) if key and pending else None


def _link_page(form: LinkForm, user: User, provider_name: str, error: str | None = None,
               status: int = 200, sent: bool = False) -> tuple[str, int]:
    return render_template("broker_link.html", form=form, email=user.email,
                           provider=provider_name, error=error, sent=sent), status


def _parties(db: Any, key: str, pending: PendingLink) -> tuple[UpstreamIdentity, Any, User] | None:
    """The upstream identity, its provider and the local user of a pending link; None (and
    the pending link dropped) when the user or the provider is gone."""
    identity = UpstreamIdentity.from_dict(pending.identity)
    user = db.get(User, pending.user_id)
    prov = hub.provider(db, identity.provider)
    if user is None or prov is None:
        hub.drop_link(svc(), key)
        return None
    return identity, prov, user


@bp.route("/broker/link", methods=["GET", "POST"])
def link() -> Any:
    found = _pending_link()
    if found is None:
        return _expired_request()
    key, pending = found
    with svc().sessions() as db:
        parties = _parties(db, key, pending)
        if parties is None:
            return _expired_request()
        identity, prov, user = parties
        form = LinkForm()
        if request.method == "GET":
            return _link_page(form, user, prov.display_name)
        if not form.validate():
            return _link_page(form, user, prov.display_name,
                              _("The form expired. Please try again."), 400)
        if form.mail.data:
            # One mail a minute per pending link: the button must not flood the mailbox.
            if not svc().store.add(_MAIL_SENT + key, 1, 60):
                return _link_page(form, user, prov.display_name, sent=True)
            token = secrets.token_urlsafe(32)
            pending.mail_token = svc().hasher.hash(token)
            hub.save_link(svc(), pending, key)
            queue_mail(user.email, "broker_link", _l("Confirm linking your account"), user=user,
                       provider=prov.display_name, link=absolute("broker.link_mail", t=token),
                       minutes=hub.CONFIRM_TTL // 60)
            return _link_page(form, user, prov.display_name, sent=True)
        guard = lockout()
        lock = lock_key(user, user.username)
        locked_for = guard.locked_for(lock)
        if locked_for is not None:
            audit(db, "broker.link_refused", provider=prov.alias, target=user.uuid,
                  reason="locked")
            db.commit()
            page, status = _link_page(form, user, prov.display_name,
                                      _("Too many wrong passwords. Try again later."), 429)
            return page, status, {"Retry-After": str(locked_for)}
        verdict = credential_chain(svc()).verify(user.username, form.password.data or "",
                                                 known=user)
        if verdict.outcome is not Outcome.VALID or verdict.user_id != user.id:
            guard.record_failure(lock)
            audit(db, "broker.link_refused", provider=prov.alias, target=user.uuid,
                  reason="wrong_password")
            db.commit()
            return _link_page(form, user, prov.display_name,
                              _("The password is not correct."), 401)
        return _confirmed(db, key, pending, identity, prov, user)


@bp.get("/broker/link/mail")
def link_mail() -> Any:
    """The mailed confirmation link: valid in the browser that asked for it, once."""
    found = _pending_link()
    token = request.args.get("t", "")
    if found is None or not found[1].mail_token or not token or len(token) > 100 \
            or not svc().hasher.verify(token, found[1].mail_token):
        return _expired_request()
    key, pending = found
    with svc().sessions() as db:
        parties = _parties(db, key, pending)
        if parties is None:
            return _expired_request()
        identity, prov, user = parties
        return _confirmed(db, key, pending, identity, prov, user)


def _confirmed(db, key, pending: PendingLink, identity, prov, user) -> Any:
    hub.drop_link(svc(), key)
    session.pop(_LINK_KEY, None)
    result = hub.link_confirmed(svc(), db, prov, identity, user, audit)
    return _signed_in(db, result, identity, pending.rid, pending.next_url)
