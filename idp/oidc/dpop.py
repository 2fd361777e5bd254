"""DPoP proofs (RFC 9449): checking the ``DPoP`` header of a request, and server nonces.

``verify_proof`` runs the checks of RFC 9449 §4.3 as a visible list (``CHECKS``), in order,
each one small:

- one header holding one compact JWS (§4.3 1, 2); ``typ: dpop+jwt`` (4);
- an asymmetric ``alg`` we support, never ``none`` or an HMAC (5);
- a ``jwk`` header that is a public key only (7), which verifies the signature (6); an RSA
  key has at least 2048 bits;
- the claims ``jti``, ``htm``, ``htu``, ``iat`` present (3); ``htm`` the request's method (8);
- ``htu`` the endpoint's URL built from the issuer, query and fragment ignored, compared after
  RFC 3986 §6.2.2-6.2.3 normalisation (9);
- ``ath`` the hash of the access token at a resource (12, §7);
- the server nonce when nonces are required (10, §8);
- ``iat`` at most ``[dpop] max_age`` seconds in the past and ``[dpop] leeway`` seconds in the
  future, and ``exp`` / ``nbf`` when a client sends them (11);
- last the ``jti``, remembered in the shared store for the proof's whole window, so that a
  replay on any worker or node is refused (§11.1).

Nonces (§8, §9) are stateless: the number of a five-minute slot and an HMAC of it under the
instance's keyed hasher (the key every node shares), so any node checks a nonce another issued.
A nonce of the current or the previous slot is accepted.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwk import JWKRegistry
from joserfc.jws import JWSRegistry

from ..services import Services

# Asymmetric JWS algorithms a proof may use (discovery: dpop_signing_alg_values_supported).
DPOP_ALGS = ("ES256", "ES384", "PS256", "PS384", "RS256", "EdDSA")
TYP = "dpop+jwt"
NONCE_PERIOD = 300
_COMPACT = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")
_MAX_PROOF = 8192
_PRIVATE_MEMBERS = ("d", "p", "q", "dp", "dq", "qi", "oth", "k")
_KTY = ("RSA", "EC", "OKP")
_MIN_RSA_BITS = 2048
_JTI = "dpopjti:"
_DEFAULT_PORTS = {"http": 80, "https": 443}
# A proof's header carries its public key: an RSA jwk outgrows joserfc's default 512 bytes.
_REGISTRY = JWSRegistry(algorithms=list(DPOP_ALGS))
_REGISTRY.max_header_length = 4096


class DPoPError(Exception):
    """A refused proof: ``error`` is ``invalid_dpop_proof`` or ``use_dpop_nonce`` (§5, §8)."""

    def __init__(self, description: str, error: str = "invalid_dpop_proof") -> None:
        super().__init__(description)
        self.error = error
        self.description = description


@dataclass(frozen=True)
class Proof:
    """A checked proof: the RFC 7638 thumbprint of its key (the ``jkt``)."""

    jkt: str


@dataclass
class _Check:
    """What one proof check reads: the request and the proof as parsed so far."""

    svc: Services
    method: str
    htu: str
    access_token: str | None
    value: str = ""
    header: dict[str, Any] = field(default_factory=dict)
    claims: dict[str, Any] = field(default_factory=dict)
    jkt: str = ""


def b64_sha256(value: str | bytes) -> str:
    data = value.encode() if isinstance(value, str) else value
    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).decode().rstrip("=")


def normalized_url(url: str) -> str:
    """``url`` without query and fragment, scheme and host in lower case, the default port
    dropped, an empty path as ``/`` (RFC 3986 §6.2.2, §6.2.3; RFC 9449 §4.3 9)."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"
    if parts.port is not None and parts.port != _DEFAULT_PORTS.get(scheme):
        host = f"{host}:{parts.port}"
    return urlunsplit((scheme, host, parts.path or "/", "", ""))


# --- the checks, in order -------------------------------------------------------------------------

def check_one_header(c: _Check) -> None:
    """§4.3 1, 2: one DPoP header holding one compact JWS (several headers arrive joined by
    commas, RFC 9110 §5.3, which a JWS never contains)."""
    c.value = c.value.strip()
    if len(c.value) > _MAX_PROOF or not _COMPACT.fullmatch(c.value):
        raise DPoPError("Send exactly one DPoP header holding one compact JWS.")


def check_header(c: _Check) -> None:
    try:
        raw = c.value.split(".", 1)[0]
        header = json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise DPoPError("The DPoP proof header is not JSON.") from None
    if not isinstance(header, dict):
        raise DPoPError("The DPoP proof header is not a JSON object.")
    c.header = header


def check_typ(c: _Check) -> None:
    """§4.3 4."""
    if c.header.get("typ") != TYP:
        raise DPoPError(f"The DPoP proof must have typ {TYP}.")


def check_alg(c: _Check) -> None:
    """§4.3 5: asymmetric, supported; never none or a MAC."""
    if c.header.get("alg") not in DPOP_ALGS:
        raise DPoPError(f"The DPoP proof must be signed with one of {', '.join(DPOP_ALGS)}.")


def check_public_jwk(c: _Check) -> None:
    """§4.3 7: the jwk header is a public key, without any private member."""
    jwk = c.header.get("jwk")
    if not isinstance(jwk, dict) or jwk.get("kty") not in _KTY:
        raise DPoPError("The DPoP proof must carry a public key in its jwk header.")
    if any(member in jwk for member in _PRIVATE_MEMBERS):
        raise DPoPError("The jwk header of the DPoP proof contains a private key.")


