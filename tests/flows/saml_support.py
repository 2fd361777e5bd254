"""Support for SAML flow tests: a real HTTP server running the IdP, SP key pairs, a pysaml2
SP with its own metadata, a browser (requests.Session) and the HTML form reader."""

from __future__ import annotations

import html
import re
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from support import base_overrides, init_database
from werkzeug.serving import make_server

FORM_RE = re.compile(r"<form\b([^>]*)>(.*?)</form>", re.I | re.S)
INPUT_RE = re.compile(r"<input\b[^>]*>", re.I | re.S)
ATTR_RE = re.compile(r'([a-zA-Z_:-]+)\s*=\s*"([^"]*)"', re.S)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_keypair(folder: Path, name: str) -> tuple[Path, Path]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    key_path = folder / f"{name}.key"
    cert_path = folder / f"{name}.crt"
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key_path, cert_path


def forms(text: str) -> list[tuple[str, dict[str, str]]]:
    out = []
    for fm in FORM_RE.finditer(text):
        attrs = {k.lower(): html.unescape(v) for k, v in ATTR_RE.findall(fm.group(1))}
        fields = {}
        for im in INPUT_RE.finditer(fm.group(2)):
            a = {k.lower(): html.unescape(v) for k, v in ATTR_RE.findall(im.group(0))}
            if "name" in a:
                fields[a["name"]] = a.get("value", "")
        out.append((attrs.get("action", ""), fields))
    return out


def form_with(text: str, field: str) -> tuple[str, dict[str, str]]:
    for action, fields in forms(text):
        if field in fields:
            return action, fields
    raise AssertionError(f"no form with {field} in: {text[:500]}")


@dataclass
class LiveIdP:
    app: Any
    url: str
    instance: Path

    @property
    def svc(self):
        return self.app.extensions["idp"]

    @property
    def metadata_url(self) -> str:
        return f"{self.url}/saml/metadata"

    def create_user(self, username: str = "alice", **extra: Any) -> str:
        from idp.storage.directory import Directory, NewUser

        with self.svc.sessions.begin() as db:
            d = Directory(db)
            for g in extra.pop("groups", []):
                d.create_group(g)
            user = d.create_user(
                NewUser(
                    username=username,
                    email=extra.get("email", f"{username}@example.org"),
                    given_name=extra.get("given_name", "Alice"),
                    family_name=extra.get("family_name", "Liddell"),
                ),
                groups=extra.get("member_of", []),
            )
            return user.uuid

    def login(self, browser: requests.Session, user_uuid: str, amr=("pwd",)) -> str:
        """Establish an SSO session in-process and give its cookie to the browser; the
        session's id (a hash of the cookie: what the server keeps)."""
        from idp.core.authn import acr_for
        from idp.sso.sessions import COOKIE
        from idp.web.sso import sessions

        with self.app.test_request_context("/"):
            made = sessions().create(user_uuid, list(amr), acr_for(list(amr)))
        browser.cookies.set(COOKIE, made.cookie, domain="127.0.0.1", path="/")
        return made.sid

    def register_sp(self, metadata_xml: str, **settings: Any) -> str:
        from idp.saml.registry import SpRegistry

        with self.svc.sessions.begin() as db:
            row = SpRegistry(db).add(metadata_xml, settings=settings or None, replace=True)
            return row.entity_id

    def count(self, model) -> int:
        from sqlalchemy import func, select

        with self.svc.sessions() as db:
            return db.scalar(select(func.count()).select_from(model))


@contextmanager
def live_idp(instance: Path, **overrides: Any) -> Iterator[LiveIdP]:
    from idp.app import create_app

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    ov = base_overrides(instance, issuer=url, **overrides)
    init_database(ov)
    app = create_app(ov)
    server = make_server("127.0.0.1", port, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield LiveIdP(app, url, instance)
    finally:
        server.shutdown()
        thread.join(5)
        app.extensions["idp"].engine.dispose()


def pysaml2_sp(
    folder: Path,
    idp_metadata: str,
    *,
    entity_id: str = "https://sp.example.org/metadata",
    sign_requests: bool = False,
    encryption: bool = False,
    name_id_format: str | None = None,
):
    """A pysaml2 SP with its own key pair and metadata; returns (client, metadata_xml)."""
    from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT
    from saml2.client import Saml2Client
    from saml2.config import SPConfig
    from saml2.metadata import create_metadata_string

    key, cert = make_keypair(folder, "sp-sign")
    md_file = folder / "idp-metadata.xml"
    md_file.write_text(idp_metadata)
    base = "https://sp.example.org"
    conf: dict[str, Any] = {
        "entityid": entity_id,
        "key_file": str(key),
        "cert_file": str(cert),
        "xmlsec_binary": "/usr/bin/xmlsec1",
        "service": {
            "sp": {
                "endpoints": {
                    "assertion_consumer_service": [(f"{base}/acs", BINDING_HTTP_POST)],
                    "single_logout_service": [
                        (f"{base}/slo", BINDING_HTTP_REDIRECT),
                        (f"{base}/slo/post", BINDING_HTTP_POST),
                    ],
                },
                "authn_requests_signed": sign_requests,
                "logout_requests_signed": True,
                "want_response_signed": True,
                "want_assertions_signed": True,
                "allow_unsolicited": True,
                "name_id_format": [name_id_format] if name_id_format else [],
            }
        },
        "metadata": {"local": [str(md_file)]},
        "accepted_time_diff": 60,
        "signing_algorithm": "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256",
        "digest_algorithm": "http://www.w3.org/2001/04/xmlenc#sha256",
        "allow_unknown_attributes": True,
    }
    if encryption:
        ekey, ecert = make_keypair(folder, "sp-enc")
        conf["encryption_keypairs"] = [{"key_file": str(ekey), "cert_file": str(ecert)}]
    config = SPConfig()
    config.load(conf)
    metadata = create_metadata_string(None, config=config, sign=False).decode()
    return Saml2Client(config=config), metadata
