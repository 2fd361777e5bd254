"""Tables of outbound SCIM provisioning (``idp.provisioning``): the downstream targets, the
durable queue of objects to push, and what each target knows of each object.

The queue holds at most one row per (target, kind, object): a change to an object that is
already queued only updates its row (coalescing), and a change while the row is being pushed
marks it ``again``, so the pusher queues it once more when it is done. A row is removed once
pushed; rows that gave up stay ``failed`` until retried."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from .db import Base, UTCDateTime, utcnow

OBJECT_KINDS = ("user", "group")
OPERATIONS = ("create", "update", "deactivate", "delete", "membership")
QUEUE_STATES = ("pending", "running", "failed")


class ProvisioningTarget(Base):
    """A downstream SCIM 2.0 service provider. ``token_sealed`` is the bearer token sealed
    with the instance key (``Services.sealer``, context ``provisioning-token``): never shown
    back, never logged. ``group_ids`` empty with ``all_users`` off covers nobody."""

    __tablename__ = "provisioning_targets"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    base_url: Mapped[str] = mapped_column(String(500))
    token_sealed: Mapped[str] = mapped_column(Text)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    # Which users are pushed: everyone, or the members of ``group_ids``.
    all_users: Mapped[bool] = mapped_column(Boolean, default=True)
    group_ids: Mapped[list[int]] = mapped_column(JSON, default=list)
    push_groups: Mapped[bool] = mapped_column(Boolean, default=False)
    # The attribute mapping (idp.provisioning.payload.DEFAULT_MAPPING and its documentation).
    mapping: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    last_success_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class ProvisioningQueueItem(Base):
    """One object to push to one target. ``object_id`` is the user's uuid or the group's id;
    ``op`` says what the change was (the pusher reads the object's current state, so an
    update queued twice is pushed once, as it is then)."""

    __tablename__ = "provisioning_queue"
    __table_args__ = (
        UniqueConstraint("target_id", "kind", "object_id", name="uq_provisioning_queue_object"),
        CheckConstraint("kind IN ('user','group')", name="kind"),
        CheckConstraint(
            "op IN ('create','update','deactivate','delete','membership')", name="op"
        ),
        CheckConstraint("state IN ('pending','running','failed')", name="state"),
        Index("ix_provisioning_queue_due", "state", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    target_id: Mapped[int] = mapped_column(
        ForeignKey("provisioning_targets.id", ondelete="CASCADE")
    )
    kind: Mapped[str] = mapped_column(String(8))
    object_id: Mapped[str] = mapped_column(String(64))
    op: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(8), default="pending")
    # Changed again while being pushed: queued again when this push ends.
    again: Mapped[bool] = mapped_column(Boolean, default=False)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # A claimed row is the claimer's until then; a pusher that died leaves it to others after.
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    claimed_by: Mapped[str | None] = mapped_column(String(64))
    last_error: Mapped[str | None] = mapped_column(String(1000))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ProvisioningObject(Base):
    """What one target knows of one object: its id there, when it was last pushed, the last
    error. Kept after the object is deleted here until the deletion has been pushed."""

    __tablename__ = "provisioning_objects"
    __table_args__ = (
        UniqueConstraint("target_id", "kind", "object_id", name="uq_provisioning_object"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    target_id: Mapped[int] = mapped_column(
        ForeignKey("provisioning_targets.id", ondelete="CASCADE")
    )
    kind: Mapped[str] = mapped_column(String(8))
    object_id: Mapped[str] = mapped_column(String(64))
    remote_id: Mapped[str | None] = mapped_column(String(255))
    last_synced_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(String(1000))
