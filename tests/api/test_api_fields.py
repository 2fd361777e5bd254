"""``/api/v1/custom-fields``: the admin-defined schema of user attributes. Definitions are
created, read by id or name, changed with If-Match and deleted (refused while users hold values
unless forced); invalid definitions and refusals change nothing."""

from __future__ import annotations

import pytest
from directory_api_kit import (
    PROBLEM,
    audit_actions,
    last_audit_id,
    refused,
    service_caller,
)
from login_kit import make_user
from sqlalchemy import select

from idp.errors import ValidationError
from idp.storage.directory import Directory
from idp.storage.models import User

EMPLOYEE_NO = {
    "name": "employee_no",
    "label": "Employee number",
    "labels": {"de": "Personalnummer"},
    "type": "string",
    "pattern": "E[0-9]{5}",
    "required": False,
}


def test_create_read_list(app, admin, svc):
    mark = last_audit_id(svc)
    resp = admin.post("/custom-fields", EMPLOYEE_NO)
    assert resp.status_code == 201, resp.json
    field = resp.json
    assert resp.headers["Location"] == "/api/v1/custom-fields/employee_no"
    assert field["labels"] == {"de": "Personalnummer"} and field["pattern"] == "E[0-9]{5}"
    assert field["visible_to_user"] is True and field["editable_by_user"] is False
    by_name, by_id = (
        admin.get("/custom-fields/employee_no"),
        admin.get(f"/custom-fields/{field['id']}"),
    )
    assert by_name.json == by_id.json == field
    assert by_name.headers["ETag"] == resp.headers["ETag"]

    shirt = admin.post(
        "/custom-fields",
        {"name": "shirt", "label": "Shirt size", "type": "choice", "choices": ["S", "M", "L"]},
    )
    assert shirt.status_code == 201 and shirt.json["choices"] == ["S", "M", "L"]
    admin.post("/custom-fields", {"name": "first", "label": "First", "sort_order": -1})
    listed = admin.get("/custom-fields").json
    assert [f["name"] for f in listed["items"]] == ["first", "employee_no", "shirt"]
    assert listed["total"] == 3
    assert audit_actions(svc, mark) == ["field.created"] * 3

    # The definition is the one the directory validates users' values against.
    make_user(svc, "ann")
    with svc.sessions.begin() as db:
        d = Directory(db, svc.clock)
        with pytest.raises(ValidationError):
            d.set_custom(d.user_by_username("ann"), {"employee_no": "123"})
        d.set_custom(d.user_by_username("ann"), {"employee_no": "E12345", "shirt": "M"})


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "shirt", "label": "Shirt", "type": "choice"}, "choices"),
        ({"name": "shirt", "label": "Shirt", "type": "choice", "choices": []}, "choices"),
        ({"name": "Bad Name", "label": "X"}, "name"),
        ({"name": "x", "label": "X", "type": "colour"}, "type"),
        ({"name": "x", "label": " X"}, "label"),
        ({"name": "x", "label": "X", "id": 3}, "id"),
        ({"name": "x", "label": "X", "labels": {"not a tag": "X"}}, "labels"),
    ],
)
def test_invalid_definitions_are_400_naming_the_field(app, admin, body, field):
    resp = refused(app, 400, lambda: admin.post("/custom-fields", body))
    assert field in resp.json["detail"]


def test_a_pattern_that_is_no_regular_expression_is_refused(app, admin):
    resp = refused(
        app, 409, lambda: admin.post("/custom-fields", {"name": "x", "label": "X", "pattern": "("})
    )
    assert "regular expression" in resp.json["detail"]


@pytest.mark.parametrize("pattern", ["a}", "x{", "(?P<n>a)", "(?i)abc", "a*+", r"\A\d+", "[]a]"])
def test_a_pattern_only_python_understands_is_refused(app, admin, pattern):
    """Forms and API clients check the pattern with JavaScript's regular expressions (JSON
    Schema's "regex" format): Python-only syntax would mean something else there, or nothing.
    The schema cannot say which patterns both read alike, so this is 409, not 400."""
    resp = refused(
        app,
        409,
        lambda: admin.post("/custom-fields", {"name": "x", "label": "X", "pattern": pattern}),
    )
    assert "portable" in resp.json["detail"]


@pytest.mark.parametrize("pattern", [r"E-\d+", r"^[A-Z]{2}\.\w{1,3}?$", r"(?:ab|c)+", r"\/x\b"])
def test_portable_patterns_are_accepted(app, admin, pattern):
    resp = admin.post("/custom-fields", {"name": "x", "label": "X", "pattern": pattern})
    assert resp.status_code == 201, resp.json


def test_duplicate_name_is_409(app, admin):
    admin.post("/custom-fields", EMPLOYEE_NO)
    refused(app, 409, lambda: admin.post("/custom-fields", EMPLOYEE_NO))


