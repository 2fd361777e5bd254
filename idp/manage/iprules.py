"""Network rules as admin operations (CLI, REST API, console): the allow / deny lists of a
role, a group, an OIDC client or a SAML SP (stored, ``idp.storage.iprules``) and the global
``[ip_rules]`` (a live policy setting, ``idp.manage.policies``). Entries are checked with the
rule engine (``idp.core.iprules``) before anything is stored: one bad entry refuses the whole
change (``InvalidRules`` names it). Each change is audited as ``ip_rules.set`` with the scope
and the lists before and after.

Permissions: reading or changing a scope's rules needs the scope's own read / update
permission (``roles:roles:*``, ``groups:groups:*``, ``clients:clients:*``,
``saml:providers:*``; the global rules ``config:policies:*``)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ..core.iprules import ALLOW, DENY, InvalidNetwork, canonical, parse_network
from ..errors import NotFound, ValidationError
from ..sso import network
from ..storage import iprules as stored
from ..storage.models import Client, Group, Role, SamlServiceProvider
from . import policies
from .context import Context

KINDS = ("role", "group", "client", "sp")
_PERMISSIONS = {
    "role": "roles:roles",
    "group": "groups:groups",
    "client": "clients:clients",
    "sp": "saml:providers",
    "global": "config:policies",
}
# Entries in one list of one scope: far more than any real network plan, few enough that
# every check of a sign-in stays a short loop.
MAX_ENTRIES = 200
_MODELS = {"role": Role, "group": Group, "client": Client, "sp": SamlServiceProvider}


class InvalidRules(ValidationError):
    """An entry that is not an address or CIDR network; ``field`` is "allow" or "deny",
    ``index`` the entry's place in the list given (0-based) and ``entry`` its text (both None
    for a too-long list), ``suggestion`` the network probably meant (host bits set)."""

    def __init__(
        self,
        message: str,
        field: str,
        index: int | None = None,
        entry: str | None = None,
        suggestion: str | None = None,
    ) -> None:
        super().__init__(message)
        self.field = field
        self.index = index
        self.entry = entry
        self.suggestion = suggestion


@dataclass(frozen=True)
class RuleLists:
    allow: list[str]
    deny: list[str]

    def as_dict(self) -> dict[str, list[str]]:
        return {ALLOW: list(self.allow), DENY: list(self.deny)}


def checked(allow: Iterable[str], deny: Iterable[str]) -> RuleLists:
    """The lists in canonical form, or InvalidRules for the first bad entry (blank entries
    are skipped: a form's empty lines)."""
    lists: dict[str, list[str]] = {}
    for name, entries in ((ALLOW, allow), (DENY, deny)):
        given = [str(e).strip() for e in entries]
        items = [e for e in given if e]
        if len(items) > MAX_ENTRIES:
            raise InvalidRules(f"{name}: at most {MAX_ENTRIES} entries", name)
        for index, entry in enumerate(given):
            if not entry:
                continue
            try:
                parse_network(entry)
            except InvalidNetwork as exc:
                raise InvalidRules(f"{name}: {exc}", name, index, entry, exc.suggestion) from None
        lists[name] = canonical(items)
    return RuleLists(lists[ALLOW], lists[DENY])


def _key(ctx: Context, kind: str, key: int | str) -> int | str:
    if kind not in KINDS:
        raise NotFound(f"no rule scope {kind!r}")
    if ctx.db.get(_MODELS[kind], key) is None:
        raise NotFound(f"no {kind} {key!r}")
    return key


def get(ctx: Context, kind: str, key: int | str) -> RuleLists:
    """The rules of one role (id), group (id), client (client_id) or SP (entityID)."""
    ctx.require(_PERMISSIONS.get(kind, "config:policies") + ":read")
    found = stored.rules_of(ctx.db, kind, _key(ctx, kind, key))
    return RuleLists(found[ALLOW], found[DENY])


def set_rules(
    ctx: Context, kind: str, key: int | str, allow: Iterable[str], deny: Iterable[str]
) -> RuleLists:
    """Replace the scope's rules; empty lists remove every restriction of it."""
    ctx.require(_PERMISSIONS.get(kind, "config:policies") + ":update")
    new = checked(allow, deny)
    key = _key(ctx, kind, key)
    old = stored.rules_of(ctx.db, kind, key)
    if old == new.as_dict():
        return new
    stored.replace_rules(ctx.db, kind, key, new.allow, new.deny)
    ctx.after_commit(lambda: network.rules_changed(ctx.svc))
    ctx.audit("ip_rules.set", f"{kind}:{key}", scope=kind, old=old, new=new.as_dict())
    return new


def get_global(ctx: Context) -> RuleLists:
    ctx.require("config:policies:read")
    cfg = ctx.svc.settings.ip_rules
    return RuleLists(list(cfg.allow), list(cfg.deny))


def set_global(
    ctx: Context, allow: Iterable[str], deny: Iterable[str], locked: frozenset[str] = frozenset()
) -> RuleLists:
    """Store the global rules (``[ip_rules]``, applied live by every worker) through the
    policy settings' one operation, which also refuses rules that would refuse the acting
    administrator's own address (``policies.keep_own_address``: SettingError naming the
    field). ``locked``: the dotted names an environment variable sets."""
    ctx.require("config:policies:update")
    new = checked(allow, deny)
    policies.update(ctx, {"ip_rules": {ALLOW: new.allow, DENY: new.deny}}, locked)
    return new
