"""LDAP down, through the sign-in page (tests/ldap/test_ldap_outage_tls.py holds the credential
chain's side: UNAVAILABLE, not a wrong password; failover to a second URL).

The promise (docs/security.md, "Faults"): while the configured directory cannot be reached, a
local account (the administrators) still signs in; a name the directory would answer for gets
"Sign-in is temporarily unavailable" (503) with no failed attempt counted against it and
nothing written.
"""

from __future__ import annotations

from fault_kit import row_counts
from login_kit import GOOD, login, make_user
from test_serve import free_port

UNAVAILABLE = "Sign-in is temporarily unavailable. Please try again in a moment."


def _app(make_app):
    return make_app(
        auth={"backends": ["local", "ldap"]},
        lockout={"max_failures": 2, "window_minutes": 10, "lock_minutes": 10},
        ldap={
            "enabled": True,
            "urls": [f"ldap://127.0.0.1:{free_port()}", f"ldap://127.0.0.1:{free_port()}"],
            "bind_dn": "cn=idp,ou=service,dc=example,dc=org",
            "bind_password": "secret",
            "user_base_dn": "ou=people,dc=example,dc=org",
            "connect_timeout": 1,
        },
    )


def test_local_accounts_sign_in_while_the_directory_is_unreachable(make_app):
    app = _app(make_app)
    make_user(app.extensions["idp"], "admin")
    resp = login(app.test_client(), "admin", GOOD)
    assert resp.status_code == 302 and resp.headers["Location"] == "/account/"


def test_directory_names_are_told_it_is_unavailable_and_counted_nothing(make_app):
    app = _app(make_app)
    svc = app.extensions["idp"]
    before = row_counts(svc)
    for _ in range(3):  # more than max_failures: none of them counts
        resp = login(app.test_client(), "alice", "her-directory-password")
        assert resp.status_code == 503 and UNAVAILABLE in resp.get_data(as_text=True)
    assert row_counts(svc) == before  # no user copied, no audit row, no session
    # Neither locked nor a failure on the counter (the store's own keys, idp/backends/lockout.py).
    assert svc.store.get_many(["lock:n:alice", "fail:n:alice"]) == [None, None]
