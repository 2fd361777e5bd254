"""The SAML 2.0 IdP engine on pysaml2: one ``Server`` per worker, built from settings, the
active RSA key and the registered SPs, rebuilt only when keys or SPs change.

Signing goes through ``InProcessBackend`` (the key parsed once). SP metadata is parsed once
per SP and kept until the SP row changes, so onboarding a federation does not re-parse every
partner on every request.
"""

from __future__ import annotations

import base64
import logging
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives import serialization
from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT
from saml2.attribute_converter import ac_factory
from saml2.time_util import in_a_while
from saml2.xmldsig import DIGEST_SHA256, SIG_RSA_SHA256
from sqlalchemy import func, select

from ..services import Services
from ..storage.models import SamlServiceProvider
from .crypto import AES128_CBC, AES128_GCM, AES256_CBC, AES256_GCM
from .registry import NAME_ID_FORMATS
from .response import (
    Statement,
    build_logout_request,
    build_response,
    build_status_response,
)
from .subject import Attr, IssuedNameId

if TYPE_CHECKING:  # pysaml2's sigver (and its XML schema) loads with the engine's first build
    from saml2.mdstore import InMemoryMetaData

    from .pysaml import IdpServer

log = logging.getLogger("idp.saml")

ENC_ALGORITHMS = {
    "aes128-gcm": AES128_GCM,
    "aes256-gcm": AES256_GCM,
    "aes128-cbc": AES128_CBC,
    "aes256-cbc": AES256_CBC,
}


@dataclass
class SpInfo:
    entity_id: str
    name: str | None
    settings: dict[str, Any]
    enabled: bool
    md: InMemoryMetaData
    stamp: str
    # The first encryption certificate in the SP's metadata (PEM), if any.
    encryption_cert: bytes | None = None


@dataclass
class Engine:
    """What one worker built: the pysaml2 server and what it needs beside it."""

    server: IdpServer
    key_generation: str
    signing_key: Any  # cryptography RSA private key, for HTTP-Redirect query signatures
    sps: dict[str, SpInfo] = field(default_factory=dict)
    sp_generation: Any = None
    checked: float = 0.0
    metadata_xml: str | None = None
    metadata_expires: float = 0.0


