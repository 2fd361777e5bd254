"""Attack suite: the admin API, SCIM and the console (issue 22).

A delegated administrator (``lead``: User Manager over company acme only) attacks company globex
and tries to widen their own reach; a narrow service token calls wider operations; request
bodies carry fields nobody may set. Every refusal is checked against a snapshot of every table
(``directory_api_kit.snapshot``: rows, audit, sessions, tokens) taken before the attack.

What the older suites already hold is cited, not repeated: a user of another company through
every /api/v1/users operation (tests/api/test_api_delegation.py), the export and import of a
delegated administrator (tests/api/test_api_import_export.py::
test_delegated_admin_exports_and_imports_only_their_company), the console's user pages and
batches (tests/admin/test_admin_users.py::test_delegated_admin_sees_only_their_company), the
mass assignment of a user PATCH (tests/api/test_api_users.py::
test_patch_mass_assignment_is_400_naming_the_field), SCIM's read-only attributes
(tests/scim/test_scim_hostile_and_semantics.py).

Found here and fixed in the service layer: a role held over one company could be given to
someone in that company *everywhere* or *for another company* (so a delegated administrator
made themselves a global User Manager with one request), and a group carrying a role held
over one company could be joined (by oneself or another, through the API, SCIM or the
console), which gave that role everywhere; approving an access request had the same hole."""

from __future__ import annotations

import json

import pytest
from admin_attack_kit import Realm, Scim, build_realm, patch_op
from admin_kit import console_csrf, signed_in
from api_kit import api, service_token, user_token
from directory_api_kit import PROBLEM, Caller, snapshot
from login_kit import GOOD, make_user
from sqlalchemy import select

from idp.storage.directory import Directory
from idp.storage.models import GroupMember, Role, User, UserRole

SCIM_ERROR = "urn:ietf:params:scim:api:messages:2.0:Error"
SEARCH = "urn:ietf:params:scim:api:messages:2.0:SearchRequest"
NOBODY = "00000000-0000-4000-8000-000000000000"


@pytest.fixture
def realm(app) -> Realm:
    return build_realm(app)


def _unchanged(realm: Realm, attack, *statuses: int):
    """``attack()`` answers one of ``statuses`` and no row of any table changed."""
    before = snapshot(realm.svc)
    resp = attack()
    assert resp.status_code in statuses, (resp.status_code, resp.get_data(as_text=True)[:400])
    assert snapshot(realm.svc) == before
    return resp


def _problem(resp, status: int) -> None:
    assert resp.status_code == status, resp.get_data(as_text=True)[:400]
    assert resp.mimetype == PROBLEM


def _scim_error(resp, status: int) -> None:
    assert resp.status_code == status, resp.get_data(as_text=True)[:400]
    assert resp.json["schemas"] == [SCIM_ERROR]


def _member_names(realm: Realm, group: str) -> set[str]:
    with realm.svc.sessions() as db:
        return set(
            db.scalars(
                select(User.username)
                .join(GroupMember, GroupMember.user_id == User.id)
                .where(GroupMember.group_id == realm.groups[group])
            )
        )


# --- IDOR across companies ---------------------------------------------------------------------


def test_api_group_membership_of_another_companys_user_is_404_and_unchanged(realm):
    a = realm.api()
    gus, staff = realm.uuids["gus"], realm.groups["staff"]
    for attack in (
        lambda: a.delete(f"/groups/{staff}/members/{gus}"),
        lambda: a.put(f"/groups/{staff}/members/{gus}", {}),
        lambda: a.put(f"/groups/{realm.groups['ops']}/members/{gus}", {}),
    ):
        resp = _unchanged(realm, attack, 404)
        assert resp.mimetype == PROBLEM
        # The same answer as for an id that does not exist.
        nobody = a.delete(f"/groups/{staff}/members/{NOBODY}")
        assert nobody.status_code == 404
        assert nobody.json["detail"].replace(NOBODY, gus) == resp.json["detail"]
    # The member list of a group with a globex member: not listed and not counted.
    members = a.get(f"/groups/{staff}/members")
    assert members.status_code == 200, members.json
    assert members.json["items"] == [] and members.json["total"] == 0
    assert _member_names(realm, "staff") == {"gus"}


