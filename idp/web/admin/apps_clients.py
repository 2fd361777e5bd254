"""Admin console: OIDC clients (``/admin/clients``): list and search, create, edit, enable /
disable, delete, secret rotation shown once, service-account roles and the client's claim rules.

The same operations as ``/api/v1/clients`` (``idp.manage.clients``, ``idp.manage.claim_rules``),
and the same checks: the metadata a form gives is read by the API's own models
(``idp.web.api.clients.ClientMetadataIn`` / ``ClientMetadataPatch``: the published URI forms,
then the one RFC 7591 validator), so a redirect URI the API refuses is refused here, beside
its field, with nothing written."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pydantic
from flask import flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from ...core.client_metadata import (
    AUTH_METHODS,
    DEVICE_CODE_GRANT,
    GRANT_TYPES,
    SIGNING_ALGS,
    SUBJECT_TYPES,
    TOKEN_EXCHANGE,
    MetadataError,
)
from ...errors import Conflict, NotFound, ValidationError
from ...manage import claim_rules, clients, roles
from ...storage.clients import DEFAULT_SCOPE
from ..api.clients import ClientMetadataIn, ClientMetadataPatch
from .apps_common import (
    SOURCE_TYPES,
    RuleFormError,
    describe_source,
    keep_secret,
    mapped,
    rule_from_form,
    take_secret,
)
from .blueprint import bp
from .guard import console
from .paging import paging

ACTIVE = "admin.clients"
GRACE_CHOICES = (
    (0, _l("None: the old secret stops working now")),
    (3600, _l("1 hour")),
    (86400, _l("1 day")),
    (7 * 86400, _l("7 days")),
)
AUTH_LABELS = {
    "client_secret_basic": _l("Client secret (HTTP Basic)"),
    "client_secret_post": _l("Client secret (in the form body)"),
    "client_secret_jwt": _l("Client secret JWT"),
    "private_key_jwt": _l("Private key JWT"),
    "none": _l("None (public client, PKCE)"),
}
GRANT_LABELS = {
    "authorization_code": _l("Authorization code"),
    "refresh_token": _l("Refresh token"),
    "client_credentials": _l("Client credentials"),
    DEVICE_CODE_GRANT: _l("Device authorization (TVs, command-line tools)"),
    TOKEN_EXCHANGE: _l("Token exchange (RFC 8693)"),
}
# Form fields that hold metadata of the same name.
URI_LISTS = ("redirect_uris", "post_logout_redirect_uris")
URI_ONE = ("logo_uri", "client_uri", "jwks_uri", "sector_identifier_uri")
SUBJECT_LABELS = {
    "public": _l("Public: the same subject identifier for every application"),
    "pairwise": _l("Pairwise: a subject identifier of its own for this application's sector"),
}
LIFETIMES = ("access_token_lifetime", "id_token_lifetime")
# The token exchange policy (``token_exchange``), one form field per member.
TE_LISTS = ("te_accept_from", "te_audiences")
TE_FLAGS = ("te_delegation", "te_impersonation", "te_refresh_tokens")
TE_LIFETIME = "te_max_lifetime"


# --- list --------------------------------------------------------------------------------------


@bp.route("/clients", endpoint="clients")
@mapped
def clients_list():
    q = request.args.get("q", "").strip()[:200]
    state = request.args.get("state", "")
    enabled = {"enabled": True, "disabled": False}.get(state)
    page, per_page = paging()
    with console() as ctx:
        rows, total = clients.search(
            ctx, clients.ClientQuery(q or None, enabled, page=page, per_page=per_page)
        )
        may_create = ctx.allowed("clients:clients:create")
        items = [_summary(r) for r in rows]
    return render_template(
        "admin/clients.html",
        active=ACTIVE,
        items=items,
        total=total,
        page=page,
        per_page=per_page,
        args={"q": q, "state": state},
        may_create=may_create,
        auth_labels=AUTH_LABELS,
    )


def _summary(row) -> dict[str, Any]:
    meta = row.meta or {}
    return {
        "client_id": row.client_id,
        "name": row.name,
        "enabled": row.enabled,
        "auth_method": meta.get("token_endpoint_auth_method", "client_secret_basic"),
        "grant_types": meta.get("grant_types") or ["authorization_code"],
        "redirect_count": len(meta.get("redirect_uris") or []),
    }


# --- the form ----------------------------------------------------------------------------------


def _form_from_client(row) -> dict[str, Any]:
    meta = row.meta or {}
    return {
        "client_id": row.client_id,
        "name": row.name or "",
        "auth_method": meta.get("token_endpoint_auth_method", "client_secret_basic"),
        "redirect_uris": "\n".join(meta.get("redirect_uris") or []),
        "post_logout_redirect_uris": "\n".join(meta.get("post_logout_redirect_uris") or []),
        "grant_types": list(meta.get("grant_types") or ["authorization_code"]),
        "scope": meta.get("scope", DEFAULT_SCOPE),
        "require_pkce": bool(meta.get("require_pkce", False)),
        "access_token_lifetime": str(meta.get("access_token_lifetime", "")),
        "id_token_lifetime": str(meta.get("id_token_lifetime", "")),
        "logo_uri": meta.get("logo_uri", ""),
        "client_uri": meta.get("client_uri", ""),
        "jwks_uri": meta.get("jwks_uri", ""),
        "sector_identifier_uri": meta.get("sector_identifier_uri", ""),
        "subject_type": meta.get("subject_type", "public"),
        "authorization_alg": meta.get("authorization_signed_response_alg", ""),
        "first_party": row.first_party,
        **_policy_fields(meta.get("token_exchange") or {}),
    }


def _policy_fields(policy: dict[str, Any]) -> dict[str, Any]:
    values: dict[str, Any] = {k: "\n".join(policy.get(k[3:]) or []) for k in TE_LISTS}
    values.update({k: bool(policy.get(k[3:])) for k in TE_FLAGS})
    values[TE_LIFETIME] = str(policy.get("max_lifetime", ""))
    return values


def _form_from_request() -> dict[str, Any]:
    f = request.form
    values: dict[str, Any] = {
        key: f.get(key, "").strip()
        for key in (
            "client_id",
            "name",
            "auth_method",
            "scope",
            *URI_ONE,
            *LIFETIMES,
        )
    }
    for key in (*URI_LISTS, *TE_LISTS):
        values[key] = f.get(key, "").replace("\r\n", "\n").strip()
    for key in TE_FLAGS:
        values[key] = f.get(key) == "1"
    values[TE_LIFETIME] = f.get(TE_LIFETIME, "").strip()
    values["grant_types"] = [g for g in f.getlist("grant_types") if g in GRANT_TYPES]
    values["require_pkce"] = f.get("require_pkce") == "1"
    values["first_party"] = f.get("first_party") == "1"
    values["subject_type"] = f.get("subject_type", "public")
    values["authorization_alg"] = f.get("authorization_alg", "")
    return values


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.split("\n") if line.strip()]


def _metadata(values: dict[str, Any], errors: dict[str, str], patch: bool) -> dict[str, Any]:
    """The metadata the form gives. For a patch an emptied field is None (removes it)."""
    meta: dict[str, Any] = {}
    for key in URI_LISTS:
        lines = _lines(values[key])
        if lines or patch:
            meta[key] = lines or None
    for key in URI_ONE:
        if values[key] or patch:
            meta[key] = values[key] or None
    for key in LIFETIMES:
        raw = values[key]
        if not raw:
            if patch:
                meta[key] = None
            continue
        try:
            meta[key] = int(raw)
        except ValueError:
            errors[key] = _("Give a whole number of seconds (30 to 86400).")
    meta["grant_types"] = values["grant_types"] or []
    meta["scope"] = values["scope"] or DEFAULT_SCOPE
    meta["require_pkce"] = values["require_pkce"]
    policy = _policy_from(values, errors)
    if policy or patch:
        meta["token_exchange"] = policy or None
    # Defaults (public, RS256) are stored as the absence of the member.
    if values["subject_type"] != "public" or patch:
        meta["subject_type"] = None if values["subject_type"] == "public" else values[
            "subject_type"]
    if values["authorization_alg"] or patch:
        meta["authorization_signed_response_alg"] = values["authorization_alg"] or None
    return meta


def _policy_from(values: dict[str, Any], errors: dict[str, str]) -> dict[str, Any]:
    """The token exchange policy the form gives; empty when no field is filled in."""
    policy: dict[str, Any] = {}
    for key in TE_LISTS:
        lines = _lines(values[key])
        if lines:
            policy[key[3:]] = lines
    for key in TE_FLAGS:
        if values[key]:
            policy[key[3:]] = True
    raw = values[TE_LIFETIME]
    if raw:
        try:
            policy["max_lifetime"] = int(raw)
        except ValueError:
            errors[TE_LIFETIME] = _("Give a whole number of seconds (30 to 86400).")
    return policy


def _pydantic_errors(exc: pydantic.ValidationError, errors: dict[str, str]) -> None:
    """The API model's refusals, each beside its field ("line 2: ..." inside a list)."""
    for problem in exc.errors():
        loc = problem.get("loc") or ()
        message = str(problem.get("msg", "")).removeprefix("Value error, ")
        field = str(loc[0]) if loc else ""
        if field == "token_exchange" and len(loc) > 1:
            field, loc = f"te_{loc[1]}", loc[1:]
        if not field:
            # A rule between members: the message starts with the member's name.
            field, _sep, rest = message.partition(": ")
            message = rest or message
        if len(loc) > 1 and isinstance(loc[1], int):
            message = _("line %(n)s: %(message)s", n=loc[1] + 1, message=message)
        target = _field_for(field)
        if target == "form" and field:
            message = f"{field}: {message}"
        errors.setdefault(target, message)