def check_signature(c: _Check) -> None:
    """§4.3 6: signed by the key in the jwk header."""
    try:
        key = JWKRegistry.import_key(c.header["jwk"])
        token = jws.deserialize_compact(c.value, key, algorithms=[c.header["alg"]],
                                        registry=_REGISTRY)
        claims = json.loads(token.payload)
    except (JoseError, ValueError, TypeError, KeyError):
        raise DPoPError("The DPoP proof signature does not verify with its jwk.") from None
    if not isinstance(claims, dict):
        raise DPoPError("The DPoP proof payload is not a JSON object.")
    if c.header["jwk"]["kty"] == "RSA" and key.raw_value.key_size < _MIN_RSA_BITS:
        raise DPoPError(f"An RSA key of a DPoP proof needs at least {_MIN_RSA_BITS} bits.")
    c.claims = claims
    c.jkt = key.thumbprint()


def check_claims_present(c: _Check) -> None:
    """§4.3 3, §4.2: jti, htm, htu (strings) and iat (a number)."""
    for name in ("jti", "htm", "htu"):
        value = c.claims.get(name)
        if not isinstance(value, str) or not value or len(value) > 2048:
            raise DPoPError(f"The DPoP proof lacks the claim {name}.")
    if not _number(c.claims.get("iat")):
        raise DPoPError("The DPoP proof lacks the claim iat.")


def check_htm(c: _Check) -> None:
    """§4.3 8."""
    if c.claims["htm"] != c.method:
        raise DPoPError("The DPoP proof's htm is not this request's method.")


def check_htu(c: _Check) -> None:
    """§4.3 9: the endpoint's URL, query and fragment ignored."""
    try:
        same = normalized_url(c.claims["htu"]) == normalized_url(c.htu)
    except ValueError:
        same = False
    if not same:
        raise DPoPError("The DPoP proof's htu is not this endpoint's URL.")


def check_ath(c: _Check) -> None:
    """§4.3 12, §7: at a resource, the hash of the access token presented with it."""
    if c.access_token is None:
        return
    ath = c.claims.get("ath")
    if not isinstance(ath, str) or not hmac.compare_digest(ath, b64_sha256(c.access_token)):
        raise DPoPError("The DPoP proof's ath does not match the access token.")


def check_nonce(c: _Check) -> None:
    """§4.3 10, §8: when nonces are required, one this server issued and still accepts."""
    if not c.svc.settings.dpop.require_nonce:
        return
    nonce = c.claims.get("nonce")
    if not isinstance(nonce, str) or not nonce_valid(c.svc, nonce):
        raise DPoPError("Use the server's DPoP nonce.", "use_dpop_nonce")


def check_time(c: _Check) -> None:
    """§4.3 11: iat inside the window; an exp or nbf the client added must hold too."""
    now = c.svc.clock.now()
    settings = c.svc.settings.dpop
    iat = c.claims["iat"]
    if iat < now - settings.max_age:
        raise DPoPError("The DPoP proof is too old (iat).")
    if iat > now + settings.leeway:
        raise DPoPError("The DPoP proof is issued in the future (iat).")
    exp, nbf = c.claims.get("exp"), c.claims.get("nbf")
    if exp is not None and (not _number(exp) or exp <= now - settings.leeway):
        raise DPoPError("The DPoP proof has expired (exp).")
    if nbf is not None and (not _number(nbf) or nbf > now + settings.leeway):
        raise DPoPError("The DPoP proof is not valid yet (nbf).")


def check_jti_unused(c: _Check) -> None:
    """§11.1: one use per proof, across every worker and node, for as long as its iat
    would be accepted."""
    settings = c.svc.settings.dpop
    key = _JTI + b64_sha256(f"{c.jkt}:{c.claims['jti']}")
    if not c.svc.store.add(key, 1, settings.max_age + 2 * settings.leeway):
        raise DPoPError("The DPoP proof was already used (jti).")


CHECKS: tuple[Callable[[_Check], None], ...] = (
    check_one_header,
    check_header,
    check_typ,
    check_alg,
    check_public_jwk,
    check_signature,
    check_claims_present,
    check_htm,
    check_htu,
    check_ath,
    check_nonce,
    check_time,
    check_jti_unused,
)


def verify_proof(svc: Services, value: str, *, method: str, htu: str,
                 access_token: str | None = None) -> Proof:
    """Check the DPoP header ``value`` of a request to ``method`` ``htu`` (with
    ``access_token`` at a resource); raise DPoPError, else the proof's key thumbprint."""
    c = _Check(svc, method, htu, access_token, value)
    for check in CHECKS:
        check(c)
    return Proof(c.jkt)


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


# --- nonces ---------------------------------------------------------------------------------------

def _nonce_for(svc: Services, slot: int) -> str:
    mac = svc.hasher.hash(f"dpop-nonce:{slot}").rpartition("$")[2][:22]
    return f"{slot}.{mac}"


def new_nonce(svc: Services) -> str:
    """The nonce to send in ``DPoP-Nonce`` now."""
    return _nonce_for(svc, int(svc.clock.now() // NONCE_PERIOD))


def nonce_valid(svc: Services, nonce: str) -> bool:
    slot_text, _, _ = nonce.partition(".")
    if not slot_text.isascii() or not slot_text.isdigit() or len(nonce) > 64:
        return False
    slot = int(slot_text)
    current = int(svc.clock.now() // NONCE_PERIOD)
    return slot in (current, current - 1) and hmac.compare_digest(nonce, _nonce_for(svc, slot))


def nonce_headers(svc: Services) -> dict[str, str]:
    """``DPoP-Nonce`` for a response, when nonces are required (§8.2: also on success)."""
    return {"DPoP-Nonce": new_nonce(svc)} if svc.settings.dpop.require_nonce else {}

