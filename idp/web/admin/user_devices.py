"""The known devices on the console's user screen: the rows the screen shows (``device_rows``)
and "forget this device" (optionally with the sessions that began on it), over
idp.manage.devices with the signed-in administrator's permissions."""

from __future__ import annotations

from typing import Any

from flask import flash, redirect, request, url_for
from flask_babel import gettext as _

from ...errors import NotFound
from ...manage import Context, users
from ...manage import devices as manage_devices
from ..current import svc
from ..devices import describe
from .blueprint import bp
from .guard import console


def device_rows(ctx: Context, user: Any) -> list[tuple[Any, Any]]:
    """(device row, parsed device) pairs, the most recently seen first."""
    return [(d, describe(d.user_agent)) for d in manage_devices.list_for_user(ctx, user)]


@bp.route("/users/<uuid>/devices/forget", methods=["POST"])
def user_forget_device(uuid: str):
    raw = request.form.get("device") or ""
    device_id = int(raw) if raw.isascii() and raw.isdigit() and len(raw) < 12 else 0
    end = bool(request.form.get("end_sessions"))
    try:
        with console() as ctx:
            target = users.get(ctx, uuid, "users:sessions:revoke")
            ended = manage_devices.forget(
                ctx, target, device_id, svc().sso_sessions, end_sessions=end
            )
    except NotFound:
        flash(_("That device was already forgotten."), "warning")
    else:
        if end:
            flash(_("The device was forgotten; %(n)s session(s) on it ended.", n=ended), "success")
        else:
            flash(_("The device was forgotten."), "success")
    return redirect(url_for("admin.user", uuid=uuid))