# Fields the form shows an error beside; a refusal about any other member goes in the alert.
INLINE = frozenset(
    {
        "client_id",
        "name",
        "auth_method",
        "grant_types",
        "scope",
        "subject_type",
        "authorization_alg",
        *URI_LISTS,
        *URI_ONE,
        *LIFETIMES,
        *TE_LISTS,
        TE_LIFETIME,
    }
)
FIELD_OF = {
    "token_endpoint_auth_method": "auth_method",
    "authorization_signed_response_alg": "authorization_alg",
}


def _field_for(member: str) -> str:
    field = FIELD_OF.get(member, member)
    return field if field in INLINE else "form"


def _render_form(values, errors, *, row=None, status=200):
    return (
        render_template(
            "admin/clients_form.html",
            active=ACTIVE,
            values=values,
            errors=errors,
            client=row,
            auth_methods=AUTH_METHODS,
            auth_labels=AUTH_LABELS,
            grant_types=GRANT_TYPES,
            grant_labels=GRANT_LABELS,
            subject_labels=SUBJECT_LABELS,
            subject_types=SUBJECT_TYPES,
            signing_algs=SIGNING_ALGS,
        ),
        status,
    )


@bp.route("/clients/new", methods=["GET", "POST"])
@mapped
def client_new():
    with console() as ctx:
        ctx.require("clients:clients:create")
    if request.method == "GET":
        values = {
            "client_id": "",
            "name": "",
            "auth_method": "client_secret_basic",
            "redirect_uris": "",
            "post_logout_redirect_uris": "",
            "grant_types": ["authorization_code", "refresh_token"],
            "scope": DEFAULT_SCOPE,
            "require_pkce": True,
            "access_token_lifetime": "",
            "id_token_lifetime": "",
            "logo_uri": "",
            "client_uri": "",
            "jwks_uri": "",
            "sector_identifier_uri": "",
            "subject_type": "public",
            "authorization_alg": "",
            "first_party": False,
            **_policy_fields({}),
        }
        return _render_form(values, {})
    values = _form_from_request()
    errors: dict[str, str] = {}
    if values["auth_method"] not in AUTH_METHODS:
        errors["auth_method"] = _("Choose how the client authenticates.")
    if values["client_id"] and not all(
        c.isascii() and (c.isalnum() or c in "._~-") for c in values["client_id"]
    ):
        errors["client_id"] = _("Use letters, digits and . _ ~ - only.")
    meta = _metadata(values, errors, patch=False)
    if not values["grant_types"]:
        errors["grant_types"] = _("Choose at least one grant type.")
    if errors:
        return _render_form(values, errors, status=400)
    meta["token_endpoint_auth_method"] = values["auth_method"]
    try:
        checked = ClientMetadataIn.model_validate(meta).model_dump(exclude_none=True)
    except pydantic.ValidationError as exc:
        _pydantic_errors(exc, errors)
        return _render_form(values, errors, status=400)
    options: dict[str, Any] = {
        "redirect_uris": checked.pop("redirect_uris", []),
        "grant_types": checked.pop("grant_types", []),
        "auth_method": checked.pop("token_endpoint_auth_method"),
        "scope": checked.pop("scope", DEFAULT_SCOPE),
        "post_logout_redirect_uris": checked.pop("post_logout_redirect_uris", []),
        "jwks_uri": checked.pop("jwks_uri", None),
    }
    try:
        with console() as ctx:
            row, secret = clients.create(
                ctx,
                values["client_id"] or None,
                name=values["name"] or None,
                first_party=values["first_party"],
                extra=checked,
                **options,
            )
            client_id = row.client_id
    except MetadataError as exc:
        errors[_field_for(exc.field or "")] = exc.description
        return _render_form(values, errors, status=400)
    except Conflict as exc:
        errors["client_id"] = str(exc)
        return _render_form(values, errors, status=409)
    flash(_("Client %(id)s was created.", id=client_id), "success")
    if secret:
        ticket = keep_secret(client_id, secret)
        return redirect(url_for("admin.client_secret", client_id=client_id, ticket=ticket))
    return redirect(url_for("admin.client", client_id=client_id))


