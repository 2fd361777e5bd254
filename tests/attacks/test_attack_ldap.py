"""Attack suite: LDAP injection at the sign-in form, against a real slapd (issue 22).

The directory (tests/ldap/slapd_server.py) holds alice, bob, carol (disabled), dave and bulk
users under ou=people, plus, for this suite, an ``ou=admins`` branch whose ``root`` entry has
a password an attacker knows — so that a name which escaped into another branch would show by
signing in. Every hostile name is typed at ``/login`` with alice's real password, with ``*``
and with the admin entry's password: the answer is the ordinary "wrong credentials" page (401,
never a 500), no SSO session cookie, and no row of any table changes (users, LDAP links,
groups, roles, audit, sessions).

How the IdP searches: ``[ldap] user_filter`` with ``{username}`` replaced by
``ldap3.utils.conv.escape_filter_chars`` of the name (RFC 4515: ``* ( ) \\ NUL``), then binds
as the one entry found (search, then bind): there is no bind-DN template, so a name is never
put into a DN and ``escape_rdn`` has nothing to escape. The group search puts the found DN into
``group_filter`` through the same escaping. Backend-level injection without the web layer is
held by tests/ldap/test_ldap_hostile_input.py::test_filter_injection_authenticates_nobody.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from directory_api_kit import audit_actions, last_audit_id, snapshot
from login_kit import login
from support import require

from idp.backends import ldap as ldap_backend
from idp.sso.sessions import COOKIE

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from ldap import slapd_server as s  # noqa: E402  (tests/ldap, a package)

ADMIN_PW = "admins-branch-pw"
ADMIN_LDIF = f"""dn: ou=admins,{s.SUFFIX}
objectClass: organizationalUnit
ou: admins

dn: uid=root,ou=admins,{s.SUFFIX}
objectClass: inetOrgPerson
uid: root
cn: Root Admin
sn: Admin
mail: root@example.org
userPassword: {s.ssha(ADMIN_PW)}
"""

NAMES = [
    "*",
    "a*",
    "*)(uid=*",
    ")(uid=*",
    "alice)(uid=*",
    "alice)(|(uid=*",
    "(|(uid=*))",
    "*)(|(objectClass=*)",
    "alice\x00",
    "alice\\00",
    "\\2a",
    "al\\2aice",
    "alice\\29(uid=*",
    "\\",
    "alice,ou=admins",
    "root,ou=admins",
    f"uid=root,ou=admins,{s.SUFFIX}",
    "root,ou=admins,dc=example,dc=org",
    "alice)(objectClass=*))(&(uid=root",
    "root*",
    "*root",
]


@pytest.fixture(scope="module")
def slapd(tmp_path_factory):
    require(
        s.available(), "slapd / ldap-utils are not installed (apt-get install slapd ldap-utils)"
    )
    server = s.start_slapd(
        tmp_path_factory.mktemp("slapd"), s.make_pki(tmp_path_factory.mktemp("pki"))
    )
    server.ldapadd(ADMIN_LDIF)
    yield server
    server.stop()


def _app(make_app, slapd, **extra):
    ldap = {
        "enabled": True,
        "url": slapd.url,
        "bind_dn": s.SERVICE_DN,
        "bind_password": s.SERVICE_PW,
        "user_base_dn": s.SUFFIX,  # the whole tree: ou=admins is inside the search base
        "group_base_dn": f"ou=groups,{s.SUFFIX}",
        "connect_timeout": 2,
        "receive_timeout": 5,
    }
    ldap.update(extra)
    return make_app(auth={"backends": ["local", "ldap"]}, ldap=ldap)


@pytest.fixture
def app(make_app, slapd):
    app = _app(make_app, slapd)
    # alice signed in once: "nothing changed" then covers an existing directory user's rows.
    assert login(app.test_client(), "alice", s.PASSWORDS["alice"]).status_code == 302
    return app


AUDIT = {"audit_events", "audit_chain_head"}


def _rows(svc) -> dict:
    """Every row of every table but the audit log (a refused sign-in is audited)."""
    return {t: rows for t, rows in snapshot(svc).items() if t not in AUDIT}


def _refused(app, name: str) -> None:
    svc = app.extensions["idp"]
    before, audit_from = _rows(svc), last_audit_id(svc)
    for password in (s.PASSWORDS["alice"], ADMIN_PW, "*"):
        client = app.test_client()
        resp = login(client, name, password)
        assert resp.status_code in (400, 401), (name, password, resp.status_code)
        assert b"Traceback" not in resp.data
        assert client.get_cookie(COOKIE) is None, (name, password)
    assert _rows(svc) == before
    # The audit log only gained the failures (never a success, a provisioning, a link).
    assert set(audit_actions(svc, audit_from)) <= {"login.failure"}, audit_actions(svc, audit_from)


@pytest.mark.parametrize("name", NAMES)
def test_injected_names_at_the_sign_in_form_bind_nobody(app, name):
    _refused(app, name)


def test_the_admins_branch_is_reachable_by_its_own_name_only(app):
    """The control: root's entry is inside the search base and its password works for the name
    ``root`` — so the refusals above are the escaping's doing, not an unreachable branch."""
    client = app.test_client()
    assert login(client, "root", ADMIN_PW).status_code == 302
    assert client.get_cookie(COOKIE) is not None


@pytest.mark.parametrize(
    "name",
    ["CORP\\*", "CORP\\*)(uid=*", "CORP\\root,ou=admins", "*\\alice", "CORP\\alice\x00"],
)
def test_down_level_names_in_active_directory_mode_bind_nobody(make_app, slapd, name):
    app = _app(
        make_app,
        slapd,
        active_directory=True,
        user_filter="(|(uid={username})(sAMAccountName={username}))",
    )
    _refused(app, name)


def test_filter_values_are_escaped_by_ldap3():
    """The escaping is ldap3's own (RFC 4515), not a home-made one."""
    from ldap3.utils.conv import escape_filter_chars

    for name in NAMES:
        assert ldap_backend.filter_value(name) == escape_filter_chars(name)
        escaped = ldap_backend.filter_value(name)
        assert not set(escaped) & {"*", "(", ")", "\x00"}
