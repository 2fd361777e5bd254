"""The "ldap" credential backend (design idea 3): a login name the directory knows is ours; the
password is checked by binding as the user (idp.backends.ldap), and the directory user is
provisioned into a local row at each successful login (idp.backends.ldap_sync)."""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING

from ..core.credentials import Outcome, Verdict
from .ldap import (
    AD_SUBCODES,
    MAX_SECRET_LENGTH,
    UNAVAILABLE_MESSAGE,
    DirectoryUnavailable,
    LdapConnector,
    ad_message,
    ldap_connector,
)
from .ldap_sync import local_user_id, provision

if TYPE_CHECKING:  # the container's type only: it is built above this layer
    from ..services import Services

# The connector's logger: operators filter one name for everything LDAP.
log = logging.getLogger("idp.backends.ldap")

_CONTROL_CHARS_RE = re.compile(r"[\x00-\x1f\x7f]")


class LdapBackend:
    """The "ldap" credential backend: a login name the directory knows is ours."""

    id = "ldap"

    def __init__(self, svc: Services, connector: LdapConnector) -> None:
        self.svc = svc
        self.cfg = svc.settings.ldap
        self.connector = connector

    def handles(self, kind: str) -> bool:
        return kind == "password" and self.cfg.enabled

    def _clean_login(self, login: str) -> str | None:
        login = login.strip()
        if not login or len(login) > self.cfg.max_username_length:
            return None
        if _CONTROL_CHARS_RE.search(login):
            return None
        if self.cfg.active_directory and "\\" in login:
            # Down-level logon name DOMAIN\user: the domain is the one we are bound to.
            domain, _, name = login.rpartition("\\")
            if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9.-]{0,62}", domain) or not name:
                return None
            login = name
        return login

    def verify(self, login: str, secret: str) -> Verdict:
        clean = self._clean_login(login)
        if clean is None or not secret or len(secret) > MAX_SECRET_LENGTH or "\x00" in secret:
            # Refused before any search or bind: empty passwords would be anonymous binds
            # (RFC 4513 §5.1.2), control characters and huge input have no business here.
            return Verdict(Outcome.INVALID, message=None)
        try:
            entries, ambiguous = self.connector.run(lambda c: self.connector.find_user(c, clean))
            if not entries:
                return Verdict(Outcome.NOT_MINE)
            if ambiguous or len(entries) > 1:
                log.warning("ldap: login %r matches several directory entries; refused", clean)
                return Verdict(Outcome.INVALID)
            entry = entries[0]
            known_id = local_user_id(self.svc, entry["dn"])
            conn, ok = self.connector.connect(entry["dn"], secret)
            result = dict(conn.result)
            conn.unbind()
            if not ok:
                message = None
                if self.cfg.active_directory:
                    message = ad_message(result.get("message", ""))
                return Verdict(Outcome.INVALID, user_id=known_id, message=message)
            user = self.connector.to_user(entry)
            if user is None:
                log.warning("ldap: %s has no %s; refused", entry["dn"], self.cfg.username_attribute)
                return Verdict(Outcome.INVALID, user_id=known_id)
            user.groups = self.connector.run(lambda c: self.connector.groups_of(c, user, entry))
        except DirectoryUnavailable as exc:
            log.warning("ldap: directory unavailable: %s", exc)
            return Verdict(Outcome.UNAVAILABLE, message=UNAVAILABLE_MESSAGE)
        outcome = provision(self.svc, user)
        if user.disabled:
            return Verdict(Outcome.INVALID, user_id=outcome.user_id, message=AD_SUBCODES["533"])
        if outcome.user_id is None:
            return Verdict(Outcome.INVALID, message=outcome.message)
        return Verdict(Outcome.VALID, user_id=outcome.user_id, attributes=user.attributes())


def ldap_backend(svc: Services) -> LdapBackend:
    return LdapBackend(svc, ldap_connector(svc))
