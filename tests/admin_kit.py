"""Helpers for the admin console's tests: administrators with a role template, a signed-in
test client, the CSRF token of a console page, and reading rows back."""

from __future__ import annotations

import re
from typing import Any

from login_kit import GOOD, login, make_user
from sqlalchemy import select

from idp.storage.directory import Directory
from idp.storage.models import Role, User


def make_admin(svc, username: str = "root", role: str = "Administrator", **fields: Any) -> int:
    """A user holding the role template ``role`` (seeded at init); their id."""
    user_id = make_user(svc, username, **fields)
    with svc.sessions.begin() as db:
        directory = Directory(db, svc.clock)
        user = db.get(User, user_id)
        directory.assign_role(user, db.scalar(select(Role).where(Role.name == role)))
    return user_id


def signed_in(app, username: str = "root", password: str = GOOD):
    """A test client signed in as ``username``."""
    client = app.test_client()
    response = login(client, username, password)
    assert response.status_code in (302, 303), response.get_data(as_text=True)[:500]
    return client


def console_csrf(client, path: str = "/admin/") -> str:
    """The CSRF token every console form carries, read from a console page."""
    html = client.get(path).get_data(as_text=True)
    if path == "/account/":  # the overview has no form since it became an overview
        html = client.get("/account/profile").get_data(as_text=True)
    found = re.search(r'name="csrf_token" (?:type="hidden" )?value="([^"]+)"', html)
    assert found, f"no csrf_token on {path}"
    return found.group(1)
