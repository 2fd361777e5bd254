"""The WebAuthn relying party, on the ``webauthn`` package (W3C Web Authentication Level 3:
section 7.1 "Registering a New Credential", section 7.2 "Verifying an Authentication Assertion").

The RP ID is the issuer's host and the only accepted origin is the issuer's origin, both taken
from settings (never from the request's Host header, which a client controls). Challenges live
in the short-lived store, are single-use (``take``) and carry a binding (the SSO session, the
pending login or the browser) that the caller checks. The signature counter is checked here
rather than by the library, after the signature verified, so a reported regression is always a
genuine assertion from a key whose counter went backwards (a possible clone, section 6.1.1).

No Flask here: the web layer (``idp.web.webauthn``) turns errors into pages and audit rows.
"""

from __future__ import annotations

import ipaddress
import json
import secrets
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from ..errors import ConfigError
from ..storage.models_webauthn import WebAuthnCredential

if TYPE_CHECKING:
    from webauthn.helpers.structs import PublicKeyCredentialDescriptor

# py_webauthn (with cbor2, pyasn1 and its attestation formats: ~100 modules, ~4 MB) is imported
# by the functions that check or build a ceremony, not with this module: every worker imports
# this module at start for the login's factor list.

AMR_HARDWARE_KEY = "hwk"
AMR_SOFTWARE_KEY = "swk"
_CHALLENGE = "webauthn:challenge:"
_MAX_RESPONSE = 64 * 1024  # a credential response is a few kB; anything larger is refused unread
_EXTERNAL_TRANSPORTS = {"usb", "nfc", "ble", "smart-card"}
_REQUIREMENTS = ("required", "preferred", "discouraged")


class WebAuthnError(Exception):
    """A refused ceremony. ``code`` is stable (messages, tests, audit): invalid, expired,
    unknown_credential, wrong_user, user_verification, counter, not_allowed, duplicate, limit."""

    def __init__(self, code: str, detail: str = "") -> None:
        super().__init__(f"{code}: {detail}" if detail else code)
        self.code = code
        self.detail = detail


class CounterRegression(WebAuthnError):
    """A valid assertion whose signature counter did not grow: refused, and to be reported."""

    def __init__(self, credential: WebAuthnCredential, received: int) -> None:
        super().__init__("counter", f"stored {credential.sign_count}, received {received}")
        self.credential_id = credential.id
        self.user_id = credential.user_id
        self.stored = credential.sign_count
        self.received = received


@dataclass(frozen=True)
class RelyingParty:
    rp_id: str
    origin: str
    name: str
    user_verification: str
    resident_key: str
    attachment: str
    attestation: str
    allowed_aaguids: frozenset[str]
    timeout_ms: int
    challenge_seconds: int
    max_credentials: int
    reauth_minutes: int
    passwordless: bool
    enabled: bool

    @classmethod
    def from_settings(cls, settings: Any) -> RelyingParty:
        """Checked once at start-up: a wrong value stops the server with a one-line reason."""
        cfg = settings.webauthn
        issuer = urlsplit(settings.issuer)
        if not issuer.hostname:
            raise ConfigError("webauthn needs an issuer with a host name")
        for key in ("user_verification", "resident_key"):
            if cfg[key] not in _REQUIREMENTS:
                raise ConfigError(
                    f"setting webauthn.{key} must be one of {', '.join(_REQUIREMENTS)}"
                )
        if cfg.authenticator_attachment not in ("", "platform", "cross-platform"):
            raise ConfigError(
                'setting webauthn.authenticator_attachment must be "", "platform" or '
                '"cross-platform"'
            )
        if cfg.attestation not in ("none", "direct"):
            raise ConfigError('setting webauthn.attestation must be "none" or "direct"')
        # An IP-address issuer is not fatal (the default issuer is one and everything else works
        # with it); `idp serve` says so in its banner (see ip_address_issuer).
        for key in ("timeout_ms", "challenge_seconds", "max_credentials", "reauth_minutes"):
            if cfg[key] <= 0:
                raise ConfigError(f"setting webauthn.{key} must be positive")
        return cls(
            rp_id=issuer.hostname,
            origin=f"{issuer.scheme}://{issuer.netloc}",
            name=cfg.rp_name or settings.branding.product_name,
            user_verification=cfg.user_verification,
            resident_key=cfg.resident_key,
            attachment=cfg.authenticator_attachment,
            attestation=cfg.attestation,
            allowed_aaguids=frozenset(a.lower() for a in cfg.allowed_aaguids),
            timeout_ms=cfg.timeout_ms,
            challenge_seconds=cfg.challenge_seconds,
            max_credentials=cfg.max_credentials,
            reauth_minutes=cfg.reauth_minutes,
            passwordless=cfg.enabled and cfg.passwordless,
            enabled=cfg.enabled,
        )


