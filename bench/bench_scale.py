"""How cost grows (issue 21): the hot lookups at 1,000 and 100,000 users (and 10,000 clients),
their query plans, and the per-request CPU behind a 1 / 2 / 4-worker estimate.

    .venv/bin/python bench/bench_scale.py [--backend sqlite|postgres|both] [--sizes 1000,100000]
        [--clients 10000] [--rounds 400] [--budget 1.5] [--requests 200] [--workers-run]
        [--duration 8] [--json PATH]

For each backend a fresh instance (SQLite in a temp dir; PostgreSQL from IDP_BENCH_DATABASE_URL,
whose tables are dropped first, or else a database created on 127.0.0.1:5432 and dropped at the
end) is migrated and seeded in bulk through the storage models: users with one precomputed
argon2id hash (not one hash per user), each in three groups of a nested tree and holding one or
two roles (groups carry roles too), placed in a department; one refresh token, one SSO session
(store entry + index row) per user; clients in proportion (the largest size gets --clients).
Then, per size, every hot lookup runs through the code the endpoints run (idp.sso.users,
ClientCache, SessionManager, the store, idp.scim.service, idp.manage.users.search,
idp.storage.claims): the median wall time per call (time.perf_counter) and this process's CPU
per call (time.process_time), over --rounds calls on keys spread over the table, each lookup
bounded by --budget seconds. The ratio largest / smallest size shows the growth: a B-tree
lookup grows with log n (log 100,000 / log 1,000 = 1.67), a scan with n (100x).

Every SQL statement a lookup sends is captured and explained (SQLite EXPLAIN QUERY PLAN,
PostgreSQL EXPLAIN after ANALYZE): a full scan of a table that grows with users, clients or
sessions is flagged. tests/test_bench_scale.py runs the same check on a small SQLite instance
so an index cannot be lost unnoticed. The admin API's user list pages by OFFSET and counts the
matches: both are O(n) by design, measured and reported here (page 1 and the last page), not
flagged.

Workers: the per-request CPU of discovery, client_credentials and the authorization-code flow
(authorize with an SSO session, then the token request) through the Flask test client on the
largest instance; a worker serves at most 1 / CPU-per-request requests a second, so n workers on
n free cores serve n times that (HTTP server and wrk not counted: an upper bound). On a
2-core machine 4 workers share 2 cores: the 4-worker figure needs 4 cores. --workers-run starts
`idp serve --workers 1` and `--workers 2` on the largest instance and drives discovery and
client_credentials with wrk for --duration seconds each (run it on a quiet machine).

Writes bench/results/scale-<UTC time>.json and .md (the Markdown tables, also printed).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import platform
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))

from sqlalchemy import MetaData, event, func, insert, select, text  # noqa: E402

from idp.manage import Actor, transaction  # noqa: E402
from idp.manage import clients as manage_clients  # noqa: E402
from idp.manage import users as manage_users  # noqa: E402
from idp.oidc.clients import ClientCache  # noqa: E402
from idp.scim import service as scim  # noqa: E402
from idp.scim.mapping import Urls  # noqa: E402
from idp.scim.service import ListQuery  # noqa: E402
from idp.services import build_services  # noqa: E402
from idp.settings import load_settings  # noqa: E402
from idp.sso.sessions import SessionManager  # noqa: E402
from idp.sso.users import find_user, load_user  # noqa: E402
from idp.storage import claims as claims_api  # noqa: E402
from idp.storage.db import utcnow  # noqa: E402
from idp.storage.directory import Directory  # noqa: E402
from idp.storage.migrate import upgrade  # noqa: E402
from idp.storage.models import (  # noqa: E402
    Client,
    GroupMember,
    KVEntry,
    User,
    UserRole,
)
from idp.storage.models_auth import SsoSessionIndex  # noqa: E402
from idp.storage.models_oauth import RefreshToken  # noqa: E402
from idp.storage.rbac import grants_for  # noqa: E402
from idp.storage.seed import seed_role_templates  # noqa: E402

PASSWORD = "Bench-Horse-Battery-77"  # noqa: S105 - the seeded users' password
REDIRECT = "http://127.0.0.1:9/cb"
SCOPES = ["openid", "profile", "email", "groups", "roles"]
TEAMS, PROJECTS, ROLES = 20, 29, 20
CHUNK = 5000
# Tables that stay the size of the configuration, whatever the number of users, clients and
# sessions: a scan of one of these is not a growth problem. Every other table grows.
FIXED_TABLES = frozenset({
    "signing_keys", "rbac_state", "custom_fields", "companies", "positions", "permission_groups",
    "role_permission_groups", "applied_settings", "claim_rules",
})  # fmt: skip
CSRF = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')


# --- the instance ---------------------------------------------------------------------------


@dataclass
class Instance:
    """A migrated, seeded instance and what the lookups need to find in it."""

    svc: Any
    overrides: dict[str, Any]
    users: int = 0
    clients: int = 0
    first_uid: int = 0
    admin_client: str = "bench-admin"
    service_client: str = "bench-cc"
    code_client: str = "bench-code"
    secrets: dict[str, str] = field(default_factory=dict)
    password_hash: str = ""
    client_template: dict[str, Any] = field(default_factory=dict)
    session_template: dict[str, Any] = field(default_factory=dict)
    groups: list[int] = field(default_factory=list)
    roles: list[int] = field(default_factory=list)
    auditor: int = 0
    departments: list[int] = field(default_factory=list)

    @property
    def dialect(self) -> str:
        return self.svc.engine.dialect.name


def username(i: int) -> str:
    return f"user{i:06d}"


def email(i: int) -> str:
    return f"user{i:06d}@example.org"


def sid(i: int) -> str:
    return hashlib.sha256(f"sid-{i}".encode()).hexdigest()[:43]


def refresh_value(i: int) -> str:
    return f"bench-refresh-{i:06d}"


def client_id(i: int) -> str:
    return f"bench-client-{i:05d}"


def open_instance(overrides: dict[str, Any], drop_first: bool = False) -> Instance:
    """What `idp init` does to storage (migrate, keys, role templates), then the fixed part of
    the realm: a company with departments, a group tree, roles, the benchmark's own clients."""
    svc = build_services(load_settings(overrides))
    if drop_first:
        meta = MetaData()
        meta.reflect(svc.engine)
        meta.drop_all(svc.engine)
    upgrade(svc.engine)
    svc.keys.ensure()
    inst = Instance(svc, overrides)
    with svc.sessions.begin() as db:
        seed_role_templates(db)
        d = Directory(db, svc.clock)
        acme = d.create_company("acme", "Acme")
        eng = d.create_department(acme, "Engineering")
        for name in ("Platform", "Sales", "Support"):
            d.create_department(acme, name, eng if name == "Platform" else None)
        staff = d.create_group("staff")
        d.create_group("projects")
        roles = [
            d.create_role(f"app{r}", [f"app{r}:feature{j}:read" for j in range(5)])
            for r in range(ROLES)
        ]
        for r in range(1, ROLES, 4):  # some composites, walked by the claims
            d.add_composite(roles[r], roles[r - 1])
        teams = [d.create_group(f"team{t}", "staff") for t in range(TEAMS)]
        for t, g in enumerate(teams):
            d.assign_group_role(g, roles[t % ROLES])
        projects = [d.create_group(f"p{p}", "projects") for p in range(PROJECTS)]
        db.flush()
        inst.groups = [staff.id] + [g.id for g in teams] + [g.id for g in projects]
        inst.roles = [r.id for r in roles]
        inst.auditor = d.role_by_name("Auditor").id
        inst.departments = [dep.id for dep in acme_departments(db, acme.id)]
    with transaction(svc, Actor.operator("bench")) as ctx:
        _, inst.secrets["admin"] = manage_clients.create(
            ctx,
            inst.admin_client,
            name="Bench admin",
            grant_types=["client_credentials"],
            scope="admin scim",
            roles=["Administrator"],
        )
        # As bench/bench_oidc.py: a plain service client (no roles, no admin scope).
        _, inst.secrets["cc"] = manage_clients.create(
            ctx,
            inst.service_client,
            name="Bench service",
            grant_types=["client_credentials"],
            scope="api",
        )
        _, inst.secrets["code"] = manage_clients.create(
            ctx,
            inst.code_client,
            name="Bench RP",
            redirect_uris=[REDIRECT],
            grant_types=["authorization_code", "refresh_token"],
            scope="openid profile email offline_access",
            first_party=True,
            extra={"refresh_token_rotation": False},
        )
    with svc.sessions() as db:
        row = db.get(Client, inst.service_client)
        inst.client_template = {
            c: getattr(row, c)
            for c in ("secret_hash", "secret_enc", "meta", "first_party", "enabled")
        }
    inst.password_hash = svc.password_hasher.hash(PASSWORD)  # the one argon2id run
    manager = SessionManager(svc)
    made = manager.create("template", ["pwd"], "1", user_agent="bench", ip="127.0.0.1")
    inst.session_template = svc.store.get("ssoh:" + made.result.sid)
    return inst


