"""Tables of the compliance reports: access-review campaigns (``idp.manage.reports``).

A review is taken of one role's or one group's holders when it starts; the reviewer confirms or
revokes each one; once signed off, the review and its decisions are evidence and change no
more. Names are copied into the rows so the evidence still reads after a user, role or group
is gone (the ids then become NULL)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from .db import Base, UTCDateTime, utcnow

REVIEW_KINDS = ("role", "group")
DECISIONS = ("confirm", "revoke")


class AccessReview(Base):
    __tablename__ = "access_reviews"
    __table_args__ = (Index("ix_access_reviews_created_at", "created_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(8))  # role | group
    role_id: Mapped[int | None] = mapped_column(ForeignKey("roles.id", ondelete="SET NULL"))
    group_id: Mapped[int | None] = mapped_column(ForeignKey("groups.id", ondelete="SET NULL"))
    subject: Mapped[str] = mapped_column(String(1000))  # the role's name / the group's path
    title: Mapped[str | None] = mapped_column(String(200))
    created_by: Mapped[str] = mapped_column(String(200))  # the actor's audit name
    created_by_name: Mapped[str | None] = mapped_column(String(150))  # their username
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    signed_off_by: Mapped[str | None] = mapped_column(String(200))
    signed_off_by_name: Mapped[str | None] = mapped_column(String(150))
    signed_off_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class AccessReviewItem(Base):
    """One holder under review and the decision on them."""

    __tablename__ = "access_review_items"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    review_id: Mapped[int] = mapped_column(
        ForeignKey("access_reviews.id", ondelete="CASCADE"), index=True
    )
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    user_uuid: Mapped[str] = mapped_column(String(36))
    username: Mapped[str] = mapped_column(String(150))
    grant: Mapped[str] = mapped_column(String(1000))  # how they hold it ("assigned until ...")
    decision: Mapped[str | None] = mapped_column(String(8))  # confirm | revoke | None (open)
    decided_by: Mapped[str | None] = mapped_column(String(200))
    decided_by_name: Mapped[str | None] = mapped_column(String(150))
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    comment: Mapped[str | None] = mapped_column(String(1000))
