"""``/api/v1/settings``: the policy settings kept in the database (``config:policies:read`` /
``config:policies:update``), the same ones the console's settings screen edits."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import (
    BaseModel,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    create_model,
)

from ...manage import policies
from ...settings import applied_keys, load_defaults, redact
from ..live_settings import live_settings
from .common import ApiModel, Strict
from .framework import ApiProblem, Call, Reply, operation
from .shapes import json_int


class SettingOut(ApiModel):
    value: Any = Field(description="the value in effect (secrets redacted)")
    source: str = Field(description='"environment", "database" or "file" (file or default)')
    editable: bool = Field(description="false when an environment variable sets it")


class SettingsOut(ApiModel):
    sections: dict[str, dict[str, SettingOut]]


_TYPES: dict[type, Any] = {
    bool: StrictBool,
    int: json_int(-(2**31), 2**31 - 1),
    float: StrictFloat | StrictInt,
    str: Annotated[StrictStr, Field(max_length=2000, pattern=r"^[^\x00]*$")],
    list: Annotated[
        list[Annotated[StrictStr, Field(max_length=500, pattern=r"^[^\x00]*$")]],
        Field(max_length=100),
    ],
}


def _patch_model() -> type[BaseModel]:
    """{section: {key: value}} with the policy keys only, each of its setting's type (unknown
    keys and wrong types are 400 before any rule runs)."""
    defaults = load_defaults()
    sections: dict[str, Any] = {}
    for section, keys in applied_keys(defaults).items():
        fields: dict[str, Any] = {
            key: (_TYPES[type(defaults[section][key])] | None, None) for key in keys
        }
        model = create_model(f"{section.title().replace('_', '')}Patch", __base__=Strict, **fields)
        sections[section] = (model | None, None)
    return create_model("SettingsPatch", __base__=Strict, **sections)


SettingsPatch = _patch_model()


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
    errors=(400, 403, 409),
    description=(
        "Only the policy keys, each of its setting's type (else 400). The values are then "
        "checked together with the settings' own rules: a refused value, or a key an "
        "environment variable sets, is 409 with the field named in `errors`, and nothing is "
        "stored. Every change is audited (old and new value) and applies on every node from "
        "its next request."
    ),
)
def patch_settings(call: Call) -> Reply:
    changes = {
        section: values
        for section, values in call.body.model_dump(exclude_unset=True).items()
        if values
    }
    try:
        with call.transaction() as ctx:
            policies.update(ctx, changes, live_settings().locked())
    except policies.SettingError as exc:
        raise ApiProblem(
            409,
            "Conflict",
            str(exc),
            kind="conflict",
            errors=[{"field": exc.field or "(body)", "message": str(exc)}],
        ) from None
    live_settings().check(force=True)
    return Reply(body=_shape(call))
