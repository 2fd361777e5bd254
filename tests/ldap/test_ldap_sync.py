"""`idp ldap sync` / refresh against a real slapd whose size limit (5) is below the number of
users (16): only RFC 2696 paged results get everyone. Full and incremental sync, removed users
marked inactive, the empty-directory guard, and the CLI's one-JSON-object output."""

from __future__ import annotations

import json
import time

import pytest
from ldap3 import Connection, Server
from sqlalchemy import func, select

from idp.backends.chain import credential_chain
from idp.backends.ldap_sync import SyncError, sync
from idp.cli import main
from idp.core.credentials import Outcome
from idp.storage.models import User

from . import slapd_server as s
from .conftest import ldap_settings, table_counts

TOTAL = 4 + s.BULK_USERS  # alice, bob, carol (disabled), dave + bulk users


def _status(svc):
    with svc.sessions() as db:
        return dict(
            db.execute(select(User.username, User.status).where(User.source == "ldap")).all()
        )


def test_the_service_account_needs_paging(slapd):
    conn = Connection(
        Server("127.0.0.1", port=slapd.port), s.SERVICE_DN, s.SERVICE_PW, auto_bind=True
    )
    conn.search(f"ou=people,{s.SUFFIX}", "(uid=*)", attributes=["uid"])
    assert conn.result["description"] == "sizeLimitExceeded"
    assert len(conn.entries) == s.SIZE_LIMIT < TOTAL
    conn.unbind()


def test_full_then_incremental_sync_and_removed_users(ldap_app, slapd):
    svc = ldap_app(sync_page_size=3).extensions["idp"]
    report = sync(svc)  # the first sync is full even when not asked
    assert report.mode == "full"
    assert (report.seen, report.created, report.skipped) == (TOTAL, TOTAL - 1, 1)  # carol skipped
    status = _status(svc)
    assert len(status) == TOTAL - 1 and set(status.values()) == {"active"} and "carol" not in status
    again = sync(svc, full=True)
    assert (again.created, again.updated, again.unchanged) == (0, 0, TOTAL - 1)

    admin = slapd.admin()
    user002_deleted = False
    try:
        time.sleep(1.1)  # modifyTimestamp has one-second resolution
        admin.modify(s.user_dn("user001"), {"sn": [("MODIFY_REPLACE", ["Renamed"])]})
        admin.add(
            s.user_dn("erin"),
            ["inetOrgPerson", "adLikeUser"],
            {"uid": "erin", "cn": "Erin E", "sn": "E", "mail": "erin@example.org"},
        )
        inc = sync(svc)
        assert inc.mode == "incremental"
        assert inc.created == 1 and inc.updated == 1
        # Resumes at the server's highest modifyTimestamp (>=, so that second repeats): only
        # the two entries changed since are read again, and nothing needs writing.
        quiet = sync(svc)
        assert (quiet.seen, quiet.unchanged, quiet.created, quiet.updated) == (2, 2, 0, 0)
        with svc.sessions() as db:
            assert (
                db.scalar(select(User.family_name).where(User.username == "user001")) == "Renamed"
            )

        admin.delete(s.user_dn("user002"))
        user002_deleted = True
        assert sync(svc).deactivated == 0  # incremental sync cannot see deletions
        full = sync(svc, full=True)
        assert full.deactivated == 1
        assert _status(svc)["user002"] == "inactive"
        # A directory user gone from the directory cannot sign in; nothing was deleted locally.
        verdict = credential_chain(svc).verify("user002", "pw-002")
        assert verdict.outcome is Outcome.NOT_MINE
    finally:
        admin.delete(s.user_dn("erin"))
        admin.unbind()
        if user002_deleted:
            slapd.ldapadd(s.user_ldif("user002", "pw-002", "Bulk", "User002"))


def test_empty_directory_result_does_not_deactivate_everyone(ldap_app):
    svc = ldap_app(sync_page_size=3).extensions["idp"]
    sync(svc, full=True)
    wrong = ldap_app(sync_page_size=3, sync_filter="(uid=nobody-matches-this)").extensions["idp"]
    before = table_counts(wrong), _status(wrong)
    with pytest.raises(SyncError):
        sync(wrong, full=True)
    assert (table_counts(wrong), _status(wrong)) == before


def _cli(monkeypatch, tmp_path, instance_dir, server, *args):
    lines = ["[ldap]"]
    for key, value in ldap_settings(server, sync_page_size=3).items():
        lines.append(f"{key} = {json.dumps(value)}")
    config = tmp_path / "idp.toml"
    config.write_text(f'instance_dir = "{instance_dir}"\n' + "\n".join(lines) + "\n")
    monkeypatch.setenv("IDP_CONFIG", str(config))
    return main(list(args))


def test_cli_test_sync_refresh(ldap_app, slapd, monkeypatch, tmp_path, instance_dir, capsys):
    svc = ldap_app().extensions["idp"]
    assert _cli(monkeypatch, tmp_path, instance_dir, slapd, "ldap", "test", "--json") == 0
    out = json.loads(capsys.readouterr().out)
    assert out["ok"] is True and out["servers"][0]["users_found"] is True

    assert _cli(monkeypatch, tmp_path, instance_dir, slapd, "ldap", "sync", "--full", "--json") == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["mode"], report["created"]) == ("full", TOTAL - 1)

    assert (
        _cli(monkeypatch, tmp_path, instance_dir, slapd, "ldap", "refresh", "alice", "--json") == 0
    )
    refreshed = json.loads(capsys.readouterr().out)
    assert refreshed["status"] == "active"
    assert refreshed["groups"] == ["backend", "developers", "engineering"]

    with svc.sessions() as db:
        before = db.scalar(select(func.count(User.id)))
    assert _cli(monkeypatch, tmp_path, instance_dir, slapd, "ldap", "refresh", "ghost") == 1
    err = capsys.readouterr().err
    assert err.startswith("idp: ") and len(err.strip().splitlines()) == 1
    with svc.sessions() as db:
        assert db.scalar(select(func.count(User.id))) == before


def test_cli_reports_an_unreachable_directory_in_one_line(
    ldap_app, slapd, monkeypatch, tmp_path, instance_dir, capsys
):
    ldap_app()
    down = s.Slapd.__new__(s.Slapd)
    down.port = s.free_port()
    code = _cli(monkeypatch, tmp_path, instance_dir, down, "ldap", "sync", "--json")
    captured = capsys.readouterr()
    assert code == 1 and captured.out == ""
    assert captured.err.startswith("idp: the directory cannot be reached")
    assert len(captured.err.strip().splitlines()) == 1