def acme_departments(db, company_id: int) -> list:
    from idp.storage.models import Department

    return list(db.scalars(select(Department).where(Department.company_id == company_id)))


def _rows(table, rows: Iterator[dict[str, Any]], conn) -> None:
    batch: list[dict[str, Any]] = []
    for row in rows:
        batch.append(row)
        if len(batch) >= CHUNK:
            conn.execute(insert(table), batch)
            batch = []
    if batch:
        conn.execute(insert(table), batch)


def grow(inst: Instance, users: int, clients: int) -> float:
    """Bulk-insert users (with memberships, roles, a refresh token and an SSO session each)
    and clients up to the given counts; the seconds it took."""
    started = time.perf_counter()
    svc, now = inst.svc, utcnow()
    clock = svc.clock.now()
    with svc.engine.begin() as conn:
        if not inst.first_uid:
            inst.first_uid = int(conn.scalar(select(func.coalesce(func.max(User.id), 0)))) + 1
        base = inst.first_uid
        new = range(inst.users, users)
        _rows(
            User.__table__,
            (
                {
                    "id": base + i,
                    "uuid": str(uuid_for(i)),
                    "username": username(i),
                    "email": email(i),
                    "email_verified": True,
                    "given_name": f"Given{i}",
                    "family_name": f"Family{i % 997}",
                    "display_name": f"Given{i} Family{i % 997}",
                    "status": "active",
                    "source": "local",
                    "password_hash": inst.password_hash,
                    "must_change_password": False,
                    "require_mfa": False,
                    "phone_verified": False,
                    "custom": {},
                    "company_id": None,
                    "department_id": inst.departments[i % 4],
                    "created_at": now,
                    "updated_at": now,
                }
                for i in new
            ),
            conn,
        )
        _rows(
            GroupMember.__table__,
            (
                {
                    "group_id": g,
                    "user_id": base + i,
                    "created_at": now,
                }
                for i in new
                for g in (
                    inst.groups[1 + i % TEAMS],
                    inst.groups[1 + TEAMS + i % PROJECTS],
                    inst.groups[0],
                )
            ),
            conn,
        )
        _rows(
            UserRole.__table__,
            (
                {
                    "user_id": base + i,
                    "role_id": r,
                    "created_at": now,
                }
                for i in new
                for r in ([inst.roles[(i * 7) % ROLES]] + ([inst.auditor] if i % 10 == 0 else []))
            ),
            conn,
        )
        _rows(
            Client.__table__,
            (
                {
                    "client_id": client_id(c),
                    "name": f"Client {c}",
                    **inst.client_template,
                    "created_at": now,
                    "updated_at": now,
                }
                for c in range(inst.clients, clients)
            ),
            conn,
        )
        clients_now = max(clients, 1)
        _rows(
            RefreshToken.__table__,
            (
                {
                    "token_hash": svc.hasher.hash(refresh_value(i)),
                    "grant_id": f"g{i:06d}",
                    "client_id": client_id(i % clients_now) if clients else inst.code_client,
                    "user_id": base + i,
                    "scope": "openid profile offline_access",
                    "sid": None,
                    "offline": True,
                    "amr": ["pwd"],
                    "resource": [],
                    "created_at": now,
                    "last_used_at": now,
                    "expires_at": now + timedelta(days=30),
                    "revoked": False,
                }
                for i in new
            ),
            conn,
        )
        record = inst.session_template
        _rows(
            KVEntry.__table__,
            (
                {
                    "key": "ssoh:" + sid(i),
                    "value": json.dumps(
                        dict(
                            record,
                            result=dict(record["result"], user_uuid=str(uuid_for(i)), sid=sid(i)),
                        )
                    ),
                    "counter": 0,
                    "expires_at": clock + 3600,
                }
                for i in new
            ),
            conn,
        )
        _rows(
            SsoSessionIndex.__table__,
            (
                {
                    "sid": sid(i),
                    "user_id": base + i,
                    "created_at": now,
                    "ip": "127.0.0.1",
                    "user_agent": "bench",
                    "amr": "pwd",
                }
                for i in new
            ),
            conn,
        )
        if inst.dialect == "postgresql":
            conn.execute(
                text(
                    "SELECT setval(pg_get_serial_sequence('users', 'id'), "
                    "(SELECT max(id) FROM users))"
                )
            )
    if inst.dialect == "postgresql":
        with svc.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("ANALYZE"))
    inst.users, inst.clients = users, clients
    return time.perf_counter() - started