def test_update_with_if_match(app, admin, svc):
    admin.post("/custom-fields", EMPLOYEE_NO)
    shirt = admin.post(
        "/custom-fields", {"name": "shirt", "label": "Shirt", "type": "choice", "choices": ["S"]}
    ).json
    etag = admin.get("/custom-fields/employee_no").headers["ETag"]
    mark = last_audit_id(svc)
    resp = admin.patch(
        "/custom-fields/employee_no",
        {"label": "Staff number", "required": True, "pattern": None, "editable_by_user": True},
        etag,
    )
    assert resp.status_code == 200, resp.json
    assert resp.json["label"] == "Staff number" and resp.json["pattern"] is None
    assert resp.json["required"] is True and resp.json["editable_by_user"] is True
    assert resp.json["labels"] == {"de": "Personalnummer"}
    refused(app, 412, lambda: admin.patch("/custom-fields/employee_no", {"label": "X"}, etag))
    more = admin.patch(f"/custom-fields/{shirt['id']}", {"choices": ["S", "M"]})
    assert more.json["choices"] == ["S", "M"]
    assert audit_actions(svc, mark) == ["field.updated", "field.updated"]

    # Name and type never change; a choice field keeps a choice; patterns must compile.
    for body in ({"name": "other"}, {"type": "integer"}, {"label": None}):
        resp = refused(app, 400, lambda body=body: admin.patch("/custom-fields/shirt", body))
        assert resp.json["errors"][0]["field"] == next(iter(body))
    resp = refused(app, 409, lambda: admin.patch("/custom-fields/shirt", {"choices": []}))
    assert "choices" in resp.json["detail"]
    refused(app, 409, lambda: admin.patch("/custom-fields/shirt", {"pattern": "[a-"}))


def test_delete_is_refused_while_users_hold_values_unless_forced(app, admin, svc):
    admin.post("/custom-fields", EMPLOYEE_NO)
    admin.post("/custom-fields", {"name": "nickname", "label": "Nickname"})
    make_user(svc, "ann")
    with svc.sessions.begin() as db:
        d = Directory(db, svc.clock)
        d.set_custom(d.user_by_username("ann"), {"employee_no": "E00001", "nickname": "Annie"})
    resp = refused(app, 409, lambda: admin.delete("/custom-fields/employee_no"))
    assert "1 user(s)" in resp.json["detail"]
    etag = admin.get("/custom-fields/employee_no").headers["ETag"]
    refused(app, 412, lambda: admin.delete("/custom-fields/employee_no", '"stale"'))
    mark = last_audit_id(svc)
    gone = admin.delete("/custom-fields/employee_no", etag, query_string={"force": "true"})
    assert gone.status_code == 204
    assert admin.get("/custom-fields/employee_no").status_code == 404
    with svc.sessions() as db:
        assert db.scalar(select(User.custom).where(User.username == "ann")) == {"nickname": "Annie"}
    assert audit_actions(svc, mark) == ["field.deleted"]
    unused = admin.post("/custom-fields", {"name": "unused", "label": "Unused"})
    assert unused.status_code == 201
    assert admin.delete("/custom-fields/unused").status_code == 204


def test_without_permission_403_and_nothing_changes(app, admin):
    admin.post("/custom-fields", EMPLOYEE_NO)
    auditor = service_caller(app, roles=("Auditor",))
    assert auditor.get("/custom-fields/employee_no").status_code == 200
    helpdesk = service_caller(app, roles=("Helpdesk",))
    refused(app, 403, lambda: helpdesk.get("/custom-fields"))
    for caller in (auditor, helpdesk):
        for request in (
            lambda caller=caller: caller.post("/custom-fields", {"name": "x", "label": "X"}),
            lambda caller=caller: caller.patch("/custom-fields/employee_no", {"label": "X"}),
            lambda caller=caller: caller.delete("/custom-fields/employee_no"),
        ):
            resp = refused(app, 403, request)
            assert "users:fields:" in resp.json["detail"]


@pytest.mark.parametrize(
    "path",
    [
        "/custom-fields/a%00b",
        "/custom-fields/nope",
        "/custom-fields/4242",
        "/custom-fields/99999999999999999999999",
    ],
)
def test_unknown_fields_are_404_problems(admin, path):
    resp = admin.get(path)
    assert resp.status_code == 404 and resp.mimetype == PROBLEM


def test_values_a_definition_refuses_are_409_on_the_users_api(app, admin):
    """The definitions are data, not part of the users schema: a user request that matches the
    schema but leaves out a required field, or gives a value of the wrong type, is 409."""
    admin.post(
        "/custom-fields", {"name": "badge", "label": "Badge", "type": "integer", "required": True}
    )
    resp = refused(app, 409, lambda: admin.post("/users", {"username": "ann", "custom": {}}))
    assert "required: Badge" in resp.json["detail"]
    wrong = {"username": "ann", "custom": {"badge": "twelve"}}
    resp = refused(app, 409, lambda: admin.post("/users", wrong))
    assert "whole number" in resp.json["detail"]
    made = admin.post("/users", {"username": "ann", "custom": {"badge": 12}})
    assert made.status_code == 201, made.json
    refused(app, 409, lambda: admin.patch(f"/users/{made.json['id']}", {"custom": None}))
