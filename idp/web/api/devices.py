"""``/api/v1/users/{id}/devices``: a user's known devices (the browsers they signed in from,
idp.manage.devices) and forgetting one."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from ...errors import NotFound
from ...manage import devices as manage_devices
from ...manage import users
from .common import ApiModel, Strict
from .framework import Call, Reply, operation

TAG = "Users"


class DeviceOut(ApiModel):
    id: int = Field(description="The device's id (for DELETE); never the cookie value")
    name: str = Field(description='Browser and system, e.g. "Chrome 120 on Linux"')
    user_agent: str | None = Field(description="The User-Agent of the last sign-in")
    first_seen_at: datetime = Field(description="The first sign-in from it")
    last_seen_at: datetime = Field(description="The last sign-in from it")
    last_ip: str | None = Field(description="The address of the last sign-in")
    last_location: str | None = Field(
        description='Where that address is ("London, United Kingdom"); null when unknown'
    )


class ForgetQuery(Strict):
    end_sessions: bool = Field(
        False, description="Also end the SSO sessions that began on the device"
    )


class DeviceList(ApiModel):
    items: list[DeviceOut] = Field(description="Most recently seen first")


@operation(
    "GET",
    "/users/{user_id}/devices",
    tag=TAG,
    summary="List a user's known devices",
    response=DeviceList,
    description="`users:accounts:read` over the user.",
)
def list_devices(call: Call, user_id: str) -> Reply:
    with call.transaction() as ctx:
        user = users.get(ctx, user_id)
        items = [
            DeviceOut(
                id=d.id,
                name=d.name,
                user_agent=d.user_agent,
                first_seen_at=d.first_seen_at,
                last_seen_at=d.last_seen_at,
                last_ip=d.last_ip,
                last_location=d.last_location,
            )
            for d in manage_devices.list_for_user(ctx, user)
        ]
    return Reply(body=DeviceList(items=items))


@operation(
    "DELETE",
    "/users/{user_id}/devices/{device_id}",
    tag=TAG,
    summary="Forget one of a user's devices",
    status=204,
    query=ForgetQuery,
    description="`users:sessions:revoke` over the user. The next sign-in from that browser "
    "counts as a new device (the user is mailed). Query `end_sessions=true` also ends the SSO "
    "sessions that began on it. 404 when the user has no device of that id.",
)
def forget_device(call: Call, user_id: str, device_id: str) -> Reply:
    if not (device_id.isascii() and device_id.isdigit()) or len(device_id) > 11:
        raise NotFound("no such device")
    end = bool(call.query.end_sessions)
    with call.transaction() as ctx:
        user = users.get(ctx, user_id, "users:sessions:revoke")
        manage_devices.forget(ctx, user, int(device_id), call.svc.sso_sessions, end_sessions=end)
    return Reply(status=204)