def uuid_for(i: int):
    import uuid

    return uuid.UUID(int=(0xBE0C << 112) | i)


# --- the lookups ----------------------------------------------------------------------------


@dataclass
class Lookup:
    """One hot lookup: ``run(i)`` looks up key number ``i``; ``prepare(i)`` (untimed) sets up
    what it consumes. ``bounded``: a point lookup, whose plans must not scan a growing table."""

    name: str
    run: Callable[[int], Any]
    prepare: Callable[[int], Any] | None = None
    bounded: bool = True
    note: str = ""


def lookups(inst: Instance) -> list[Lookup]:
    svc = inst.svc
    sessions = SessionManager(svc)
    urls = Urls("http://127.0.0.1/scim/v2")
    n, base = inst.users, inst.first_uid
    deep = max(1, (n + 49) // 50)

    def key(i: int) -> int:  # spread over the whole table
        return (i * 7919) % n

    def with_db(fn):
        def run(i: int):
            with svc.sessions() as db:
                found = fn(db, i)
            if found is None:
                raise AssertionError("bench: a lookup found nothing")
            return found

        return run

    def as_admin(fn):
        def run(i: int):
            with transaction(svc, Actor.service(inst.admin_client)) as ctx:
                return fn(ctx, i)

        return run

    def code_put(i: int) -> None:
        svc.store.put(
            "code:" + svc.hasher.hash(f"code-{i}"),
            {"client_id": inst.code_client, "grant_id": f"g{i}"},
            60,
        )

    def code_take(i: int):
        got = svc.store.take("code:" + svc.hasher.hash(f"code-{i}"))
        if got is None:
            raise AssertionError("bench: the code was not found")
        return got

    def scim_filter(ctx, i: int):
        q = ListQuery(filter=f'userName eq "{username(key(i)).upper()}"', count=50)
        rows, total, _ = scim.list_users(ctx, urls, q)
        if total != 1:
            raise AssertionError(f"bench: SCIM filter found {total}")
        return rows

    def admin_page(page: Callable[[int], int]):
        def run(ctx, i: int):
            rows, total = manage_users.search(
                ctx, manage_users.UserQuery(page=page(i), per_page=50)
            )
            if not rows or total < n:
                raise AssertionError("bench: empty admin page")
            return rows

        return run

    def client(i: int):
        got = ClientCache(svc).get(client_id(key(i) % max(inst.clients, 1)))
        if got is None:
            raise AssertionError("bench: no client")
        return got

    def session(i: int):
        got = sessions.peek(sid(key(i)))
        if got is None:
            raise AssertionError("bench: no session")
        return got

    return [
        Lookup("login: user by username", with_db(lambda db, i: find_user(db, username(key(i))))),
        Lookup("user by id", with_db(lambda db, i: load_user(db, user_id=base + key(i)))),
        Lookup("user by e-mail", with_db(lambda db, i: find_user(db, email(key(i))))),
        Lookup("client by client_id (token endpoint, cache cold)", client),
        Lookup(
            "refresh token by hash",
            with_db(lambda db, i: db.get(RefreshToken, svc.hasher.hash(refresh_value(key(i))))),
        ),
        Lookup("authorization code, take once", code_take, prepare=code_put),
        Lookup("SSO session by id", session),
        Lookup("SCIM filter userName eq", as_admin(scim_filter)),
        Lookup(
            "claims: OIDC claims of a user with groups and roles",
            with_db(
                lambda db, i: claims_api.oidc_claims(
                    db, base + key(i), client_id=inst.code_client, scopes=SCOPES
                )
            ),
        ),
        Lookup(
            "claims: effective permissions, cold",
            with_db(lambda db, i: grants_for(db, None, base + key(i))),
        ),
        Lookup(
            "admin API users, page of 50 at offset 0",
            as_admin(admin_page(lambda i: 1)),
            bounded=False,
            note="COUNT(*) of the matches on every page",
        ),
        Lookup(
            "admin API users, page of 50, last page",
            as_admin(admin_page(lambda i: deep)),
            bounded=False,
            note=f"OFFSET {(deep - 1) * 50:,}: the rows before the page are read and skipped",
        ),
    ]


# --- plans ----------------------------------------------------------------------------------


@contextmanager
def captured(engine, store: Any = None) -> Iterator[list[tuple[str, Any]]]:
    """The SQL statements (and their parameters) sent while the block runs."""
    seen: list[tuple[str, Any]] = []

    def listen(conn, cursor, statement, parameters, context, executemany):
        head = statement.lstrip().split(None, 1)[0].upper() if statement.strip() else ""
        if head in ("SELECT", "UPDATE", "DELETE", "INSERT", "WITH") and not executemany:
            seen.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", listen)
    # The embedded store sends its statements on SQLite straight to a DBAPI cursor, past
    # SQLAlchemy's events: its one method that does so is wrapped while the block runs.
    direct = getattr(store, "_sqlite_rows", None)
    if direct is not None:

        def sqlite_rows(statement: str, args: Any) -> list[Any]:
            seen.append((statement, args))
            return direct(statement, args)

        store._sqlite_rows = sqlite_rows
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", listen)
        if direct is not None:
            del store._sqlite_rows


def explain(engine, statement: str, parameters: Any) -> list[str]:
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            rows = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters).all()
            return [str(r[3]) for r in rows]
        rows = conn.exec_driver_sql("EXPLAIN " + statement, parameters).all()
        conn.rollback()
        return [str(r[0]) for r in rows]


