"""A software WebAuthn authenticator for tests: real attestation and assertion objects built with
``cryptography`` (EC P-256 / ES256 and Ed25519 / EdDSA keys) and CBOR (``cbor2``), laid out as in
W3C WebAuthn section 6.1 (authenticator data) and 6.5 (attestation object), and returned in the
JSON shape browsers give (``PublicKeyCredential.toJSON()``)."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import struct
import uuid
from dataclasses import dataclass, field
from typing import Any

import cbor2
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

UP, UV, BE, BS, AT = 0x01, 0x04, 0x08, 0x10, 0x40


def b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64u(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass
class Credential:
    credential_id: bytes
    key: Any
    alg: int
    rp_id: str
    user_handle: bytes
    sign_count: int = 0

    def cose_public_key(self) -> bytes:
        if self.alg == -8:  # OKP / Ed25519 (RFC 8152 section 13.2)
            raw = self.key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
            return cbor2.dumps({1: 1, 3: -8, -1: 6, -2: raw})
        numbers = self.key.public_key().public_numbers()
        return cbor2.dumps(
            {
                1: 2,
                3: -7,
                -1: 1,
                -2: numbers.x.to_bytes(32, "big"),
                -3: numbers.y.to_bytes(32, "big"),
            }
        )

    def sign(self, data: bytes) -> bytes:
        if self.alg == -8:
            return self.key.sign(data)
        return self.key.sign(data, ec.ECDSA(hashes.SHA256()))


@dataclass
class SoftAuthenticator:
    """``attachment`` "platform" (passkey on this device) or "cross-platform" (roaming key)."""

    alg: int = -7  # -7 ES256, -8 EdDSA
    attachment: str = "cross-platform"
    transports: list[str] = field(default_factory=lambda: ["usb"])
    aaguid: bytes = field(default_factory=lambda: uuid.UUID(int=0).bytes)
    backup_eligible: bool = False
    credentials: list[Credential] = field(default_factory=list)

    def _new_key(self) -> Any:
        if self.alg == -8:
            return ed25519.Ed25519PrivateKey.generate()
        return ec.generate_private_key(ec.SECP256R1())

    def _flags(self, uv: bool, extra: int = 0) -> int:
        flags = UP | extra
        if uv:
            flags |= UV
        if self.backup_eligible:
            flags |= BE | BS
        return flags

    def create(
        self,
        options: dict[str, Any],
        origin: str,
        *,
        fmt: str = "none",
        rp_id: str | None = None,
        uv: bool = True,
        resident: bool = True,
    ) -> dict[str, Any]:
        """navigator.credentials.create(): a new key pair and its attestation."""
        rp = rp_id or options["rp"]["id"]
        cred = Credential(
            credential_id=secrets.token_bytes(32),
            key=self._new_key(),
            alg=self.alg,
            rp_id=rp,
            user_handle=unb64u(options["user"]["id"]),
        )
        client_data = json.dumps(
            {
                "type": "webauthn.create",
                "challenge": options["challenge"],
                "origin": origin,
                "crossOrigin": False,
            }
        ).encode()
        attested = (
            self.aaguid
            + struct.pack(">H", len(cred.credential_id))
            + cred.credential_id
            + cred.cose_public_key()
        )
        auth_data = (
            hashlib.sha256(rp.encode()).digest()
            + bytes([self._flags(uv, AT)])
            + struct.pack(">I", cred.sign_count)
            + attested
        )
        if fmt == "packed":  # self attestation (section 8.2): signed by the credential key
            sig = cred.sign(auth_data + hashlib.sha256(client_data).digest())
            att_stmt: dict[str, Any] = {"alg": self.alg, "sig": sig}
        else:
            att_stmt = {}
        attestation = cbor2.dumps({"fmt": fmt, "attStmt": att_stmt, "authData": auth_data})
        self.credentials.append(cred)
        return {
            "id": b64u(cred.credential_id),
            "rawId": b64u(cred.credential_id),
            "type": "public-key",
            "authenticatorAttachment": self.attachment,
            "clientExtensionResults": {"credProps": {"rk": resident}},
            "response": {
                "clientDataJSON": b64u(client_data),
                "attestationObject": b64u(attestation),
                "transports": list(self.transports),
            },
        }

    def get(
        self,
        options: dict[str, Any],
        origin: str,
        *,
        credential: Credential | None = None,
        rp_id: str | None = None,
        uv: bool = True,
        counter: int | None = None,
        tamper: bool = False,
        challenge: str | None = None,
    ) -> dict[str, Any]:
        """navigator.credentials.get(): an assertion over the options' challenge. By default the
        counter goes up by one, as on a real key."""
        cred = credential or self.credentials[-1]
        cred.sign_count = cred.sign_count + 1 if counter is None else counter
        client_data = json.dumps(
            {
                "type": "webauthn.get",
                "challenge": challenge or options["challenge"],
                "origin": origin,
                "crossOrigin": False,
            }
        ).encode()
        auth_data = (
            hashlib.sha256((rp_id or cred.rp_id).encode()).digest()
            + bytes([self._flags(uv)])
            + struct.pack(">I", cred.sign_count)
        )
        signature = cred.sign(auth_data + hashlib.sha256(client_data).digest())
        if tamper:
            signature = signature[:-1] + bytes([signature[-1] ^ 0x01])
        return {
            "id": b64u(cred.credential_id),
            "rawId": b64u(cred.credential_id),
            "type": "public-key",
            "authenticatorAttachment": self.attachment,
            "clientExtensionResults": {},
            "response": {
                "clientDataJSON": b64u(client_data),
                "authenticatorData": b64u(auth_data),
                "signature": b64u(signature),
                "userHandle": b64u(cred.user_handle),
            },
        }


# --- driving the hosted pages over HTTP (Flask test client) --------------------------------------

ORIGIN = "http://127.0.0.1:5000"  # the default issuer's origin; the RP ID is its host


def page_csrf(html: str) -> str:
    import re

    m = re.search(r'data-csrf="([^"]+)"', html) or re.search(
        r'name="csrf_token" type="hidden" value="([^"]+)"', html
    )
    assert m, "no CSRF token in the page"
    return m.group(1)


def json_post(client, url: str, csrf: str, body: dict[str, Any], origin: str | None = ORIGIN):
    headers = {"X-CSRFToken": csrf, "Accept": "application/json"}
    if origin:
        headers["Origin"] = origin
    return client.post(url, json=body, headers=headers)


def register_options(client) -> tuple[str, Any]:
    html = client.get("/account/webauthn").get_data(as_text=True)
    csrf = page_csrf(html)
    return csrf, json_post(client, "/webauthn/register/options", csrf, {})


def register(client, auth: SoftAuthenticator, *, name: str = "My key", fmt: str = "none", **kw):
    """Add a credential from ``auth`` on the account page of the signed-in ``client``."""
    csrf, opts = register_options(client)
    assert opts.status_code == 200, opts.get_json()
    cred = auth.create(opts.get_json(), kw.pop("origin", ORIGIN), fmt=fmt, **kw)
    return json_post(client, "/webauthn/register/verify", csrf, {"credential": cred, "name": name})


def mfa_page(client) -> tuple[str, dict[str, Any]]:
    """The second-factor page: its CSRF token and the WebAuthn request options in it."""
    import re

    html = client.get("/login/step").get_data(as_text=True)
    m = re.search(
        r'<script type="application/json" id="webauthn-mfa-options">(.*?)</script>', html, re.S
    )
    assert m, "no WebAuthn options on the second-factor page"
    m2 = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', html)
    return m2.group(1), json.loads(m.group(1))


def mfa_submit(client, csrf: str, assertion: dict[str, Any]):
    return client.post(
        "/login/step",
        data={
            "csrf_token": csrf,
            "factor": "webauthn",
            "code": "webauthn",
            "credential": json.dumps(assertion),
        },
    )


def passkey_options(client, r: str | None = None, next: str | None = None) -> tuple[str, Any]:
    html = client.get("/login" + (f"?r={r}" if r else "")).get_data(as_text=True)
    csrf = page_csrf(html)
    body = {"r": r or "", "next": next or ""}
    return csrf, json_post(client, "/webauthn/login/options", csrf, body)


def passkey_verify(client, csrf: str, assertion: dict[str, Any], origin: str | None = ORIGIN):
    return json_post(client, "/webauthn/login/verify", csrf, {"credential": assertion}, origin)