def test_api_role_holders_and_clients_of_another_company_leak_nothing(realm):
    a = realm.api()
    with realm.svc.sessions() as db:
        auditor = Directory(db).role_by_name("Auditor").id
    holders = a.get(f"/roles/{auditor}/holders")
    assert holders.status_code == 200, holders.json
    # gil (globex) holds Auditor: neither listed nor counted for an acme administrator.
    assert holders.json["items"] == [] and holders.json["total"] == 0
    client_id = "app-" + realm.uuids["gus"][:8]
    from idp.manage import Actor, transaction
    from idp.manage import clients as manage_clients

    with transaction(realm.svc, Actor.operator("test")) as ctx:
        manage_clients.create(ctx, client_id, name="Globex app", grant_types=["client_credentials"])
    for attack in (
        lambda: a.get(f"/clients/{client_id}"),
        lambda: a.patch(f"/clients/{client_id}", {"name": "Owned"}),
        lambda: a.delete(f"/clients/{client_id}"),
        lambda: a.post(f"/clients/{client_id}/secret"),
    ):
        _problem(_unchanged(realm, attack, 403), 403)


SCIM_FILTERS = [
    'userName eq "gus"',
    'userName sw "g"',
    'emails co "gus"',
    'emails.value ew "example.org"',
    "userName pr",
    'id eq "{gus}"',
    'userName eq "gus" or userName eq "ann"',
    'not (userName eq "ann")',
]


def test_scim_another_companys_user_is_404_and_no_filter_counts_them(realm):
    s = Scim(realm.app, realm.token)
    gus = realm.uuids["gus"]
    for query in SCIM_FILTERS:
        listed = s.get("/Users", query_string={"filter": query.format(gus=gus)})
        assert listed.status_code == 200, (query, listed.json)
        names = {r["userName"] for r in listed.json["Resources"]}
        assert not names & {"gus", "gil"}, query
        assert listed.json["totalResults"] == len(names), query
    search = {"schemas": [SEARCH], "filter": 'userName sw "g"'}
    for path in ("/Users/.search", "/.search"):
        searched = s.post(path, search)
        assert searched.status_code == 200, searched.json
        assert searched.json["totalResults"] == 0 and not searched.json.get("Resources")
    for attack in (
        lambda: s.get(f"/Users/{gus}"),
        lambda: s.patch(
            f"/Users/{gus}", patch_op({"op": "replace", "path": "active", "value": False})
        ),
        lambda: s.put(
            f"/Users/{gus}",
            {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "gus2"},
        ),
        lambda: s.delete(f"/Users/{gus}"),
    ):
        resp = _unchanged(realm, attack, 404)
        _scim_error(resp, 404)
        assert resp.json["detail"] == s.get(f"/Users/{NOBODY}").json["detail"]


def test_scim_patch_of_a_group_never_touches_another_companys_member(realm):
    s = Scim(realm.app, realm.token)
    gus, staff = realm.uuids["gus"], realm.groups["staff"]
    group = s.get(f"/Groups/{staff}")
    assert group.status_code == 200 and group.json.get("members", []) == []
    attacks = [
        patch_op({"op": "remove", "path": f'members[value eq "{gus}"]'}),
        patch_op({"op": "remove", "path": "members"}),
        patch_op({"op": "replace", "path": "members", "value": []}),
        patch_op({"op": "add", "path": "members", "value": [{"value": gus}]}),
    ]
    for body in attacks:
        resp = s.patch(f"/Groups/{staff}", body)
        assert resp.status_code in (200, 204, 400, 404), resp.get_data(as_text=True)
        assert _member_names(realm, "staff") == {"gus"}, body
    ops = realm.groups["ops"]
    _unchanged(
        realm,
        lambda: s.patch(
            f"/Groups/{ops}", patch_op({"op": "add", "path": "members", "value": [{"value": gus}]})
        ),
        400,
        404,
    )
    # PUT of the whole group without gus keeps gus: the caller never saw them.
    replaced = s.put(
        f"/Groups/{staff}",
        {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "staff"},
    )
    assert replaced.status_code == 200, replaced.json
    assert _member_names(realm, "staff") == {"gus"}


