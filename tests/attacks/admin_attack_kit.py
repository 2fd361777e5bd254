"""A two-company directory for the admin attack suite (tests/attacks/test_attack_admin.py).

acme: ``lead`` (User Manager scoped to acme, plus a global role "Reach" carrying only the API
and SCIM scopes, the console and reading groups, roles and companies: a delegated
administrator) and ``ann``; globex: ``gus`` and ``gil`` (an Auditor). Groups: ``staff`` (no
roles; gus is a member), ``ops`` (carries User Manager, so its members hold it *everywhere*),
``admins`` (carries Administrator). Refusals are checked against
``directory_api_kit.snapshot`` (every row of every table) taken before the attack."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

from directory_api_kit import Caller
from login_kit import GOOD, make_user

from idp.storage.directory import Directory

# The SCIM callers live beside the SCIM tests (tests/scim/scim_kit.py), as for tests/fuzz.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scim"))
from scim_kit import Scim, patch_op  # noqa: E402

__all__ = ["PEOPLE", "Realm", "Scim", "build_realm", "patch_op"]

PEOPLE = ("lead", "ann", "gus", "gil")


@dataclass
class Realm:
    app: object
    token: str  # lead's token, scopes "openid admin scim"
    uuids: dict[str, str] = field(default_factory=dict)
    ids: dict[str, int] = field(default_factory=dict)
    groups: dict[str, int] = field(default_factory=dict)

    @property
    def svc(self):
        return self.app.extensions["idp"]

    def api(self) -> Caller:
        return Caller(self.app.test_client(), self.token)


def build_realm(app) -> Realm:
    from api_kit import user_token

    svc = app.extensions["idp"]
    realm = Realm(app, "")
    for name in PEOPLE:
        realm.ids[name] = make_user(svc, name)
    with svc.sessions.begin() as db:
        d = Directory(db)
        acme = d.create_company("acme", "Acme")
        globex = d.create_company("globex", "Globex")
        scopes = d.create_role(
            "Reach",
            [
                "oauth:scope:admin",
                "oauth:scope:scim",
                "console:admin:access",
                "groups:groups:read",
                "roles:roles:read",
                "org:companies:read",
            ],
        )
        for name, company in (("lead", acme), ("ann", acme), ("gus", globex), ("gil", globex)):
            d.place_user(d.user_by_username(name), company=company)
        lead = d.user_by_username("lead")
        d.assign_role(lead, d.role_by_name("User Manager"), scope_company=acme)
        d.assign_role(lead, scopes)
        d.assign_role(d.user_by_username("gil"), d.role_by_name("Auditor"))
        for name, role in (("staff", None), ("ops", "User Manager"), ("admins", "Administrator")):
            group = d.create_group(name)
            if role:
                d.assign_group_role(group, d.role_by_name(role))
            realm.groups[name] = group.id
        d.add_member(d.group_by_path("staff"), d.user_by_username("gus"))
        realm.uuids = {n: d.user_by_username(n).uuid for n in PEOPLE}
    realm.token = user_token(app, "lead", GOOD, scope="openid admin scim")
    return realm
