"""Tables of the audit hash chain (idp.storage.audit): its head and its retention checkpoints."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from .db import Base, UTCDateTime

_BIG = BigInteger().with_variant(Integer, "sqlite")


class AuditChainHead(Base):
    """One row (id 1): the position of the newest chained audit row. Every writer locks it
    (UPDATE ... RETURNING) before it chains a row, so rows are chained in commit order across
    workers and nodes; verification compares the last row with it, so a cut tail shows."""

    __tablename__ = "audit_chain_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    seq: Mapped[int] = mapped_column(_BIG, nullable=False, default=0)


class AuditCheckpoint(Base):
    """Written by ``idp audit prune`` with its chained ``audit.pruned`` event: the last
    pruned row, so verification starts after it instead of at the first row ever written."""

    __tablename__ = "audit_checkpoints"

    id: Mapped[int] = mapped_column(_BIG, primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    last_id: Mapped[int] = mapped_column(_BIG, nullable=False)
    last_seq: Mapped[int] = mapped_column(_BIG, nullable=False)
    last_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    rows: Mapped[int] = mapped_column(_BIG, nullable=False)
    event_seq: Mapped[int] = mapped_column(_BIG, nullable=False)