def test_console_urls_of_another_companys_people_are_refused_and_change_nothing(realm):
    client = signed_in(realm.app, "lead", GOOD)
    gus, gil = realm.uuids["gus"], realm.uuids["gil"]
    staff = realm.groups["staff"]
    with realm.svc.sessions() as db:
        auditor = Directory(db).role_by_name("Auditor").id
    csrf = console_csrf(client, f"/admin/users/{realm.uuids['ann']}")
    page = client.get(f"/admin/groups/{staff}").get_data(as_text=True)
    assert "gus" not in page
    for path in (
        f"/admin/users/{gus}/lock",
        f"/admin/users/{gus}/reset-mfa",
        f"/admin/users/{gus}/sessions/end",
        f"/admin/users/{gus}/force-password-change",
        f"/admin/users/{gil}/delete",
        f"/admin/groups/{staff}/members/{gus}/remove",
        f"/admin/groups/{staff}/members/gus/remove",
        f"/admin/roles/{auditor}/holders/gil/remove",
    ):
        resp = _unchanged(
            realm, lambda p=path: client.post(p, data={"csrf_token": csrf}), 400, 403, 404
        )
        assert b"Traceback" not in resp.data
    assert client.get(f"/admin/users/{gus}").status_code == 404
    for form in (
        {"username": "gus"},
        {"username": gus},
    ):
        _unchanged(
            realm,
            lambda f=form: client.post(
                f"/admin/groups/{staff}/members", data={"csrf_token": csrf, **f}
            ),
            400,
            404,
        )


# --- privilege escalation -----------------------------------------------------------------------

ROLE_GRANTS = [
    ("ann", {"role": "User Manager"}),  # everywhere, from a grant over acme
    ("ann", {"role": "User Manager", "scope_company": "globex"}),  # another company
    ("lead", {"role": "User Manager"}),  # widening one's own delegation
    ("lead", {"role": "User Manager", "scope_company": "globex"}),
    ("ann", {"role": "Administrator", "scope_company": "acme"}),  # more than they hold
    ("ann", {"role": "Administrator"}),
    ("lead", {"role": "Administrator"}),
]


@pytest.mark.parametrize(
    ("who", "body"),
    ROLE_GRANTS,
    ids=[f"{w}-{b['role']}-{b.get('scope_company', 'everywhere')}" for w, b in ROLE_GRANTS],
)
def test_a_delegated_admin_cannot_give_a_role_beyond_their_scope(realm, who, body):
    a = realm.api()
    resp = _unchanged(realm, lambda: a.post(f"/users/{realm.uuids[who]}/roles", body), 403)
    assert resp.mimetype == PROBLEM and "cannot give it" in resp.json["detail"]


def test_inside_their_scope_the_delegated_admin_still_delegates(realm):
    """The control: the same role over acme, to an acme user, is theirs to give."""
    a = realm.api()
    resp = a.post(
        f"/users/{realm.uuids['ann']}/roles", {"role": "User Manager", "scope_company": "acme"}
    )
    assert resp.status_code == 200, resp.json
    with realm.svc.sessions() as db:
        rows = db.scalars(select(UserRole).where(UserRole.user_id == realm.ids["ann"])).all()
        assert [(r.scope_company_id is not None) for r in rows] == [True]


