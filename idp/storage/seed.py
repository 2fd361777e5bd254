"""What ``idp init`` creates: role templates, the first administrator, and the demo realm."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..errors import NotFound
from .clients import ClientRegistry
from .directory import Directory, NewUser
from .models import Client, Role, RolePermission, User, UserRole

# Role templates seeded at init (and re-seeded when missing). Permissions are
# module:feature:action with "*" wildcards; "oauth:scope:<name>" lets a holder obtain that
# API scope (the Administrator's "*" covers oauth:scope:admin and oauth:scope:scim).
ROLE_TEMPLATES: dict[str, tuple[str, list[str]]] = {
    "Administrator": ("Full control of the IdP", ["*"]),
    "User Manager": (
        "Creates and edits users, groups and their memberships",
        [
            "users:*:*",
            "groups:*:*",
            "org:*:read",
            "roles:*:read",
            "oauth:scope:admin",
            "console:admin:access",
        ],
    ),
    "Helpdesk": (
        "Unlocks accounts, resets passwords and MFA, reads users",
        [
            "users:accounts:read",
            "users:password:reset",
            "users:mfa:reset",
            "users:lockout:unlock",
            "users:sessions:revoke",
            "oauth:scope:admin",
            "console:admin:access",
        ],
    ),
    "Auditor": (
        "Reads the audit log and the directory",
        [
            "audit:*:read",
            "reports:compliance:read",
            "users:*:read",
            "groups:*:read",
            "roles:*:read",
            "oauth:scope:admin",
            "console:admin:access",
        ],
    ),
    "Read-only": (
        "Reads everything, changes nothing",
        ["*:*:read", "oauth:scope:admin", "console:admin:access"],
    ),
}

DEMO_CLIENT_ID = "demo-app"
DEMO_REDIRECT = "http://127.0.0.1:8080/callback"


@dataclass
class InitReport:
    admin_username: str
    admin_created: bool
    admin_password: str | None = None
    templates_created: list[str] = field(default_factory=list)
    demo: dict | None = None


def seed_role_templates(db: Session) -> list[str]:
    """Create the missing role templates (returned), and with them the rest of the identity
    model's initial data: the RBAC generation row and the default claim rules."""
    from .claims import seed_default_rules
    from .rbac import ensure_state

    ensure_state(db)
    seed_default_rules(db)
    created = []
    directory = Directory(db)
    for name, (description, perms) in ROLE_TEMPLATES.items():
        role = db.scalar(select(Role).where(Role.name == name, Role.client_id.is_(None)))
        if role is None:
            directory.create_role(name, perms, description=description, template=name)
            created.append(name)
        elif role.template == name and not db.scalar(
            select(RolePermission.role_id).where(RolePermission.role_id == role.id)
        ):
            for p in perms:
                db.add(RolePermission(role_id=role.id, permission=p))
    return created


def ensure_admin(
    db: Session, hasher, username: str, email: str | None, password: str | None
) -> tuple[bool, str | None]:
    """Create the administrator when missing. Returns (created, generated_password)."""
    if db.scalar(select(User.id).where(User.username == username)):
        return False, None
    generated = None
    if not password:
        password = generated = secrets.token_urlsafe(12)
    directory = Directory(db)
    user = directory.create_user(
        NewUser(
            username=username, email=email, password_hash=hasher.hash(password), given_name="Admin"
        )
    )
    user.email_verified = bool(email)
    admin_role = directory.role_by_name("Administrator")
    db.add(UserRole(user_id=user.id, role_id=admin_role.id))
    return True, generated


def seed_demo(db: Session, svc, hasher, demo_password: str | None) -> dict:
    """The demo realm: groups, roles, a user and an OIDC client. Idempotent."""
    directory = Directory(db)
    out: dict = {}
    for path in ("staff", "staff/engineering", "staff/sales"):
        parent, _, name = path.rpartition("/")
        try:
            directory.group_by_path(path)
        except NotFound:
            directory.create_group(name, parent or None)
    for role, perms in (("viewer", ["app:documents:read"]), ("editor", ["app:documents:*"])):
        try:
            directory.role_by_name(role)
        except NotFound:
            directory.create_role(role, perms, description=f"Demo {role}")
    if not db.scalar(select(User.id).where(User.username == "demo")):
        password = demo_password or secrets.token_urlsafe(9)
        user = directory.create_user(
            NewUser(
                username="demo",
                email="demo@example.org",
                given_name="Dana",
                family_name="Demo",
                password_hash=hasher.hash(password),
            ),
            groups=["staff/engineering"],
            roles=["editor"],
        )
        user.email_verified = True
        out["user"] = {"username": "demo", "password": password}
    if db.get(Client, DEMO_CLIENT_ID) is None:
        registry = ClientRegistry(db, svc.hasher, svc.sealer)
        _, secret = registry.create(
            DEMO_CLIENT_ID,
            name="Demo application",
            redirect_uris=[DEMO_REDIRECT],
            grant_types=["authorization_code", "refresh_token"],
            scope="openid profile email groups roles offline_access",
            post_logout_redirect_uris=["http://127.0.0.1:8080/"],
        )
        out["client"] = {
            "client_id": DEMO_CLIENT_ID,
            "client_secret": secret,
            "redirect_uri": DEMO_REDIRECT,
        }
    return out
