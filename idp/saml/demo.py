"""The demo SAML SP seeded by ``idp init --demo``: its key pair is made at init into the
instance dir (never committed) and its metadata registered like any other SP."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from sqlalchemy.orm import Session

from ..storage.models import SamlServiceProvider
from .registry import SpRegistry

DEMO_SP_ENTITY_ID = "http://127.0.0.1:8081/saml/metadata"
DEMO_SP_ACS = "http://127.0.0.1:8081/saml/acs"
DEMO_SP_SLO = "http://127.0.0.1:8081/saml/slo"


def _keypair(folder: Path) -> str:
    """The demo SP's certificate (PEM); the key is written beside it with mode 0600."""
    folder.mkdir(parents=True, exist_ok=True)
    cert_path = folder / "demo-sp.crt"
    if cert_path.exists():
        return cert_path.read_text()
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "IdP demo SAML SP")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=3650))
        .sign(key, hashes.SHA256())
    )
    fd = os.open(folder / "demo-sp.key", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    pem = cert.public_bytes(serialization.Encoding.PEM).decode()
    cert_path.write_text(pem)
    return pem


def demo_metadata(cert_pem: str) -> str:
    body = "".join(line for line in cert_pem.strip().splitlines() if "CERTIFICATE" not in line)
    key_info = (
        '<ds:KeyInfo xmlns:ds="http://www.w3.org/2000/09/xmldsig#"><ds:X509Data>'
        f"<ds:X509Certificate>{body}</ds:X509Certificate></ds:X509Data></ds:KeyInfo>"
    )
    return (
        '<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" '
        f'entityID="{DEMO_SP_ENTITY_ID}">'
        '<md:SPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol" '
        'AuthnRequestsSigned="true" WantAssertionsSigned="true">'
        f'<md:KeyDescriptor use="signing">{key_info}</md:KeyDescriptor>'
        f'<md:KeyDescriptor use="encryption">{key_info}</md:KeyDescriptor>'
        '<md:SingleLogoutService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect" '
        f'Location="{DEMO_SP_SLO}"/>'
        "<md:NameIDFormat>urn:oasis:names:tc:SAML:2.0:nameid-format:persistent</md:NameIDFormat>"
        '<md:AssertionConsumerService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST" '
        f'Location="{DEMO_SP_ACS}" index="0" isDefault="true"/>'
        "</md:SPSSODescriptor></md:EntityDescriptor>"
    )


def seed_demo_sp(db: Session, svc: Any) -> dict[str, str] | None:
    """Register the demo SP once; return what to print, or None when it already exists."""
    if db.get(SamlServiceProvider, DEMO_SP_ENTITY_ID) is not None:
        return None
    folder = Path(svc.settings.instance_dir) / "demo-sp"
    cert = _keypair(folder)
    # The demo SP listens on plain http on the loopback: a lab SP, let off https by hand.
    SpRegistry(db).add(
        demo_metadata(cert), settings={"display_name": "Demo SAML application", "allow_http": True}
    )
    return {
        "entity_id": DEMO_SP_ENTITY_ID,
        "acs": DEMO_SP_ACS,
        "key_file": str(folder / "demo-sp.key"),
        "cert_file": str(folder / "demo-sp.crt"),
    }
