"""``/api/v1/settings``: the policy settings kept in the database (``config:policies:read`` /
``config:policies:update``), the same ones the console's settings screen edits."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field, RootModel

from ...manage import policies
from ...settings import redact
from ..live_settings import live_settings
from .framework import ApiProblem, Call, Reply, operation


class SettingOut(BaseModel):
    value: Any = Field(description="the value in effect (secrets redacted)")
    source: str = Field(description='"environment", "database" or "file" (file or default)')
    editable: bool = Field(description="false when an environment variable sets it")


class SettingsOut(BaseModel):
    sections: dict[str, dict[str, SettingOut]]


class SettingsPatch(RootModel[dict[str, dict[str, Any]]]):
    """{section: {key: value}}: only the keys to change."""


def _shape(call: Call) -> SettingsOut:
    locked = live_settings().locked()
    settings = call.svc.settings
    with call.transaction() as ctx:
        stored = policies.stored(ctx)
    out: dict[str, dict[str, SettingOut]] = {}
    for section, keys in policies.editable().items():
        out[section] = {}
        for key in keys:
            name = f"{section}.{key}"
            value = redact(key, settings[section][key])
            out[section][key] = SettingOut(
                value=list(value) if isinstance(value, tuple) else value,
                source="environment"
                if name in locked
                else ("database" if key in stored.get(section, {}) else "file"),
                editable=name not in locked,
            )
    return SettingsOut(sections=out)


@operation(
    "GET",
    "/settings",
    tag="settings",
    summary="Read the policy settings kept in the database",
    response=SettingsOut,
    description=(
        "Password policy, lockout, MFA, sessions, registration and branding: each value in "
        "effect, where it comes from, and whether it can be changed here."
    ),
)
def read_settings(call: Call) -> Reply:
    return Reply(body=_shape(call))


@operation(
    "PATCH",
    "/settings",
    tag="settings",
    summary="Change policy settings",
    body=SettingsPatch,
    response=SettingsOut,
    errors=(400, 403),
    description=(
        "Checked together with the settings' own rules; a refused value (400, the field named "
        "in `errors`) stores nothing. Keys an environment variable sets are refused. Every "
        "change is audited (old and new value) and applies on every node from its next request."
    ),
)
def patch_settings(call: Call) -> Reply:
    changes: dict[str, dict[str, Any]] = call.body.root
    try:
        with call.transaction() as ctx:
            policies.update(ctx, changes, live_settings().locked())
    except policies.SettingError as exc:
        raise ApiProblem(
            400,
            "Invalid request",
            str(exc),
            kind="invalid-request",
            errors=[{"field": exc.field or "(body)", "message": str(exc)}],
        ) from None
    live_settings().check()
    return Reply(body=_shape(call))
