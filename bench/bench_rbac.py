"""Effective-permission and claims-mapping cost for a user in 50 groups / 20 roles.

    .venv/bin/python bench/bench_rbac.py [--rounds 200] [--database-url URL]

Builds a throw-away realm (SQLite in a temp dir unless --database-url names a PostgreSQL
database), then reports medians side by side: effective permissions cold (graph loaded and
computed every time), cached (generation check + store read), a permission check, the OIDC
claims for a full scope set, and the SAML attributes.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from idp.services import build_services  # noqa: E402
from idp.settings import load_settings  # noqa: E402
from idp.storage import claims as api  # noqa: E402
from idp.storage.directory import Directory, NewUser  # noqa: E402
from idp.storage.migrate import upgrade  # noqa: E402
from idp.storage.rbac import grants_for  # noqa: E402
from idp.storage.seed import seed_role_templates  # noqa: E402


def build(svc) -> int:
    with svc.sessions.begin() as db:
        seed_role_templates(db)
        d = Directory(db, svc.clock)
        acme = d.create_company("acme", "Acme")
        dept = d.create_department(acme, "Engineering")
        roles = []
        for i in range(20):
            r = d.create_role(f"role{i}", [f"app{i}:feature{j}:read" for j in range(5)])
            if roles:
                d.add_composite(r, roles[-1])  # a chain: composites are walked too
            roles.append(r)
        user = d.create_user(NewUser("bench", "bench@example.org", given_name="B", family_name="N"))
        d.place_user(user, department=dept)
        parent = None
        for i in range(50):
            g = d.create_group(f"g{i}", parent.path if parent and i % 5 else None)
            parent = g
            d.add_member(g, user)
            d.assign_group_role(g, roles[i % 20])
        for r in roles[:5]:
            d.assign_role(user, r)
        return user.id


def timed(fn, rounds: int) -> float:
    samples = []
    for _ in range(rounds):
        t = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t)
    return statistics.median(samples) * 1e3


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=200)
    ap.add_argument("--database-url", default=None)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        overrides = {"instance_dir": tmp, "logging": {"access_log": False}}
        if args.database_url:
            overrides["database_url"] = args.database_url
        svc = build_services(load_settings(overrides))
        upgrade(svc.engine)
        uid = build(svc)
        scopes = ["openid", "profile", "email", "phone", "address", "groups", "roles"]
        with svc.sessions() as db:
            perms = api.effective_permissions(db, svc.store, uid)
            claims = api.oidc_claims(db, uid, client_id=None, scopes=scopes)
            rows = {
                "effective permissions, cold": lambda: grants_for(db, None, uid),
                "effective permissions, cached": lambda: api.effective_permissions(
                    db, svc.store, uid
                ),
                "has_permission, cached": lambda: api.has_permission(
                    db, svc.store, uid, "app3:feature1:read"
                ),
                "oidc_claims (7 scopes)": lambda: api.oidc_claims(
                    db, uid, client_id=None, scopes=scopes
                ),
                "saml_attributes": lambda: api.saml_attributes(db, uid, sp_entity_id="sp"),
            }
            results = {name: timed(fn, args.rounds) for name, fn in rows.items()}
        svc.engine.dispose()
    backend = "postgresql" if args.database_url else "sqlite"
    print(
        f"user in 50 groups / 20 roles ({len(perms)} permissions, {len(claims['groups'])} "
        f"groups, {len(claims['roles'])} roles in claims), {backend}, "
        f"median of {args.rounds} rounds"
    )
    for name, ms in results.items():
        print(f"  {name:32} {ms:8.3f} ms")


if __name__ == "__main__":
    main()
