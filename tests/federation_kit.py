"""SAML federation aggregates for tests: SP entities, a signed EntitiesDescriptor, the
"testfed" federation and its refresh (tests/test_saml_federation.py and
tests/test_saml_sp_locations.py; the ``fed_env`` fixture is in conftest.py)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import xmlsec
from lxml import etree
from sqlalchemy import select

MD = "urn:oasis:names:tc:SAML:2.0:metadata"
NOW = datetime(2030, 1, 1, tzinfo=UTC)


def keypair(folder: Path, name: str) -> tuple[Path, Path]:
    import sys

    sys.path.insert(0, str(Path(__file__).parent / "flows"))
    from saml_support import make_keypair

    return make_keypair(folder, name)


def sp_entity(entity_id: str, category: str | None = None, authority: str | None = None) -> str:
    ext = ""
    if category or authority:
        parts = []
        if authority:
            parts.append(
                '<mdrpi:RegistrationInfo xmlns:mdrpi="urn:oasis:names:tc:SAML:metadata:rpi" '
                f'registrationAuthority="{authority}"/>'
            )
        if category:
            parts.append(
                "<mdattr:EntityAttributes "
                'xmlns:mdattr="urn:oasis:names:tc:SAML:metadata:attribute">'
                '<saml:Attribute xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" '
                'Name="http://macedir.org/entity-category">'
                f"<saml:AttributeValue>{category}</saml:AttributeValue></saml:Attribute>"
                "</mdattr:EntityAttributes>"
            )
        ext = f"<md:Extensions>{''.join(parts)}</md:Extensions>"
    return (
        f'<md:EntityDescriptor entityID="{entity_id}">{ext}'
        '<md:SPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">'
        '<md:AssertionConsumerService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST" '
        f'Location="{entity_id}/acs" index="0"/></md:SPSSODescriptor></md:EntityDescriptor>'
    )


IDP_ENTITY = (
    '<md:EntityDescriptor entityID="https://idp.partner.example/">'
    '<md:IDPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">'
    '<md:SingleSignOnService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect" '
    'Location="https://idp.partner.example/sso"/></md:IDPSSODescriptor></md:EntityDescriptor>'
)


def aggregate(
    entities: list[str],
    key: Path,
    cert: Path,
    *,
    valid_until: datetime,
    cache: str = "PT6H",
    sign: bool = True,
) -> bytes:
    xml = (
        f'<md:EntitiesDescriptor xmlns:md="{MD}" ID="agg1" Name="urn:test:fed" '
        f'validUntil="{valid_until.strftime("%Y-%m-%dT%H:%M:%SZ")}" cacheDuration="{cache}">'
        + "".join(entities)
        + "</md:EntitiesDescriptor>"
    )
    root = etree.fromstring(xml.encode())
    if sign:
        sig = xmlsec.template.create(
            root, xmlsec.constants.TransformExclC14N, xmlsec.constants.TransformRsaSha256
        )
        root.insert(0, sig)
        ref = xmlsec.template.add_reference(sig, xmlsec.constants.TransformSha256, uri="#agg1")
        xmlsec.template.add_transform(ref, xmlsec.constants.TransformEnveloped)
        xmlsec.template.add_transform(ref, xmlsec.constants.TransformExclC14N)
        xmlsec.tree.add_ids(root, ["ID"])
        ctx = xmlsec.SignatureContext()
        ctx.key = xmlsec.Key.from_file(str(key), xmlsec.constants.KeyDataFormatPem)
        ctx.sign(sig)
    return etree.tostring(root)


def add_federation(svc, folder: Path) -> tuple[Path, Path]:
    """The federation "testfed", trusting a new key pair in ``folder``: (key, cert)."""
    from idp.storage.models_saml import SamlFederation

    key, cert = keypair(folder, "fed")
    with svc.sessions.begin() as db:
        db.add(
            SamlFederation(
                name="testfed",
                url="file:///dev/null",
                cert_pem=cert.read_text(),
                filters={},
                refresh_seconds=86400,
            )
        )
    return key, cert


def sps(svc) -> dict[str, str]:
    from idp.storage.models import SamlServiceProvider

    with svc.sessions() as db:
        return {r.entity_id: r.origin for r in db.scalars(select(SamlServiceProvider))}


def refresh(svc, data: bytes):
    from federation.aggregate import refresh as refresh_federation

    return refresh_federation(
        svc.sessions, "testfed", NOW, max_bytes=10**7, timeout=5, min_refresh=300, data=data
    )
