"""Admin console: upstream identity providers (``/admin/upstreams``, docs/brokering.md) — the
list, adding one, changing or removing it — through ``idp.manage.upstreams`` (the same checks,
permissions and audit rows as ``/api/v1/upstreams`` and ``idp upstreams``). The client secret
is write-only: the form never shows it, an empty field keeps it. A refused change shows why and
stores nothing."""

from __future__ import annotations

import json
from typing import Any

from flask import flash, redirect, render_template, request, url_for
from flask_babel import gettext as _

from ...errors import Conflict, ValidationError
from ...manage import upstreams as manage_upstreams
from .apps_common import mapped
from .blueprint import bp
from .guard import console

_FLAGS = ("enabled", "hide_on_login", "create_users", "link_by_email")


def _values(form: Any) -> dict[str, Any]:
    """The form's settings for ``idp.manage.upstreams``; ValidationError for JSON that does
    not parse (the manage layer checks the rest)."""
    values: dict[str, Any] = {
        "display_name": form.get("display_name", "")[:300],
        "sync_mode": form.get("sync_mode", "import"),
        "hrd_domains": form.get("hrd_domains", "").replace(",", " ").split(),
    }
    for flag in _FLAGS:
        values[flag] = form.get(flag) == "1"
    for name in ("config", "mapping"):
        text = form.get(name, "").strip() or ("{}" if name == "config" else "[]")
        try:
            values[name] = json.loads(text)
        except ValueError:
            raise ValidationError(_("%(field)s is not valid JSON.", field=name)) from None
    return values


def _form_of(view: dict[str, Any]) -> dict[str, Any]:
    return {
        **{k: view[k] for k in ("display_name", "sync_mode", *_FLAGS)},
        "hrd_domains": " ".join(view["hrd_domains"]),
        "config": json.dumps(view["config"], indent=2),
        "mapping": json.dumps(view["mapping"], indent=2),
    }


_NEW = {"alias": "", "kind": "oidc", "display_name": "", "sync_mode": "import",
        "enabled": True, "hide_on_login": False, "create_users": False, "link_by_email": True,
        "hrd_domains": "", "config": json.dumps({"issuer": "", "client_id": ""}, indent=2),
        "mapping": "[]"}


@bp.route("/upstreams", methods=["GET", "POST"])
@mapped
def upstreams():
    error = None
    form = dict(_NEW)
    if request.method == "POST":
        form = {**request.form.to_dict(), **{f: request.form.get(f) == "1" for f in _FLAGS}}
        try:
            with console() as ctx:
                made = manage_upstreams.create(
                    ctx, request.form.get("alias", "")[:64], request.form.get("kind", ""),
                    _values(request.form), request.form.get("client_secret") or None)
            if made["kind"] == "saml":
                flash(_("Upstream identity provider added. Register our SP metadata there: "
                        "%(uri)s", uri=made["sp_metadata_url"]), "success")
            else:
                flash(_("Upstream identity provider added. Register this redirect URI there: "
                        "%(uri)s", uri=made["redirect_uri"]), "success")
            return redirect(url_for("admin.upstream", alias=made["alias"]), 303)
        except (ValidationError, Conflict) as exc:
            error = str(exc)
    with console() as ctx:
        items = manage_upstreams.list_all(ctx)
        may_create = ctx.allowed("broker:upstreams:create")
    return render_template("admin/upstreams.html", active="admin.upstreams", items=items,
                           may_create=may_create, form=form, error=error), (400 if error else 200)


@bp.route("/upstreams/<alias>", methods=["GET", "POST"])
@mapped
def upstream(alias: str):
    error = None
    with console() as ctx:
        view = manage_upstreams.get(ctx, alias)
        may_update = ctx.allowed("broker:upstreams:update")
        may_delete = ctx.allowed("broker:upstreams:delete")
    form = _form_of(view)
    if request.method == "POST":
        form = {**request.form.to_dict(), **{f: request.form.get(f) == "1" for f in _FLAGS}}
        try:
            with console() as ctx:
                view = manage_upstreams.update(ctx, alias, _values(request.form),
                                               request.form.get("client_secret") or None)
            flash(_("Saved."), "success")
            return redirect(url_for("admin.upstream", alias=alias), 303)
        except (ValidationError, Conflict) as exc:
            error = str(exc)
    return render_template("admin/upstream.html", active="admin.upstreams", view=view,
                           form=form, error=error, may_update=may_update,
                           may_delete=may_delete), (400 if error else 200)


@bp.post("/upstreams/<alias>/delete")
@mapped
def upstream_delete(alias: str):
    with console() as ctx:
        manage_upstreams.delete(ctx, alias)
    flash(_("Upstream identity provider %(alias)s removed.", alias=alias), "success")
    return redirect(url_for("admin.upstreams"), 303)
