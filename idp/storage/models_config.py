"""Tables of configuration as code: the policy settings set with ``idp config apply``."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, String
from sqlalchemy.orm import Mapped, mapped_column

from .db import Base, UTCDateTime, utcnow


class AppliedSetting(Base):
    """One policy setting (``[section] key``) set with ``idp config apply``. Laid over the TOML
    file when a node starts (the environment still wins); see ``idp.settings.APPLIED_SECTIONS``
    for the keys allowed and docs/configuration.md."""

    __tablename__ = "applied_settings"

    section: Mapped[str] = mapped_column(String(64), primary_key=True)
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[Any] = mapped_column(JSON)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
