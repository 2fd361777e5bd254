"""Directory logins through the credential chain against a real slapd: JIT provisioning,
refresh on every login, groups (nested) -> local groups and roles, AD mode, local users first."""

from __future__ import annotations

import importlib.util

from ldap3 import MODIFY_ADD, MODIFY_DELETE, MODIFY_REPLACE
from sqlalchemy import select

from idp.backends.chain import credential_chain, password_hasher
from idp.backends.ldap import AD_SUBCODES, ad_message, is_directory_user
from idp.core.credentials import Outcome
from idp.storage.directory import Directory, NewUser
from idp.storage.models import Group, GroupMember, GroupRole, Role, User

from . import slapd_server as s


def _user(svc, username):
    with svc.sessions() as db:
        return db.scalar(select(User).where(User.username == username))


def _groups(svc, user_id):
    with svc.sessions() as db:
        return sorted(
            db.scalars(
                select(Group.path)
                .join(GroupMember, GroupMember.group_id == Group.id)
                .where(GroupMember.user_id == user_id)
            )
        )


def _group_roles(svc, user_id):
    """Roles the user holds through its groups (group_roles rows)."""
    with svc.sessions() as db:
        return sorted(
            db.scalars(
                select(Role.name)
                .join(GroupRole, GroupRole.role_id == Role.id)
                .join(GroupMember, GroupMember.group_id == GroupRole.group_id)
                .where(GroupMember.user_id == user_id)
                .distinct()
            )
        )


def test_first_login_provisions_user_with_nested_groups_and_roles(ldap_app):
    svc = ldap_app().extensions["idp"]
    verdict = credential_chain(svc).verify("alice", s.PASSWORDS["alice"])
    assert verdict.outcome is Outcome.VALID and verdict.backend == "ldap"
    user = _user(svc, "alice")
    assert verdict.user_id == user.id
    assert (user.source, user.ldap_dn, user.status) == ("ldap", s.user_dn("alice"), "active")
    assert (user.email, user.given_name, user.family_name) == (
        "alice@example.org",
        "Alice",
        "Liddell",
    )
    assert user.display_name == "Alice Liddell" and user.password_hash is None
    assert user.external_id and len(user.external_id) == 36  # entryUUID
    assert user.email_verified is False  # trust_email defaults to off, as in Keycloak
    assert is_directory_user(user)
    # developers directly; backend and engineering through nesting.
    assert _groups(svc, user.id) == ["backend", "developers", "engineering"]
    assert _group_roles(svc, user.id) == ["backend", "developers", "engineering"]
    assert verdict.attributes["groups"] == ["backend", "developers", "engineering"]


def test_claims_see_directory_groups_and_roles(ldap_app):
    """The claims teammates build tokens from these rows; when their mapper exists, check it."""
    svc = ldap_app(group_role_map=["ops=Operators"]).extensions["idp"]
    with svc.sessions.begin() as db:
        Directory(db).create_role("Operators")
    verdict = credential_chain(svc).verify("bob", s.PASSWORDS["bob"])
    assert verdict.outcome is Outcome.VALID
    assert _groups(svc, verdict.user_id) == ["ops"]
    assert _group_roles(svc, verdict.user_id) == ["Operators", "ops"]
    if importlib.util.find_spec("idp.storage.claims") is None:
        return  # the claims mapper is not merged yet: the rows above are what it reads
    from idp.storage import claims

    with svc.sessions.begin() as db:
        claims.seed_default_rules(db)
    with svc.sessions() as db:
        subject = claims.load_subject(db, verdict.user_id)
        out = claims.oidc_claims(
            db, verdict.user_id, client_id=None, scopes=["openid", "groups", "roles"]
        )
    assert [g[0] for g in subject.groups] == ["ops"]
    assert sorted(subject.roles) == ["Operators", "ops"]
    assert out["groups"] == ["ops"] and sorted(out["roles"]) == ["Operators", "ops"]