@bp.route("/clients/<client_id>/edit", methods=["GET", "POST"])
@mapped
def client_edit(client_id: str):
    with console() as ctx:
        ctx.require("clients:clients:update")
        row = clients.get(ctx, client_id)
        stored = _form_from_client(row)
    if request.method == "GET":
        return _render_form(stored, {}, row=stored)
    values = _form_from_request()
    values["client_id"] = client_id
    values["auth_method"] = stored["auth_method"]
    errors: dict[str, str] = {}
    meta = _metadata(values, errors, patch=True)
    if not values["grant_types"]:
        errors["grant_types"] = _("Choose at least one grant type.")
    if errors:
        return _render_form(values, errors, row=stored, status=400)
    try:
        checked = ClientMetadataPatch.model_validate(meta).model_dump(exclude_unset=True)
    except pydantic.ValidationError as exc:
        _pydantic_errors(exc, errors)
        return _render_form(values, errors, row=stored, status=400)
    try:
        with console() as ctx:
            clients.patch(
                ctx,
                client_id,
                metadata=checked,
                name=values["name"] or None,
                first_party=values["first_party"],
            )
    except MetadataError as exc:
        errors[_field_for(exc.field or "")] = exc.description
        return _render_form(values, errors, row=stored, status=409)
    flash(_("Client %(id)s was saved.", id=client_id), "success")
    return redirect(url_for("admin.client", client_id=client_id))


