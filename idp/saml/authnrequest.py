"""What the Web SSO checks read from an ``<AuthnRequest>`` (saml-core 3.2.1, 3.4.1).

An unsigned request (the common case: HTTP-Redirect requests carry their signature in the
query string, not in the XML) is read from the lxml tree ``inbound.inspect`` already parsed
and checked, with the schema checks pysaml2's parse applied (version, value types,
cardinalities). A request with an XML signature anywhere in it goes through pysaml2, which
verifies the signature against the SP's metadata keys; its fields are then read from the
message pysaml2 verified, so the element used is the element signed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from lxml import etree

from .crypto import DSIG_NS, SAML_NS
from .inbound import SAMLP_NS, BadMessage

_P = f"{{{SAMLP_NS}}}"
_A = f"{{{SAML_NS}}}"
_SIGNATURE = f"{{{DSIG_NS}}}Signature"
# Children of AuthnRequest that may appear at most once (saml-core 3.2.1, 3.4.1).
_ONCE = (
    _A + "Issuer",
    _SIGNATURE,
    _P + "Extensions",
    _A + "Subject",
    _P + "NameIDPolicy",
    _A + "Conditions",
    _P + "RequestedAuthnContext",
    _P + "Scoping",
)
_COMPARISONS = ("exact", "minimum", "maximum", "better")
# xs:boolean's lexical space (XML Schema 2, 3.2.2.1), in any letter case and without
# surrounding spaces, as pysaml2 reads it (SPs send "True").
_TRUE, _FALSE = ("true", "1"), ("false", "0")
_UNSIGNED_SHORT = re.compile(r"\+?[0-9]{1,5}")
_ACS_INDEX = "AssertionConsumerServiceIndex"


@dataclass
class AuthnRequestFields:
    id: str | None
    issuer: str | None
    signed: bool  # an XML Signature on the request element (verified by pysaml2)
    destination: str | None = None
    protocol_binding: str | None = None
    acs_url: str | None = None
    acs_index: int | None = None
    force_authn: bool = False
    is_passive: bool = False
    name_id_format: str | None = None
    acr_classes: list[str] = field(default_factory=list)
    comparison: str | None = None
    has_requested_context: bool = False


# An empty attribute reads as an absent one, as in pysaml2.


def _boolean(value: str | None, name: str) -> bool:
    if not value:
        return False
    v = value.lower()
    if v in _TRUE:
        return True
    if v in _FALSE:
        return False
    raise BadMessage(f"the request's {name} is not a boolean")


def _index(value: str | None, name: str) -> int | None:
    if not value:
        return None
    v = value.strip()
    if not _UNSIGNED_SHORT.fullmatch(v) or int(v) > 65535:
        raise BadMessage(f"the request's {name} is not a valid index")
    return int(v)


def read_unsigned(root: etree._Element) -> AuthnRequestFields:
    """The fields of an AuthnRequest without any XML signature in it (``inspect`` has checked
    the document: no DTD, a samlp root, plain-text Issuer and NameID)."""
    if root.tag != _P + "AuthnRequest":
        raise BadMessage("the message is not an AuthnRequest")
    if root.get("Version") != "2.0":
        raise BadMessage("the request is not SAML 2.0")
    if not root.get("ID") or not root.get("IssueInstant"):  # required (saml-core 3.2.1)
        raise BadMessage("the request has no ID or no IssueInstant")
    seen: set[str] = set()
    for child in root:
        tag = child.tag
        if tag in _ONCE:
            if tag in seen:
                raise BadMessage("the request is not valid (repeated element)")
            seen.add(tag)
    issuer_el = root.find(_A + "Issuer")
    out = AuthnRequestFields(
        id=root.get("ID"),
        issuer=(issuer_el.text or "").strip() if issuer_el is not None else None,
        signed=False,
        destination=root.get("Destination"),
        protocol_binding=root.get("ProtocolBinding"),
        acs_url=root.get("AssertionConsumerServiceURL"),
        acs_index=_index(root.get(_ACS_INDEX), _ACS_INDEX),
        force_authn=_boolean(root.get("ForceAuthn"), "ForceAuthn"),
        is_passive=_boolean(root.get("IsPassive"), "IsPassive"),
    )
    _index(root.get("AttributeConsumingServiceIndex"), "AttributeConsumingServiceIndex")
    policy = root.find(_P + "NameIDPolicy")
    if policy is not None:
        _boolean(policy.get("AllowCreate"), "AllowCreate")
        out.name_id_format = policy.get("Format")
    rac = root.find(_P + "RequestedAuthnContext")
    if rac is not None:
        comparison = rac.get("Comparison")
        if comparison and comparison not in _COMPARISONS:
            raise BadMessage("the request's RequestedAuthnContext Comparison is not valid")
        out.has_requested_context = True
        out.comparison = comparison
        out.acr_classes = [
            el.text.strip() for el in rac.iterchildren(_A + "AuthnContextClassRef") if el.text
        ]
    return out


def from_pysaml2(req: Any) -> AuthnRequestFields:
    """The same fields from the ``samlp.AuthnRequest`` pysaml2 parsed (and verified)."""
    policy = req.name_id_policy
    rac = req.requested_authn_context
    return AuthnRequestFields(
        id=req.id,
        issuer=req.issuer.text.strip() if req.issuer is not None and req.issuer.text else None,
        signed=req.signature is not None,
        destination=req.destination,
        protocol_binding=req.protocol_binding,
        acs_url=req.assertion_consumer_service_url,
        acs_index=_index(req.assertion_consumer_service_index, _ACS_INDEX),
        force_authn=_boolean(req.force_authn, "ForceAuthn"),
        is_passive=_boolean(req.is_passive, "IsPassive"),
        name_id_format=policy.format if policy is not None else None,
        acr_classes=[c.text.strip() for c in rac.authn_context_class_ref if c.text]
        if rac is not None
        else [],
        comparison=rac.comparison if rac is not None else None,
        has_requested_context=rac is not None,
    )