_SQLITE_SCAN = re.compile(r"^SCAN (\w+)(?! CONSTANT)")
_PG_SCAN = re.compile(r"Seq Scan on (\w+)")


def full_scans(dialect: str, lines: list[str], small: frozenset[str] = frozenset()) -> list[str]:
    """The growing tables a plan reads whole (SQLite ``SCAN t``, also through an index;
    PostgreSQL ``Seq Scan on t``), leaving out the tables in ``small``."""
    found = []
    for line in lines:
        m = (_SQLITE_SCAN if dialect == "sqlite" else _PG_SCAN).search(line.strip())
        if m and m.group(1) not in FIXED_TABLES | small:
            found.append(m.group(1))
    return found


# PostgreSQL's planner reads a table of a few pages whole even when an index would serve (it
# costs less): a sequential scan counts only on a table of at least this many rows (pg_class
# estimates, fresh after the ANALYZE that follows seeding). SQLite's plans, taken without
# ANALYZE, use any index that serves: they are the check that the index exists.
PG_SMALL_ROWS = 1000


def small_tables(inst: Instance) -> frozenset[str]:
    if inst.dialect != "postgresql":
        return frozenset()
    with inst.svc.engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT relname FROM pg_class WHERE relkind = 'r' "
                "AND relnamespace = 'public'::regnamespace AND reltuples < :n"
            ),
            {"n": PG_SMALL_ROWS},
        )
        return frozenset(r[0] for r in rows)


