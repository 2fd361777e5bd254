"""/saml/metadata: our signed IdP metadata (saml-metadata 2.4.3)."""

from __future__ import annotations

from ...saml.metadata import metadata as document
from ..current import svc
from .respond import respond


def metadata():
    return respond(document(svc()))
