"""Our IdP metadata document (saml-metadata 2.4.3), signed; ``SamlIdp.metadata`` keeps it."""

from __future__ import annotations

from ..services import Services
from .engine import saml_idp
from .results import Xml


def metadata(svc: Services) -> Xml:
    return Xml(saml_idp(svc).metadata(), "application/samlmetadata+xml", "public, max-age=300")
