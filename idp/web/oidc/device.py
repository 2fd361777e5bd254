"""The device authorization endpoint and the /device pages (RFC 8628 §3.1-§3.3): thin routes;
the work is ``idp.oidc.device``'s."""

from __future__ import annotations

import secrets

from flask import Blueprint, request, session
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from flask_wtf.csrf import generate_csrf
from wtforms import StringField, SubmitField
from wtforms.validators import DataRequired, Length

from ...oidc import device_page as engine
from ...oidc.results import ErrorPage, _
from ...sso import network
from ...sso.users import load_user
from ..current import svc
from ..login import person_name
from ..netguard import refused
from ..ratelimit import client_auth_limited
from ..requestinfo import client_ip, origin
from ..scopes import scope_words
from .respond import page, plain_request, session_id, text, to_response
from .token import claimed_client_id

bp = Blueprint("oidc_device", __name__)

_BROWSER = "device_browser"  # the Flask session's key for this browser's wrong-code count


class UserCodeForm(FlaskForm):
    # ``user_code``: the name RFC 8628 §3.3.1 gives the verification_uri_complete parameter.
    user_code = StringField(_l("Code"), validators=[DataRequired(), Length(max=32)])
    submit = SubmitField(_l("Continue"))


class DeviceForm(FlaskForm):
    approve = SubmitField(_l("Approve"))
    deny = SubmitField(_l("Deny"))


@bp.post("/oauth2/device_authorization")
def device_authorization():
    req = plain_request()
    refusal = network.check_client(svc(), claimed_client_id(req), client_ip())
    if refusal is not None:
        return refused(refusal)
    return client_auth_limited(
        claimed_client_id(req), lambda: to_response(engine.device_authorization(svc(), req))
    )


def _browser() -> str:
    key = session.get(_BROWSER)
    if not isinstance(key, str):
        key = session[_BROWSER] = secrets.token_urlsafe(16)
    return key


@bp.route("/device", methods=["GET", "POST"])
def enter():
    if request.method == "GET":
        form = UserCodeForm(formdata=None, user_code=request.args.get("user_code", "")[:32])
        return page("device.html", form=form)
    form = UserCodeForm()
    if not form.validate_on_submit():
        return page("device.html", 400, form=form,
                    error=text(_("Enter the code your device shows.")))
    result = engine.enter_user_code(svc(), form.user_code.data, session_id(), origin=origin(),
                                    browser=_browser())
    if isinstance(result, engine.CodeRefused):
        resp = page("device.html", result.status, form=form, error=text(result.message))
        if result.retry_after is not None:
            resp.headers["Retry-After"] = str(result.retry_after)
        return resp
    return to_response(result)


@bp.route("/device/confirm", methods=["GET", "POST"])
def confirm():
    services = svc()
    sid = session_id()
    rid = request.args.get("r", "")
    prompt = engine.device_prompt(services, rid, sid, origin=origin())
    if isinstance(prompt, ErrorPage):
        return to_response(prompt)
    form = DeviceForm()
    if request.method == "POST":
        if not form.validate_on_submit():
            return to_response(engine.refusal(
                _("The form expired. Start again on your device.")))
        done = engine.answer_device(services, rid, sid, approve=not form.deny.data,
                                    origin=origin())
        if isinstance(done, ErrorPage):
            return to_response(done)
        return page("device_done.html", done=done)
    client = prompt.client
    with services.sessions() as db:
        person = load_user(db, user_id=prompt.user.user_id)
        name = person_name(person) if person is not None else None
    return page(
        "device_confirm.html",
        form=form,
        client=client,
        user_code=prompt.user_code,
        logo=client.shown_uri("logo_uri"),
        scopes=[(s, scope_words(s)) for s in prompt.scopes],
        not_you=name,
        not_you_r=prompt.rid,
        not_you_csrf=generate_csrf(),
    )
