"""Admin console: outbound SCIM provisioning (``/admin/provisioning``): the targets, and per
target its settings, last successful push, queue depth and failed items with their errors,
with "Retry" (one item or all) and "Full sync" (``idp.provisioning.targets``: the same checks,
permissions and audit rows as the API). Targets are added and changed with the API."""

from __future__ import annotations

from flask import flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import ngettext

from ...errors import Conflict
from ...provisioning import targets
from .apps_common import mapped
from .blueprint import bp
from .guard import console

ACTIVE = "admin.provisioning"


@bp.route("/provisioning")
@mapped
def provisioning():
    with console() as ctx:
        rows = [targets.status(ctx, t.id) for t in targets.list_targets(ctx)]
    return render_template("admin/provisioning.html", active=ACTIVE, items=rows)


@bp.route("/provisioning/<int:target_id>")
@mapped
def provisioning_target(target_id: int):
    with console() as ctx:
        status = targets.status(ctx, target_id)
        may_update = ctx.allowed("provisioning:queue:update")
    return render_template(
        "admin/provisioning_target.html", active=ACTIVE, status=status, may_update=may_update
    )


@bp.route("/provisioning/<int:target_id>/retry", methods=["POST"])
@mapped
def provisioning_retry(target_id: int):
    raw = (request.form.get("item") or "").strip()
    item = int(raw) if raw.isascii() and raw.isdigit() else None
    with console() as ctx:
        count = targets.retry(ctx, target_id, item)
    flash(ngettext("%(num)s item queued again.", "%(num)s items queued again.", count), "success")
    return redirect(url_for("admin.provisioning_target", target_id=target_id))


@bp.route("/provisioning/<int:target_id>/full-sync", methods=["POST"])
@mapped
def provisioning_full_sync(target_id: int):
    try:
        with console() as ctx:
            count = targets.full_sync(ctx, target_id)
    except Conflict:
        flash(_("The target is disabled: nothing was queued."), "error")
    else:
        flash(ngettext("%(num)s object queued.", "%(num)s objects queued.", count), "success")
    return redirect(url_for("admin.provisioning_target", target_id=target_id))