def plans_of(inst: Instance, lookup: Lookup, i: int = 3) -> list[dict[str, Any]]:
    """Each statement the lookup sends, with its plan, the growing tables it scans and (on
    PostgreSQL) the small tables the planner chose to read whole."""
    if lookup.prepare:
        lookup.prepare(i)
    with captured(inst.svc.engine, inst.svc.store) as seen:
        lookup.run(i)
    small = small_tables(inst)
    out, done = [], set()
    for statement, parameters in seen:
        if statement in done:
            continue
        done.add(statement)
        lines = explain(inst.svc.engine, statement, parameters)
        everything = full_scans(inst.dialect, lines)
        out.append(
            {
                "sql": " ".join(statement.split()),
                "plan": lines,
                "scans": full_scans(inst.dialect, lines, small),
                "small_scans": sorted(
                    set(everything) - set(full_scans(inst.dialect, lines, small))
                ),
            }
        )
    return out


def plan_check(inst: Instance) -> dict[str, dict[str, Any]]:
    """Plans of every lookup; ``offending``: the point lookups' statements that scan."""
    report = {}
    for lookup in lookups(inst):
        stmts = plans_of(inst, lookup)
        report[lookup.name] = {
            "bounded": lookup.bounded,
            "note": lookup.note,
            "statements": stmts,
            "offending": [s for s in stmts if s["scans"]] if lookup.bounded else [],
        }
    return report


# --- timing ---------------------------------------------------------------------------------


def measure(lookup: Lookup, rounds: int, budget: float) -> dict[str, float]:
    for i in range(5):  # warm-up: statement caches, connection pool
        if lookup.prepare:
            lookup.prepare(i)
        lookup.run(i)
    samples, cpu = [], 0.0
    deadline = time.monotonic() + budget
    for i in range(rounds):
        if lookup.prepare:
            lookup.prepare(i)
        c, t = time.process_time(), time.perf_counter()
        lookup.run(i)
        samples.append(time.perf_counter() - t)
        cpu += time.process_time() - c
        if time.monotonic() > deadline and len(samples) >= 20:
            break
    return {
        "median_us": statistics.median(samples) * 1e6,
        "cpu_us": cpu / len(samples) * 1e6,
        "calls": len(samples),
    }


# --- per-request CPU and workers ------------------------------------------------------------


def basic(cid: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{cid}:{secret}".encode()).decode()


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).decode().rstrip("=")


