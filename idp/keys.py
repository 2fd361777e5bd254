"""Signing keys: creation, encryption at rest, rotation with overlap, JWKS, SAML certificates.

Lifecycle of a key: ``next`` (published in JWKS and SAML metadata, not yet signing) ->
``active`` (signs) -> ``previous`` (still published and verifying, until ``retire_at``) ->
``retired``. There is one active signing key per key type (RSA, EC P-256, Ed25519), and one
active encryption key (``use: enc``) per type in ``ENC_KTYS`` (RSA for RSA-OAEP-256, EC P-256 for
ECDH-ES): published in JWKS for clients that encrypt request objects (RFC 9101 §6.1), never
signing; a ``previous`` one still decrypts until it retires.

Private keys are parsed once per worker and kept in a ``KeyRing``; a worker checks at most every
``keys.cache_seconds`` whether another process rotated keys (one small query).
"""

from __future__ import annotations

import hashlib
import os
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID
from joserfc.jwk import ECKey, OKPKey, RSAKey
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from .clock import Clock
from .crypto import Sealer, derive_key
from .errors import ConfigError, IdPError
from .storage.models import SigningKey

KTYS = ("RSA", "EC", "OKP")
# JWS algorithm -> key type that signs it.
ALG_KTY = {"RS256": "RSA", "PS256": "RSA", "ES256": "EC", "EdDSA": "OKP"}
_DEFAULT_ALG = {"RSA": "RS256", "EC": "ES256", "OKP": "EdDSA"}
_JOSE = {"RSA": RSAKey, "EC": ECKey, "OKP": OKPKey}
# Encryption keys: key type -> the JWE key management algorithm it is published for.
ENC_ALG = {"RSA": "RSA-OAEP-256", "EC": "ECDH-ES"}
ENC_KTYS = tuple(ENC_ALG)
# Every (key type, use) pair that has its own active key.
KINDS = tuple((kty, "sig") for kty in KTYS) + tuple((kty, "enc") for kty in ENC_KTYS)


class KeyUnavailable(IdPError):
    """A key cannot be read (wrong encryption key, missing file)."""


def _generate(kty: str, rsa_bits: int):
    if kty == "RSA":
        return rsa.generate_private_key(public_exponent=65537, key_size=rsa_bits)
    if kty == "EC":
        return ec.generate_private_key(ec.SECP256R1())
    return ed25519.Ed25519PrivateKey.generate()


