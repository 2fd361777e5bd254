"""OAuth scopes in plain words, in the page's language: shared by the consent page
(``/oauth2/consent``) and the account area's list of applications (``/account/apps``). A scope
not listed here is shown by its name."""

from __future__ import annotations

from flask_babel import lazy_gettext as _l

SCOPE_WORDS = {
    "openid": _l("Sign you in with your account"),
    "profile": _l("Your name, picture, language and time zone"),
    "email": _l("Your e-mail address"),
    "phone": _l("Your phone number"),
    "address": _l("Your postal address"),
    "offline_access": _l("Keep access while you are away (until you revoke it)"),
    "groups": _l("The groups you belong to"),
    "roles": _l("Your roles"),
    "admin": _l("Manage this identity provider on your behalf"),
    "scim": _l("Read and change users and groups on your behalf"),
}


def scope_words(scope: str) -> str:
    words = SCOPE_WORDS.get(scope)
    return str(words) if words is not None else scope