def test_attributes_and_groups_refresh_on_every_login(ldap_app, slapd):
    svc = ldap_app().extensions["idp"]
    chain = credential_chain(svc)
    assert chain.verify("dave", s.PASSWORDS["dave"]).outcome is Outcome.VALID
    dave = _user(svc, "dave")
    assert _groups(svc, dave.id) == ["engineering"]
    admin = slapd.admin()
    try:
        admin.modify(
            s.user_dn("dave"),
            {
                "sn": [(MODIFY_REPLACE, ["Bowman-Poole"])],
                "mail": [(MODIFY_REPLACE, ["dave@corp.example.org"])],
            },
        )
        admin.modify(s.group_dn("engineering"), {"member": [(MODIFY_DELETE, [s.user_dn("dave")])]})
        admin.modify(s.group_dn("ops"), {"member": [(MODIFY_ADD, [s.user_dn("dave")])]})
        verdict = chain.verify("dave", s.PASSWORDS["dave"])
        assert verdict.outcome is Outcome.VALID and verdict.user_id == dave.id
        again = _user(svc, "dave")
        assert (again.family_name, again.email) == ("Bowman-Poole", "dave@corp.example.org")
        assert _groups(svc, dave.id) == ["ops"]
    finally:
        admin.modify(
            s.user_dn("dave"),
            {
                "sn": [(MODIFY_REPLACE, ["Bowman"])],
                "mail": [(MODIFY_REPLACE, ["dave@example.org"])],
            },
        )
        admin.modify(s.group_dn("ops"), {"member": [(MODIFY_DELETE, [s.user_dn("dave")])]})
        admin.modify(s.group_dn("engineering"), {"member": [(MODIFY_ADD, [s.user_dn("dave")])]})
        admin.unbind()


def test_directory_memberships_do_not_touch_local_groups(ldap_app):
    svc = ldap_app().extensions["idp"]
    chain = credential_chain(svc)
    first = chain.verify("bob", s.PASSWORDS["bob"])
    with svc.sessions.begin() as db:
        local = Directory(db).create_group("contractors")
        db.add(GroupMember(group_id=local.id, user_id=first.user_id))
    assert chain.verify("bob", s.PASSWORDS["bob"]).outcome is Outcome.VALID
    assert _groups(svc, first.user_id) == ["contractors", "ops"]


def test_memberof_mode_and_group_parent(ldap_app):
    svc = ldap_app(
        group_membership="memberof", group_parent="directory", role_prefix="ldap-"
    ).extensions["idp"]
    verdict = credential_chain(svc).verify("alice", s.PASSWORDS["alice"])
    assert verdict.outcome is Outcome.VALID
    assert _groups(svc, verdict.user_id) == [
        "directory/backend",
        "directory/developers",
        "directory/engineering",
    ]
    assert _group_roles(svc, verdict.user_id) == [
        "ldap-backend",
        "ldap-developers",
        "ldap-engineering",
    ]


def test_memberof_groups_outside_the_group_base_do_not_count_however_spelled(ldap_app, slapd):
    """memberOf mode: bob is put into "admins" of the OU ``x,ou=groups`` beside the group base:
    not under the base, so no group and no role. (slapd writes that memberOf value with the
    comma as ``\\2C``; Active Directory's ``\\,``, whose text ends with the base, is in
    tests/ldap/test_ldap_dn.py.) The base written in capitals with spaces still finds his real
    group, which a comparison of the text missed."""
    hostile_ou = "ou=x\\,ou=groups," + s.SUFFIX
    hostile = "cn=admins," + hostile_ou
    admin = slapd.admin()
    try:
        assert admin.add(hostile_ou, ["organizationalUnit"], {"ou": "x,ou=groups"})
        assert admin.add(hostile, ["groupOfNames"], {"cn": "admins", "member": s.user_dn("bob")})
        admin.search(s.user_dn("bob"), "(objectClass=*)", attributes=["memberOf"])
        listed = [str(v) for v in admin.entries[0].memberOf.values]
        assert sorted(v.split(",")[0] for v in listed) == ["cn=admins", "cn=ops"]
        app = ldap_app(group_membership="memberof", group_base_dn="OU=Groups , DC=Example, DC=Org")
        svc = app.extensions["idp"]
        verdict = credential_chain(svc).verify("bob", s.PASSWORDS["bob"])
        assert verdict.outcome is Outcome.VALID
        assert _groups(svc, verdict.user_id) == ["ops"]
        assert _group_roles(svc, verdict.user_id) == ["ops"]
        with svc.sessions() as db:
            assert db.scalar(select(Group).where(Group.name == "admins")) is None
            assert db.scalar(select(Role).where(Role.name == "admins")) is None
    finally:
        admin.delete(hostile)
        admin.delete(hostile_ou)
        admin.unbind()


def test_nested_groups_off_gives_direct_groups_only(ldap_app):
    svc = ldap_app(nested_groups="off").extensions["idp"]
    verdict = credential_chain(svc).verify("alice", s.PASSWORDS["alice"])
    assert _groups(svc, verdict.user_id) == ["developers"]


def test_wrong_password_is_invalid_and_changes_nothing(ldap_app):
    svc = ldap_app().extensions["idp"]
    chain = credential_chain(svc)
    assert chain.verify("alice", "not-her-password").outcome is Outcome.INVALID
    assert _user(svc, "alice") is None  # no provisioning without a valid bind
    first = chain.verify("alice", s.PASSWORDS["alice"])
    wrong = chain.verify("alice", "nope")
    # The local id lets the login page count the failure against the right account.
    assert (wrong.outcome, wrong.user_id, wrong.message) == (Outcome.INVALID, first.user_id, None)
    assert chain.verify("nobody-here", "x").outcome is Outcome.NOT_MINE