def ip_address_issuer(settings: Any) -> bool:
    """WebAuthn is on but the issuer's host is an IP address, which browsers refuse as an RP ID:
    security keys and passkeys will not work until the issuer has a host name."""
    return bool(settings.webauthn.enabled and _is_ip(urlsplit(settings.issuer).hostname or ""))


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def relying_party(svc: Any) -> RelyingParty:
    return svc.webauthn_rp


def user_handle(user: Any) -> bytes:
    """The WebAuthn user.id: the 16 bytes of the user's UUID (random, no personal data, stable
    across renames, section 14.6.1)."""
    return uuid.UUID(user.uuid).bytes


def method_of(attachment: str | None, transports: list[str], backup_eligible: bool) -> str:
    """RFC 8176 ``hwk`` or ``swk`` for a new credential. A credential that may be synced
    (backup eligible) is a software key whatever holds it, as is a platform authenticator; a
    roaming key that cannot be synced is a hardware key. Unknown cases get the weaker claim."""
    if backup_eligible or attachment == "platform":
        return AMR_SOFTWARE_KEY
    if attachment == "cross-platform":
        return AMR_HARDWARE_KEY
    if transports and set(transports) <= _EXTERNAL_TRANSPORTS:
        return AMR_HARDWARE_KEY
    return AMR_SOFTWARE_KEY


# --- challenges ---------------------------------------------------------------------------------


def issue_challenge(svc: Any, purpose: str, binding: dict[str, Any]) -> bytes:
    """A fresh 32-byte challenge stored with what it is for and whom it is bound to."""
    from webauthn.helpers import bytes_to_base64url

    challenge = secrets.token_bytes(32)
    record = {"purpose": purpose, **binding}
    svc.store.put(
        _CHALLENGE + bytes_to_base64url(challenge), record, relying_party(svc).challenge_seconds
    )
    return challenge


def parse_response(raw: str | dict[str, Any] | None) -> dict[str, Any]:
    """The browser's PublicKeyCredential as a dict, or WebAuthnError("invalid")."""
    if isinstance(raw, str):
        if len(raw) > _MAX_RESPONSE:
            raise WebAuthnError("invalid", "response too large")
        try:
            raw = json.loads(raw)
        except ValueError:
            raise WebAuthnError("invalid", "response is not JSON") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("response"), dict):
        raise WebAuthnError("invalid", "response is not a PublicKeyCredential")
    return raw


def take_challenge(
    svc: Any, response: dict[str, Any], purpose: str
) -> tuple[bytes, dict[str, Any]]:
    """Consume the challenge the response answers. Of two uses of one challenge exactly one
    gets the record; the other (a replay) gets WebAuthnError("expired")."""
    from webauthn.helpers import base64url_to_bytes, bytes_to_base64url, parse_client_data_json
    from webauthn.helpers.exceptions import WebAuthnException

    try:
        client_data = parse_client_data_json(
            base64url_to_bytes(str(response["response"]["clientDataJSON"]))
        )
    except (KeyError, ValueError, TypeError, WebAuthnException):
        raise WebAuthnError("invalid", "clientDataJSON is malformed") from None
    challenge = client_data.challenge
    if not challenge or len(challenge) > 128:
        raise WebAuthnError("invalid", "no usable challenge")
    record = svc.store.take(_CHALLENGE + bytes_to_base64url(challenge))
    if record is None:
        raise WebAuthnError("expired", "unknown, used or expired challenge")
    if record.get("purpose") != purpose:
        raise WebAuthnError("invalid", "challenge issued for another ceremony")
    return challenge, record


# --- credentials --------------------------------------------------------------------------------


def credentials_of(db: Session, user_id: int) -> list[WebAuthnCredential]:
    return list(
        db.scalars(
            select(WebAuthnCredential)
            .where(WebAuthnCredential.user_id == user_id)
            .order_by(WebAuthnCredential.created_at, WebAuthnCredential.id)
        )
    )


def count_credentials(db: Session, user_id: int) -> int:
    return (
        db.scalar(
            select(func.count())
            .select_from(WebAuthnCredential)
            .where(WebAuthnCredential.user_id == user_id)
        )
        or 0
    )


