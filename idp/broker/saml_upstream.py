"""The ``saml`` kind of upstream (docs/brokering.md, "Upstream SAML IdPs"): the broker's
``UpstreamProtocol`` over ``idp.broker.saml`` (AuthnRequest, Response checks) and
``idp.broker.saml_logout`` (single logout).

Config (``UpstreamProvider.config``): ``metadata_xml`` — the upstream IdP's metadata (given as a
file, pasted, or fetched from ``metadata_url`` by the management layer under the outbound policy)
— and the settings of ``idp.broker.saml.SETTINGS``. The flight's ``state`` is the RelayState; the
AuthnRequest's ID is derived from it (``request_id_for``), so the Response must answer the
request this browser's flight sent.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

from ..core.broker import UpstreamIdentity
from ..errors import ValidationError
from ..saml.results import Redirect
from ..services import Services
from ..sso.broker import Flight
from ..sso.sessions import session_manager
from ..storage.models_broker import UpstreamProvider
from .base import Outgoing, UpstreamError
from .saml import (
    SETTINGS,
    Asserted,
    Refused,
    SamlUpstream,
    check_settings,
    consume,
    request_id_for,
    start,
    upstream,
)
from .saml_logout import logout_request, read_session_ref, remember_name_id, session_ref
from .saml_metadata import parse_idp_metadata

# Claims of ``idp.core.broker.DEFAULT_FIELD_CLAIMS`` filled from the configured attributes, so
# the standard mapping fills the profile as it does for OIDC.
_NAME_CLAIMS = (("given_name", "given_name"), ("family_name", "family_name"), ("name", "name"))
CONFIG_KEYS = {"metadata_xml", "metadata_url"} | set(SETTINGS)


def identity_of(alias: str, asserted: Asserted) -> UpstreamIdentity:
    attributes = {k: tuple(v) for k, v in asserted.attributes.items() if v}
    for claim, field in _NAME_CLAIMS:
        value = getattr(asserted, field)
        if value:
            attributes[claim] = (value,)
    return UpstreamIdentity(
        provider=alias,
        subject=asserted.subject,
        email=asserted.email,
        email_verified=asserted.email_verified,
        attributes=attributes,
        session_ref=session_ref(asserted.name_id, asserted.session_ref),
    )


class SamlUpstreamProtocol:
    kind = "saml"

    def check_config(self, config: Mapping[str, Any], has_secret: bool) -> dict[str, Any]:
        unknown = set(config) - CONFIG_KEYS
        if unknown:
            raise ValueError(f"unknown SAML upstream setting {sorted(unknown)[0]!r}")
        if has_secret:
            raise ValueError("a SAML upstream has no client secret")
        xml = config.get("metadata_xml")
        if not isinstance(xml, str) or not xml.strip():
            raise ValueError("metadata_xml (or metadata_url) is required: the IdP's metadata")
        settings = {k: v for k, v in config.items() if k in SETTINGS}
        try:
            out = check_settings(settings)
            # validUntil is judged when the metadata is used, on the injected clock.
            parse_idp_metadata(xml, now=None, allow_http=bool(out.get("allow_http")))
        except ValidationError as exc:
            raise ValueError(str(exc)) from None
        out["metadata_xml"] = xml
        if config.get("metadata_url"):
            out["metadata_url"] = str(config["metadata_url"])
        return out

    def upstream(self, svc: Services, prov: UpstreamProvider) -> SamlUpstream:
        config = dict(prov.config or {})
        settings = {k: v for k, v in config.items() if k in SETTINGS}
        try:
            return upstream(
                prov.alias, config.get("metadata_xml", ""), settings, svc.clock.utcnow()
            )
        except ValidationError as exc:
            raise UpstreamError("metadata_unusable", str(exc)) from None

    def begin(self, svc: Services, prov: UpstreamProvider, flight: Flight) -> Outgoing:
        up = self.upstream(svc, prov)
        req = session_manager(svc).load_request(flight.rid) if flight.rid else None
        out = start(svc, up, relay_state=flight.state, force_authn=bool(req and req.force_authn))
        if isinstance(out, Redirect):
            return Outgoing(out.location)
        form = {"SAMLRequest": out.value, "RelayState": flight.state}
        return Outgoing(out.action, form)

    def finish(
        self, svc: Services, prov: UpstreamProvider, flight: Flight, answer: Mapping[str, str]
    ) -> UpstreamIdentity:
        """``flight`` with an empty ``state`` stands for no flight (an unsolicited Response)."""
        up = self.upstream(svc, prov)
        try:
            asserted = consume(
                svc,
                up,
                saml_response=answer.get("SAMLResponse"),
                request_id=request_id_for(flight.state) if flight.state else None,
            )
        except Refused as exc:
            raise UpstreamError(exc.reason or "invalid_response", str(exc)) from None
        remember_name_id(svc, prov.alias, asserted.name_id, asserted.subject)
        return identity_of(prov.alias, asserted)

    def logout_url(
        self, svc: Services, prov: UpstreamProvider, session_ref: str, return_to: str,
        state: str,
    ) -> str | None:
        """A signed LogoutRequest by HTTP-Redirect to the upstream's SingleLogoutService (an
        upstream offering only HTTP-POST there is not sent one). The RelayState is our own
        (``logout_request``); the browser comes back to ``return_to`` with ``state``."""
        kept = read_session_ref(session_ref)
        if kept is None:
            return None
        try:
            up = self.upstream(svc, prov)
        except UpstreamError:
            return None
        back = f"{return_to}{'&' if '?' in return_to else '?'}{urlencode({'state': state})}"
        out = logout_request(svc, up, kept[0], kept[1], back)
        return out.location if out is not None else None
