"""Tables of the network rules: allow / deny CIDR entries of a role, a group, an OIDC client
or a SAML SP (the global rules and the console's / API's live in settings). The rule engine
is ``idp.core.iprules``; the checks are ``idp.sso.network``."""

from __future__ import annotations

from sqlalchemy import ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from .db import Base


class IpRule(Base):
    """One entry: ``action`` ("allow" or "deny") of ``network`` (canonical CIDR text) for
    exactly one of a role, a group, a client or an SP. Roles, groups and clients take their
    rules with them when deleted; an SP's stay keyed by entity ID, so that re-importing it
    from a federation keeps them (as its persistent NameIDs are kept)."""

    __tablename__ = "ip_rules"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    role_id: Mapped[int | None] = mapped_column(
        ForeignKey("roles.id", ondelete="CASCADE"), index=True
    )
    group_id: Mapped[int | None] = mapped_column(
        ForeignKey("groups.id", ondelete="CASCADE"), index=True
    )
    client_id: Mapped[str | None] = mapped_column(
        ForeignKey("clients.client_id", ondelete="CASCADE"), index=True
    )
    sp_entity_id: Mapped[str | None] = mapped_column(String(1000))
    action: Mapped[str] = mapped_column(String(8))
    network: Mapped[str] = mapped_column(String(50))
