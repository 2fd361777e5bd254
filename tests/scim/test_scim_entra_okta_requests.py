"""Requests as Microsoft Entra ID and Okta send them, replayed as literal JSON (the shapes of
their provisioning documentation): Entra's capitalised ops, ``emails[type eq "work"].value``
paths, manager as a bare id, member removal carrying a value; Okta's ``replace`` without a path
carrying a dict (with the group's own id), string booleans, passwords and attributes this
server does not keep."""

from __future__ import annotations

from scim_kit import ENTERPRISE, GROUP, Scim, scim_token
from sqlalchemy import select

from idp.storage.models import AuditEvent, Group, GroupMember, User


def _scim(app) -> Scim:
    return Scim(app, scim_token(app))


def _row(app, **where) -> User | None:
    with app.extensions["idp"].sessions() as db:
        return db.scalar(select(User).filter_by(**where))


ENTRA_CREATE = {
    "schemas": [
        "urn:ietf:params:scim:schemas:core:2.0:User",
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User",
    ],
    "externalId": "0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef",
    "userName": "Test_User_ab6490ee-1e48-479e-a20b-2d77186b5dd1",
    "active": True,
    "emails": [
        {
            "primary": True,
            "type": "work",
            "value": "Test_User_fd0ea19b-0777-472c-9f96-4f70d2226f2e@testuser.com",
        }
    ],
    "meta": {"resourceType": "User"},
    "name": {
        "formatted": "givenName familyName",
        "familyName": "familyName",
        "givenName": "givenName",
    },
    "roles": [],
}


def test_entra_user_lifecycle(app):
    s = _scim(app)
    # Entra first looks the user up by its matching attribute.
    found = s.get('/Users?filter=userName eq "Test_User_ab6490ee-1e48-479e-a20b-2d77186b5dd1"')
    assert found.status_code == 200 and found.json["totalResults"] == 0
    assert found.json["Resources"] == []
    created = s.post("/Users", ENTRA_CREATE)
    assert created.status_code == 201, created.json
    uid = created.json["id"]
    assert created.headers["Location"].endswith(f"/scim/v2/Users/{uid}")
    assert created.mimetype == "application/scim+json"
    found = s.get('/Users?filter=externalId eq "0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef"')
    assert [r["id"] for r in found.json["Resources"]] == [uid]

    update = {
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [
            {
                "op": "Replace",
                "path": 'emails[type eq "work"].value',
                "value": "updatedEmail@microsoft.com",
            },
            {"op": "Replace", "path": "name.familyName", "value": "updatedFamilyName"},
        ],
    }
    got = s.patch(f"/Users/{uid}", update)
    assert got.status_code == 200, got.json
    row = _row(app, uuid=uid)
    assert row.email == "updatedemail@microsoft.com" and row.family_name == "updatedFamilyName"

    disable = {
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "Replace", "path": "active", "value": "False"}],
    }
    got = s.patch(f"/Users/{uid}", disable)
    assert got.status_code == 200 and got.json["active"] is False
    assert _row(app, uuid=uid).status == "inactive"
    assert s.get("/Users?filter=active eq false").json["totalResults"] == 1

    assert s.delete(f"/Users/{uid}").status_code == 204
    assert _row(app, uuid=uid) is None
    assert s.get(f"/Users/{uid}").status_code == 404


def test_entra_email_path_on_user_without_address_adds_it(app):
    s = _scim(app)
    uid = s.post("/Users", {"schemas": [ENTRA_CREATE["schemas"][0]], "userName": "noaddr"}).json[
        "id"
    ]
    got = s.patch(
        f"/Users/{uid}",
        {
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [
                {"op": "Add", "path": 'emails[type eq "work"].value', "value": "new@ex.test"}
            ],
        },
    )
    assert got.status_code == 200, got.json
    assert _row(app, uuid=uid).email == "new@ex.test"


def test_entra_manager_as_bare_id_and_enterprise_fields(app):
    s = _scim(app)
    boss = s.post("/Users", {"schemas": [ENTRA_CREATE["schemas"][0]], "userName": "boss"}).json[
        "id"
    ]
    uid = s.post("/Users", {"schemas": [ENTRA_CREATE["schemas"][0]], "userName": "emp"}).json["id"]
    got = s.patch(
        f"/Users/{uid}",
        {
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [
                {"op": "Add", "path": f"{ENTERPRISE}:manager", "value": boss},
                {"op": "Add", "path": f"{ENTERPRISE}:employeeNumber", "value": "E-17"},
            ],
        },
    )
    assert got.status_code == 200, got.json
    assert got.json[ENTERPRISE]["manager"]["value"] == boss
    assert got.json[ENTERPRISE]["employeeNumber"] == "E-17"
    row = _row(app, uuid=uid)
    assert row.custom["employee_number"] == "E-17"
    assert _row(app, id=row.manager_id).uuid == boss
    found = s.get(f'/Users?filter={ENTERPRISE}:manager.value eq "{boss}"').json
    assert [r["id"] for r in found["Resources"]] == [uid]