# --- one client --------------------------------------------------------------------------------


def _detail(client_id: str, *, rule_errors=None, rule_values=None, status=200):
    with console() as ctx:
        row = clients.get(ctx, client_id)
        values = _form_from_client(row)
        meta = dict(row.meta or {})
        held = clients.service_roles(ctx, client_id)
        may = {
            "edit": ctx.allowed("clients:clients:update"),
            "remove": ctx.allowed("clients:clients:delete"),
            "rules_read": ctx.allowed("claims:rules:read"),
            "rules_create": ctx.allowed("claims:rules:create"),
            "rules_delete": ctx.allowed("claims:rules:delete"),
        }
        rules = (
            [
                {
                    "id": r.id,
                    "target": (r.rule or {}).get("target"),
                    "saml_name": (r.rule or {}).get("saml_name"),
                    "source": describe_source(r.rule or {}),
                    "scope": r.scope,
                    "enabled": r.enabled,
                }
                for r in claim_rules.list_all(ctx, client_id=client_id)
            ]
            if may["rules_read"]
            else []
        )
        available: list[str] = []
        if may["edit"] and ctx.allowed("roles:roles:read"):
            found, _total = roles.search(ctx, roles.RoleQuery(kind="global", per_page=100))
            available = [r.name for r in found]
        info = {"enabled": row.enabled, "created_at": row.created_at}
    method = values["auth_method"]
    return (
        render_template(
            "admin/clients_detail.html",
            active=ACTIVE,
            c=values,
            info=info,
            meta=meta,
            held=held,
            available_roles=sorted(set(available) | set(held)),
            rules=rules,
            may=may,
            has_secret=method in clients.SECRET_METHODS,
            grace_choices=GRACE_CHOICES if method != "client_secret_jwt" else GRACE_CHOICES[:1],
            auth_labels=AUTH_LABELS,
            grant_labels=GRANT_LABELS,
            source_types=SOURCE_TYPES,
            subject_labels=SUBJECT_LABELS,
            rule_errors=rule_errors or {},
            rule_values=rule_values or {"enabled": "1"},
        ),
        status,
    )


@bp.route("/clients/<client_id>")
@mapped
def client(client_id: str):
    return _detail(client_id)


@bp.route("/clients/<client_id>/enabled", methods=["POST"])
@mapped
def client_enabled(client_id: str):
    enabled = request.form.get("enabled") == "1"
    with console() as ctx:
        clients.set_enabled(ctx, client_id, enabled)
    flash(
        _("Client %(id)s is enabled.", id=client_id)
        if enabled
        else _("Client %(id)s is disabled: it can no longer sign anyone in.", id=client_id),
        "success",
    )
    return redirect(url_for("admin.client", client_id=client_id))


