"""The consent page (/oauth2/consent): what the engine asks (``idp.oidc.authorize``), in plain
words; and the account page's list of consents given, with their withdrawal."""

from __future__ import annotations

from flask import Blueprint, request
from flask_babel import gettext
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from flask_wtf.csrf import generate_csrf
from wtforms import SubmitField

from ...oidc import authorize as engine
from ...oidc.results import ErrorPage, _
from ...sso.users import load_user
from ..current import svc
from ..login import person_name
from ..requestinfo import origin
from ..scopes import SCOPE_WORDS, scope_words
from .respond import page, session_id, to_response

bp = Blueprint("oidc_consent", __name__)

__all__ = ["SCOPE_WORDS", "bp", "claim_words"]  # SCOPE_WORDS lives in idp.web.scopes

# Claims asked for one by one (the claims parameter, OIDC Core §5.5) beyond the scopes, in plain
# words; a claim not listed is shown by its name.
CLAIM_WORDS = {
    "name": _l("Your full name"),
    "given_name": _l("Your first name"),
    "family_name": _l("Your last name"),
    "middle_name": _l("Your middle name"),
    "nickname": _l("Your nickname"),
    "preferred_username": _l("Your username"),
    "profile": _l("The address of your profile page"),
    "picture": _l("Your picture"),
    "website": _l("Your website"),
    "gender": _l("Your gender"),
    "birthdate": _l("Your date of birth"),
    "zoneinfo": _l("Your time zone"),
    "locale": _l("Your language"),
    "updated_at": _l("When your profile was last changed"),
    "email": _l("Your e-mail address"),
    "email_verified": _l("Whether your e-mail address is verified"),
    "phone_number": _l("Your phone number"),
    "phone_number_verified": _l("Whether your phone number is verified"),
    "address": _l("Your postal address"),
    "groups": _l("The groups you belong to"),
    "roles": _l("Your roles"),
}


def claim_words(name: str) -> str:
    words = CLAIM_WORDS.get(name)
    return str(words) if words is not None else gettext("Your “%(claim)s” information", claim=name)


class ConsentForm(FlaskForm):
    approve = SubmitField("Allow")
    deny = SubmitField("Deny")


@bp.route("/oauth2/consent", methods=["GET", "POST"])
def consent():
    services = svc()
    sid = session_id()
    prompt = engine.consent_prompt(services, request.args.get("r", ""), sid)
    if isinstance(prompt, ErrorPage):
        return to_response(prompt)
    form = ConsentForm()
    if request.method == "POST":
        if not form.validate_on_submit():
            return to_response(
                engine.error_page(
                    _("The form expired. Go back to the application and start again.")
                )
            )
        return to_response(engine.answer_consent(
                services, prompt, sid, approve=not form.deny.data, origin=origin()
            ))
    client = prompt.client
    with services.sessions() as db:
        person = load_user(db, user_id=prompt.user.user_id)
        name = person_name(person) if person is not None else None
    return page(
        "consent.html",
        form=form,
        client=client,
        not_you=name,
        not_you_r=prompt.rid,
        not_you_csrf=generate_csrf(),
        logo=client.shown_uri("logo_uri"),
        policy_uri=client.shown_uri("policy_uri"),
        tos_uri=client.shown_uri("tos_uri"),
        scopes=[(s, scope_words(s)) for s in prompt.scopes],
        claims=[(name, claim_words(name)) for name in prompt.claims],
    )


@bp.record_once
def _consent_source(state) -> None:
    from ..account import register_consent_source

    register_consent_source(
        state.app.extensions["idp"], engine.list_consents, engine.withdraw_consent
    )