def test_entra_group_members_add_and_remove_with_value(app):
    s = _scim(app)
    u1 = s.post("/Users", {"schemas": [ENTRA_CREATE["schemas"][0]], "userName": "m1"}).json["id"]
    u2 = s.post("/Users", {"schemas": [ENTRA_CREATE["schemas"][0]], "userName": "m2"}).json["id"]
    created = s.post(
        "/Groups",
        {
            "externalId": "8aa1a0c0-c4c3-4bc0-b4a5-2ef676900159",
            "displayName": "displayName",
            "meta": {"resourceType": "Group"},
            "schemas": [GROUP],
            "members": [],
        },
    )
    assert created.status_code == 201, created.json
    gid = created.json["id"]
    found = s.get('/Groups?excludedAttributes=members&filter=displayName eq "displayName"')
    assert found.json["totalResults"] == 1 and "members" not in found.json["Resources"][0]
    add = {
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [
            {
                "op": "Add",
                "path": "members",
                "value": [{"$ref": None, "value": u1}, {"$ref": None, "value": u2}],
            }
        ],
    }
    assert s.patch(f"/Groups/{gid}", add).status_code == 200
    remove = {
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "Remove", "path": "members", "value": [{"$ref": None, "value": u1}]}],
    }
    got = s.patch(f"/Groups/{gid}", remove)
    assert got.status_code == 200, got.json
    assert [m["value"] for m in got.json["members"]] == [u2]
    rename = {
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "Replace", "path": "displayName", "value": "renamed"}],
    }
    assert s.patch(f"/Groups/{gid}", rename).json["displayName"] == "renamed"
    by_ext = s.get('/Groups?filter=externalId eq "8aa1a0c0-c4c3-4bc0-b4a5-2ef676900159"').json
    assert [r["id"] for r in by_ext["Resources"]] == [gid]
    with app.extensions["idp"].sessions() as db:
        actions = list(db.scalars(select(AuditEvent.action).order_by(AuditEvent.id)))
    assert "group.member_added" in actions and "group.member_removed" in actions
    assert "group.renamed" in actions


OKTA_CREATE = {
    "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
    "userName": "test.user@okta.local",
    "name": {"givenName": "Test", "familyName": "User"},
    "emails": [{"primary": True, "value": "test.user@okta.local", "type": "work"}],
    "displayName": "Test User",
    "locale": "en-US",
    "externalId": "00ujl29u0le5T6Aj10h7",
    "groups": [],
    "password": "1mz050nq",
    "active": True,
}


def test_okta_user_lifecycle(app):
    s = _scim(app)
    found = s.get('/Users?filter=userName eq "test.user@okta.local"&startIndex=1&count=100')
    assert found.status_code == 200 and found.json["totalResults"] == 0
    created = s.post("/Users", OKTA_CREATE)
    assert created.status_code == 201, created.json
    uid = created.json["id"]
    assert _row(app, uuid=uid).password_hash is None  # passwords are not taken over SCIM
    put = dict(OKTA_CREATE, id=uid, name={"givenName": "Another", "familyName": "User"})
    got = s.put(f"/Users/{uid}", put)
    assert got.status_code == 200 and got.json["name"]["givenName"] == "Another"
    deactivate = {
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "replace", "value": {"active": False}}],
    }
    got = s.patch(f"/Users/{uid}", deactivate)
    assert got.status_code == 200 and got.json["active"] is False
    reactivate = {
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "replace", "value": {"active": True}}],
    }
    assert s.patch(f"/Users/{uid}", reactivate).json["active"] is True


def test_okta_group_push(app):
    s = _scim(app)
    uid = s.post("/Users", OKTA_CREATE).json["id"]
    created = s.post("/Groups", {"schemas": [GROUP], "displayName": "Test SCIMv2", "members": []})
    assert created.status_code == 201
    gid = created.json["id"]
    add = {
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [
            {"op": "replace", "value": {"id": gid, "displayName": "Test SCIMv2 renamed"}},
            {
                "op": "add",
                "path": "members",
                "value": [{"value": uid, "display": "test.user@okta.local"}],
            },
        ],
    }
    got = s.patch(f"/Groups/{gid}", add)
    assert got.status_code == 200, got.json
    assert got.json["displayName"] == "Test SCIMv2 renamed"
    remove = {
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "remove", "path": f'members[value eq "{uid}"]'}],
    }
    got = s.patch(f"/Groups/{gid}", remove)
    assert got.status_code == 200 and "members" not in got.json
    with app.extensions["idp"].sessions() as db:
        assert db.scalar(select(GroupMember).where(GroupMember.group_id == int(gid))) is None
    assert s.delete(f"/Groups/{gid}").status_code == 204
    with app.extensions["idp"].sessions() as db:
        assert db.get(Group, int(gid)) is None