def _descriptor(cred: WebAuthnCredential) -> PublicKeyCredentialDescriptor:
    from webauthn.helpers import base64url_to_bytes
    from webauthn.helpers.structs import AuthenticatorTransport, PublicKeyCredentialDescriptor

    transports = []
    for t in cred.transports or []:
        try:
            transports.append(AuthenticatorTransport(t))
        except ValueError:
            continue  # a transport newer than the library: the browser may still know it
    return PublicKeyCredentialDescriptor(
        id=base64url_to_bytes(cred.credential_id), transports=transports or None
    )


# --- registration (section 7.1) -----------------------------------------------------------------


def registration_options(
    svc: Any, db: Session, user: Any, binding: dict[str, Any]
) -> dict[str, Any]:
    """PublicKeyCredentialCreationOptions as JSON for ``navigator.credentials.create``. The
    user's existing credentials are excluded so one authenticator is not registered twice."""
    from webauthn import generate_registration_options, options_to_json
    from webauthn.helpers.structs import (
        AttestationConveyancePreference,
        AuthenticatorAttachment,
        AuthenticatorSelectionCriteria,
        ResidentKeyRequirement,
        UserVerificationRequirement,
    )

    rp = relying_party(svc)
    existing = credentials_of(db, user.id)
    if len(existing) >= rp.max_credentials:
        raise WebAuthnError("limit")
    options = generate_registration_options(
        rp_id=rp.rp_id,
        rp_name=rp.name,
        user_id=user_handle(user),
        user_name=user.username,
        user_display_name=user.display_name
        or " ".join(n for n in (user.given_name, user.family_name) if n)
        or user.username,
        challenge=issue_challenge(svc, "register", binding),
        timeout=rp.timeout_ms,
        attestation=AttestationConveyancePreference(rp.attestation),
        authenticator_selection=AuthenticatorSelectionCriteria(
            authenticator_attachment=AuthenticatorAttachment(rp.attachment)
            if rp.attachment
            else None,
            resident_key=ResidentKeyRequirement(rp.resident_key),
            user_verification=UserVerificationRequirement(rp.user_verification),
        ),
        exclude_credentials=[_descriptor(c) for c in existing],
    )
    data = json.loads(options_to_json(options))
    # credProps tells us whether the authenticator made a discoverable credential (a passkey).
    data["extensions"] = {"credProps": True}
    return data


def verify_registration(
    svc: Any, db: Session, user: Any, response: dict[str, Any], challenge: bytes, name: str
) -> WebAuthnCredential:
    """Check the attestation and add the credential to ``db`` (the caller commits)."""
    from webauthn import verify_registration_response
    from webauthn.helpers import bytes_to_base64url
    from webauthn.helpers.exceptions import WebAuthnException

    rp = relying_party(svc)
    try:
        verified = verify_registration_response(
            credential=response,
            expected_challenge=challenge,
            expected_rp_id=rp.rp_id,
            expected_origin=rp.origin,
            require_user_verification=rp.user_verification == "required",
        )
    except (WebAuthnException, ValueError, TypeError, KeyError) as exc:
        raise WebAuthnError("invalid", str(exc)) from None
    if rp.allowed_aaguids and verified.aaguid.lower() not in rp.allowed_aaguids:
        raise WebAuthnError("not_allowed", f"aaguid {verified.aaguid}")
    cred_id = bytes_to_base64url(verified.credential_id)
    taken = db.scalar(
        select(WebAuthnCredential.id).where(WebAuthnCredential.credential_id == cred_id)
    )
    if taken is not None:
        raise WebAuthnError("duplicate")
    if count_credentials(db, user.id) >= rp.max_credentials:
        raise WebAuthnError("limit")
    inner = response.get("response") or {}
    transports = [t for t in inner.get("transports") or [] if isinstance(t, str)][:8]
    attachment = response.get("authenticatorAttachment")
    attachment = attachment if attachment in ("platform", "cross-platform") else None
    props = (response.get("clientExtensionResults") or {}).get("credProps") or {}
    backup_eligible = verified.credential_device_type == "multi_device"
    cred = WebAuthnCredential(
        user_id=user.id,
        credential_id=cred_id,
        public_key=verified.credential_public_key,
        sign_count=verified.sign_count,
        transports=transports,
        aaguid=verified.aaguid,
        attestation_format=str(getattr(verified.fmt, "value", verified.fmt)),
        attachment=attachment,
        amr=method_of(attachment, transports, backup_eligible),
        backup_eligible=backup_eligible,
        backed_up=verified.credential_backed_up,
        discoverable=props.get("rk") if isinstance(props.get("rk"), bool) else None,
        name=name[:100],
        created_at=svc.clock.utcnow(),
    )
    db.add(cred)
    db.flush()
    return cred