@bp.route("/clients/<client_id>/delete", methods=["GET", "POST"])
@mapped
def client_delete(client_id: str):
    if request.method == "GET":
        with console() as ctx:
            ctx.require("clients:clients:delete")
            row = clients.get(ctx, client_id)
            name = row.name
        return render_template(
            "admin/clients_delete.html", active=ACTIVE, client_id=client_id, name=name
        )
    if request.form.get("confirm") != client_id:
        with console() as ctx:
            ctx.require("clients:clients:delete")
            name = clients.get(ctx, client_id).name
        return (
            render_template(
                "admin/clients_delete.html",
                active=ACTIVE,
                client_id=client_id,
                name=name,
                error=_("Type the client ID exactly to confirm."),
            ),
            400,
        )
    with console() as ctx:
        clients.delete(ctx, client_id)
    flash(_("Client %(id)s was deleted.", id=client_id), "success")
    return redirect(url_for("admin.clients"))


@bp.route("/clients/<client_id>/secret", methods=["POST"])
@mapped
def client_rotate(client_id: str):
    try:
        grace = int(request.form.get("grace_seconds", "0"))
    except ValueError:
        grace = -1
    try:
        with console() as ctx:
            secret = clients.rotate_secret(ctx, client_id, grace_seconds=grace)
            now = ctx.svc.clock.utcnow()
    except (ValidationError, Conflict) as exc:
        flash(str(exc), "error")
        return redirect(url_for("admin.client", client_id=client_id))
    until = (now + timedelta(seconds=grace)).isoformat(timespec="minutes") if grace else None
    ticket = keep_secret(client_id, secret, until)
    return redirect(url_for("admin.client_secret", client_id=client_id, ticket=ticket))


@bp.route("/clients/<client_id>/secret/<ticket>")
@mapped
def client_secret(client_id: str, ticket: str):
    with console() as ctx:
        ctx.require("clients:clients:read")
    shown = take_secret(client_id, ticket)
    response = render_template(
        "admin/clients_secret.html",
        active=ACTIVE,
        client_id=client_id,
        secret=shown[0] if shown else None,
        previous_until=shown[1] if shown else None,
    )
    headers = {"Cache-Control": "no-store", "Pragma": "no-cache"}
    return response, (200 if shown else 410), headers


@bp.route("/clients/<client_id>/roles", methods=["POST"])
@mapped
def client_roles(client_id: str):
    wanted = [r for r in request.form.getlist("roles") if r]
    try:
        with console() as ctx:
            clients.get(ctx, client_id)
            try:
                clients.patch(ctx, client_id, roles=wanted)
            except NotFound as exc:
                # A role that does not exist (any more): a refusal of the form, not a 404 page.
                raise ValidationError(str(exc)) from None
    except ValidationError as exc:
        flash(str(exc), "error")
        return redirect(url_for("admin.client", client_id=client_id))
    flash(_("The service account's roles were saved."), "success")
    return redirect(url_for("admin.client", client_id=client_id) + "#service-roles")


@bp.route("/clients/<client_id>/rules", methods=["POST"])
@mapped
def client_rule_add(client_id: str):
    values = request.form.to_dict()
    try:
        rule, scope, enabled = rule_from_form(for_saml=False)
        with console() as ctx:
            clients.get(ctx, client_id)
            claim_rules.add(ctx, rule, client_id=client_id, scope=scope, enabled=enabled)
    except RuleFormError as exc:
        return _detail(
            client_id, rule_errors={exc.field: exc.message}, rule_values=values, status=400
        )
    except ValidationError as exc:
        field = "rule_json" if values.get("rule_json", "").strip() else "form"
        return _detail(client_id, rule_errors={field: str(exc)}, rule_values=values, status=400)
    flash(_("The claim rule was added."), "success")
    return redirect(url_for("admin.client", client_id=client_id) + "#claim-rules")


@bp.route("/clients/<client_id>/rules/<int:rule_id>/delete", methods=["POST"])
@mapped
def client_rule_delete(client_id: str, rule_id: int):
    with console() as ctx:
        claim_rules.delete(ctx, rule_id, client_id=client_id)
    flash(_("The claim rule was removed."), "success")
    return redirect(url_for("admin.client", client_id=client_id) + "#claim-rules")
