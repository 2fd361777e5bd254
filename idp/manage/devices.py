"""A user's known devices for administrators (console and REST API): list them, forget one.

Permissions: ``users:accounts:read`` over the user to list, ``users:sessions:revoke`` to
forget. Forgetting makes the next sign-in from that browser a new device (the user is mailed
again); with ``end_sessions`` the SSO sessions that began on it end too (relying parties are
told, as for any ended session)."""

from __future__ import annotations

from ..errors import NotFound
from ..sso import devices
from ..storage import session_index
from ..storage.models import User
from ..storage.models_devices import KnownDevice
from ..storage.session_index import SessionRecords
from .context import Context


def list_for_user(ctx: Context, user: User) -> list[KnownDevice]:
    ctx.require("users:accounts:read", user.id)
    return devices.devices_of(ctx.db, user.id)


def forget(
    ctx: Context,
    user: User,
    device_id: int,
    sessions: SessionRecords,
    *,
    end_sessions: bool = False,
) -> int:
    """Forget the user's device; how many sessions ended (0 unless ``end_sessions``)."""
    ctx.require("users:sessions:revoke", user.id)
    device = devices.device_of(ctx.db, user.id, device_id)
    if device is None:
        raise NotFound("no such device")
    ended = 0
    if end_sessions:
        only = devices.sessions_on(ctx.db, device.id)
        ended = session_index.end_user_sessions(ctx.db, sessions, user.id, only=only)
    devices.forget(ctx.db, device)
    ctx.audit(
        "device.forgotten", user.uuid, device=device.name, by_admin=True, sessions_ended=ended
    )
    return ended