def test_disabled_directory_user_is_refused_with_a_reason(ldap_app):
    svc = ldap_app().extensions["idp"]
    verdict = credential_chain(svc).verify("carol", s.PASSWORDS["carol"])
    assert verdict.outcome is Outcome.INVALID
    assert verdict.message == AD_SUBCODES["533"]
    assert _user(svc, "carol") is None  # never provisioned while disabled
    # With a wrong password the reason is not revealed.
    assert credential_chain(svc).verify("carol", "guess").message is None


def test_local_users_are_served_first_and_directory_users_cannot_use_a_local_password(ldap_app):
    svc = ldap_app().extensions["idp"]
    hasher = password_hasher(svc)
    with svc.sessions.begin() as db:
        Directory(db).create_user(
            NewUser(
                username="root", email="root@example.org", password_hash=hasher.hash("local-pw")
            )
        )
    chain = credential_chain(svc)
    verdict = chain.verify("root", "local-pw")
    assert (verdict.outcome, verdict.backend) == (Outcome.VALID, "local")
    ldap_verdict = chain.verify("alice", s.PASSWORDS["alice"])
    assert ldap_verdict.backend == "ldap"
    assert not is_directory_user(_user(svc, "root"))


def test_active_directory_logins_by_samaccountname_upn_and_down_level_name(ldap_app):
    svc = ldap_app(
        active_directory=True,
        user_filter="(|(sAMAccountName={username})(userPrincipalName={username}))",
        username_attribute="sAMAccountName",
    ).extensions["idp"]
    chain = credential_chain(svc)
    ids = set()
    for login in ("bob", "bob@corp.example.org", "CORP\\bob"):
        verdict = chain.verify(login, s.PASSWORDS["bob"])
        assert verdict.outcome is Outcome.VALID, login
        ids.add(verdict.user_id)
    assert len(ids) == 1 and _user(svc, "bob").source == "ldap"
    disabled = chain.verify("carol@corp.example.org", s.PASSWORDS["carol"])
    assert (disabled.outcome, disabled.message) == (Outcome.INVALID, AD_SUBCODES["533"])


def test_ad_bind_sub_codes_map_to_clear_messages():
    base = "80090308: LdapErr: DSID-0C09044E, comment: AcceptSecurityContext error, data {}, v4563"
    assert "expired" in ad_message(base.format("532"))
    assert "disabled" in ad_message(base.format("533"))
    assert "account has expired" in ad_message(base.format("701"))
    assert "must change" in ad_message(base.format("773"))
    assert "locked" in ad_message(base.format("775"))
    assert ad_message(base.format("52e")) is None  # a plain wrong password says nothing more
    assert ad_message("Invalid credentials") is None


def test_ldap_section_alone_signs_directory_users_in_through_the_login_page(
    make_app, slapd, tmp_path, monkeypatch
):
    """An operator writes only the interface's [ldap] keys into the config file (no [auth]
    section): a directory user signs in at /login and gets an SSO session."""
    from login_kit import login

    from idp.sso.sessions import COOKIE
    from idp.web.sso import BrowserSessions as SessionManager

    config = tmp_path / "idp.toml"
    config.write_text(
        "[ldap]\n"
        "enabled = true\n"
        f'url = "{slapd.url}"\n'
        f'bind_dn = "{s.SERVICE_DN}"\n'
        f'bind_password = "{s.SERVICE_PW}"\n'
        f'user_base_dn = "ou=people,{s.SUFFIX}"\n'
        'user_filter = "(uid={username})"\n'
        'username_attribute = "uid"\n'
        f'group_base_dn = "ou=groups,{s.SUFFIX}"\n'
        "groups_as_roles = true\n"
    )
    monkeypatch.setenv("IDP_CONFIG", str(config))
    app = make_app()
    svc = app.extensions["idp"]
    assert svc.settings.auth.backends == ("local", "ldap")
    client = app.test_client()
    resp = login(client, "alice", s.PASSWORDS["alice"])
    assert resp.status_code == 302 and resp.headers["Location"] == "/account/"
    user = _user(svc, "alice")
    assert (user.source, user.ldap_dn) == ("ldap", s.user_dn("alice"))
    with app.test_request_context(
        headers={"Cookie": f"{COOKIE}={client.get_cookie(COOKIE).value}"}
    ):
        session = SessionManager(svc).current()
    assert session is not None and session.user_uuid == user.uuid
    assert client.get("/account/").status_code == 200
    # A wrong directory password is still refused, without a session.
    other = app.test_client()
    assert login(other, "bob", "not-bobs-password").status_code == 401
    assert other.get_cookie(COOKIE) is None
