"""Admin console: SAML service providers (``/admin/saml``) and federation aggregates
(``/admin/saml/federations``).

SPs: list and search, add from an uploaded metadata file or a URL, settings (signing,
encryption, NameID format...), certificates with their expiry, attribute release (the
``attributes`` setting and the SP's own claim rules), enable / disable, delete; through
``idp.manage.service_providers`` and ``idp.manage.claim_rules``, as ``/api/v1/saml/providers``.
A URL is fetched only through the outbound fetcher (``idp.oidc.fetch``: https, no loopback,
private or link-local address unless ``[outbound]`` allows it, bounded time and size), after the
administrator's permission to add SPs was checked.

Federations: shown read-only (they are added with ``idp saml federation add`` or
``[saml] federation_sources``), with "refresh now" (``idp.manage.federations``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from flask import abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from ...errors import Conflict, ValidationError
from ...manage import claim_rules, federations, metadata_fetch
from ...manage import service_providers as sps
from ...saml.registry import ENCRYPTION_ALGORITHMS, NAME_ID_FORMATS, SP_SETTINGS
from ..api.saml_providers import entity_id_of, provider_id
from ..current import svc
from .apps_common import (
    SOURCE_TYPES,
    RuleFormError,
    describe_source,
    mapped,
    rule_from_form,
)
from .blueprint import bp
from .guard import console
from .paging import paging

ACTIVE = "admin.saml_providers"
# A certificate that ends within this many days is flagged.
EXPIRY_WARNING_DAYS = 30
BOOL_SETTINGS = (
    ("sign_response", _l("Sign the whole response")),
    ("sign_assertion", _l("Sign the assertion")),
    ("encrypt_assertion", _l("Encrypt the assertion")),
    ("want_authn_requests_signed", _l("Require signed authentication requests")),
    ("want_logout_signed", _l("Require signed logout messages")),
    ("allow_sha1", _l("Accept SHA-1 signatures (legacy)")),
    ("allow_http", _l("Accept http:// endpoints (lab only)")),
)
OTHER_SETTINGS = {
    "name_id_format": _l("NameID format"),
    "encryption_algorithm": _l("Encryption algorithm"),
    "display_name": _l("Display name"),
    "default_relay_state": _l("Default RelayState"),
}
NAME_ID_LABELS = {
    "persistent": _l("Persistent (pairwise, stable)"),
    "transient": _l("Transient (new for each sign-in)"),
    "email": _l("E-mail address"),
    "unspecified": _l("Unspecified (username)"),
}


def _expiry(not_after: datetime | None, now: datetime) -> str:
    if not_after is None:
        return "unknown"
    if not_after <= now:
        return "expired"
    if not_after - now <= timedelta(days=EXPIRY_WARNING_DAYS):
        return "soon"
    return "ok"


def _now() -> datetime:
    now = svc().clock.utcnow()
    return now if now.tzinfo else now.replace(tzinfo=UTC)


def _summary(row, now: datetime) -> dict[str, Any]:
    facts = sps.facts(row)
    expiries = [c.not_after for c in facts.certificates if c.not_after is not None]
    first = min(expiries) if expiries else None
    return {
        "id": provider_id(row.entity_id),
        "entity_id": row.entity_id,
        "name": (row.settings or {}).get("display_name") or row.name,
        "origin": row.origin,
        "enabled": row.enabled,
        "cert_expires": first,
        "cert_state": _expiry(first, now) if facts.certificates else "none",
    }


# --- list --------------------------------------------------------------------------------------


@bp.route("/saml", endpoint="saml_providers")
@mapped
def saml_list():
    q = request.args.get("q", "").strip()[:200]
    state = request.args.get("state", "")
    enabled = {"enabled": True, "disabled": False}.get(state)
    origin = request.args.get("origin", "").strip()[:300]
    page, per_page = paging()
    now = _now()
    with console() as ctx:
        rows, total = sps.search(
            ctx, sps.SpQuery(q or None, enabled, origin or None, page=page, per_page=per_page)
        )
        items = [_summary(r, now) for r in rows]
        may_create = ctx.allowed("saml:providers:create")
    return render_template(
        "admin/saml.html",
        active=ACTIVE,
        items=items,
        total=total,
        page=page,
        per_page=per_page,
        args={"q": q, "state": state, "origin": origin},
        may_create=may_create,
    )


# --- add ---------------------------------------------------------------------------------------


def _render_new(values, errors, status=200):
    return (
        render_template(
            "admin/saml_new.html",
            active=ACTIVE,
            values=values,
            errors=errors,
            name_id_labels=NAME_ID_LABELS,
            limit=svc().settings.saml.max_metadata_bytes,
        ),
        status,
    )


@bp.route("/saml/new", methods=["GET", "POST"])
@mapped
def saml_new():
    with console() as ctx:
        ctx.require("saml:providers:create")
    if request.method == "GET":
        return _render_new({"url": "", "name_id_format": ""}, {})
    values = {
        "url": request.form.get("url", "").strip(),
        "name_id_format": request.form.get("name_id_format", ""),
    }
    errors: dict[str, str] = {}
    upload = request.files.get("metadata_file")
    has_file = upload is not None and bool(upload.filename)
    limit = svc().settings.saml.max_metadata_bytes
    settings: dict[str, Any] = {}
    if values["name_id_format"]:
        if values["name_id_format"] not in NAME_ID_FORMATS:
            errors["name_id_format"] = _("Choose a NameID format from the list.")
        settings["name_id_format"] = values["name_id_format"]
    if has_file == bool(values["url"]):
        errors["metadata_file"] = _("Upload a metadata file or give its URL (one of the two).")
    if errors:
        return _render_new(values, errors, 400)
    field = "metadata_file" if has_file else "url"
    if has_file:
        data = upload.stream.read(limit + 1)
        if len(data) > limit:
            errors[field] = _("The metadata is larger than %(limit)s bytes.", limit=limit)
            return _render_new(values, errors, 400)
    try:
        with console() as ctx:
            if has_file:
                row = sps.add(ctx, data, origin="manual", settings=settings)
            else:
                row = metadata_fetch.add_sp_from_url(ctx, values["url"], settings=settings)
            entity_id = row.entity_id
    except metadata_fetch.FetchFailed as exc:
        errors["url"] = _("The URL was not fetched: %(reason)s", reason=exc.reason)
        return _render_new(values, errors, 400)
    except Conflict as exc:
        errors[field] = str(exc)
        return _render_new(values, errors, 409)
    except ValidationError as exc:
        errors[field] = _("This is not usable SAML 2.0 SP metadata: %(reason)s", reason=str(exc))
        return _render_new(values, errors, 400)
    flash(_("Service provider %(id)s was added.", id=entity_id), "success")
    return redirect(url_for("admin.saml_provider", pid=provider_id(entity_id)))


# --- one SP ------------------------------------------------------------------------------------


def _detail(pid: str, *, rule_errors=None, rule_values=None, status=200):
    entity_id = entity_id_of(pid)
    now = _now()
    with console() as ctx:
        row = sps.get(ctx, entity_id)
        facts = sps.facts(row)
        may = {
            "edit": ctx.allowed("saml:providers:update"),
            "remove": ctx.allowed("saml:providers:delete"),
            "rules_read": ctx.allowed("claims:rules:read"),
            "rules_create": ctx.allowed("claims:rules:create"),
            "rules_delete": ctx.allowed("claims:rules:delete"),
        }
        rules = []
        realm_names: list[str] = []
        if may["rules_read"]:
            rules = [
                {
                    "id": r.id,
                    "saml_name": (r.rule or {}).get("saml_name"),
                    "friendly": (r.rule or {}).get("saml_friendly_name"),
                    "source": describe_source(r.rule or {}),
                    "enabled": r.enabled,
                }
                for r in claim_rules.list_all(ctx, sp_entity_id=entity_id)
            ]
            realm_names = sorted(
                {
                    (r.rule or {}).get("saml_friendly_name") or (r.rule or {}).get("saml_name")
                    for r in claim_rules.list_all(ctx)
                    if r.enabled and (r.rule or {}).get("saml_name")
                }
            )
        sp = {
            "id": pid,
            "entity_id": row.entity_id,
            "name": row.name,
            "origin": row.origin,
            "enabled": row.enabled,
            "settings": dict(row.settings or {}),
        }
    certificates = [
        {
            "use": c.use,
            "subject": c.subject,
            "not_after": c.not_after,
            "state": _expiry(c.not_after, now),
        }
        for c in facts.certificates
    ]
    return (
        render_template(
            "admin/saml_detail.html",
            active=ACTIVE,
            sp=sp,
            facts=facts,
            certificates=certificates,
            rules=rules,
            realm_names=realm_names,
            may=may,
            bool_settings=BOOL_SETTINGS,
            setting_labels={**dict(BOOL_SETTINGS), **OTHER_SETTINGS},
            name_id_labels=NAME_ID_LABELS,
            source_types=SOURCE_TYPES,
            rule_errors=rule_errors or {},
            rule_values=rule_values or {"enabled": "1"},
        ),
        status,
    )


@bp.route("/saml/sp/<pid>")
@mapped
def saml_provider(pid: str):
    return _detail(pid)


@bp.route("/saml/sp/<pid>/settings", methods=["GET", "POST"])
@mapped
def saml_settings(pid: str):
    entity_id = entity_id_of(pid)
    with console() as ctx:
        ctx.require("saml:providers:update")
        row = sps.get(ctx, entity_id)
        stored = dict(row.settings or {})
        name = row.name
    if request.method == "GET":
        return _render_settings(pid, entity_id, name, _settings_form(stored), {})
    form = request.form
    values: dict[str, Any] = {}
    removed: list[str] = []
    errors: dict[str, str] = {}
    for key, _label in BOOL_SETTINGS:
        choice = form.get(key, "")
        if choice in ("yes", "no"):
            values[key] = choice == "yes"
        elif choice == "":
            removed.append(key)
        else:
            errors[key] = _("Choose one of the options.")
    for key, allowed in (
        ("name_id_format", tuple(NAME_ID_FORMATS)),
        ("encryption_algorithm", tuple(ENCRYPTION_ALGORITHMS)),
    ):
        choice = form.get(key, "")
        if choice == "":
            removed.append(key)
        elif choice in allowed:
            values[key] = choice
        else:
            errors[key] = _("Choose one of the options.")
    for key, limit in (("display_name", 200), ("default_relay_state", 80)):
        text = form.get(key, "").strip()
        if not text:
            removed.append(key)
        elif len(text.encode()) > limit:
            errors[key] = _("At most %(n)s characters.", n=limit)
        else:
            values[key] = text
    if form.get("release") == "some":
        names = [n.strip() for n in form.get("attributes", "").splitlines() if n.strip()]
        if not names:
            errors["attributes"] = _("Name at least one attribute, or release all.")
        elif len(names) > 200 or any(len(n) > 300 for n in names):
            errors["attributes"] = _("At most 200 names of up to 300 characters.")
        values["attributes"] = list(dict.fromkeys(names))
    else:
        removed.append("attributes")
    shown = _settings_form(stored) | {
        k: v for k, v in form.items() if k in SP_SETTINGS or k == "release"
    }
    if errors:
        return _render_settings(pid, entity_id, name, shown, errors, 400)
    try:
        with console() as ctx:
            sps.update_settings(ctx, entity_id, values, [k for k in removed if k in stored])
    except ValidationError as exc:
        errors["form"] = str(exc)
        return _render_settings(pid, entity_id, name, shown, errors, 409)
    flash(_("The settings of %(id)s were saved.", id=entity_id), "success")
    return redirect(url_for("admin.saml_provider", pid=pid))


def _settings_form(stored: dict[str, Any]) -> dict[str, Any]:
    form: dict[str, Any] = {}
    for key, _label in BOOL_SETTINGS:
        form[key] = "" if key not in stored else ("yes" if stored[key] else "no")
    for key in ("name_id_format", "encryption_algorithm", "display_name", "default_relay_state"):
        form[key] = stored.get(key, "")
    form["release"] = "some" if "attributes" in stored else "all"
    form["attributes"] = "\n".join(stored.get("attributes") or [])
    return form


def _render_settings(pid, entity_id, name, values, errors, status=200):
    cfg = svc().settings.saml
    defaults = {
        "sign_response": cfg.sign_response,
        "sign_assertion": cfg.sign_assertion,
        "encrypt_assertion": cfg.encrypt_assertions,
        "want_authn_requests_signed": cfg.want_authn_requests_signed,
        "want_logout_signed": cfg.want_logout_signed,
        "allow_sha1": False,
        "allow_http": False,
        "name_id_format": cfg.default_name_id_format,
        "encryption_algorithm": cfg.encryption_algorithm,
    }
    return (
        render_template(
            "admin/saml_settings.html",
            active=ACTIVE,
            pid=pid,
            entity_id=entity_id,
            name=name,
            values=values,
            errors=errors,
            defaults=defaults,
            bool_settings=BOOL_SETTINGS,
            name_id_labels=NAME_ID_LABELS,
            encryption_algorithms=ENCRYPTION_ALGORITHMS,
        ),
        status,
    )


@bp.route("/saml/sp/<pid>/refetch", methods=["POST"])
@mapped
def saml_refetch(pid: str):
    """Fetch the metadata again from the URL the SP was added from (a new certificate, new
    endpoints); its settings and rules stay. Through the outbound fetcher, as when adding."""
    entity_id = entity_id_of(pid)
    try:
        with console() as ctx:
            metadata_fetch.refetch_sp(ctx, entity_id)
    except metadata_fetch.NotFromUrl:
        abort(404)
    except metadata_fetch.FetchFailed as exc:
        flash(_("The URL was not fetched: %(reason)s", reason=exc.reason), "error")
    except ValidationError as exc:
        flash(_("This is not usable SAML 2.0 SP metadata: %(reason)s", reason=str(exc)), "error")
    else:
        flash(_("The metadata of %(id)s was fetched again.", id=entity_id), "success")
    return redirect(url_for("admin.saml_provider", pid=pid))


@bp.route("/saml/sp/<pid>/enabled", methods=["POST"])
@mapped
def saml_enabled(pid: str):
    entity_id = entity_id_of(pid)
    enabled = request.form.get("enabled") == "1"
    with console() as ctx:
        sps.set_enabled(ctx, entity_id, enabled)
    flash(
        _("%(id)s is enabled.", id=entity_id)
        if enabled
        else _("%(id)s is disabled: it can no longer sign anyone in.", id=entity_id),
        "success",
    )
    return redirect(url_for("admin.saml_provider", pid=pid))


@bp.route("/saml/sp/<pid>/delete", methods=["GET", "POST"])
@mapped
def saml_delete(pid: str):
    entity_id = entity_id_of(pid)
    with console() as ctx:
        ctx.require("saml:providers:delete")
        name = sps.get(ctx, entity_id).name
    if request.method == "GET" or request.form.get("confirm") != "yes":
        error = _("Tick the box to confirm.") if request.method == "POST" else None
        return (
            render_template(
                "admin/saml_delete.html",
                active=ACTIVE,
                pid=pid,
                entity_id=entity_id,
                name=name,
                error=error,
            ),
            400 if error else 200,
        )
    with console() as ctx:
        sps.remove(ctx, entity_id)
    flash(_("Service provider %(id)s was removed.", id=entity_id), "success")
    return redirect(url_for("admin.saml_providers"))


@bp.route("/saml/sp/<pid>/rules", methods=["POST"])
@mapped
def saml_rule_add(pid: str):
    entity_id = entity_id_of(pid)
    values = request.form.to_dict()
    try:
        rule, _scope, enabled = rule_from_form(for_saml=True)
        with console() as ctx:
            sps.get(ctx, entity_id)
            claim_rules.add(ctx, rule, sp_entity_id=entity_id, enabled=enabled)
    except RuleFormError as exc:
        return _detail(pid, rule_errors={exc.field: exc.message}, rule_values=values, status=400)
    except ValidationError as exc:
        field = "rule_json" if values.get("rule_json", "").strip() else "form"
        return _detail(pid, rule_errors={field: str(exc)}, rule_values=values, status=400)
    flash(_("The attribute rule was added."), "success")
    return redirect(url_for("admin.saml_provider", pid=pid) + "#attribute-release")


@bp.route("/saml/sp/<pid>/rules/<int:rule_id>/delete", methods=["POST"])
@mapped
def saml_rule_delete(pid: str, rule_id: int):
    entity_id = entity_id_of(pid)
    with console() as ctx:
        claim_rules.delete(ctx, rule_id, sp_entity_id=entity_id)
    flash(_("The attribute rule was removed."), "success")
    return redirect(url_for("admin.saml_provider", pid=pid) + "#attribute-release")


# --- federations -------------------------------------------------------------------------------


@bp.route("/saml/federations")
@mapped
def federations_list():
    with console() as ctx:
        rows = [
            {
                "name": f.name,
                "url": f.url,
                "last_refresh": f.last_refresh,
                "valid_until": f.valid_until,
                "next_refresh": f.next_refresh,
                "entity_count": f.entity_count,
                "last_error": f.last_error,
            }
            for f in federations.list_all(ctx)
        ]
        may_refresh = ctx.allowed("saml:providers:update")
    return render_template(
        "admin/federations.html", active=ACTIVE, items=rows, may_refresh=may_refresh
    )


@bp.route("/saml/federations/<name>/refresh", methods=["POST"])
@mapped
def federation_refresh(name: str):
    with console() as ctx:
        outcome = federations.refresh(ctx, name)
    if outcome.ok:
        result = outcome.result or {}
        flash(
            _(
                "%(name)s was refreshed: %(entities)s service providers "
                "(%(added)s added, %(updated)s updated, %(removed)s removed).",
                name=name,
                entities=result.get("entities", 0),
                added=result.get("added", 0),
                updated=result.get("updated", 0),
                removed=result.get("removed", 0),
            ),
            "success",
        )
    else:
        flash(_("%(name)s was not refreshed: %(reason)s", name=name, reason=outcome.error), "error")
    return redirect(url_for("admin.federations_list"))
