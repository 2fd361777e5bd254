"""Hostile logins against a real slapd: filter injection, the anonymous-bind trap, control
characters, over-long input. Each is refused, authenticates nobody and changes no row."""

from __future__ import annotations

import subprocess

import pytest
from sqlalchemy import select

from idp.backends.chain import credential_chain
from idp.backends.ldap import filter_value
from idp.core.credentials import Outcome
from idp.storage.models import User

from . import slapd_server as s
from .conftest import table_counts

INJECTIONS = [
    "*",
    "a*",
    "(",
    ")",
    "\\",
    "alice\x00",
    "\x00",
    "*)(uid=*",
    "alice)(uid=*",
    "*)(|(uid=*",
    "alice)(|(objectClass=*)",
    "al*ce",
    "\\2a",
]


def _snapshot(svc):
    with svc.sessions() as db:
        rows = db.execute(
            select(User.id, User.username, User.email, User.status, User.updated_at)
        ).all()
    return table_counts(svc), rows


@pytest.fixture
def provisioned(ldap_app):
    """An app where alice already signed in once (so 'nothing changed' covers an existing row)."""
    svc = ldap_app().extensions["idp"]
    assert credential_chain(svc).verify("alice", s.PASSWORDS["alice"]).outcome is Outcome.VALID
    return svc


@pytest.mark.parametrize("login", INJECTIONS)
def test_filter_injection_authenticates_nobody(provisioned, login):
    before = _snapshot(provisioned)
    for password in (s.PASSWORDS["alice"], "*", "x"):
        verdict = credential_chain(provisioned).verify(login, password)
        assert verdict.outcome in (Outcome.NOT_MINE, Outcome.INVALID), verdict
    assert _snapshot(provisioned) == before


def test_escaping_follows_rfc4515():
    assert filter_value("*)(uid=*") == "\\2a\\29\\28uid=\\2a"
    assert filter_value("a\\b\x00") == "a\\5cb\\00"


def test_empty_password_never_binds_even_where_the_server_allows_unauthenticated_binds(
    provisioned, slapd
):
    # The trap is real on this server: a DN with an empty password "binds" (anonymously).
    whoami = subprocess.run(
        [s.LDAPWHOAMI, "-x", "-H", slapd.url, "-D", s.user_dn("alice"), "-w", ""],
        capture_output=True,
        text=True,
        check=False,
    )
    assert whoami.returncode == 0 and whoami.stdout.strip() == "anonymous"
    before = _snapshot(provisioned)
    for login in ("alice", "bob", "nobody"):
        verdict = credential_chain(provisioned).verify(login, "")
        assert verdict.outcome is Outcome.INVALID and verdict.user_id is None
    assert _snapshot(provisioned) == before
    assert credential_chain(provisioned).verify("bob", "").outcome is Outcome.INVALID
    with provisioned.sessions() as db:  # bob never got a row from it
        assert db.scalar(select(User.id).where(User.username == "bob")) is None


@pytest.mark.parametrize(
    "login,password",
    [
        ("a" * 257, "x"),
        ("alice", "p" * 1025),
        ("a" * 100_000, s.PASSWORDS["alice"]),
        ("ali\nce", s.PASSWORDS["alice"]),
        ("alice\r\n", s.PASSWORDS["alice"] + "\x00"),
        ("   ", s.PASSWORDS["alice"]),
    ],
)
def test_over_long_and_control_character_input_is_refused(provisioned, login, password):
    before = _snapshot(provisioned)
    verdict = credential_chain(provisioned).verify(login, password)
    assert verdict.outcome in (Outcome.INVALID, Outcome.NOT_MINE)
    assert verdict.outcome is not Outcome.VALID
    assert _snapshot(provisioned) == before


def test_down_level_names_only_in_active_directory_mode(ldap_app):
    svc = ldap_app().extensions["idp"]
    before = _snapshot(svc)
    # Outside AD mode a backslash is an ordinary (escaped) character: no such user.
    assert credential_chain(svc).verify("CORP\\alice", s.PASSWORDS["alice"]).outcome is (
        Outcome.NOT_MINE
    )
    assert _snapshot(svc) == before