def _pem(private) -> bytes:
    return private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _self_signed(private, common_name: str, now: datetime, days: int) -> str:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name[:64])])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(private.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(private, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode()


@dataclass(frozen=True)
class RingKey:
    kid: str
    kty: str
    status: str
    jwk: Any  # joserfc key with the private part
    public: dict[str, Any]
    certificate_pem: str | None
    retire_at: datetime | None
    use: str = "sig"


class KeyRing:
    """The parsed keys of one moment: what signs (``keys``), what decrypts (``enc_keys``) and
    what is published (both)."""

    def __init__(self, keys: list[RingKey], generation: str) -> None:
        self.generation = generation
        self.keys = [k for k in keys if k.use == "sig"]
        self.enc_keys = [k for k in keys if k.use == "enc"]
        self._by_kid = {k.kid: k for k in self.keys}
        self._active = {k.kty: k for k in self.keys if k.status == "active"}

    def signing_key(self, alg: str) -> RingKey:
        kty = ALG_KTY.get(alg)
        if kty is None or kty not in self._active:
            raise KeyUnavailable(f"no active signing key for {alg}")
        return self._active[kty]

    def get(self, kid: str) -> RingKey | None:
        return self._by_kid.get(kid)

    def published(self, now: datetime) -> list[RingKey]:
        return [
            k
            for k in self.keys + self.enc_keys
            if k.status in ("next", "active")
            or (k.status == "previous" and (k.retire_at is None or k.retire_at > now))
        ]

    def jwks(self, now: datetime) -> dict[str, Any]:
        return {"keys": [k.public for k in self.published(now)]}


class KeyManager:
    def __init__(self, session_factory: sessionmaker[Session], settings, clock: Clock) -> None:
        self._sessions = session_factory
        self._settings = settings
        self._clock = clock
        kek = settings.keys.encryption_key
        self._sealer = Sealer(derive_key(kek, "signing-keys")) if kek else None
        self._dir = Path(settings.instance_dir) / "keys"
        self._lock = threading.Lock()
        self._ring: KeyRing | None = None
        self._checked = 0.0

    # --- storage of private keys ---------------------------------------------------------------

    def _store_private(self, row: SigningKey, pem: bytes) -> None:
        if self._sealer:
            row.private_enc = self._sealer.seal(pem, context=row.kid)
            return
        self._dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        path = self._dir / f"{row.kid}.pem"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(pem)
        row.private_enc = None

    def _load_private(self, row: SigningKey) -> bytes:
        if row.private_enc:
            if not self._sealer:
                raise KeyUnavailable(
                    f"key {row.kid} is encrypted but keys.encryption_key is not set"
                )
            try:
                return self._sealer.open(row.private_enc, context=row.kid)
            except ValueError:
                raise KeyUnavailable(
                    f"key {row.kid} cannot be decrypted: keys.encryption_key "
                    "is not the one it was stored with"
                ) from None
        path = self._dir / f"{row.kid}.pem"
        try:
            return path.read_bytes()
        except FileNotFoundError:
            raise KeyUnavailable(
                f"private key file {path} is missing (several nodes without "
                "keys.encryption_key need a shared instance dir)"
            ) from None

    def _check_readable(self, db: Session) -> None:
        """Refuse to add keys with a key-encryption key that cannot open the existing ones:
        a ring sealed under two different keys would break every node."""
        for row in db.scalars(select(SigningKey).where(SigningKey.status != "retired")):
            self._load_private(row)

    # --- creation and rotation -----------------------------------------------------------------

    def _new_row(self, kty: str, status: str, use: str = "sig") -> tuple[SigningKey, bytes]:
        private = _generate(kty, self._settings.keys.rsa_bits)
        pem = _pem(private)
        jwk = _JOSE[kty].import_key(pem)
        kid = jwk.thumbprint()
        public = dict(jwk.as_dict(private=False))
        public.update(kid=kid, use=use)
        if use == "enc":
            public["alg"] = ENC_ALG[kty]
        elif kty != "RSA":  # an RSA key signs both RS256 and PS256, so it names no single alg
            public["alg"] = _DEFAULT_ALG[kty]
        now = self._clock.utcnow()
        cert = None
        if kty == "RSA" and use == "sig":
            cert = _self_signed(
                private, self._settings.issuer, now, self._settings.keys.saml_cert_days
            )
        row = SigningKey(
            kid=kid,
            kty=kty,
            use=use,
            crv=public.get("crv"),
            status=status,
            public_jwk=public,
            certificate_pem=cert,
            created_at=now,
            activated_at=now if status == "active" else None,
        )
        return row, pem

    def ensure(self) -> list[str]:
        """Create an active key for each type and use that has none; return the kids
        created."""
        created = []
        with self._sessions.begin() as db:
            self._check_readable(db)
            have = {(kty, use) for kty, use in db.execute(
                select(SigningKey.kty, SigningKey.use).where(SigningKey.status == "active"))}
            for kty, use in KINDS:
                if (kty, use) in have:
                    continue
                row, pem = self._new_row(kty, "active", use)
                self._store_private(row, pem)
                db.add(row)
                created.append(row.kid)
        self.invalidate()
        return created

    def rotate(self, prepare: bool = False, ktys: tuple[str, ...] = KTYS) -> list[dict[str, str]]:
        """``prepare``: publish a ``next`` key per type and use (no signing change).
        Otherwise: the ``next`` key (or a new one) becomes active; the old active key stays
        published as ``previous`` for ``keys.rotation_overlap_days``. Signing keys come
        first in the changes; encryption keys (``use: enc``) of the same types follow."""
        now = self._clock.utcnow()
        overlap = timedelta(days=self._settings.keys.rotation_overlap_days)
        changes = []
        with self._sessions.begin() as db:
            self._check_readable(db)
            for kty, use in KINDS:
                if kty not in ktys:
                    continue
                rows = db.scalars(
                    select(SigningKey).where(
                        SigningKey.kty == kty, SigningKey.use == use,
                        SigningKey.status.in_(("next", "active"))
                    )
                ).all()
                nxt = next((r for r in rows if r.status == "next"), None)
                if prepare:
                    if nxt is None:
                        nxt, pem = self._new_row(kty, "next", use)
                        self._store_private(nxt, pem)
                        db.add(nxt)
                    changes.append({"kty": kty, "use": use, "next": nxt.kid})
                    continue
                if nxt is None:
                    nxt, pem = self._new_row(kty, "next", use)
                    self._store_private(nxt, pem)
                    db.add(nxt)
                for old in rows:
                    if old.status == "active":
                        old.status = "previous"
                        old.deactivated_at = now
                        old.retire_at = now + overlap
                        changes.append({"kty": kty, "use": use, "previous": old.kid})
                nxt.status = "active"
                nxt.activated_at = now
                changes.append({"kty": kty, "use": use, "active": nxt.kid})
            # Keys past their overlap are retired for good.
            for old in db.scalars(select(SigningKey).where(SigningKey.status == "previous")):
                if old.retire_at is not None and old.retire_at <= now:
                    old.status = "retired"
        self.invalidate()
        return changes

    def list(self) -> list[dict[str, Any]]:
        with self._sessions() as db:
            rows = db.scalars(select(SigningKey).order_by(SigningKey.created_at)).all()
        return [
            {
                "kid": r.kid,
                "kty": r.kty,
                "use": r.use,
                "alg": r.public_jwk.get("alg", _DEFAULT_ALG[r.kty]),
                "status": r.status,
                "created_at": r.created_at.isoformat(),
                "retire_at": r.retire_at.isoformat() if r.retire_at else None,
                "encrypted": bool(r.private_enc),
            }
            for r in rows
        ]

    # --- the cached ring -----------------------------------------------------------------------

    def invalidate(self) -> None:
        self._checked = 0.0

    def _generation(self, db: Session) -> str:
        pairs = db.execute(
            select(SigningKey.kid, SigningKey.status)
            .where(SigningKey.status != "retired")
            .order_by(SigningKey.kid)
        ).all()
        return hashlib.sha256(repr(pairs).encode()).hexdigest()

    def ring(self) -> KeyRing:
        now = self._clock.now()
        ring = self._ring
        if ring is not None and now - self._checked < self._settings.keys.cache_seconds:
            return ring
        with self._lock:
            with self._sessions() as db:
                generation = self._generation(db)
                if self._ring is not None and self._ring.generation == generation:
                    self._checked = now
                    return self._ring
                rows = db.scalars(select(SigningKey).where(SigningKey.status != "retired")).all()
            keys = []
            for row in rows:
                pem = self._load_private(row)
                jwk = _JOSE[row.kty].import_key(
                    pem, {"kid": row.kid, "use": row.use}
                )
                keys.append(
                    RingKey(
                        row.kid,
                        row.kty,
                        row.status,
                        jwk,
                        dict(row.public_jwk),
                        row.certificate_pem,
                        row.retire_at,
                        row.use,
                    )
                )
            if not any(k.status == "active" and k.use == "sig" for k in keys):
                raise ConfigError("no active signing keys: run `idp init`")
            self._ring = KeyRing(keys, generation)
            self._checked = now
            return self._ring

    def jwks(self) -> dict[str, Any]:
        return self.ring().jwks(self._clock.utcnow())
