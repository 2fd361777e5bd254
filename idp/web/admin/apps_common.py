"""What the applications screens share: typed errors of ``idp.manage`` turned into error pages,
the show-once ticket for a new client secret, and reading the claim-rule form."""

from __future__ import annotations

import functools
import json
import secrets
from collections.abc import Callable
from typing import Any

from flask import abort, g, request
from flask_babel import gettext as _

from ...core.claims import SOURCE_TYPES
from ...errors import Forbidden, NotFound
from ..current import svc

# A new secret waits this long for its one showing (seconds).
SHOW_ONCE_SECONDS = 600
_TICKET = "console:secret:"


def mapped(view: Callable[..., Any]) -> Callable[..., Any]:
    """Forbidden -> the 403 page, NotFound -> the 404 page (nothing changed: the transaction
    of ``console()`` rolled back before the error left it)."""

    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return view(*args, **kwargs)
        except Forbidden:
            abort(403)
        except NotFound:
            abort(404)

    return wrapper


def keep_secret(client_id: str, secret: str, previous_until: str | None = None) -> str:
    """Keep a new secret for its one showing; the ticket names it in the show page's URL. The
    secret is sealed in the short-lived store and bound to the administrator who made it."""
    ticket = secrets.token_urlsafe(24)
    s = svc()
    sealed = s.sealer.seal(secret.encode(), context=_TICKET + ticket)
    value = {
        "client_id": client_id,
        "sealed": sealed,
        "user": g.admin_actor.user_id,
        "previous_until": previous_until,
    }
    s.store.put(_TICKET + ticket, value, SHOW_ONCE_SECONDS)
    return ticket


def take_secret(client_id: str, ticket: str) -> tuple[str, str | None] | None:
    """The secret behind the ticket, once: (secret, previous secret valid until) or None."""
    if not ticket or len(ticket) > 100:
        return None
    s = svc()
    value = s.store.take(_TICKET + ticket)
    if (
        not isinstance(value, dict)
        or value.get("client_id") != client_id
        or value.get("user") != g.admin_actor.user_id
    ):
        return None
    secret = s.sealer.open(value["sealed"], context=_TICKET + ticket).decode()
    return secret, value.get("previous_until")


# The one option of a source the simple form fills from "source value".
_SOURCE_OPTION = {
    "attribute": "name",
    "custom_field": "name",
    "static": "value",
    "template": "template",
}


class RuleFormError(Exception):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def rule_from_form(for_saml: bool) -> tuple[dict[str, Any], str | None, bool]:
    """(rule, scope, enabled) from the claim-rule form: the JSON of the advanced field when
    given, else built from the simple fields. The rule itself is checked by idp.manage."""
    form = request.form
    scope = form.get("scope", "").strip() or None
    enabled = form.get("enabled") == "1"
    raw = form.get("rule_json", "").strip()
    if raw:
        try:
            rule = json.loads(raw)
        except ValueError:
            raise RuleFormError("rule_json", _("This is not valid JSON.")) from None
        if not isinstance(rule, dict):
            raise RuleFormError("rule_json", _("A rule is a JSON object."))
        return rule, scope, enabled
    kind = form.get("source_type", "")
    if kind not in SOURCE_TYPES:
        raise RuleFormError("source_type", _("Choose a source."))
    source: dict[str, Any] = {"type": kind}
    value = form.get("source_value", "").strip()
    option = _SOURCE_OPTION.get(kind)
    if option:
        if not value:
            raise RuleFormError("source_value", _("This source needs a value."))
        source[option] = value
    rule: dict[str, Any] = {"source": source}
    if form.get("multi") == "1":
        rule["multi"] = True
    if for_saml:
        name = form.get("saml_name", "").strip()
        if not name:
            raise RuleFormError("saml_name", _("Give the SAML attribute name."))
        rule["saml_name"] = name
        friendly = form.get("saml_friendly_name", "").strip()
        if friendly:
            rule["saml_friendly_name"] = friendly
    else:
        target = form.get("target", "").strip()
        if not target:
            raise RuleFormError("target", _("Give the claim name."))
        rule["target"] = target
    return rule, scope, enabled


def describe_source(rule: dict[str, Any]) -> str:
    """A rule's source in one short line ("attribute: email")."""
    source = rule.get("source") if isinstance(rule, dict) else None
    if isinstance(source, str):
        return source
    if not isinstance(source, dict):
        return "?"
    rest = {k: v for k, v in source.items() if k != "type"}
    extra = ", ".join(f"{k}={v}" for k, v in rest.items())
    return f"{source.get('type', '?')}: {extra}" if extra else str(source.get("type", "?"))
