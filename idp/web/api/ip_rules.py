"""Network rules (``docs/security.md``, "Client addresses and IP rules") of a role, a group, an
OIDC client, a SAML SP (``/{resource}/{id}/ip-rules``) and the global ``[ip_rules]``
(``/ip-rules``), through ``idp.manage.iprules``: the same checks, permissions and audit rows as
the console and ``idp ip-rules``. A PUT replaces both lists and stores nothing when any entry
is refused: 400 when it is not even made of address characters (the schema's pattern), 409
when the rule engine refuses it (an octet over 255, a prefix too long, host bits after the
prefix), as ``PATCH /settings`` answers for the same entry; ``errors[].field`` is ``allow.N``
/ ``deny.N`` either way."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, StrictStr

from ...manage import Context, iprules, policies
from ..live_settings import live_settings
from .common import ApiModel, Strict
from .framework import ApiProblem, Call, Reply, etag_of, operation
from .saml_providers import entity_id_of
from .shapes import path_id

# Address characters only (hex digits, dots, colons, one /prefix); empty entries are skipped.
Entry = Annotated[StrictStr, Field(max_length=100, pattern=r"^[0-9A-Fa-f:.]*(/[0-9]{1,3})?$")]
Entries = Annotated[
    list[Entry],
    Field(
        max_length=iprules.MAX_ENTRIES,
        description='IPv4 / IPv6 addresses or CIDR networks ("10.0.0.0/8", "2001:db8::/32")',
    ),
]


class IpRulesIn(Strict):
    """Both lists, replacing the stored ones; empty lists lift every restriction."""

    allow: Entries = Field(description="empty: any address not denied")
    deny: Entries = Field(description="refused even when an allow entry matches")


class IpRulesOut(ApiModel):
    allow: list[str] = Field(description="canonical CIDR, in the order given")
    deny: list[str]


class GlobalIpRulesOut(IpRulesOut):
    editable: bool = Field(description="false when an environment variable sets the rules")


def _invalid(exc: iprules.InvalidRules) -> ApiProblem:
    field = exc.field if exc.index is None else f"{exc.field}.{exc.index}"
    return ApiProblem(
        409, "Conflict", str(exc), kind="conflict", errors=[{"field": field, "message": str(exc)}]
    )


def _out(rules: iprules.RuleLists) -> IpRulesOut:
    return IpRulesOut(allow=rules.allow, deny=rules.deny)


def _read(call: Call, kind: str, key: int | str) -> Reply:
    with call.transaction() as ctx:
        out = _out(iprules.get(ctx, kind, key))
    return Reply(body=out)


def _replace(call: Call, kind: str, key: int | str) -> Reply:
    body: IpRulesIn = call.body
    try:
        with call.transaction() as ctx:
            call.if_match(etag_of(_out(iprules.get(ctx, kind, key))))
            out = _out(iprules.set_rules(ctx, kind, key, body.allow, body.deny))
    except iprules.InvalidRules as exc:
        raise _invalid(exc) from None
    return Reply(body=out)


_READ_NOTE = "The allow / deny lists checked at every sign-in that involves it."
_PUT_NOTE = (
    "Replace both lists (audited as `ip_rules.set` with before and after). An entry with other "
    "than address characters is 400; one the rule engine refuses (octet over 255, prefix too "
    "long, host bits after the prefix) is 409; both name it (`allow.N` / `deny.N`) and store "
    "nothing."
)


def _scope(kind: str, path: str, tag: str, what: str, permission: str, key) -> None:
    """GET and PUT ``{path}/ip-rules`` for one kind of scope; ``key`` turns the path
    parameter into the manage layer's key (404 for anything that names nothing)."""
    param = path.rsplit("{", 1)[1].rstrip("}")

    def read(call: Call, **params: str) -> Reply:
        return _read(call, kind, key(params[param]))

    def replace(call: Call, **params: str) -> Reply:
        return _replace(call, kind, key(params[param]))

    read.__name__ = f"read_{kind}_ip_rules"
    replace.__name__ = f"replace_{kind}_ip_rules"
    operation(
        "GET",
        f"{path}/ip-rules",
        tag=tag,
        summary=f"Read {what}'s IP rules",
        response=IpRulesOut,
        etag=True,
        description=f"{_READ_NOTE} `{permission}:read`.",
    )(read)
    operation(
        "PUT",
        f"{path}/ip-rules",
        tag=tag,
        summary=f"Replace {what}'s IP rules",
        body=IpRulesIn,
        response=IpRulesOut,
        etag=True,
        errors=(400, 409),
        description=f"{_PUT_NOTE} `{permission}:update`.",
    )(replace)


_scope("role", "/roles/{role_id}", "roles", "a role", "roles:roles", lambda v: path_id(v, "role"))
_scope(
    "group",
    "/groups/{group_id}",
    "groups",
    "a group",
    "groups:groups",
    lambda v: path_id(v, "group"),
)
_scope("client", "/clients/{client_id}", "clients", "a client", "clients:clients", str)
_scope(
    "sp",
    "/saml/providers/{provider_id}",
    "saml",
    "a SAML service provider",
    "saml:providers",
    entity_id_of,
)


def _global(ctx: Context) -> GlobalIpRulesOut:
    rules = iprules.get_global(ctx)
    locked = live_settings().locked()
    return GlobalIpRulesOut(
        allow=rules.allow,
        deny=rules.deny,
        editable=not {"ip_rules.allow", "ip_rules.deny"} & locked,
    )


@operation(
    "GET",
    "/ip-rules",
    tag="settings",
    summary="Read the global IP rules",
    response=GlobalIpRulesOut,
    etag=True,
    description=(
        "`[ip_rules]`: checked on every request but the health probes (`config:policies:read`)."
    ),
)
def read_global_ip_rules(call: Call) -> Reply:
    with call.transaction() as ctx:
        out = _global(ctx)
    return Reply(body=out)


@operation(
    "PUT",
    "/ip-rules",
    tag="settings",
    summary="Replace the global IP rules",
    body=IpRulesIn,
    response=GlobalIpRulesOut,
    etag=True,
    errors=(400, 409),
    description=(
        "`config:policies:update`; the same stored setting as `PATCH /settings` "
        "(audited as `config.policy_set`), applied on every node from its next request. 400 / "
        "409 name the first bad entry as for a role's rules; 409 also when the rules would "
        "refuse the caller's own address or an environment variable sets them. Nothing is "
        "stored on any refusal."
    ),
)
def replace_global_ip_rules(call: Call) -> Reply:
    body: IpRulesIn = call.body
    try:
        with call.transaction() as ctx:
            call.if_match(etag_of(_global(ctx)))
            iprules.set_global(ctx, body.allow, body.deny, frozenset(live_settings().locked()))
    except iprules.InvalidRules as exc:
        raise _invalid(exc) from None
    except policies.SettingError as exc:
        raise ApiProblem(
            409,
            "Conflict",
            str(exc),
            kind="conflict",
            errors=[{"field": exc.field or "(body)", "message": str(exc)}],
        ) from None
    live_settings().check(force=True)
    with call.transaction() as ctx:
        out = _global(ctx)
    return Reply(body=out)