@pytest.mark.parametrize("who", ["lead", "ann"])
@pytest.mark.parametrize("group", ["ops", "admins"])
def test_joining_a_group_whose_roles_are_held_only_over_one_company_is_refused(realm, who, group):
    """ops carries User Manager: its members hold it everywhere, lead only over acme."""
    a = realm.api()
    s = Scim(realm.app, realm.token)
    uuid, gid = realm.uuids[who], realm.groups[group]
    resp = _unchanged(realm, lambda: a.put(f"/groups/{gid}/members/{uuid}", {}), 403)
    assert "cannot give it" in resp.json["detail"]
    add = patch_op({"op": "add", "path": "members", "value": [{"value": uuid}]})
    _scim_error(_unchanged(realm, lambda: s.patch(f"/Groups/{gid}", add), 403), 403)
    whole = {
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
        "displayName": group,
        "members": [{"value": uuid}],
    }
    _scim_error(_unchanged(realm, lambda: s.put(f"/Groups/{gid}", whole), 403), 403)
    client = signed_in(realm.app, "lead", GOOD)
    csrf = console_csrf(client, f"/admin/groups/{gid}")
    _unchanged(
        realm,
        lambda: client.post(
            f"/admin/groups/{gid}/members", data={"csrf_token": csrf, "username": who}
        ),
        400,
        403,
    )
    assert who not in _member_names(realm, group)


def test_the_console_role_holder_form_keeps_the_delegation_scope(realm):
    client = signed_in(realm.app, "lead", GOOD)
    with realm.svc.sessions() as db:
        d = Directory(db)
        manager = d.role_by_name("User Manager").id
        globex = d.company("globex").id
    csrf = console_csrf(client, f"/admin/users/{realm.uuids['ann']}")
    for who, scope in (("ann", ""), ("lead", ""), ("ann", f"company:{globex}")):
        resp = _unchanged(
            realm,
            lambda w=who, sc=scope: client.post(
                f"/admin/roles/{manager}/holders",
                data={"csrf_token": csrf, "username": w, "scope": sc},
            ),
            400,
            403,
        )
        assert b"cannot give it" in resp.data
    with realm.svc.sessions() as db:
        acme = Directory(db).company("acme").id
    # The control: over acme, to an acme user, the same form works.
    done = client.post(
        f"/admin/roles/{manager}/holders",
        data={"csrf_token": csrf, "username": "ann", "scope": f"company:{acme}"},
    )
    assert done.status_code in (302, 303), done.get_data(as_text=True)[-800:]


def test_approving_an_access_request_beyond_ones_scope_is_refused(realm):
    """lead holds users:access:approve over acme; ann asks to join ops and for User Manager:
    approving either would give ann User Manager everywhere."""
    with realm.svc.sessions.begin() as db:
        d = Directory(db)
        ann = d.user_by_username("ann")
        group_req = d.request_access(ann, group=d.group_by_path("ops")).id
        role_req = d.request_access(ann, role=d.role_by_name("User Manager")).id
    a = realm.api()
    for req in (group_req, role_req):
        resp = _unchanged(
            realm, lambda r=req: a.post(f"/access-requests/{r}/approve", {}), 403, 409
        )
        assert resp.mimetype == PROBLEM
    assert "ann" not in _member_names(realm, "ops")


# --- roles a delegated administrator does not hold (Keycloak's "map-roles") ------------------


def _payroll(realm: Realm) -> dict[str, int]:
    """An application role "Payroll" carrying no IdP permission (nothing for the check of
    permissions to catch), a group "payroll" giving it, and ann's requests for both."""
    with realm.svc.sessions.begin() as db:
        d = Directory(db)
        role = d.create_role("Payroll", [])
        group = d.create_group("payroll")
        d.assign_group_role(group, role)
        ann = d.user_by_username("ann")
        ids = {
            "role": role.id,
            "group": group.id,
            "role_req": d.request_access(ann, role=role).id,
            "group_req": d.request_access(ann, group=group).id,
        }
    realm.groups["payroll"] = ids["group"]
    return ids