class SamlIdp:
    """Per-worker holder of the engine; ``svc.saml_engine``."""

    def __init__(self, svc: Services) -> None:
        self.svc = svc
        self.cfg = svc.settings.saml
        self.entity_id = f"{svc.settings.issuer}/saml/metadata"
        self.sso_url = f"{svc.settings.issuer}/saml/sso"
        self.slo_url = f"{svc.settings.issuer}/saml/slo"
        self._lock = threading.Lock()
        self._engine: Engine | None = None
        self._xmlsec: str | None = None  # found by the first build

    # --- building --------------------------------------------------------------------------------

    def engine(self) -> Engine:
        ring = self.svc.keys.ring()
        eng = self._engine
        if eng is None or eng.key_generation != ring.generation:
            with self._lock:
                eng = self._engine
                if eng is None or eng.key_generation != ring.generation:
                    eng = self._build(ring)
                    self._engine = eng
        now = self.svc.clock.now()
        if now - eng.checked >= self.svc.settings.keys.cache_seconds:
            with self._lock:
                self._refresh_sps(eng)
                eng.checked = now
        return eng

    def _build(self, ring) -> Engine:
        from saml2.config import IdPConfig
        from saml2.mdstore import MetadataStore
        from saml2.sigver import get_xmlsec_binary

        from .pysaml import IdpServer, InProcessBackend

        if self._xmlsec is None:
            self._xmlsec = get_xmlsec_binary(["/usr/bin", "/usr/local/bin"])
        active = ring.signing_key("RS256")
        pem = active.jwk.as_pem(private=True)
        cert = active.certificate_pem.encode()
        cert_file = self._write_public(f"idp-{active.kid}.crt", cert)
        conf = IdPConfig()
        conf.load(self._config(cert_file))
        server = IdpServer(config=conf)
        mds = MetadataStore(ac_factory(), conf, disable_ssl_certificate_validation=False)
        server.metadata = mds
        server.config.metadata = mds
        server.sec.metadata = mds
        server.sec.only_use_keys_in_metadata = True
        backend = InProcessBackend(self._xmlsec, pem, cert)
        backend.block_algorithm = ENC_ALGORITHMS.get(self.cfg.encryption_algorithm, AES128_GCM)
        server.sec.crypto = backend
        signing_key = serialization.load_pem_private_key(pem, password=None)
        eng = Engine(server=server, key_generation=ring.generation, signing_key=signing_key)
        self._refresh_sps(eng)
        eng.checked = self.svc.clock.now()
        return eng

    def _write_public(self, name: str, data: bytes) -> str:
        """pysaml2 reads our certificate from a file; it is public, so a plain file is fine."""
        folder = Path(self.svc.settings.instance_dir) / "saml"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / name
        if not path.exists() or path.read_bytes() != data:
            tmp = folder / f".{name}.{os.getpid()}"
            tmp.write_bytes(data)
            tmp.replace(path)
        return str(path)

    def _config(self, cert_file: str) -> dict[str, Any]:
        cfg = self.cfg
        formats = list(NAME_ID_FORMATS.values())
        conf: dict[str, Any] = {
            "entityid": self.entity_id,
            "xmlsec_binary": self._xmlsec,
            "cert_file": cert_file,
            "delete_tmpfiles": True,
            "accepted_time_diff": cfg.clock_skew,
            "only_use_keys_in_metadata": True,
            "signing_algorithm": SIG_RSA_SHA256,
            "digest_algorithm": DIGEST_SHA256,
            "service": {
                "idp": {
                    "name": self.svc.settings.branding.product_name,
                    "endpoints": {
                        "single_sign_on_service": [
                            (self.sso_url, BINDING_HTTP_REDIRECT),
                            (self.sso_url, BINDING_HTTP_POST),
                        ],
                        "single_logout_service": [
                            (self.slo_url, BINDING_HTTP_REDIRECT),
                            (self.slo_url, BINDING_HTTP_POST),
                        ],
                    },
                    "name_id_format": formats,
                    "want_authn_requests_signed": False,
                    "policy": {
                        "default": {
                            "lifetime": {"seconds": cfg.assertion_lifetime},
                            "name_form": "urn:oasis:names:tc:SAML:2.0:attrname-format:uri",
                        }
                    },
                }
            },
        }
        if cfg.organization_name:
            conf["organization"] = {
                "name": cfg.organization_name,
                "display_name": cfg.organization_display_name
                or self.svc.settings.branding.product_name,
                "url": cfg.organization_url or self.svc.settings.issuer,
            }
        if cfg.contact_email:
            given, _, sur = cfg.contact_name.partition(" ")
            person = {"contact_type": "technical", "email_address": [cfg.contact_email]}
            if given:
                person["given_name"] = given
            if sur:
                person["sur_name"] = sur
            conf["contact_person"] = [person]
        return conf

    def _refresh_sps(self, eng: Engine) -> None:
        from saml2.mdstore import InMemoryMetaData

        with self.svc.sessions() as db:
            gen = db.execute(select(func.count(), func.max(SamlServiceProvider.updated_at))).one()
            gen = tuple(gen)
            if gen == eng.sp_generation:
                return
            rows = db.execute(
                select(
                    SamlServiceProvider.entity_id,
                    SamlServiceProvider.updated_at,
                    SamlServiceProvider.name,
                    SamlServiceProvider.enabled,
                    SamlServiceProvider.settings,
                )
            ).all()
            fresh: dict[str, SpInfo] = {}
            for entity_id, updated, name, enabled, settings in rows:
                stamp = updated.isoformat() if updated else ""
                old = eng.sps.get(entity_id)
                if old is not None and old.stamp == stamp:
                    fresh[entity_id] = old
                    continue
                xml = db.scalar(
                    select(SamlServiceProvider.metadata_xml).where(
                        SamlServiceProvider.entity_id == entity_id
                    )
                )
                md = InMemoryMetaData(ac_factory(), xml)
                try:
                    md.load()
                except Exception:  # one bad row must not take down every SP
                    log.exception("metadata of SP %s cannot be loaded", entity_id)
                    continue
                if entity_id not in md.entity:
                    log.warning("metadata of SP %s has expired (validUntil)", entity_id)
                    continue
                fresh[entity_id] = SpInfo(
                    entity_id,
                    name,
                    dict(settings or {}),
                    enabled,
                    md,
                    stamp,
                    _encryption_cert(md, entity_id),
                )
        eng.sps = fresh
        # Disabled SPs stay out of pysaml2's view: their requests fail as "unknown issuer".
        eng.server.metadata.metadata = {k: v.md for k, v in fresh.items() if v.enabled}
        eng.sp_generation = gen

    # --- lookups ---------------------------------------------------------------------------------

    def sp(self, entity_id: str | None) -> SpInfo | None:
        if not entity_id:
            return None
        eng = self.engine()
        info = eng.sps.get(entity_id)
        if info is None:
            # Just registered in another process? One cheap generation query tells.
            with self._lock:
                self._refresh_sps(eng)
            info = eng.sps.get(entity_id)
        return info if info is not None and info.enabled else None

    def sp_setting(self, sp: SpInfo, key: str) -> Any:
        if key in sp.settings:
            return sp.settings[key]
        return getattr(self.cfg, key)

    def acs_endpoints(self, sp: SpInfo) -> list[dict[str, Any]]:
        out = []
        for desc in sp.md[sp.entity_id].get("spsso_descriptor", []):
            out.extend(desc.get("assertion_consumer_service", []))
        return out

    def slo_endpoints(self, sp: SpInfo) -> list[dict[str, Any]]:
        out = []
        for desc in sp.md[sp.entity_id].get("spsso_descriptor", []):
            out.extend(desc.get("single_logout_service", []))
        return out

    def sp_wants_signed_requests(self, sp: SpInfo) -> bool:
        if sp.settings.get("want_authn_requests_signed") is not None:
            return (
                bool(sp.settings["want_authn_requests_signed"])
                or self.cfg.want_authn_requests_signed
            )
        descs = sp.md[sp.entity_id].get("spsso_descriptor", [])
        declared = any(str(d.get("authn_requests_signed", "")).lower() == "true" for d in descs)
        return declared or self.cfg.want_authn_requests_signed

    def sp_name_id_formats(self, sp: SpInfo) -> list[str]:
        out = []
        for desc in sp.md[sp.entity_id].get("spsso_descriptor", []):
            out.extend(n["text"].strip() for n in desc.get("name_id_format", []))
        return out

    def signing_certs(self, entity_id: str) -> list[str]:
        eng = self.engine()
        try:
            return [c for _, c in eng.server.metadata.certs(entity_id, "spsso", "signing")]
        except KeyError:
            return []

    # --- responses -------------------------------------------------------------------------------

    def authn_response(
        self,
        *,
        sp: SpInfo,
        in_response_to: str | None,
        acs_url: str,
        name_id: IssuedNameId,
        statement: Statement,
        attributes: list[Attr],
    ) -> bytes:
        """A signed (and, where configured, encrypted) Response carrying one assertion."""
        eng = self.engine()
        encrypt = bool(sp.settings.get("encrypt_assertion", self.cfg.encrypt_assertions))
        return build_response(
            signer=eng.server.sec.crypto,
            issuer=self.entity_id,
            audience=sp.entity_id,
            acs_url=acs_url,
            in_response_to=in_response_to,
            name_id=name_id,
            statement=statement,
            attributes=attributes,
            now=self.svc.clock.now(),
            lifetime=self.cfg.assertion_lifetime,
            sign_response=bool(self.sp_setting(sp, "sign_response")),
            sign_assertion=bool(self.sp_setting(sp, "sign_assertion")),
            encrypt_for=sp.encryption_cert if encrypt else None,
            # Per SP (CBC for SPs whose xmlsec lacks AES-GCM), else the [saml] default.
            encryption_algorithm=ENC_ALGORITHMS.get(sp.settings.get("encryption_algorithm", "")),
        )

    def error_response(
        self,
        in_response_to: str | None,
        acs_url: str,
        status: str,
        sub_status: str | None,
        message: str,
        sp: SpInfo,
    ) -> bytes:
        """A Response carrying only a status (saml-core 3.2.2), signed as the SP wants."""
        return build_status_response(
            signer=self.engine().server.sec.crypto,
            element="Response",
            issuer=self.entity_id,
            destination=acs_url,
            in_response_to=in_response_to,
            status=status,
            sub_status=sub_status,
            message=message,
            now=self.svc.clock.now(),
            sign=bool(self.sp_setting(sp, "sign_response")),
        )

    def logout_request(
        self, location: str, name_id: IssuedNameId, session_index: str, sign: bool
    ) -> tuple[str, bytes]:
        """(ID, document) of a LogoutRequest to an SP's SingleLogoutService ``location``."""
        return build_logout_request(
            signer=self.engine().server.sec.crypto,
            issuer=self.entity_id,
            destination=location,
            name_id=name_id,
            session_index=session_index,
            now=self.svc.clock.now(),
            sign=sign,
        )

    def logout_response(
        self,
        location: str,
        in_response_to: str | None,
        status: str,
        sub_status: str | None,
        sign: bool,
    ) -> bytes:
        """The LogoutResponse to the SP that asked for the logout (saml-core 3.7.2)."""
        return build_status_response(
            signer=self.engine().server.sec.crypto,
            element="LogoutResponse",
            issuer=self.entity_id,
            destination=location,
            in_response_to=in_response_to,
            status=status,
            sub_status=sub_status,
            now=self.svc.clock.now(),
            sign=sign,
        )

    # --- our metadata ----------------------------------------------------------------------------

    def metadata(self) -> str:
        eng = self.engine()
        now = self.svc.clock.now()
        if eng.metadata_xml and now < eng.metadata_expires:
            return eng.metadata_xml
        with self._lock:
            if eng.metadata_xml and now < eng.metadata_expires:
                return eng.metadata_xml
            xml = self._signed_metadata(eng)
            # Re-sign well before validUntil so caches never hold an expired document.
            eng.metadata_xml = xml
            eng.metadata_expires = now + min(3600, self.cfg.metadata_valid_seconds / 10)
            return xml

    def _signed_metadata(self, eng: Engine) -> str:
        from saml2 import md
        from saml2.metadata import entity_descriptor, sign_entity_descriptor
        from saml2.xmldsig import KeyInfo, X509Certificate, X509Data

        conf = eng.server.config
        entd = entity_descriptor(conf)
        entd.valid_until = in_a_while(seconds=self.cfg.metadata_valid_seconds)
        entd.cache_duration = f"PT{max(60, self.cfg.metadata_valid_seconds // 10)}S"
        ring = self.svc.keys.ring()
        certs = [
            k.certificate_pem
            for k in ring.published(self.svc.clock.utcnow())
            if k.kty == "RSA" and k.certificate_pem and k.status in ("next", "active", "previous")
        ]
        kds = []
        for use in ("signing", "encryption"):
            for pem in certs:
                body = "".join(
                    line for line in pem.strip().splitlines() if "CERTIFICATE" not in line
                )
                kds.append(
                    md.KeyDescriptor(
                        use=use,
                        key_info=KeyInfo(
                            x509_data=X509Data(x509_certificate=X509Certificate(text=body))
                        ),
                    )
                )
        entd.idpsso_descriptor.key_descriptor = kds
        # pysaml2 would advertise every algorithm xmlsec1 knows, SHA-1 included; we sign with
        # RSA-SHA256 and say nothing else.
        entd.extensions = None
        entd.idpsso_descriptor.want_authn_requests_signed = (
            "true" if self.cfg.want_authn_requests_signed else "false"
        )
        _, xml = sign_entity_descriptor(
            entd, None, eng.server.sec, sign_alg=SIG_RSA_SHA256, digest_alg=DIGEST_SHA256
        )
        return xml


def _encryption_cert(md: InMemoryMetaData, entity_id: str) -> bytes | None:
    try:
        certs = md.certs(entity_id, "spsso", "encryption")
    except KeyError:
        return None
    if not certs:
        return None
    from saml2.sigver import get_pem_wrapped_unwrapped

    wrapped, _ = get_pem_wrapped_unwrapped(certs[0][1])
    return wrapped.encode("ascii")


def b64(xml: str | bytes) -> str:
    return base64.b64encode(xml.encode("utf-8") if isinstance(xml, str) else xml).decode()


def saml_idp(svc: Services) -> SamlIdp:
    idp = svc.saml_engine
    if idp is None:
        idp = svc.saml_engine = SamlIdp(svc)
    return idp
