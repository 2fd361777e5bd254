"""SQLAlchemy 2 models. Every change here needs an Alembic revision (tests check they agree)."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from .db import Base, UTCDateTime, utcnow


def _uuid() -> str:
    return str(uuid.uuid4())


class Timestamps:
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


# --- short-lived store (embedded backend) -------------------------------------------------------


class KVEntry(Base):
    """One entry of the embedded short-lived store; see ``storage.store.SqlStore``."""

    __tablename__ = "kv_store"

    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    value: Mapped[str | None] = mapped_column(Text)
    counter: Mapped[int] = mapped_column(BigInteger, default=0)
    expires_at: Mapped[float] = mapped_column(Float, index=True)


# --- signing keys -------------------------------------------------------------------------------


class SigningKey(Base):
    """A key pair of the IdP. ``status``: next (published, not signing) -> active (signs) ->
    previous (published, verifies until ``retire_at``) -> retired (kept for the record).
    ``use``: ``sig`` signs; ``enc`` is published for clients to encrypt request objects to
    (RFC 9101 §6.1) and decrypts them, through the same lifecycle."""

    __tablename__ = "signing_keys"
    __table_args__ = (
        CheckConstraint("status IN ('next','active','previous','retired')", name="status"),
        CheckConstraint("kty IN ('RSA','EC','OKP')", name="kty"),
        CheckConstraint("use IN ('sig','enc')", name="use"),
    )

    kid: Mapped[str] = mapped_column(String(64), primary_key=True)
    kty: Mapped[str] = mapped_column(String(8))
    use: Mapped[str] = mapped_column(String(3), default="sig", server_default="sig")
    crv: Mapped[str | None] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), index=True)
    # The PKCS#8 private key: AES-GCM encrypted with the key-encryption key (base64), or None
    # when the key is kept as a 0600 file in the instance dir.
    private_enc: Mapped[str | None] = mapped_column(Text)
    public_jwk: Mapped[dict[str, Any]] = mapped_column(JSON)
    certificate_pem: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    activated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    deactivated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    retire_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


# --- organization -------------------------------------------------------------------------------


class Company(Timestamps, Base):
    """A tenant: users, departments and positions belong to one company."""

    __tablename__ = "companies"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    # {"de": "...", "ru": "..."}: names in other languages, the plain name is the fallback.
    names: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    # The tenant's control word for first-login magic links (password hash; None = disabled).
    control_word_hash: Mapped[str | None] = mapped_column(String(500))


class Department(Timestamps, Base):
    """A node of a company's department tree. ``path`` is the materialized path of ids
    ("/1/7/42/") so a subtree is one indexed prefix query on SQLite and PostgreSQL alike."""

    __tablename__ = "departments"
    __table_args__ = (UniqueConstraint("company_id", "parent_id", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    company_id: Mapped[int] = mapped_column(
        ForeignKey("companies.id", ondelete="CASCADE"), index=True
    )
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("departments.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    names: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    # Byte order ("C") on PostgreSQL so the prefix range query uses the index under any
    # database locale; SQLite compares bytes already.
    path: Mapped[str] = mapped_column(
        String(1000).with_variant(String(1000, collation="C"), "postgresql"),
        index=True,
        default="",
    )


class Position(Timestamps, Base):
    __tablename__ = "positions"
    __table_args__ = (UniqueConstraint("company_id", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    company_id: Mapped[int] = mapped_column(
        ForeignKey("companies.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(200))
    names: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)


# --- users --------------------------------------------------------------------------------------

USER_STATUSES = ("active", "inactive", "locked", "pending", "expired")


class User(Timestamps, Base):
    __tablename__ = "users"
    __table_args__ = (
        CheckConstraint(
            "status IN ('active','inactive','locked','pending','expired')", name="status"
        ),
        # Logins match the username case-insensitively: this index serves that lookup (no
        # table scan per login) and keeps "Ann" and "ann" from both existing.
        Index("uq_users_username_lower", text("lower(username)"), unique=True),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # The stable public identifier: OIDC ``sub``, SCIM ``id``. Never reused, never changes.
    uuid: Mapped[str] = mapped_column(String(36), unique=True, default=_uuid)
    username: Mapped[str] = mapped_column(String(150), unique=True)
    email: Mapped[str | None] = mapped_column(String(320), unique=True)
    email_verified: Mapped[bool] = mapped_column(Boolean, default=False)
    given_name: Mapped[str | None] = mapped_column(String(150))
    middle_name: Mapped[str | None] = mapped_column(String(150))
    family_name: Mapped[str | None] = mapped_column(String(150))
    display_name: Mapped[str | None] = mapped_column(String(300))
    phone: Mapped[str | None] = mapped_column(String(40))
    phone_verified: Mapped[bool] = mapped_column(Boolean, default=False)
    avatar: Mapped[str | None] = mapped_column(String(300))
    locale: Mapped[str | None] = mapped_column(String(35))
    timezone: Mapped[str | None] = mapped_column(String(64))
    color: Mapped[str | None] = mapped_column(String(7))
    status: Mapped[str] = mapped_column(String(16), default="active", index=True)
    start_date: Mapped[date | None] = mapped_column(Date)
    end_date: Mapped[date | None] = mapped_column(Date)
    # Where the account comes from: "local", "ldap", "scim"...
    source: Mapped[str] = mapped_column(String(32), default="local")
    ldap_dn: Mapped[str | None] = mapped_column(String(1000))
    external_id: Mapped[str | None] = mapped_column(String(255), index=True)
    password_hash: Mapped[str | None] = mapped_column(String(500))
    password_changed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    must_change_password: Mapped[bool] = mapped_column(Boolean, default=False)
    require_mfa: Mapped[bool] = mapped_column(Boolean, default=False)
    company_id: Mapped[int | None] = mapped_column(ForeignKey("companies.id"), index=True)
    department_id: Mapped[int | None] = mapped_column(ForeignKey("departments.id"), index=True)
    position_id: Mapped[int | None] = mapped_column(ForeignKey("positions.id"))
    manager_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    # Values of admin-defined custom fields, by field name.
    custom: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # Indexed for the dormant-accounts report (no sign-in since a date).
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)

    department: Mapped[Department | None] = relationship(lazy="joined")
    company: Mapped[Company | None] = relationship(lazy="joined")
    position: Mapped[Position | None] = relationship(lazy="joined")


class CustomField(Timestamps, Base):
    """An admin-defined user attribute."""

    __tablename__ = "custom_fields"
    __table_args__ = (
        CheckConstraint(
            "type IN ('string','integer','boolean','date','email','url','choice')", name="type"
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    label: Mapped[str] = mapped_column(String(200))
    labels: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    type: Mapped[str] = mapped_column(String(16), default="string")
    required: Mapped[bool] = mapped_column(Boolean, default=False)
    pattern: Mapped[str | None] = mapped_column(String(500))
    choices: Mapped[list[str]] = mapped_column(JSON, default=list)
    visible_to_user: Mapped[bool] = mapped_column(Boolean, default=True)
    editable_by_user: Mapped[bool] = mapped_column(Boolean, default=False)
    sort_order: Mapped[int] = mapped_column(Integer, default=0)


# --- groups, roles, permissions -----------------------------------------------------------------


class Group(Timestamps, Base):
    """A (nested) group. ``path`` is the "/"-joined names from the root, as emitted in claims."""

    __tablename__ = "groups"
    __table_args__ = (UniqueConstraint("parent_id", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("groups.id"), index=True)
    path: Mapped[str] = mapped_column(String(1000), unique=True)
    description: Mapped[str | None] = mapped_column(Text)
    company_id: Mapped[int | None] = mapped_column(ForeignKey("companies.id"))
    # The id a provisioning client knows the group by (SCIM externalId).
    external_id: Mapped[str | None] = mapped_column(String(255), index=True)


class GroupMember(Base):
    __tablename__ = "group_members"

    group_id: Mapped[int] = mapped_column(
        ForeignKey("groups.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    # A temporary membership ends here; None = permanent.
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    granted_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Role(Timestamps, Base):
    """A global role (``client_id`` None) or a client's own role."""

    __tablename__ = "roles"
    __table_args__ = (
        Index(
            "uq_roles_global_name",
            "name",
            unique=True,
            sqlite_where=text("client_id IS NULL"),
            postgresql_where=text("client_id IS NULL"),
        ),
        UniqueConstraint("client_id", "name"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    client_id: Mapped[str | None] = mapped_column(
        ForeignKey("clients.client_id", ondelete="CASCADE"), index=True
    )
    description: Mapped[str | None] = mapped_column(Text)
    # Seeded from a role template at init; templates can be edited but are re-seeded if deleted.
    template: Mapped[str | None] = mapped_column(String(64))


class RoleComposite(Base):
    """``role_id`` includes ``child_id`` (and so everything the child includes)."""

    __tablename__ = "role_composites"

    role_id: Mapped[int] = mapped_column(
        ForeignKey("roles.id", ondelete="CASCADE"), primary_key=True
    )
    child_id: Mapped[int] = mapped_column(
        ForeignKey("roles.id", ondelete="CASCADE"), primary_key=True, index=True
    )


class RolePermission(Base):
    """A permission ``module:feature:action`` (``*`` wildcards allowed) granted by a role."""

    __tablename__ = "role_permissions"

    role_id: Mapped[int] = mapped_column(
        ForeignKey("roles.id", ondelete="CASCADE"), primary_key=True
    )
    permission: Mapped[str] = mapped_column(String(200), primary_key=True)


class PermissionGroup(Timestamps, Base):
    """A named set of permissions that roles can include as one unit."""

    __tablename__ = "permission_groups"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    description: Mapped[str | None] = mapped_column(Text)
    permissions: Mapped[list[str]] = mapped_column(JSON, default=list)


class RolePermissionGroup(Base):
    __tablename__ = "role_permission_groups"

    role_id: Mapped[int] = mapped_column(
        ForeignKey("roles.id", ondelete="CASCADE"), primary_key=True
    )
    permission_group_id: Mapped[int] = mapped_column(
        ForeignKey("permission_groups.id", ondelete="CASCADE"), primary_key=True
    )


class UserRole(Base):
    """A role held by a user, optionally limited to a company or a department subtree
    (delegated administration) and optionally temporary."""

    __tablename__ = "user_roles"
    __table_args__ = (
        UniqueConstraint("user_id", "role_id", "scope_company_id", "scope_department_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    role_id: Mapped[int] = mapped_column(ForeignKey("roles.id", ondelete="CASCADE"), index=True)
    scope_company_id: Mapped[int | None] = mapped_column(
        ForeignKey("companies.id", ondelete="CASCADE")
    )
    scope_department_id: Mapped[int | None] = mapped_column(
        ForeignKey("departments.id", ondelete="CASCADE")
    )
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    granted_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class GroupRole(Base):
    __tablename__ = "group_roles"

    group_id: Mapped[int] = mapped_column(
        ForeignKey("groups.id", ondelete="CASCADE"), primary_key=True
    )
    role_id: Mapped[int] = mapped_column(
        ForeignKey("roles.id", ondelete="CASCADE"), primary_key=True, index=True
    )


class AccessRequest(Timestamps, Base):
    """A request for a temporary role or group membership, approved by a manager or admin."""

    __tablename__ = "access_requests"
    __table_args__ = (
        CheckConstraint("kind IN ('role','group')", name="kind"),
        CheckConstraint("status IN ('pending','approved','rejected','cancelled')", name="status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(8))
    target_id: Mapped[int] = mapped_column(Integer)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    reason: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="pending", index=True)
    requested_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    decided_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class RbacState(Base):
    """One row: a generation number bumped in the same transaction as every change to roles,
    groups, memberships or permissions (see idp.storage.rbac). Cached effective permissions
    are keyed by it, so every worker process sees a change at its next check."""

    __tablename__ = "rbac_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    generation: Mapped[int] = mapped_column(BigInteger, default=0)


# --- relying parties ----------------------------------------------------------------------------


class Client(Timestamps, Base):
    """An OAuth 2.0 / OIDC client. ``meta`` holds the RFC 7591 client metadata."""

    __tablename__ = "clients"

    client_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    # Keyed hash of the secret (secrets are high-entropy, see idp.core.secrets); None = public.
    secret_hash: Mapped[str | None] = mapped_column(String(255))
    # client_secret_jwt needs the secret itself to verify HMAC assertions: kept encrypted.
    secret_enc: Mapped[str | None] = mapped_column(Text)
    name: Mapped[str | None] = mapped_column(String(200))
    meta: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    first_party: Mapped[bool] = mapped_column(Boolean, default=False)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    # RFC 7592: hash of the registration access token for dynamically registered clients.
    registration_token_hash: Mapped[str | None] = mapped_column(String(255))


class ClientServiceRole(Base):
    """Roles of a client's service account (its client_credentials tokens act with them)."""

    __tablename__ = "client_service_roles"

    client_id: Mapped[str] = mapped_column(
        ForeignKey("clients.client_id", ondelete="CASCADE"), primary_key=True
    )
    role_id: Mapped[int] = mapped_column(
        ForeignKey("roles.id", ondelete="CASCADE"), primary_key=True
    )


class InitialAccessToken(Base):
    """RFC 7591 initial access token for dynamic registration (stored hashed, one use)."""

    __tablename__ = "initial_access_tokens"

    token_hash: Mapped[str] = mapped_column(String(255), primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class SamlServiceProvider(Timestamps, Base):
    __tablename__ = "saml_service_providers"

    entity_id: Mapped[str] = mapped_column(String(1000), primary_key=True)
    name: Mapped[str | None] = mapped_column(String(200))
    metadata_xml: Mapped[str] = mapped_column(Text)
    # Per-SP choices: NameID format, sign response/assertion, encrypt, attribute release...
    settings: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # Where it came from: "manual", "url:<...>", "federation:<name>".
    origin: Mapped[str] = mapped_column(String(300), default="manual")
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)


# --- claims mapping -----------------------------------------------------------------------------


class ClaimRule(Timestamps, Base):
    """One mapping rule of the claims mapper (see idp.core.claims). ``client_id`` / ``sp_entity_id``
    None on both = a realm-wide default rule; a rule for a client or SP overrides the default rule
    with the same target."""

    __tablename__ = "claim_rules"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    client_id: Mapped[str | None] = mapped_column(
        ForeignKey("clients.client_id", ondelete="CASCADE"), index=True
    )
    sp_entity_id: Mapped[str | None] = mapped_column(
        ForeignKey("saml_service_providers.entity_id", ondelete="CASCADE"), index=True
    )
    # The scope that releases this claim (OIDC); None = always released.
    scope: Mapped[str | None] = mapped_column(String(100))
    # The rule itself: {"source": ..., "target": ..., "saml_name": ..., "multi": ..., ...}.
    rule: Mapped[dict[str, Any]] = mapped_column(JSON)
    sort_order: Mapped[int] = mapped_column(Integer, default=0)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)


# --- audit --------------------------------------------------------------------------------------


class AuditEvent(Base):
    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    actor: Mapped[str | None] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(100), index=True)
    target: Mapped[str | None] = mapped_column(String(300))
    ip: Mapped[str | None] = mapped_column(String(64))
    request_id: Mapped[str | None] = mapped_column(String(64))
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # The hash chain (idp.storage.audit): the row's place in commit order, the hash of the row
    # before it, and its own hash. ip, user_agent and details enter the hash only through
    # personal_digest, so an erasure can blank them (erased_at) while the chain still verifies.
    user_agent: Mapped[str | None] = mapped_column(String(512))
    seq: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), unique=True, nullable=False
    )
    personal_digest: Mapped[str] = mapped_column(String(64), nullable=False)
    prev_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    row_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    erased_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


# Tables of other areas, kept in their own modules (imported so Alembic sees them).
from . import models_audit as models_audit  # noqa: E402
from . import models_auth as models_auth  # noqa: E402
from . import models_broker as models_broker  # noqa: E402
from . import models_config as models_config  # noqa: E402
from . import models_devices as models_devices  # noqa: E402
from . import models_gdpr as models_gdpr  # noqa: E402
from . import models_iprules as models_iprules  # noqa: E402
from . import models_ldap as models_ldap  # noqa: E402
from . import models_mail as models_mail  # noqa: E402
from . import models_mfa as models_mfa  # noqa: E402
from . import models_oauth as models_oauth  # noqa: E402
from . import models_provisioning as models_provisioning  # noqa: E402
from . import models_reports as models_reports  # noqa: E402
from . import models_risk as models_risk  # noqa: E402
from . import models_saml as models_saml  # noqa: E402
from . import models_sessions as models_sessions  # noqa: E402
from . import models_webauthn as models_webauthn  # noqa: E402