def request_cpu(inst: Instance, requests: int, budget: float) -> dict[str, dict[str, float]]:
    """CPU per request (process_time) of three representative requests through the whole
    Flask app in this process."""
    from idp.app import create_app

    app = create_app(dict(inst.overrides, issuer="http://127.0.0.1:5000"))
    web = app.test_client()
    page = web.get("/login").get_data(as_text=True)
    signed = web.post(
        "/login",
        data={
            "csrf_token": CSRF.search(page).group(1),
            "username": username(7),
            "password": PASSWORD,
        },
    )
    if signed.status_code != 302:
        raise SystemExit(f"bench: the seeded user could not sign in ({signed.status_code})")
    service = {"Authorization": basic(inst.service_client, inst.secrets["cc"])}
    coder = {"Authorization": basic(inst.code_client, inst.secrets["code"])}
    state: dict[str, str] = {}

    def discovery():
        assert web.get("/.well-known/openid-configuration").status_code == 200

    def client_credentials():
        got = web.post(
            "/oauth2/token",
            headers=service,
            data={"grant_type": "client_credentials", "scope": "api"},
        )
        assert got.status_code == 200, got.get_data(as_text=True)

    def authorize():
        verifier, challenge = pkce()
        got = web.get(
            "/oauth2/authorize?"
            + urlencode(
                {
                    "response_type": "code",
                    "client_id": inst.code_client,
                    "redirect_uri": REDIRECT,
                    "scope": "openid profile email",
                    "state": "s",
                    "nonce": "n",
                    "code_challenge": challenge,
                    "code_challenge_method": "S256",
                }
            )
        )
        assert got.status_code == 302, got.status_code
        state["code"] = parse_qs(urlsplit(got.headers["Location"]).query)["code"][0]
        state["verifier"] = verifier

    def code_token():
        got = web.post(
            "/oauth2/token",
            headers=coder,
            data={
                "grant_type": "authorization_code",
                "code": state["code"],
                "code_verifier": state["verifier"],
                "redirect_uri": REDIRECT,
            },
        )
        assert got.status_code == 200, got.get_data(as_text=True)

    cases = {
        "discovery GET": (discovery, None),
        "client_credentials (RS256 JWT)": (client_credentials, None),
        "code flow: authorize with an SSO session": (authorize, None),
        "code flow: token request (code + PKCE)": (code_token, authorize),
    }
    out = {}
    try:
        for name, (run, before) in cases.items():
            for _ in range(5):
                if before:
                    before()
                run()
            cpu, wall, calls = 0.0, [], 0
            deadline = time.monotonic() + budget
            while calls < requests and (calls < 20 or time.monotonic() < deadline):
                if before:
                    before()
                c, t = time.process_time(), time.perf_counter()
                run()
                wall.append(time.perf_counter() - t)
                cpu += time.process_time() - c
                calls += 1
            out[name] = {
                "cpu_ms": cpu / calls * 1e3,
                "median_ms": statistics.median(wall) * 1e3,
                "requests": calls,
            }
    finally:
        queue = app.extensions["idp"].mail_queue
        if queue is not None:
            queue.stop()
        app.extensions["idp"].engine.dispose()
    full = (
        out["code flow: authorize with an SSO session"]["cpu_ms"]
        + out["code flow: token request (code + PKCE)"]["cpu_ms"]
    )
    out["code flow: authorize + token"] = {"cpu_ms": full, "median_ms": 0.0, "requests": 0}
    return out


def estimate(cpu_ms: float, workers: int, cores: int) -> float:
    """Requests a second of ``workers`` CPU-bound workers on ``cores`` free cores."""
    return min(workers, cores) * 1000 / cpu_ms


