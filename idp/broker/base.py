"""What every upstream protocol shares: the error type, where ``begin`` sends the browser, the
protocol interface, and the redirect URI registered at an upstream."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from ..core.broker import UpstreamIdentity

if TYPE_CHECKING:
    from ..services import Services
    from ..sso.broker import Flight
    from ..storage.models_broker import UpstreamProvider


class UpstreamError(Exception):
    """The upstream's answer cannot sign anyone in. ``reason`` is a short code for the audit
    row and the log (``error_from_upstream``, ``bad_id_token_signature``...), safe to record;
    the person sees a generic page."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class Outgoing:
    """Where ``begin`` sends the browser: a redirect to ``url``, or (``form`` given) an
    auto-submitted POST of ``form`` to ``url`` (SAML's POST binding)."""

    url: str
    form: dict[str, str] | None = field(default=None)


class UpstreamProtocol(Protocol):
    kind: str

    def check_config(self, config: Mapping[str, Any], has_secret: bool) -> dict[str, Any]:
        """The provider's ``config`` checked and normalised; ValueError naming the problem."""

    def begin(self, svc: Services, prov: UpstreamProvider, flight: Flight) -> Outgoing:
        """Send the browser to the upstream for ``flight``."""

    def finish(
        self, svc: Services, prov: UpstreamProvider, flight: Flight, answer: Mapping[str, str]
    ) -> UpstreamIdentity:
        """The identity in the upstream's answer (the callback's parameters); UpstreamError."""

    def logout_url(
        self, svc: Services, prov: UpstreamProvider, session_ref: str, return_to: str,
        state: str,
    ) -> str | None:
        """Where to send the browser to end the upstream session too (None: not supported);
        the upstream sends it back to ``return_to`` with ``state`` (OIDC ``state``, SAML
        RelayState)."""


def callback_url(svc: Services, alias: str) -> str:
    """The redirect URI to register at an OIDC / OAuth 2 upstream for ``alias``."""
    return f"{svc.settings.issuer}/broker/{alias}/callback"