def _payroll_holders(realm: Realm) -> set[str]:
    with realm.svc.sessions() as db:
        return set(
            db.scalars(
                select(User.username)
                .join(UserRole, UserRole.user_id == User.id)
                .join(Role, Role.id == UserRole.role_id)
                .where(Role.name == "Payroll")
            )
        )


def test_a_delegated_admin_cannot_give_or_approve_a_role_they_do_not_hold(realm):
    """lead (User Manager over acme) does not hold Payroll: assigning it to ann (everywhere or
    over acme), adding her to the payroll group (API, SCIM, console) and approving her requests
    for either are refused with the reason, and nothing changes."""
    ids = _payroll(realm)
    a = realm.api()
    ann = realm.uuids["ann"]
    said = "you do not hold the role Payroll"
    for body in ({"role": "Payroll"}, {"role": "Payroll", "scope_company": "acme"}):
        resp = _unchanged(realm, lambda b=body: a.post(f"/users/{ann}/roles", b), 403)
        assert (
            resp.mimetype == PROBLEM and "you do not hold the role Payroll" in resp.json["detail"]
        )
    gid = ids["group"]
    resp = _unchanged(realm, lambda: a.put(f"/groups/{gid}/members/{ann}", {}), 403)
    assert resp.mimetype == PROBLEM and said in resp.json["detail"]
    add = patch_op({"op": "add", "path": "members", "value": [{"value": ann}]})
    s = Scim(realm.app, realm.token)
    _scim_error(_unchanged(realm, lambda: s.patch(f"/Groups/{gid}", add), 403), 403)
    for req in (ids["role_req"], ids["group_req"]):
        resp = _unchanged(realm, lambda r=req: a.post(f"/access-requests/{r}/approve", {}), 403)
        assert resp.mimetype == PROBLEM
    client = signed_in(realm.app, "lead", GOOD)
    csrf = console_csrf(client, f"/admin/users/{ann}")
    for path, data in (
        (f"/admin/roles/{ids['role']}/holders", {"username": "ann", "scope": ""}),
        (f"/admin/groups/{gid}/members", {"username": "ann"}),
    ):
        resp = _unchanged(
            realm, lambda p=path, d=data: client.post(p, data={"csrf_token": csrf, **d}), 400, 403
        )
        assert said.encode() in resp.data
    assert _payroll_holders(realm) == set() and "ann" not in _member_names(realm, "payroll")


def test_holding_the_role_lets_the_delegated_admin_give_it_and_a_global_admin_always_can(realm):
    """The controls: once lead holds Payroll (over acme), the same assignment and approval
    work; a global administrator (users:roles:assign everywhere) gives it without holding it."""
    ids = _payroll(realm)
    ann, gus = realm.uuids["ann"], realm.uuids["gus"]
    with realm.svc.sessions.begin() as db:
        d = Directory(db)
        d.assign_role(
            d.user_by_username("lead"), d.role_by_name("Payroll"), scope_company=d.company("acme")
        )
    a = realm.api()
    assert a.post(f"/users/{ann}/roles", {"role": "Payroll"}).status_code == 200
    approved = a.post(f"/access-requests/{ids['group_req']}/approve", {})
    assert approved.status_code == 200, approved.json
    assert "ann" in _member_names(realm, "payroll")
    # Held over acme only: not for a globex user (out of lead's reach anyway).
    _unchanged(realm, lambda: a.post(f"/users/{gus}/roles", {"role": "Payroll"}), 403, 404)
    make_user(realm.svc, "root")
    with realm.svc.sessions.begin() as db:
        d = Directory(db)
        d.assign_role(d.user_by_username("root"), d.role_by_name("Administrator"))
    root = Caller(realm.app.test_client(), user_token(realm.app, "root", GOOD))
    assert root.post(f"/users/{gus}/roles", {"role": "Payroll"}).status_code == 200
    assert _payroll_holders(realm) == {"lead", "ann", "gus"}


