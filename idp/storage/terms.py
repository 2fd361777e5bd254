"""Which version of the terms of use / privacy policy a user accepted (``[gdpr] terms_version``).
Read by the login's acceptance step, the user's data export and the console's user page."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from .models_gdpr import TermsAcceptance


def accepted(db: Session, user_id: int, version: str) -> bool:
    return (
        db.scalar(
            select(TermsAcceptance.user_id).where(
                TermsAcceptance.user_id == user_id, TermsAcceptance.version == version
            )
        )
        is not None
    )


def terms_pending(db: Session, version: str, user_id: int) -> bool:
    """Must this user accept ``version`` before signing in? (An empty version: no.)"""
    return bool(version) and not accepted(db, user_id, version)


def record(db: Session, user_id: int, version: str, *, at: datetime) -> None:
    """The user accepted ``version`` now (a second acceptance of the same version is a no-op)."""
    if not accepted(db, user_id, version):
        db.add(TermsAcceptance(user_id=user_id, version=version, accepted_at=at))


def acceptances(db: Session, user_id: int) -> list[TermsAcceptance]:
    """Every version the user accepted, newest first."""
    return list(
        db.scalars(
            select(TermsAcceptance)
            .where(TermsAcceptance.user_id == user_id)
            .order_by(TermsAcceptance.accepted_at.desc())
        )
    )
