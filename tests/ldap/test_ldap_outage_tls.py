"""Outage, failover and TLS against real slapd processes: LDAPS and StartTLS with CA
verification, a certificate from the wrong CA refused, servers down -> UNAVAILABLE (no failed
attempt counted, no row changed) while local administrators still sign in."""

from __future__ import annotations

from sqlalchemy import select

from idp.backends.chain import credential_chain, password_hasher
from idp.backends.ldap import UNAVAILABLE_MESSAGE
from idp.core.credentials import Outcome
from idp.storage.directory import Directory, NewUser
from idp.storage.models import User

from . import slapd_server as s
from .conftest import table_counts


def _closed_port_url() -> str:
    return f"ldap://127.0.0.1:{s.free_port()}"


def test_ldaps_with_ca_verification(ldap_app, slapd, pki):
    svc = ldap_app(url=slapd.ldaps_url, ca_file=str(pki.ca_file)).extensions["idp"]
    verdict = credential_chain(svc).verify("alice", s.PASSWORDS["alice"])
    assert verdict.outcome is Outcome.VALID


def test_start_tls_with_ca_verification(ldap_app, slapd, pki):
    svc = ldap_app(start_tls=True, ca_file=str(pki.ca_file)).extensions["idp"]
    verdict = credential_chain(svc).verify("bob", s.PASSWORDS["bob"])
    assert verdict.outcome is Outcome.VALID


def test_certificate_from_another_ca_is_refused(ldap_app, slapd, pki):
    for extra in (
        {"url": slapd.ldaps_url, "ca_file": str(pki.other_ca_file)},
        {"start_tls": True, "ca_file": str(pki.other_ca_file)},
    ):
        svc = ldap_app(**extra).extensions["idp"]
        before = table_counts(svc)
        verdict = credential_chain(svc).verify("alice", s.PASSWORDS["alice"])
        assert (verdict.outcome, verdict.message) == (Outcome.UNAVAILABLE, UNAVAILABLE_MESSAGE)
        assert verdict.user_id is None
        assert table_counts(svc) == before


def test_certificate_for_another_host_name_is_refused(ldap_app, slapd, pki):
    # The certificate names localhost and 127.0.0.1; 127.0.0.2 reaches the same server.
    url = f"ldaps://127.0.0.2:{slapd.tls_port}"
    svc = ldap_app(url=url, ca_file=str(pki.ca_file)).extensions["idp"]
    before = table_counts(svc)
    verdict = credential_chain(svc).verify("alice", s.PASSWORDS["alice"])
    assert verdict.outcome is Outcome.UNAVAILABLE
    assert table_counts(svc) == before
    # The same URL with verification off connects (lab set-ups only): the name was the problem.
    lax = ldap_app(url=url, tls_verify=False).extensions["idp"]
    assert credential_chain(lax).verify("alice", s.PASSWORDS["alice"]).outcome is Outcome.VALID


def test_unreachable_directory_is_unavailable_and_local_admins_still_sign_in(ldap_app):
    svc = ldap_app(urls=[_closed_port_url(), _closed_port_url()], url="").extensions["idp"]
    with svc.sessions.begin() as db:
        Directory(db).create_user(
            NewUser(
                username="admin",
                email="admin@example.org",
                password_hash=password_hasher(svc).hash("admin-pw"),
            )
        )
    before = table_counts(svc)
    chain = credential_chain(svc)
    verdict = chain.verify("alice", s.PASSWORDS["alice"])
    # UNAVAILABLE is not INVALID: the login page shows the outage and counts no failed attempt.
    assert (verdict.outcome, verdict.message, verdict.user_id) == (
        Outcome.UNAVAILABLE,
        UNAVAILABLE_MESSAGE,
        None,
    )
    assert table_counts(svc) == before
    admin = chain.verify("admin", "admin-pw")
    assert (admin.outcome, admin.backend) == (Outcome.VALID, "local")


def test_existing_directory_user_during_outage_changes_nothing(ldap_app, slapd):
    app = ldap_app()
    svc = app.extensions["idp"]
    assert credential_chain(svc).verify("bob", s.PASSWORDS["bob"]).outcome is Outcome.VALID
    down = ldap_app(url=_closed_port_url())
    # Same database (same instance dir), directory now unreachable.
    svc2 = down.extensions["idp"]
    with svc2.sessions() as db:
        before = db.execute(select(User.username, User.status, User.updated_at)).all()
    verdict = credential_chain(svc2).verify("bob", s.PASSWORDS["bob"])
    assert verdict.outcome is Outcome.UNAVAILABLE
    with svc2.sessions() as db:
        assert db.execute(select(User.username, User.status, User.updated_at)).all() == before


def test_failover_to_the_second_server(ldap_app, start_extra_slapd):
    first, second = start_extra_slapd(), start_extra_slapd()
    svc = ldap_app(first, url="", urls=[first.url, second.url]).extensions["idp"]
    chain = credential_chain(svc)
    assert chain.verify("alice", s.PASSWORDS["alice"]).outcome is Outcome.VALID
    first.stop()  # pooled connections to it are now dead too
    for _ in range(3):
        verdict = chain.verify("alice", s.PASSWORDS["alice"])
        assert verdict.outcome is Outcome.VALID
    assert chain.verify("alice", "wrong").outcome is Outcome.INVALID
    second.stop()
    assert chain.verify("alice", s.PASSWORDS["alice"]).outcome is Outcome.UNAVAILABLE


def test_dead_first_url_from_the_start(ldap_app, slapd):
    svc = ldap_app(url="", urls=[_closed_port_url(), slapd.url]).extensions["idp"]
    assert credential_chain(svc).verify("bob", s.PASSWORDS["bob"]).outcome is Outcome.VALID


def test_wrong_service_password_is_an_outage_not_a_wrong_user_password(ldap_app):
    svc = ldap_app(bind_password="not-the-service-password").extensions["idp"]
    before = table_counts(svc)
    verdict = credential_chain(svc).verify("alice", s.PASSWORDS["alice"])
    assert verdict.outcome is Outcome.UNAVAILABLE
    assert table_counts(svc) == before