def test_a_narrow_service_token_cannot_call_wider_operations(realm):
    """A service account holding Helpdesk (reads users, unlocks, resets) with the admin scope;
    and one with only the scim scope on the admin API."""
    helpdesk = service_token(realm.app, roles=("Helpdesk",))
    client = realm.app.test_client()
    ann = realm.uuids["ann"]
    for method, path, body in (
        ("POST", f"/api/v1/users/{ann}/roles", {"role": "Administrator"}),
        ("POST", f"/api/v1/users/{ann}/roles", {"role": "Helpdesk"}),
        ("PUT", f"/api/v1/groups/{realm.groups['admins']}/members/{ann}", {}),
        ("DELETE", f"/api/v1/users/{ann}", None),
        ("POST", "/api/v1/roles", {"name": "Mine", "permissions": ["*:*:*"]}),
        (
            "POST",
            "/api/v1/clients",
            {
                "client_id": "mine",
                "name": "Mine",
                "service_roles": ["Administrator"],
                "metadata": {"grant_types": ["client_credentials"]},
            },
        ),
    ):
        resp = _unchanged(
            realm, lambda m=method, p=path, b=body: api(client, m, p, helpdesk, json=b), 403
        )
        assert resp.mimetype == PROBLEM
    scim_only = service_token(realm.app, roles=("Administrator",), scope="scim")
    resp = _unchanged(realm, lambda: api(client, "GET", "/api/v1/users", scim_only), 403)
    assert "insufficient_scope" in resp.headers.get("WWW-Authenticate", "")


def test_a_delegated_admin_cannot_rewrite_roles_or_make_new_ones(realm):
    a = realm.api()
    with realm.svc.sessions() as db:
        d = Directory(db)
        manager, admin = d.role_by_name("User Manager").id, d.role_by_name("Administrator").id
        reach = d.role_by_name("Reach").id
    for attack in (
        lambda: a.post(f"/roles/{reach}/permissions", {"permissions": ["*:*:*"]}),
        lambda: a.post(f"/roles/{manager}/permissions", {"permissions": ["clients:*:*"]}),
        lambda: a.put(f"/roles/{reach}/composites/{admin}"),
        lambda: a.post("/roles", {"name": "Mine", "permissions": ["users:*:*"]}),
        lambda: a.put(f"/groups/{realm.groups['staff']}/roles/{manager}"),
    ):
        _problem(_unchanged(realm, attack, 403), 403)


# --- mass assignment -----------------------------------------------------------------------------

MASS_FIELDS = {
    "id": 1,
    "uuid": NOBODY,
    "created_at": "2000-01-01T00:00:00Z",
    "password_hash": "$argon2id$v=19$m=65536,t=3,p=4$x$y",
    "company_id": 2,
    "is_superadmin": True,
    "roles": ["Administrator"],
    "meta": {"created": "2000-01-01T00:00:00Z"},
    "locked": False,
    "mfa": {"totp": False},
    "status": "active",
}


@pytest.mark.parametrize("field", sorted(MASS_FIELDS))
def test_api_create_with_fields_nobody_sets_is_400_and_creates_nothing(realm, field):
    admin = service_token(realm.app)
    client = realm.app.test_client()
    body = {"username": "mallory", "email": "m@example.org", field: MASS_FIELDS[field]}
    if field == "roles":  # roles is a create field: a name that is no role is refused instead
        body["roles"] = ["Administrator", "*:*:*"]
    resp = _unchanged(
        realm, lambda: api(client, "POST", "/api/v1/users", admin, json=body), 400, 404
    )
    assert resp.mimetype == PROBLEM


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/groups", {"name": "g", "id": 99}),
        ("/groups", {"name": "g", "company_id": 2}),
        ("/groups", {"name": "g", "path": "admins/g"}),
        ("/roles", {"name": "r", "permissions": [], "id": 1}),
        ("/roles", {"name": "r", "permissions": [], "template": "Administrator"}),
        ("/clients", {"client_id": "c", "name": "c", "client_secret_hash": "x"}),
        ("/clients", {"client_id": "c", "name": "c", "roles": ["Administrator"], "id": 1}),
    ],
)
def test_api_extra_fields_on_other_resources_are_400(realm, path, body):
    admin = service_token(realm.app)
    client = realm.app.test_client()
    resp = _unchanged(realm, lambda: api(client, "POST", "/api/v1" + path, admin, json=body), 400)
    assert resp.mimetype == PROBLEM


