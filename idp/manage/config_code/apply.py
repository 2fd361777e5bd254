"""Applying a configuration file: the diff against what is configured now, then the changes
through the management operations (their permission checks and audit rows) in the caller's
transaction, so any error leaves nothing written.

Every check that can be made on the file alone runs before the first change (references,
role cycles, secrets, metadata, claim rules, policy values); the operations check the rest.
Rules (docs/configuration.md, "Configuration as code"):

- a section left out of the file is not managed: nothing of its kind changes;
- a resource named in the file is set to what the file says (a field left out takes its
  default), except ``client_secret`` (left out: the secret is kept) and ``claim_rules`` of a
  client or SP (left out: that owner's rules are kept);
- a resource of a section in the file but not named in it is kept, and deleted only with
  ``prune``; SAML SPs a federation manages and groups mirrored from LDAP are never deleted.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy import func, select

from ...core import claims as core_claims
from ...core import rbac
from ...core.client_metadata import Policy, check_client_metadata
from ...errors import ConfigError, Conflict, Forbidden, IdPError, NotFound, ValidationError
from ...saml.registry import parse_entity, standalone_xml, validate_settings
from ...settings import applied_keys, env_name, load_defaults, load_settings
from ...storage.clients import DEFAULT_SCOPE
from ...storage.directory import GROUP_NAME_RE, validate_permission
from ...storage.models import (
    ClaimRule,
    Client,
    Group,
    GroupMember,
    PermissionGroup,
    SamlServiceProvider,
)
from ...storage.models_ldap import LdapGroup
from .. import claim_rules, groups, permission_groups, policies, roles, service_providers
from .. import clients as manage_clients
from ..context import Context
from .export import FEDERATION, URL, claim_rule_entry, export, plain
from .plan import Change, Plan
from .schema import ENV_REF, ClaimRuleSpec, Document, GroupSpec, RoleSpec

# Client metadata the IdP understands, with the JSON type each must have (RFC 7591 §2, OIDC
# Registration §2, and the per-client token settings of ``idp clients update``).
CLIENT_METADATA: dict[str, type | tuple[type, ...]] = {
    "redirect_uris": list,
    "post_logout_redirect_uris": list,
    "grant_types": list,
    "response_types": list,
    "token_endpoint_auth_method": str,
    "scope": str,
    "contacts": list,
    "resources": list,
    "client_uri": str,
    "logo_uri": str,
    "policy_uri": str,
    "tos_uri": str,
    "initiate_login_uri": str,
    "jwks_uri": str,
    "jwks": dict,
    "sector_identifier_uri": str,
    "subject_type": str,
    "backchannel_logout_uri": str,
    "backchannel_logout_session_required": bool,
    "frontchannel_logout_uri": str,
    "frontchannel_logout_session_required": bool,
    "id_token_signed_response_alg": str,
    "userinfo_signed_response_alg": str,
    "access_token_signed_response_alg": str,
    "authorization_signed_response_alg": str,
    "authorization_encrypted_response_alg": str,
    "authorization_encrypted_response_enc": str,
    "access_token_format": str,
    "access_token_lifetime": int,
    "id_token_lifetime": int,
    "refresh_token_rotation": bool,
    "require_pkce": bool,
    "dpop_bound_access_tokens": bool,
    "tls_client_certificate_bound_access_tokens": bool,
    "default_max_age": int,
    "require_auth_time": bool,
    "token_exchange": dict,
    "software_id": str,
    "software_version": str,
}
_TYPE_NAMES = {
    list: "a list",
    str: "a string",
    dict: "a mapping",
    bool: "true or false",
    int: "an integer",
}

RoleKey = tuple[str | None, str]  # (client_id or None for a global role, name)


def _ref(key: RoleKey) -> str:
    return key[1] if key[0] is None else f"{key[0]}/{key[1]}"


def _wrap(where: str, exc: IdPError) -> IdPError:
    for kind in (ValidationError, Conflict, NotFound, Forbidden):
        if isinstance(exc, kind):
            return kind(f"{where}: {exc}")
    return IdPError(f"{where}: {exc}")


class _Applier:
    def __init__(
        self, ctx: Context, doc: Document, environ: Mapping[str, str], prune: bool
    ) -> None:
        self.ctx = ctx
        self.doc = doc
        self.environ = environ
        self.prune = prune
        self.current = export(ctx, environ)
        self.changes: list[Change] = []
        self.steps: list[tuple[int, int, str, Callable[[], Any]]] = []
        self.kept: list[dict[str, str]] = []
        self.secrets: dict[str, str] = {}
        self.restart_needed = False
        # What exists once the file is applied, for references and the cycle check.
        self.final_clients: set[str] = set()
        self.final_roles: set[RoleKey] = set()
        self.final_pgs: set[str] = set()
        self.includes: dict[RoleKey, list[str]] = {}
        self.reference_checks: list[tuple[str, str, str]] = []  # (where, ref, what)

    # --- plumbing --------------------------------------------------------------------------------

    def step(self, phase: int, where: str, fn: Callable[[], Any]) -> None:
        self.steps.append((phase, len(self.steps), where, fn))

    def change(self, kind: str, name: str, action: str, details=()) -> Change:
        c = Change(kind, name, action, list(details))
        self.changes.append(c)
        return c

    def keep(self, kind: str, name: str) -> None:
        self.kept.append({"kind": kind, "name": name})

    def managed_sets(self, current: set[str], named: set[str] | None) -> tuple[set[str], set[str]]:
        """(what exists afterwards, what is deleted) for one kind of resource."""
        if named is None:
            return set(current), set()
        unnamed = current - named
        if self.prune:
            return set(named), unnamed
        return named | current, set()

    # --- the whole run ---------------------------------------------------------------------------

    def run(self) -> Plan:
        self.plan_policies()
        self.plan_permission_groups()
        self.plan_clients()
        self.plan_roles()
        self.plan_groups()
        self.plan_service_providers()
        self.plan_realm_rules()
        self.check_references()
        self.check_cycles()
        for _phase, _seq, where, fn in sorted(self.steps, key=lambda s: (s[0], s[1])):
            try:
                fn()
            except IdPError as exc:
                raise _wrap(where, exc) from None
        if self.changes:
            self.ctx.audit("config.applied", None, prune=self.prune, **self.summary())
        return Plan(self.changes, self.kept, self.secrets, self.prune, self.restart_needed)

    def summary(self) -> dict[str, int]:
        counts = Counter(c.action for c in self.changes)
        return {
            "created": counts["create"],
            "updated": counts["update"],
            "deleted": counts["delete"],
        }

    # --- policies --------------------------------------------------------------------------------

    def plan_policies(self) -> None:
        spec = self.doc.policies
        if spec is None:
            return
        defaults = load_defaults()
        allowed = applied_keys(defaults)
        stored = policies.stored(self.ctx)
        wanted: dict[str, dict[str, Any]] = {}
        for section in allowed:
            values = getattr(spec, section)
            for key, value in (values or {}).items():
                where = f"policies.{section}.{key}"
                if key not in defaults[section]:
                    raise ValidationError(f"{where}: unknown key")
                if key not in allowed[section]:
                    raise ValidationError(
                        f"{where}: not a policy setting; set it in the TOML file or the environment"
                    )
                wanted.setdefault(section, {})[key] = value
        merged = {section: dict(values) for section, values in stored.items()}
        for section, values in wanted.items():
            merged.setdefault(section, {}).update(values)
        try:
            base = load_settings(environ=self.environ)
            final = load_settings(environ=self.environ, applied=merged or None)
        except ConfigError as exc:
            raise ValidationError(f"policies: {exc}") from None
        current = self.current["policies"]
        for section, values in wanted.items():
            for key, value in values.items():
                where = f"policies.{section}.{key}"
                new = plain(final[section][key])
                variable = env_name(section, key)
                if variable in self.environ and new != plain(value):
                    raise ValidationError(
                        f"{where}: the environment variable {variable} sets it, and the "
                        "environment wins over applied configuration: unset it, or put its "
                        "value in the file"
                    )
                row_wanted = None if new == plain(base[section][key]) else new
                row_now = stored.get(section, {}).get(key)
                has_row = key in stored.get(section, {})
                old = current[section][key]
                if old == new and (row_wanted is None) == (not has_row) and row_now == row_wanted:
                    continue
                self.change(
                    "policy",
                    f"{section}.{key}",
                    "update",
                    [{"field": "value", "old": old, "new": new}],
                )
                self.restart_needed = True
                if row_wanted is None:
                    self.step(10, where, lambda s=section, k=key: policies.clear(self.ctx, s, k))
                else:
                    self.step(
                        10,
                        where,
                        lambda s=section, k=key, v=row_wanted: policies.store(self.ctx, s, k, v),
                    )

    # --- permission groups -----------------------------------------------------------------------

    def plan_permission_groups(self) -> None:
        current = self.current["permission_groups"]
        named = self.doc.permission_groups
        self.final_pgs, gone = self.managed_sets(
            set(current), None if named is None else set(named)
        )
        for name, spec in sorted((named or {}).items()):
            where = f"permission_groups.{name}"
            perms = _permissions(where, spec.permissions)
            want = {"description": spec.description, "permissions": perms}
            have = current.get(name)
            if have is None:
                self.change("permission_group", name, "create")
                self.step(
                    20,
                    where,
                    lambda n=name, w=want: permission_groups.create(
                        self.ctx, n, w["permissions"], w["description"]
                    ),
                )
            elif have != want:
                self.change("permission_group", name, "update", _field_diffs(have, want))
                self.step(
                    20,
                    where,
                    lambda n=name, w=want: permission_groups.update(
                        self.ctx, self._pg(n), w["permissions"], w["description"]
                    ),
                )
        for name in sorted(gone):
            self.change("permission_group", name, "delete")
            self.step(
                150,
                f"permission_groups.{name}",
                lambda n=name: permission_groups.delete(self.ctx, self._pg(n)),
            )
        if named is not None and not self.prune:
            for name in sorted(set(current) - set(named)):
                self.keep("permission_group", name)

    def _pg(self, name: str) -> PermissionGroup:
        return self.ctx.directory.permission_group(name)

    # --- clients ---------------------------------------------------------------------------------

    def plan_clients(self) -> None:
        current = self.current["clients"]
        named = self.doc.clients
        self.final_clients, gone = self.managed_sets(
            set(current), None if named is None else set(named)
        )
        policy = Policy.from_settings(self.ctx.svc.settings)
        for client_id, spec in sorted((named or {}).items()):
            self.plan_client(client_id, spec, current.get(client_id), policy)
        for client_id in sorted(gone):
            self.change("client", client_id, "delete")
            self.step(
                130, f"clients.{client_id}", lambda c=client_id: manage_clients.delete(self.ctx, c)
            )
        if named is not None and not self.prune:
            for client_id in sorted(set(current) - set(named)):
                self.keep("client", client_id)

    def plan_client(
        self, client_id: str, spec, have: dict[str, Any] | None, policy: Policy
    ) -> None:
        where = f"clients.{client_id}"
        name = spec.name or client_id
        meta = _client_metadata(where, spec.metadata, name, policy)
        method = meta["token_endpoint_auth_method"]
        secret = self._secret(where, spec.client_secret, method)
        for i, role in enumerate(spec.service_roles):
            self.reference_checks.append((f"{where}.service_roles[{i}]", role, "global role"))
        service_roles = sorted(set(spec.service_roles))
        shown_meta = {k: v for k, v in meta.items() if k != "client_name"}
        row = self.ctx.db.get(Client, client_id)
        if have is None:
            self.change("client", client_id, "create")

            def create(c=client_id, s=spec, m=meta, n=name, secret=secret):
                _, generated = manage_clients.create(
                    self.ctx,
                    c,
                    name=n,
                    redirect_uris=m["redirect_uris"],
                    grant_types=m["grant_types"],
                    auth_method=m["token_endpoint_auth_method"],
                    scope=m["scope"],
                    first_party=s.first_party,
                    extra=m,
                )
                if secret is not None:
                    manage_clients.set_secret(self.ctx, c, secret)
                elif generated:
                    self.secrets[c] = generated
                if not s.enabled:
                    manage_clients.update(self.ctx, c, enabled=False)

            self.step(40, where, create)
            if service_roles:
                self.step(
                    70,
                    where,
                    lambda c=client_id, r=service_roles: manage_clients.set_service_roles(
                        self.ctx, c, r
                    ),
                )
        else:
            details: list[dict[str, Any]] = []
            for key in ("name", "enabled", "first_party"):
                want = name if key == "name" else getattr(spec, key)
                if have[key] != want:
                    details.append({"field": key, "old": have[key], "new": want})
            changed_meta = sorted(
                k
                for k in set(shown_meta) | set(have["metadata"])
                if shown_meta.get(k) != have["metadata"].get(k)
            )
            for key in changed_meta:
                details.append(
                    {
                        "field": f"metadata.{key}",
                        "old": have["metadata"].get(key),
                        "new": shown_meta.get(key),
                    }
                )
            set_secret = secret is not None and not self.ctx.svc.hasher.verify(
                secret, row.secret_hash
            )
            if secret is not None and method == "client_secret_jwt" and not row.secret_enc:
                set_secret = True
            if (
                secret is None
                and method in manage_clients.SECRET_METHODS
                and (not row.secret_hash or (method == "client_secret_jwt" and not row.secret_enc))
            ):
                raise ValidationError(
                    f"{where}.client_secret: {method} needs a secret the client does not have: "
                    "give client_secret: ${env:NAME}"
                )
            if set_secret:
                details.append({"field": "client_secret", "text": f"set from {spec.client_secret}"})
            service_diff = _set_diff("service_roles", have["service_roles"], service_roles)
            if service_diff:
                details.append(service_diff)
            if details:
                self.change("client", client_id, "update", details)
            flags = {d["field"] for d in details} & {"name", "enabled", "first_party"}

            def update(c=client_id, m=shown_meta, changed=changed_meta, flags=flags):
                manage_clients.update(
                    self.ctx,
                    c,
                    name=name if "name" in flags else None,
                    changes={k: m[k] for k in changed if k in m},
                    uris={k: "" for k in changed if k not in m},  # "" removes the key
                    first_party=spec.first_party if "first_party" in flags else None,
                    enabled=spec.enabled if "enabled" in flags else None,
                )

            if changed_meta or flags:
                self.step(40, where, update)
            if set_secret:
                self.step(
                    41,
                    where,
                    lambda c=client_id, v=secret: manage_clients.set_secret(self.ctx, c, v),
                )
            if service_diff:
                self.step(
                    70,
                    where,
                    lambda c=client_id, r=service_roles: manage_clients.set_service_roles(
                        self.ctx, c, r
                    ),
                )
        if spec.claim_rules is not None:
            self.plan_rule_set(
                f"{where}.claim_rules",
                f"client {client_id}",
                spec.claim_rules,
                client_id=client_id,
                exists=have is not None,
            )

    def _secret(self, where: str, ref: str | None, method: str) -> str | None:
        if ref is None:
            return None
        where = f"{where}.client_secret"
        m = ENV_REF.match(ref)
        if not m:
            raise ValidationError(
                f"{where}: must be a reference ${{env:NAME}} to an environment variable "
                "(secrets are never written in the file)"
            )
        if method not in manage_clients.SECRET_METHODS:
            raise ValidationError(
                f"{where}: a client that authenticates with {method} has no secret"
            )
        value = self.environ.get(m.group(1))
        if not value:
            raise ValidationError(f"{where}: the environment variable {m.group(1)} is not set")
        if len(value) < manage_clients.MIN_SECRET_LENGTH:
            raise ValidationError(
                f"{where}: the secret in {m.group(1)} must be a random value of at least "
                f"{manage_clients.MIN_SECRET_LENGTH} characters"
            )
        return value

    # --- roles -----------------------------------------------------------------------------------

    def plan_roles(self) -> None:
        current_global = {n: s for n, s in self.current["roles"].items()}
        current_client = {
            (cid, n): s for cid, c in self.current["clients"].items() for n, s in c["roles"].items()
        }
        managed: dict[RoleKey, tuple[str, RoleSpec]] = {}
        named_global = self.doc.roles
        final_global, gone_global = self.managed_sets(
            set(current_global), None if named_global is None else set(named_global)
        )
        for name, spec in (named_global or {}).items():
            managed[(None, name)] = (f"roles.{name}", spec)
        final: set[RoleKey] = {(None, n) for n in final_global}
        gone: set[RoleKey] = {(None, n) for n in gone_global}
        if named_global is not None and not self.prune:
            for name in sorted(set(current_global) - set(named_global)):
                self.keep("role", name)
        for client_id in self.final_clients:
            have = {n for (c, n) in current_client if c == client_id}
            spec = (self.doc.clients or {}).get(client_id)
            if spec is None:
                final |= {(client_id, n) for n in have}
                continue
            after, removed = self.managed_sets(have, set(spec.roles))
            final |= {(client_id, n) for n in after}
            gone |= {(client_id, n) for n in removed}
            for name, role_spec in spec.roles.items():
                managed[(client_id, name)] = (f"clients.{client_id}.roles.{name}", role_spec)
            if not self.prune:
                for name in sorted(have - set(spec.roles)):
                    self.keep("role", f"{client_id}/{name}")
        self.final_roles = final
        current = {**{(None, n): s for n, s in current_global.items()}, **current_client}
        for key, spec in current.items():
            if key in final and key not in managed:
                self.includes[key] = list(spec["includes"])
        for key in sorted(managed, key=lambda k: (k[0] or "", k[1])):
            where, spec = managed[key]
            self.plan_role(key, where, spec, current.get(key))
        for key in self._parents_first(gone, current):
            self.change("role", _ref(key), "delete")
            self.step(140, _ref(key), lambda k=key: roles.delete(self.ctx, self._role(k)))

    def plan_role(
        self, key: RoleKey, where: str, spec: RoleSpec, have: dict[str, Any] | None
    ) -> None:
        client_id, name = key
        phase = 30 if client_id is None else 50
        perms = _permissions(f"{where}.permissions", spec.permissions)
        pgs = sorted(set(spec.permission_groups))
        includes = sorted(set(spec.includes))
        for i, ref in enumerate(spec.permission_groups):
            self.reference_checks.append(
                (f"{where}.permission_groups[{i}]", ref, "permission group")
            )
        for i, ref in enumerate(spec.includes):
            self.reference_checks.append((f"{where}.includes[{i}]", ref, "role"))
        self.includes[key] = includes
        want = {
            "description": spec.description,
            "permissions": perms,
            "permission_groups": pgs,
            "includes": includes,
        }
        if have is None:
            self.change("role", _ref(key), "create")
            self.step(
                phase,
                where,
                lambda: roles.create(
                    self.ctx, name, perms, description=spec.description, client_id=client_id
                ),
            )
            have = {
                "description": spec.description,
                "permissions": perms,
                "permission_groups": [],
                "includes": [],
            }
        else:
            details = _field_diffs(have, want)
            if details:
                self.change("role", _ref(key), "update", details)
        if have["description"] != want["description"]:
            self.step(
                phase,
                where,
                lambda: roles.set_description(self.ctx, self._role(key), spec.description),
            )
        added = sorted(set(perms) - set(have["permissions"]))
        removed = sorted(set(have["permissions"]) - set(perms))
        if added:
            self.step(phase, where, lambda: roles.add_permissions(self.ctx, self._role(key), added))
        for p in removed:
            self.step(
                phase, where, lambda p=p: roles.remove_permission(self.ctx, self._role(key), p)
            )
        for pg in sorted(set(pgs) - set(have["permission_groups"])):
            self.step(
                phase + 1,
                where,
                lambda pg=pg: permission_groups.attach(self.ctx, self._role(key), self._pg(pg)),
            )
        for pg in sorted(set(have["permission_groups"]) - set(pgs)):
            self.step(
                phase + 1,
                where,
                lambda pg=pg: permission_groups.detach(self.ctx, self._role(key), self._pg(pg)),
            )
        for ref in sorted(set(have["includes"]) - set(includes)):
            self.step(
                60,
                where,
                lambda ref=ref: roles.remove_composite(
                    self.ctx, self._role(key), self.ctx.directory.role_ref(ref)
                ),
            )
        for ref in sorted(set(includes) - set(have["includes"])):
            self.step(
                61,
                where,
                lambda ref=ref: roles.add_composite(
                    self.ctx, self._role(key), self._role(self.resolve(ref))
                ),
            )

    def _role(self, key: RoleKey):
        return self.ctx.directory.role_by_name(key[1], key[0])

    def _parents_first(self, gone: set[RoleKey], current: dict[RoleKey, Any]) -> list[RoleKey]:
        """Roles to delete, every role before the roles it includes."""
        left = sorted(gone, key=lambda k: (k[0] or "", k[1]))
        out: list[RoleKey] = []
        while left:
            included = {self.resolve_current(ref) for k in left for ref in current[k]["includes"]}
            ready = [k for k in left if k not in included] or left[:1]
            out += ready
            left = [k for k in left if k not in ready]
        return out

    def resolve_current(self, ref: str) -> RoleKey:
        if "/" in ref:
            client_id, _, name = ref.partition("/")
            if (
                client_id in self.current["clients"]
                and name in self.current["clients"][client_id]["roles"]
            ):
                return (client_id, name)
        return (None, ref)

    def resolve(self, ref: str) -> RoleKey | None:
        """A role reference as it will stand once the file is applied."""
        if "/" in ref:
            client_id, _, name = ref.partition("/")
            if (client_id, name) in self.final_roles:
                return (client_id, name)
        return (None, ref) if (None, ref) in self.final_roles else None

    # --- groups ----------------------------------------------------------------------------------

    def plan_groups(self) -> None:
        if self.doc.groups is None:
            return
        current = _flatten(self.current["groups"])
        wanted: dict[str, GroupSpec] = {}
        _flatten_specs(self.doc.groups, "", wanted)
        for path in sorted(wanted, key=lambda p: (p.count("/"), p)):
            spec = wanted[path]
            where = "groups." + ".groups.".join(path.split("/"))
            for i, ref in enumerate(spec.roles):
                self.reference_checks.append((f"{where}.roles[{i}]", ref, "role"))
            want = {"description": spec.description, "roles": sorted(set(spec.roles))}
            have = current.get(path)
            if have is None:
                self.change("group", path, "create")
                parent, _, name = path.rpartition("/")
                self.step(
                    80,
                    where,
                    lambda n=name, p=parent, d=spec.description: groups.create(
                        self.ctx, n, p or None, d
                    ),
                )
                have = {"description": spec.description, "roles": []}
            else:
                details = _field_diffs(have, want)
                if details:
                    self.change("group", path, "update", details)
            if have["description"] != want["description"]:
                self.step(
                    80,
                    where,
                    lambda p=path, d=spec.description: groups.set_description(
                        self.ctx, self._group(p), d
                    ),
                )
            for ref in sorted(set(want["roles"]) - set(have["roles"])):
                self.step(
                    81,
                    where,
                    lambda p=path, ref=ref: groups.assign_role(
                        self.ctx, self._group(p), self._role(self.resolve(ref))
                    ),
                )
            for ref in sorted(set(have["roles"]) - set(want["roles"])):
                self.step(
                    81,
                    where,
                    lambda p=path, ref=ref: groups.unassign_role(
                        self.ctx, self._group(p), self.ctx.directory.role_ref(ref)
                    ),
                )
        unnamed = sorted(set(current) - set(wanted), key=lambda p: (-p.count("/"), p))
        mirrored = set(
            self.ctx.db.scalars(select(Group.path).join(LdapGroup, LdapGroup.group_id == Group.id))
        )
        for path in unnamed:
            if not self.prune or path in mirrored:
                self.keep("group", path + (" (mirrored from LDAP)" if path in mirrored else ""))
                continue
            group = self.ctx.directory.group_by_path(path)
            members = self.ctx.db.scalar(
                select(func.count())
                .select_from(GroupMember)
                .where(GroupMember.group_id == group.id)
            )
            if members:
                raise ValidationError(
                    f"groups: --prune would delete group {path!r}, which has {members} member(s): "
                    "remove them first, or keep the group in the file"
                )
            self.change("group", path, "delete")
            self.step(110, f"groups.{path}", lambda p=path: groups.delete(self.ctx, self._group(p)))

    def _group(self, path: str) -> Group:
        return self.ctx.directory.group_by_path(path)

    # --- SAML service providers ------------------------------------------------------------------

    def plan_service_providers(self) -> None:
        named = self.doc.saml_service_providers
        if named is None:
            return
        current = self.current["saml_service_providers"]
        for entity_id, spec in sorted(named.items()):
            where = f"saml_service_providers.{entity_id}"
            row = self.ctx.db.get(SamlServiceProvider, entity_id)
            if row is not None and row.origin.startswith(FEDERATION):
                raise ValidationError(
                    f"{where}: federation {row.origin[len(FEDERATION) :]!r} manages this service "
                    "provider; leave it out of the file"
                )
            try:
                entity = parse_entity(spec.metadata)
                settings = validate_settings(spec.settings)
            except ValidationError as exc:
                raise ValidationError(f"{where}: {exc}") from None
            if (entity.get("entityID") or "").strip() != entity_id:
                raise ValidationError(
                    f"{where}.metadata: the metadata is for entityID {entity.get('entityID')!r}"
                )
            xml = standalone_xml(entity)
            origin = f"{URL}{spec.metadata_url}" if spec.metadata_url else "manual"
            have = current.get(entity_id)
            if have is None:
                self.change("saml_sp", entity_id, "create")
                self.step(
                    90,
                    where,
                    lambda x=xml, o=origin, s=settings: service_providers.add(
                        self.ctx, x, origin=o, settings=s
                    ),
                )
            else:
                details: list[dict[str, Any]] = []
                if have["metadata"] != xml:
                    details.append({"field": "metadata", "text": "changed"})
                if have.get("metadata_url") != spec.metadata_url:
                    details.append(
                        {
                            "field": "metadata_url",
                            "old": have.get("metadata_url"),
                            "new": spec.metadata_url,
                        }
                    )
                if have["settings"] != plain(settings):
                    details += _field_diffs(have["settings"], plain(settings), prefix="settings.")
                if details:
                    self.change("saml_sp", entity_id, "update", details)
                if have["metadata"] != xml or have.get("metadata_url") != spec.metadata_url:
                    self.step(
                        90,
                        where,
                        lambda x=xml, o=origin, s=settings: service_providers.add(
                            self.ctx, x, origin=o, settings=s, replace=True
                        ),
                    )
                if have["settings"] != plain(settings):
                    self.step(
                        91,
                        where,
                        lambda e=entity_id, s=settings: service_providers.set_settings(
                            self.ctx, e, s
                        ),
                    )
            if spec.claim_rules is not None:
                self.plan_rule_set(
                    f"{where}.claim_rules",
                    f"saml_sp {entity_id}",
                    spec.claim_rules,
                    sp_entity_id=entity_id,
                    exists=have is not None,
                )
        for entity_id in sorted(set(current) - set(named)):
            if not self.prune:
                self.keep("saml_sp", entity_id)
                continue
            self.change("saml_sp", entity_id, "delete")
            self.step(
                120,
                f"saml_service_providers.{entity_id}",
                lambda e=entity_id: service_providers.remove(self.ctx, e),
            )

    # --- claim rules -----------------------------------------------------------------------------

    def plan_realm_rules(self) -> None:
        if self.doc.claim_rules is not None:
            self.plan_rule_set("claim_rules", "realm", self.doc.claim_rules, exists=True)

    def plan_rule_set(
        self, where: str, owner_name: str, specs: list[ClaimRuleSpec], *, exists: bool, **owner: str
    ) -> None:
        """An owner's rules become exactly the listed ones (matched by content: a changed rule
        is a rule deleted and a rule added)."""
        wanted = []
        for i, spec in enumerate(specs):
            try:
                core_claims.parse_rule(spec.rule, scope=spec.scope, enabled=spec.enabled)
            except core_claims.ClaimRuleError as exc:
                raise ValidationError(f"{where}[{i}].rule: {exc}") from None
            wanted.append(
                {
                    "order": spec.order,
                    "scope": spec.scope,
                    "enabled": spec.enabled,
                    "rule": plain(spec.rule),
                }
            )
        rows: list[ClaimRule] = claim_rules.list_all(self.ctx, **owner) if exists else []
        unmatched: dict[str, list[int]] = {}
        for row in rows:
            unmatched.setdefault(_canon(claim_rule_entry(row)), []).append(row.id)
        to_add = []
        for entry in wanted:
            ids = unmatched.get(_canon(entry))
            if ids:
                ids.pop(0)
            else:
                to_add.append(entry)
        left = {i for ids in unmatched.values() for i in ids}
        to_delete = [row for row in rows if row.id in left]
        if not to_add and not to_delete:
            return
        details = {
            "field": "rules",
            "add": [_rule_label(e) for e in to_add],
            "remove": [_rule_label(claim_rule_entry(row)) for row in to_delete],
        }
        self.change("claim_rules", owner_name, "update", [details])
        for row in to_delete:
            self.step(100, where, lambda i=row.id: claim_rules.delete(self.ctx, i))
        for entry in to_add:
            self.step(
                101,
                where,
                lambda e=entry: claim_rules.add(
                    self.ctx,
                    e["rule"],
                    scope=e["scope"],
                    sort_order=e["order"],
                    enabled=e["enabled"],
                    **owner,
                ),
            )

    # --- checks over the whole file --------------------------------------------------------------

    def check_references(self) -> None:
        for where, ref, what in self.reference_checks:
            if what == "permission group":
                if ref not in self.final_pgs:
                    raise ValidationError(f"{where}: no permission group {ref!r}")
            elif what == "global role":
                if (None, ref) not in self.final_roles:
                    raise ValidationError(f"{where}: no role {ref!r}")
            elif self.resolve(ref) is None:
                raise ValidationError(f"{where}: no role {ref!r}")

    def check_cycles(self) -> None:
        ids = {
            key: i
            for i, key in enumerate(sorted(self.final_roles, key=lambda k: (k[0] or "", k[1])))
        }
        names = {i: _ref(key) for key, i in ids.items()}
        edges: dict[int, list[int]] = {}
        for key in sorted(self.includes, key=lambda k: (k[0] or "", k[1])):
            if key not in ids:
                continue
            for ref in self.includes[key]:
                child = self.resolve(ref)
                if child is None:
                    continue
                try:
                    rbac.check_new_edge(ids[key], ids[child], edges, names)
                except rbac.CycleError as exc:
                    where = (
                        f"roles.{key[1]}" if key[0] is None else f"clients.{key[0]}.roles.{key[1]}"
                    )
                    raise ValidationError(f"{where}.includes: {exc}") from None
                edges.setdefault(ids[key], []).append(ids[child])


# --- helpers -------------------------------------------------------------------------------------


def _permissions(where: str, permissions: list[str]) -> list[str]:
    for p in permissions:
        try:
            validate_permission(p)
        except ValidationError as exc:
            raise ValidationError(f"{where}: {exc}") from None
    return sorted(set(permissions))


def _set_diff(field_name: str, old: list[str], new: list[str]) -> dict[str, Any] | None:
    add, remove = sorted(set(new) - set(old)), sorted(set(old) - set(new))
    if not add and not remove:
        return None
    return {"field": field_name, "add": add, "remove": remove}


def _field_diffs(
    have: dict[str, Any], want: dict[str, Any], prefix: str = ""
) -> list[dict[str, Any]]:
    out = []
    for key in sorted(set(have) | set(want)):
        old, new = have.get(key), want.get(key)
        if old == new:
            continue
        if (
            isinstance(old, list)
            and isinstance(new, list)
            and all(isinstance(v, str) for v in old + new)
        ):
            d = _set_diff(prefix + key, old, new)
            if d:
                out.append(d)
        else:
            out.append({"field": prefix + key, "old": old, "new": new})
    return out


def _client_metadata(
    where: str, metadata: dict[str, Any], name: str, policy: Policy
) -> dict[str, Any]:
    """The client's whole metadata as it will be stored: the file's keys, checked, plus what
    ``idp clients create`` fills in when left out."""
    meta = {}
    for key, value in metadata.items():
        at = f"{where}.metadata.{key}"
        if key == "client_name":
            raise ValidationError(f"{at}: give the client's name as {where}.name")
        kind = CLIENT_METADATA.get(key)
        if kind is None:
            raise ValidationError(f"{at}: unknown client metadata key")
        if value is None:
            continue
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise ValidationError(f"{at}: must be {_TYPE_NAMES[kind]}")
        meta[key] = value
    if meta.get("access_token_format", "jwt") not in ("jwt", "opaque"):
        raise ValidationError(f"{where}.metadata.access_token_format: must be jwt or opaque")
    for key in ("access_token_lifetime", "id_token_lifetime"):
        if key in meta and not 30 <= meta[key] <= 86400:
            raise ValidationError(f"{where}.metadata.{key}: must be 30-86400 seconds")
    grants = list(dict.fromkeys(meta.get("grant_types") or ["authorization_code"]))
    meta["grant_types"] = grants
    meta.setdefault("redirect_uris", [])
    meta.setdefault("response_types", ["code"] if "authorization_code" in grants else [])
    meta.setdefault("token_endpoint_auth_method", "client_secret_basic")
    meta["scope"] = " ".join(dict.fromkeys(meta.get("scope", DEFAULT_SCOPE).split()))
    meta.setdefault("post_logout_redirect_uris", [])
    if meta.get("backchannel_logout_uri"):
        meta.setdefault("backchannel_logout_session_required", True)
    meta["client_name"] = name
    try:
        check_client_metadata(meta, policy)
    except ValidationError as exc:
        field_name = getattr(exc, "field", None)
        text = str(exc)
        if field_name and text.startswith(f"{field_name}: "):
            raise ValidationError(f"{where}.metadata.{text}") from None
        raise ValidationError(f"{where}.metadata: {text}") from None
    return plain(meta)


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, dict[str, Any]]:
    out = {}
    for name, node in tree.items():
        path = f"{prefix}{name}"
        out[path] = {"description": node["description"], "roles": node["roles"]}
        out.update(_flatten(node["groups"], path + "/"))
    return out


def _flatten_specs(
    tree: dict[str, GroupSpec], prefix: str, out: dict[str, GroupSpec], at: str = "groups"
) -> None:
    for name, spec in tree.items():
        where = f"{at}.{name}"
        if not GROUP_NAME_RE.match(name) or name.strip() != name:
            raise ValidationError(
                f"{where}: a group name is 1-200 characters without '/' or control characters "
                "(nest subgroups under groups:)"
            )
        out[prefix + name] = spec
        _flatten_specs(spec.groups, f"{prefix}{name}/", out, f"{where}.groups")


def _canon(entry: dict[str, Any]) -> str:
    return json.dumps(entry, sort_keys=True)


def _rule_label(entry: dict[str, Any]) -> str:
    rule = entry["rule"]
    target = rule.get("target") or rule.get("saml_name") or "?"
    flags = [entry["scope"] or "always", f"order {entry['order']}"]
    if not entry["enabled"]:
        flags.append("disabled")
    return f"{target} ({', '.join(flags)})"


def apply(ctx: Context, doc: Document, *, environ: Mapping[str, str], prune: bool = False) -> Plan:
    """Bring the IdP to what ``doc`` says, in ``ctx``'s transaction; the plan says what
    changed. Raises (ValidationError, Conflict, ...) naming the resource and field, and then
    the caller's transaction rolls back: nothing is written."""
    return _Applier(ctx, doc, environ, prune).run()
