"""Upstream identity providers' protocols (docs/brokering.md): each kind of upstream sends the
browser there (``begin``) and turns what comes back into an ``UpstreamIdentity``
(``idp.core.broker``), which the sign-in hub (``idp.sso.broker``) links, provisions and signs
in. No Flask: the web layer (``idp.web.broker``) passes plain values.

``protocol(kind)`` gives a provider's implementation; a protocol whose answer comes
back on its own route (SAML's assertion consumer service) adds its own web route and calls
``idp.web.broker.complete`` with the identity.
"""

from __future__ import annotations

from .base import Outgoing, UpstreamError, UpstreamProtocol, callback_url

__all__ = ["Outgoing", "UpstreamError", "UpstreamProtocol", "callback_url", "protocol"]


def protocol(kind: str) -> UpstreamProtocol:
    """The implementation of ``kind``; UpstreamError ``unsupported_kind`` for one this build
    does not have."""
    from .oauth2 import OAuth2Upstream
    from .oidc import OidcUpstream
    from .saml_upstream import SamlUpstreamProtocol

    found: dict[str, UpstreamProtocol] = {
        "oidc": OidcUpstream(),
        "oauth2": OAuth2Upstream(),
        "saml": SamlUpstreamProtocol(),
    }
    if kind not in found:
        raise UpstreamError("unsupported_kind", kind)
    return found[kind]