# --- authentication (section 7.2) ---------------------------------------------------------------


def authentication_options(
    svc: Any, db: Session, user: Any | None, binding: dict[str, Any], user_verification: str
) -> dict[str, Any]:
    """PublicKeyCredentialRequestOptions as JSON. With a user: their credentials are allowed
    (second factor); without: an empty list, so the browser offers discoverable credentials."""
    from webauthn import generate_authentication_options, options_to_json
    from webauthn.helpers.structs import UserVerificationRequirement

    rp = relying_party(svc)
    allow = [_descriptor(c) for c in credentials_of(db, user.id)] if user is not None else []
    options = generate_authentication_options(
        rp_id=rp.rp_id,
        challenge=issue_challenge(svc, binding.pop("purpose"), binding),
        timeout=rp.timeout_ms,
        allow_credentials=allow,
        user_verification=UserVerificationRequirement(user_verification),
    )
    return json.loads(options_to_json(options))


@dataclass(frozen=True)
class Assertion:
    credential: WebAuthnCredential
    user_id: int
    user_verified: bool
    amr: str


def verify_authentication(
    svc: Any,
    db: Session,
    response: dict[str, Any],
    challenge: bytes,
    *,
    user_id: int | None,
    require_uv: bool,
) -> Assertion:
    """Check an assertion and record the new counter and last use in ``db`` (the caller
    commits). ``user_id`` is the user the login already identified (second factor); None for a
    passwordless login, where the credential's user handle must name its owner."""
    from webauthn import verify_authentication_response
    from webauthn.helpers import base64url_to_bytes
    from webauthn.helpers.exceptions import WebAuthnException

    rp = relying_party(svc)
    cred_id = response.get("rawId") or response.get("id")
    if not isinstance(cred_id, str) or not cred_id or len(cred_id) > 1400:
        raise WebAuthnError("invalid", "no credential id")
    cred = db.scalar(select(WebAuthnCredential).where(WebAuthnCredential.credential_id == cred_id))
    if cred is None:
        raise WebAuthnError("unknown_credential")
    if user_id is not None and cred.user_id != user_id:
        raise WebAuthnError("wrong_user", "credential of another account")
    if user_id is None:
        # Section 7.2 step 6: a passwordless assertion names its user; it must be the owner.
        from ..storage.models import User

        owner = db.get(User, cred.user_id)
        handle = (response.get("response") or {}).get("userHandle")
        try:
            given = base64url_to_bytes(handle) if isinstance(handle, str) and handle else b""
        except ValueError:
            given = b""
        if owner is None or given != user_handle(owner):
            raise WebAuthnError("wrong_user", "user handle does not match the credential")
    try:
        verified = verify_authentication_response(
            credential=response,
            expected_challenge=challenge,
            expected_rp_id=rp.rp_id,
            expected_origin=rp.origin,
            credential_public_key=cred.public_key,
            credential_current_sign_count=0,  # checked below, after the signature
            require_user_verification=False,  # checked below, to say which check failed
        )
    except (WebAuthnException, ValueError, TypeError, KeyError) as exc:
        raise WebAuthnError("invalid", str(exc)) from None
    if require_uv and not verified.user_verified:
        raise WebAuthnError("user_verification", "the authenticator did not verify the user")
    new, stored = verified.new_sign_count, cred.sign_count
    if (new or stored) and new <= stored:
        raise CounterRegression(cred, new)
    # Compare-and-set: of two assertions racing with the same counter only one is accepted.
    done = db.execute(
        update(WebAuthnCredential)
        .where(WebAuthnCredential.id == cred.id, WebAuthnCredential.sign_count == stored)
        .values(
            sign_count=new,
            last_used_at=svc.clock.utcnow(),
            backed_up=verified.credential_backed_up,
        )
        .execution_options(synchronize_session=False)
    )
    if done.rowcount != 1:
        raise CounterRegression(cred, new)
    return Assertion(
        credential=cred, user_id=cred.user_id, user_verified=verified.user_verified, amr=cred.amr
    )
