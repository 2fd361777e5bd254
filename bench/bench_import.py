"""User import throughput: 10,000 rows of CSV and of XLSX into a fresh instance.

    .venv/bin/python bench/bench_import.py [--rows 10000] [--database-url URL] [--passwords]
        [--operator] [--one-at-a-time]

For each format: a fresh realm (SQLite in a temp dir; PostgreSQL when --database-url or
IDP_BENCH_DATABASE_URL names an empty database, whose tables are dropped first), then the file
goes through ``idp.manage.user_import`` exactly as ``POST /api/v1/users/import`` sends it: one
transaction, a SAVEPOINT per row, ``users.create`` with its permission checks and audit rows,
placement in a department, two groups, a role for every tenth row, a custom field. The actor
is a service account holding the Administrator role (the API's path), unless --operator.
Prints the seconds (wall clock and this process's CPU: on a shared machine the CPU time is the
steadier figure) and rows/s per format, and the same for a second import of the same file
(the upsert path: every row found and unchanged). ``--one-at-a-time`` turns the batched lane
for new users off (``idp.manage.user_import_batch``): every row through ``users.create``, as
for a delegated administrator. ``--passwords`` adds a password column
(argon2id, ~20-50 ms a hash: that, not the import, is then the cost).
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import MetaData, func, select  # noqa: E402

from idp.manage import Actor, transaction  # noqa: E402
from idp.manage import clients as manage_clients  # noqa: E402
from idp.manage.user_import import ImportOptions, import_users  # noqa: E402
from idp.services import build_services  # noqa: E402
from idp.settings import load_settings  # noqa: E402
from idp.storage.directory import Directory  # noqa: E402
from idp.storage.migrate import upgrade  # noqa: E402
from idp.storage.models import User  # noqa: E402
from idp.storage.seed import seed_role_templates  # noqa: E402

HEADER = [
    "username", "email", "given_name", "family_name", "company", "department", "groups",
    "roles", "start_date", "custom.employee_no",
]  # fmt: skip


def rows(n: int, passwords: bool) -> list[list[str]]:
    out = []
    for i in range(n):
        row = [
            f"user{i:05d}",
            f"user{i:05d}@example.org",
            f"Given{i}",
            f"Family{i % 997}",
            "acme",
            ("Engineering", "Engineering/Platform", "Sales", "Support")[i % 4],
            f"staff;staff/team{i % 20}",
            "Auditor" if i % 10 == 0 else "",
            f"20{10 + i % 15}-0{1 + i % 9}-1{i % 9}",
            str(100000 + i),
        ]
        if passwords:
            row.append(f"Import-Pass-{i:05d}-ok")
        out.append(row)
    return out


def as_csv(header: list[str], body: list[list[str]]) -> bytes:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(header)
    w.writerows(body)
    return buf.getvalue().encode()


def as_xlsx(header: list[str], body: list[list[str]]) -> bytes:
    import openpyxl

    book = openpyxl.Workbook(write_only=True)
    sheet = book.create_sheet("users")
    sheet.append(header)
    for row in body:
        sheet.append(row)
    buf = io.BytesIO()
    book.save(buf)
    return buf.getvalue()


def realm(svc) -> None:
    with svc.sessions.begin() as db:
        seed_role_templates(db)
        d = Directory(db, svc.clock)
        acme = d.create_company("acme", "Acme")
        eng = d.create_department(acme, "Engineering")
        d.create_department(acme, "Platform", eng)
        d.create_department(acme, "Sales")
        d.create_department(acme, "Support")
        d.create_group("staff")
        for t in range(20):
            d.create_group(f"team{t}", "staff")
        d.define_field("employee_no", "Employee number", type="integer")


def fresh(url: str | None, tmp: str):
    overrides = {"instance_dir": tmp, "logging": {"access_log": False}}
    if url:
        overrides["database_url"] = url
    svc = build_services(load_settings(overrides))
    if url:
        meta = MetaData()
        meta.reflect(svc.engine)
        meta.drop_all(svc.engine)
    upgrade(svc.engine)
    realm(svc)
    return svc


def actor(svc, operator: bool) -> Actor:
    if operator:
        return Actor.operator("bench")
    with transaction(svc, Actor.operator("bench")) as ctx:
        manage_clients.create(
            ctx,
            "bench-importer",
            grant_types=["client_credentials"],
            scope="admin",
            roles=["Administrator"],
        )
    return Actor.service("bench-importer")


def run(svc, who: Actor, data: bytes, name: str) -> tuple[float, float, dict]:
    t, cpu = time.perf_counter(), time.process_time()
    with transaction(svc, who) as ctx:
        result = import_users(
            ctx,
            data,
            filename=name,
            options=ImportOptions(match="email"),
            max_bytes=100 * 1024 * 1024,
            max_rows=1_000_000,
        )
    return time.perf_counter() - t, time.process_time() - cpu, result.as_dict()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=10_000)
    ap.add_argument("--database-url", default=os.environ.get("IDP_BENCH_DATABASE_URL") or None)
    ap.add_argument("--passwords", action="store_true")
    ap.add_argument("--operator", action="store_true", help="act as the CLI's operator")
    ap.add_argument(
        "--one-at-a-time",
        action="store_true",
        help="without the batched lane for new users (what a delegated administrator gets)",
    )
    args = ap.parse_args()
    if args.one_at_a_time:
        from idp.manage.user_import_batch import Lane

        Lane.open = lambda self: False
    header = HEADER + (["password"] if args.passwords else [])
    body = rows(args.rows, args.passwords)
    files = {"csv": as_csv(header, body), "xlsx": as_xlsx(header, body)}
    where = "PostgreSQL" if args.database_url else "SQLite"
    who = "operator" if args.operator else "service account (Administrator)"
    lane = ", one row at a time" if args.one_at_a_time else ""
    print(f"{args.rows} rows, {where}, as {who}{lane}")
    for kind, data in files.items():
        with tempfile.TemporaryDirectory() as tmp:
            svc = fresh(args.database_url, tmp)
            acting = actor(svc, args.operator)
            took, cpu, report = run(svc, acting, data, f"users.{kind}")
            assert report["created"] == args.rows, {k: report[k] for k in ("created", "failed")}
            again, cpu2, second = run(svc, acting, data, f"users.{kind}")
            assert second["unchanged"] == args.rows, second["rows"][:3]
            with svc.sessions() as db:
                assert db.scalar(select(func.count(User.id))) == args.rows
            print(
                f"{kind:5} {len(data) / 1e6:4.1f} MB  import {took:5.1f} s "
                f"({args.rows / took:5.0f} rows/s, CPU {cpu:5.1f} s)   "
                f"re-import, unchanged {again:5.1f} s ({args.rows / again:5.0f} rows/s, "
                f"CPU {cpu2:5.1f} s)"
            )
            svc.engine.dispose()


if __name__ == "__main__":
    main()