def test_scim_create_ignores_or_refuses_what_the_server_owns(realm):
    s = Scim(realm.app, service_token(realm.app, scope="scim"))
    body = {
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": "mallory",
        "id": realm.uuids["gus"],
        "meta": {"created": "2000-01-01T00:00:00Z", "resourceType": "Group"},
        "groups": [{"value": str(realm.groups["admins"])}],
        "password_hash": "$argon2id$forged",
        "roles": [{"value": "Administrator"}],
    }
    resp = s.post("/Users", body)
    if resp.status_code == 201:
        made = resp.json
        assert made["id"] != realm.uuids["gus"] and not made["meta"]["created"].startswith("2000")
        with realm.svc.sessions() as db:
            mallory = db.scalar(select(User).where(User.username == "mallory"))
            assert mallory.password_hash is None
            assert not db.scalars(select(UserRole).where(UserRole.user_id == mallory.id)).all()
        assert "mallory" not in _member_names(realm, "admins")
    else:
        _scim_error(resp, 400)
    # PUT that names another resource's id is not a way to reach it.
    ann = realm.uuids["ann"]
    resp = s.put(
        f"/Users/{ann}",
        {
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "id": realm.uuids["gus"],
            "userName": "ann",
        },
    )
    assert resp.status_code in (200, 400)
    with realm.svc.sessions() as db:
        assert db.scalar(select(User.username).where(User.uuid == realm.uuids["gus"])) == "gus"


def test_console_profile_form_ignores_fields_it_does_not_show(realm):
    client = signed_in(realm.app, "lead", GOOD)
    ann = realm.uuids["ann"]
    csrf = console_csrf(client, f"/admin/users/{ann}")
    with realm.svc.sessions() as db:
        before = db.scalar(select(User).where(User.uuid == ann))
        shown = {"username": "ann", "email": before.email, "locale": "", "timezone": ""}
        kept = (
            before.id,
            before.uuid,
            before.password_hash,
            before.company_id,
            before.status,
            before.email_verified,
            before.created_at,
        )
    resp = client.post(
        f"/admin/users/{ann}/profile",
        data={
            "csrf_token": csrf,
            **shown,
            "given_name": "Ann",
            "id": "1",
            "uuid": NOBODY,
            "password_hash": "forged",
            "company_id": "2",
            "is_superadmin": "on",
            "roles": "Administrator",
            "email_verified": "on",
            "status": "locked",
            "created_at": "2000-01-01",
        },
    )
    assert resp.status_code in (302, 303), resp.get_data(as_text=True)[:400]
    with realm.svc.sessions() as db:
        after = db.scalar(select(User).where(User.uuid == ann))
        assert after.given_name == "Ann"
        assert (
            after.id,
            after.uuid,
            after.password_hash,
            after.company_id,
            after.status,
            after.email_verified,
            after.created_at,
        ) == kept
        assert not db.scalars(select(UserRole).where(UserRole.user_id == after.id)).all()


def test_a_json_body_to_a_console_form_changes_nothing(realm):
    """A JSON body to a console form is not a second API: it is read as an empty form."""
    client = signed_in(realm.app, "lead", GOOD)
    ann = realm.uuids["ann"]
    csrf = console_csrf(client, f"/admin/users/{ann}")
    _unchanged(
        realm,
        lambda: client.post(
            f"/admin/users/{ann}/profile",
            data=json.dumps({"csrf_token": csrf, "status": "locked", "roles": ["Administrator"]}),
            content_type="application/json",
        ),
        400,
    )