def workers_run(inst: Instance, workdir: Path, duration: float, conns: int) -> dict:
    """`idp serve --workers N` (N = 1, 2) on the seeded instance, driven by wrk."""
    import run as suite  # bench/run.py: its wrk driver and process helpers

    if not shutil.which("wrk"):
        raise SystemExit("bench: --workers-run needs wrk (apt-get install -y wrk)")
    env = {k: v for k, v in os.environ.items() if not k.startswith("IDP_")}
    # The server runs this checkout's code, whichever checkout the venv was installed from.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(BENCH.parent), env.get("PYTHONPATH")]))
    env.update(
        IDP_INSTANCE_DIR=str(inst.overrides["instance_dir"]),
        IDP_LOGGING_ACCESS_LOG="false",
        IDP_LOGGING_LEVEL="WARNING",
    )
    if "database_url" in inst.overrides:
        env["IDP_DATABASE_URL"] = inst.overrides["database_url"]
    req = suite.WRK / "req.lua"
    service = base64.b64encode(f"{inst.service_client}:{inst.secrets['cc']}".encode()).decode()
    out: dict[str, dict] = {}
    for workers in (1, 2):
        port = suite.free_port()
        base = f"http://127.0.0.1:{port}"
        env["IDP_ISSUER"] = base
        log = workdir / f"serve-{workers}.log"
        with log.open("w") as sink:
            proc = subprocess.Popen(
                [str(suite.IDP), "serve", "--port", str(port), "--workers", str(workers)],
                env=env,
                cwd=workdir,
                stdout=sink,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            try:
                suite.wait_ready(f"{base}/readyz", proc, timeout=180)
            except SystemExit:
                print(log.read_text()[-2000:], file=sys.stderr)
                raise
            cases = {
                "discovery GET": lambda d, b=base: suite.wrk(
                    f"{b}/.well-known/openid-configuration", d, req, conns=conns
                ),
                "client_credentials (RS256 JWT)": lambda d, b=base: suite.wrk(
                    f"{b}/oauth2/token",
                    d,
                    req,
                    conns=conns,
                    env={
                        "WRK_METHOD": "POST",
                        "WRK_BASIC": service,
                        "WRK_BODY": "grant_type=client_credentials&scope=api",
                    },
                ),
            }
            for name, case in cases.items():
                case(2)  # warm-up
                out.setdefault(name, {})[str(workers)] = case(duration)
        finally:
            suite.stop(proc)
    return out


# --- the run --------------------------------------------------------------------------------


@contextmanager
def backend_instance(backend: str, folder: Path) -> Iterator[Instance]:
    instance_dir = folder / backend / "instance"
    instance_dir.mkdir(parents=True)
    overrides: dict[str, Any] = {
        "instance_dir": str(instance_dir),
        "logging": {"access_log": False, "level": "WARNING"},
    }
    created = None
    drop_first = False
    if backend == "postgres":
        url = os.environ.get("IDP_BENCH_DATABASE_URL", "")
        if url:
            drop_first = True
        else:
            import psycopg

            created = f"idp_scale_{secrets.token_hex(4)}"
            with psycopg.connect(
                "postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True
            ) as conn:
                conn.execute(f"CREATE DATABASE {created}")
            url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{created}"
        overrides["database_url"] = url
    inst = open_instance(overrides, drop_first=drop_first)
    try:
        yield inst
    finally:
        inst.svc.engine.dispose()
        if created:
            import psycopg

            with psycopg.connect(
                "postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True
            ) as conn:
                conn.execute(f"DROP DATABASE IF EXISTS {created} WITH (FORCE)")


def run_backend(backend: str, args, folder: Path) -> dict:
    sizes = sorted(int(s) for s in args.sizes.split(","))
    result: dict[str, Any] = {"sizes": {}, "seed_s": {}}
    with backend_instance(backend, folder) as inst:
        for n in sizes:
            clients = max(1, round(args.clients * n / sizes[-1]))
            print(f"== {backend}: seeding {n:,} users, {clients:,} clients", flush=True)
            result["seed_s"][str(n)] = grow(inst, n, clients)
            timings, plans = {}, plan_check(inst)
            for lookup in lookups(inst):
                timings[lookup.name] = measure(lookup, args.rounds, args.budget)
                print(f"  {lookup.name}: {timings[lookup.name]['median_us']:.0f} µs", flush=True)
            result["sizes"][str(n)] = {
                "users": n,
                "clients": clients,
                "timings": timings,
                "plans": plans,
            }
        if not args.skip_requests:
            print(f"== {backend}: per-request CPU", flush=True)
            result["requests"] = request_cpu(inst, args.requests, args.budget * 3)
        if args.workers_run:
            print(f"== {backend}: idp serve --workers 1 / 2 with wrk", flush=True)
            result["workers_run"] = workers_run(inst, folder / backend, args.duration, args.conns)
    return result


def tables(results: dict) -> str:
    out = []
    cores = results["machine"]["cpus"] or 1
    for backend, res in results["backends"].items():
        sizes = list(res["sizes"])
        small, big = res["sizes"][sizes[0]], res["sizes"][sizes[-1]]
        out += [
            f"### {backend}: hot lookups, median per call (µs)",
            "",
            f"| lookup | {small['users']:,} users / {small['clients']:,} clients: wall (CPU) | "
            f"{big['users']:,} users / {big['clients']:,} clients: wall (CPU) | "
            "ratio wall (CPU) | plan |",
            "| --- | --- | --- | --- | --- |",
        ]
        for name in big["timings"]:
            a = small["timings"].get(name)
            b = big["timings"][name]
            entry = big["plans"][name]
            scans = sorted({t for s in entry["statements"] for t in s["scans"]})
            tiny = sorted({t for s in entry["statements"] for t in s.get("small_scans", ())})
            plan = "indexes" if not scans else "scans " + ", ".join(scans)
            if tiny:
                plan += f"; small tables read whole: {', '.join(tiny)}"
            if entry["note"]:
                plan += f" ({entry['note']})"
            ratio = (
                (f"{b['median_us'] / a['median_us']:.2f} ({b['cpu_us'] / a['cpu_us']:.2f})")
                if a
                else ""
            )
            small_us = f"{a['median_us']:,.0f} ({a['cpu_us']:,.0f})" if a else ""
            out.append(
                f"| {name} | {small_us} | {b['median_us']:,.0f} ({b['cpu_us']:,.0f}) | "
                f"{ratio} | {plan} |"
            )
        out += [
            "",
            "Wall: median per call. CPU: mean process_time per call of this process only (on "
            "PostgreSQL the server's own work is not in it). Ratio: largest / smallest size; a "
            "B-tree lookup grows with log n (1.67 from 1,000 to 100,000), a scan with n (100).",
            "",
        ]
        if "requests" in res:
            out += [
                f"### {backend}: per-request CPU and the worker estimate ({big['users']:,} users)",
                "",
                "| request | CPU ms / request | 1 worker | 2 workers | 4 workers (4 cores) |",
                "| --- | --- | --- | --- | --- |",
            ]
            for name, row in res["requests"].items():
                cpu = row["cpu_ms"]
                out.append(
                    f"| {name} | {cpu:.2f} | {estimate(cpu, 1, 4):,.0f}/s | "
                    f"{estimate(cpu, 2, 4):,.0f}/s | {estimate(cpu, 4, 4):,.0f}/s |"
                )
            out += [
                "",
                f"Estimates: n workers × 1 / CPU per request, on n free cores (this "
                f"machine has {cores}: 4 workers here serve what 2 do).",
            ]
            out.append("")
        if "workers_run" in res:
            out += [
                f"### {backend}: idp serve, wrk",
                "",
                "| case | 1 worker | 2 workers | 2 / 1 |",
                "| --- | --- | --- | --- |",
            ]
            for name, by in res["workers_run"].items():
                one, two = by["1"]["rps"], by["2"]["rps"]
                out.append(f"| {name} | {one:,.0f}/s | {two:,.0f}/s | {two / one:.2f} |")
            out.append("")
    return "\n".join(out)


def plan_text(results: dict) -> str:
    out = []
    for backend, res in results["backends"].items():
        big = list(res["sizes"].values())[-1]
        out.append(f"## {backend}, {big['users']:,} users")
        for name, entry in big["plans"].items():
            out.append(f"\n### {name}")
            for stmt in entry["statements"]:
                out.append(f"\n    {stmt['sql'][:300]}")
                out += [f"      {line}" for line in stmt["plan"]]
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="sqlite")
    ap.add_argument("--sizes", default="1000,100000", help="user counts, comma separated")
    ap.add_argument("--clients", type=int, default=10_000, help="clients at the largest size")
    ap.add_argument("--rounds", type=int, default=400, help="calls per lookup")
    ap.add_argument("--budget", type=float, default=1.5, help="seconds per lookup at most")
    ap.add_argument("--requests", type=int, default=200, help="requests per CPU case")
    ap.add_argument("--skip-requests", action="store_true")
    ap.add_argument(
        "--workers-run", action="store_true", help="also run idp serve --workers 1 and 2 under wrk"
    )
    ap.add_argument("--duration", type=float, default=8.0, help="seconds per wrk window")
    ap.add_argument("--conns", type=int, default=32)
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    ap.add_argument(
        "--render", type=Path, default=None, help="only print the tables of a saved results file"
    )
    args = ap.parse_args()
    if args.render:
        results = json.loads(args.render.read_text())
        stem = args.render.with_suffix("")
    else:
        results, stem = run(args)
    table = tables(results)
    stem.with_suffix(".md").write_text(table + "\n\n# Query plans\n\n" + plan_text(results) + "\n")
    print()
    print(table)
    offending = [
        (b, n)
        for b, res in results["backends"].items()
        for size in res["sizes"].values()
        for n, e in size["plans"].items()
        if e["offending"]
    ]
    for backend, name in offending:
        print(f"FULL SCAN in a point lookup: {backend}: {name}")
    print(f"\nresults: {stem}.json, {stem}.md")


def run(args) -> tuple[dict[str, Any], Path]:
    backends = ["sqlite", "postgres"] if args.backend == "both" else [args.backend]
    started = datetime.now(UTC)
    results: dict[str, Any] = {
        "date": started.isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "load": os.getloadavg(),
        },
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "backends": {},
    }
    folder = Path(tempfile.mkdtemp(prefix="idp-scale-"))
    try:
        for backend in backends:
            results["backends"][backend] = run_backend(backend, args, folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    results["machine"]["load_after"] = os.getloadavg()
    out_dir = BENCH / "results"
    out_dir.mkdir(exist_ok=True)
    stem = out_dir / f"scale-{started:%Y%m%dT%H%M%SZ}"
    stem.with_suffix(".json").write_text(json.dumps(results, indent=1))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return results, stem


if __name__ == "__main__":
    main()
