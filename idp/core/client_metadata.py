"""Client metadata validation: the one validator for every way a client is written.

RFC 7591 registration, RFC 7592 update, ``idp clients create|update`` and the admin API all pass
the client's whole resulting metadata document through ``check_client_metadata`` before it is
stored; nothing that fails it reaches the database. No Flask here: callers turn
``MetadataError`` into their own answer (RFC 7591 §3.2.2 error JSON, one CLI line, ...).

The checks are a visible list (``CHECKS``), each small and testable alone. The URI rules per
field are a table (``URI_RULES``):

- ``redirect_uris`` (RFC 6749 §3.1.2, OIDC Registration §2, RFC 8252 §7.1, §7.3, §8.3): https;
  http only on a loopback host; a private-use scheme (a reverse domain name such as
  ``com.example.app:/cb``) for native apps. Error ``invalid_redirect_uri``.
- ``post_logout_redirect_uris`` (RP-Initiated Logout 1.0 §3.1) and ``frontchannel_logout_uri``
  (Front-Channel Logout 1.0 §2): the browser is sent there, so the redirect URI rules less the
  private-use schemes.
- ``backchannel_logout_uri`` (Back-Channel Logout 1.0 §2.2), ``jwks_uri``,
  ``sector_identifier_uri``, ``request_uris`` (OIDC Registration §2, §5; RFC 9101 §5.2, where
  the IdP fetches request objects): the IdP itself connects there, so https
  only, unless ``[outbound] allow_http`` is on; an IP literal in a private range is refused
  unless ``[outbound] allow_private_addresses`` is on (the fetch checks resolved names again).
- ``logo_uri``, ``client_uri``, ``policy_uri``, ``tos_uri``, ``initiate_login_uri``: shown or
  followed in the browser: https only.

Every URI: printable ASCII only (a browser strips or ignores tabs, newlines and leading control
characters, so ``"\\tjavascript:..."`` would still run script), absolute, at most 2000
characters, no fragment (RFC 6749 §3.1.2, OIDC Registration §2), no user information (RFC 8252
§8.3 for loopback; a ``user@`` part misleads people reading the URI everywhere else), and never
a scheme that runs or reads something locally (``javascript:``, ``data:``, ``file:``,
``vbscript:``, ...). Other fields: RFC 7591 §2 and OIDC Registration §2, error
``invalid_client_metadata`` (RFC 7591 §3.2.2), with a description that names the field; the
IdP's own per-client settings (``access_token_lifetime``, ``id_token_lifetime``: whole seconds
30-86400; ``access_token_format``: jwt or opaque; ``refresh_token_rotation``, ``require_pkce``,
``require_pushed_authorization_requests``, ``require_signed_request_object``: booleans;
``request_object_signing_alg``; the RFC 8693 ``token_exchange`` policy) are checked here too,
since the engine reads them at every sign-in. JARM (``authorization_signed_response_alg``,
``authorization_encrypted_response_alg`` / ``_enc``) and ``subject_type`` (``public`` |
``pairwise``) likewise. ``tls_client_auth`` clients (RFC 8705 §2.1.2) register exactly one
of ``TLS_SUBJECT_FIELDS``; ``self_signed_tls_client_auth`` ones (§2.2) a ``jwks`` or ``jwks_uri``.
``fapi_profile: "fapi2-security"`` (FAPI 2.0 Security Profile §5.3.2.1, §5.4; the engine's side
is ``idp.oidc.fapi``) refuses what contradicts the profile: a client that is neither
``private_key_jwt`` nor mTLS-authenticated, a signing algorithm other than PS256 / ES256 /
EdDSA, a symmetric or short RSA key in ``jwks``, and ``require_pkce`` /
``require_pushed_authorization_requests`` set false.
"""

from __future__ import annotations

import base64
import ipaddress
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from ..errors import ValidationError
from .broker import ALIAS_RE

# The JWS algorithms we sign and verify with (discovery advertises them; clients may pick one).
SIGNING_ALGS = ("RS256", "PS256", "ES256", "EdDSA")
# What a client may sign its request objects with (RFC 9101): its keys, or its secret (HS*).
REQUEST_OBJECT_ALGS = SIGNING_ALGS + ("HS256", "HS384", "HS512")

AUTH_METHODS = (
    "client_secret_basic",
    "client_secret_post",
    "client_secret_jwt",
    "private_key_jwt",
    "tls_client_auth",
    "self_signed_tls_client_auth",
    "none",
)
# RFC 8705 §2: client authentication by the TLS client certificate the proxy passes on.
TLS_AUTH_METHODS = ("tls_client_auth", "self_signed_tls_client_auth")
# RFC 8705 §2.1.2: a tls_client_auth client registers exactly one of these.
TLS_SUBJECT_FIELDS = ("tls_client_auth_subject_dn", "tls_client_auth_san_dns",
                      "tls_client_auth_san_uri", "tls_client_auth_san_ip",
                      "tls_client_auth_san_email")
# FAPI 2.0 Security Profile (docs/oidc.md "FAPI 2.0 profile"): the ``fapi_profile`` values, and
# what the profile allows (§5.3.2.1-3 client authentication, §5.4.1 algorithms, §5.4.2 keys).
FAPI2_SECURITY = "fapi2-security"
FAPI_PROFILES = (FAPI2_SECURITY,)
FAPI_AUTH_METHODS = ("private_key_jwt", *TLS_AUTH_METHODS)
FAPI_ALGS = ("PS256", "ES256", "EdDSA")
FAPI_MIN_RSA_BITS = 2048
# Every member naming a JWS algorithm the client or we sign with (JARM's included).
_ALG_FIELDS = ("id_token_signed_response_alg", "userinfo_signed_response_alg",
               "access_token_signed_response_alg", "request_object_signing_alg",
               "token_endpoint_auth_signing_alg", "authorization_signed_response_alg")
# RFC 8628 §3.4: the device authorization grant (docs/oidc.md "Device flow").
DEVICE_CODE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"  # noqa: S105 - a grant name
GRANT_TYPES = (
    "authorization_code", "refresh_token", "client_credentials", DEVICE_CODE_GRANT,
    TOKEN_EXCHANGE,
)
SUBJECT_TYPES = ("public", "pairwise")
# JARM (JWT Secured Authorization Response Mode) §3: how a client may have its authorization
# responses encrypted. No RSA1_5 (RFC 8725 §3.2) and no symmetric key wrapping (we hold no key
# shared with the client to wrap with).
AUTHORIZATION_ENCRYPTION_ALGS = (
    "RSA-OAEP",
    "RSA-OAEP-256",
    "ECDH-ES",
    "ECDH-ES+A128KW",
    "ECDH-ES+A256KW",
)
AUTHORIZATION_ENCRYPTION_ENCS = ("A128CBC-HS256", "A256CBC-HS512", "A128GCM", "A256GCM")
# JARM §3: the content encryption when a client names only the key management algorithm.
DEFAULT_AUTHORIZATION_ENC = "A128CBC-HS256"
# The key type a client's encryption key needs for each key management algorithm.
ENCRYPTION_KTY = {
    "RSA-OAEP": ("RSA",),
    "RSA-OAEP-256": ("RSA",),
    "ECDH-ES": ("EC", "OKP"),
    "ECDH-ES+A128KW": ("EC", "OKP"),
    "ECDH-ES+A256KW": ("EC", "OKP"),
}
MAX_URI_LENGTH = 2000

# Schemes a browser (or a misguided client library) would run or read locally.
FORBIDDEN_SCHEMES = frozenset(
    {
        "javascript",
        "data",
        "file",
        "vbscript",
        "blob",
        "filesystem",
        "about",
        "jar",
        "view-source",
        "livescript",
        "mocha",
        "ms-its",
        "mhtml",
        "res",
        "resource",
        "chrome",
    }
)
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*):")
_PRINTABLE_ASCII = re.compile(r"[\x21-\x7e]*")


class MetadataError(ValidationError):
    """Refused client metadata: ``error`` is the RFC 7591 §3.2.2 code, ``field`` the member.
    A ValidationError, so the CLI prints its one line and exits non-zero."""

    def __init__(self, error: str, description: str, field: str | None = None) -> None:
        super().__init__(description)
        self.error = error
        self.description = description
        self.field = field


@dataclass(frozen=True)
class Policy:
    """What the deployment allows for URIs the IdP connects to (``[outbound]``)."""

    allow_http: bool = False
    allow_private_addresses: bool = False

    @classmethod
    def from_settings(cls, settings: Any) -> Policy:
        outbound = settings.outbound
        return cls(bool(outbound.allow_http), bool(outbound.allow_private_addresses))


# --- URIs ----------------------------------------------------------------------------------------


def is_loopback_host(host: str | None) -> bool:
    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# What the C resolver (inet_aton) takes for an IPv4 address besides the dotted quad: one to
# four parts, each decimal, octal (leading 0) or hex (0x): 2130706433, 0177.0.0.1, 0x7f.1.
_NUMERIC_HOST = re.compile(r"^(?:0[xX][0-9a-fA-F]*|[0-9]+)(?:\.(?:0[xX][0-9a-fA-F]*|[0-9]+)){0,3}$")


def _numeric_ipv4(host: str) -> ipaddress.IPv4Address | None:
    """The address a resolver reads in ``host`` when it spells one the old numeric ways."""
    if not _NUMERIC_HOST.match(host):
        return None
    parts = [int(p, 16) if p[:2].lower() == "0x" else int(p, 8) if p[:1] == "0" and p != "0"
             else int(p) for p in (q if q.lower() != "0x" else "0x0" for q in host.split("."))]
    *head, last = parts
    if any(p > 255 for p in head) or last >= 256 ** (4 - len(head)):
        return None
    value = last
    for i, p in enumerate(head):
        value += p << (8 * (3 - i))
    return ipaddress.IPv4Address(value)


def _private_literal(host: str) -> bool:
    host = host[:-1] if host.endswith(".") else host  # the root's dot changes nothing
    if host.lower() == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        try:
            address = _numeric_ipv4(host)
        except ValueError:  # an octal part with an 8 or 9: no address
            address = None
        if address is None:
            return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return not address.is_global


@dataclass(frozen=True)
class UriRule:
    """How one URI field may look. ``kind``: ``redirect`` (browser, native-app schemes too),
    ``browser`` (https, http on loopback), ``fetched`` (the IdP connects), ``https``."""

    kind: str
    error: str = "invalid_client_metadata"


URI_RULES: dict[str, UriRule] = {
    "redirect_uris": UriRule("redirect", "invalid_redirect_uri"),
    "post_logout_redirect_uris": UriRule("browser"),
    "frontchannel_logout_uri": UriRule("browser"),
    "backchannel_logout_uri": UriRule("fetched"),
    "jwks_uri": UriRule("fetched"),
    "sector_identifier_uri": UriRule("fetched"),
    "request_uris": UriRule("fetched"),
    "initiate_login_uri": UriRule("https"),
    "logo_uri": UriRule("https"),
    "client_uri": UriRule("https"),
    "policy_uri": UriRule("https"),
    "tos_uri": UriRule("https"),
}
LIST_FIELDS = ("redirect_uris", "post_logout_redirect_uris", "request_uris")


def uri_problem(field: str, uri: Any, policy: Policy = Policy()) -> str | None:
    """Why ``uri`` may not be stored as ``field`` (None when it may)."""
    kind = URI_RULES[field].kind
    if not isinstance(uri, str) or not uri:
        return "must be a non-empty string"
    if len(uri) > MAX_URI_LENGTH:
        return f"is longer than {MAX_URI_LENGTH} characters"
    if not _PRINTABLE_ASCII.fullmatch(uri):
        return "must contain only printable ASCII characters (no spaces or control characters)"
    match = _SCHEME.match(uri)
    if match is None:
        return "is not an absolute URI"
    scheme = match.group(1).lower()
    if scheme in FORBIDDEN_SCHEMES:
        return f"uses the forbidden scheme {scheme}:"
    if "#" in uri:
        return "must not contain a fragment"
    try:
        parts = urlsplit(uri)
        host = parts.hostname
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        return "is not a valid URI"
    if scheme not in ("http", "https"):
        if kind == "redirect" and "." in scheme:
            return None  # RFC 8252 §7.1 private-use scheme, a reverse domain name
        if kind == "redirect":
            return "must use https (or a private-use scheme that is a reverse domain name)"
        return "must be an https URL"
    if not host or not parts.netloc:
        return "has no host"
    if "@" in parts.netloc:
        return "must not contain user information"
    if kind == "fetched":
        if scheme == "http" and not policy.allow_http:
            return "must be an https URL"
        if not policy.allow_private_addresses and _private_literal(host):
            return "must not point at a loopback or private address"
        return None
    if scheme == "http" and not (kind in ("redirect", "browser") and is_loopback_host(host)):
        if kind in ("redirect", "browser"):
            return "must use https (http only on a loopback host)"
        return "must be an https URL"
    return None


def check_uri(field: str, uri: Any, policy: Policy = Policy()) -> None:
    problem = uri_problem(field, uri, policy)
    if problem:
        shown = uri if isinstance(uri, str) and len(uri) <= 200 else "the value"
        raise MetadataError(URI_RULES[field].error, f"{field}: {shown!r} {problem}", field)


def safe_uri(field: str, uri: Any, policy: Policy = Policy()) -> bool:
    """For rendering stored rows: False when the stored value would be refused today."""
    return uri_problem(field, uri, policy) is None


# --- the checks, in order --------------------------------------------------------------------

Check = Callable[[Mapping[str, Any], Policy], None]


def _fail(field: str, description: str) -> MetadataError:
    return MetadataError("invalid_client_metadata", f"{field}: {description}", field)


def check_list_types(meta: Mapping[str, Any], policy: Policy) -> None:
    for field in LIST_FIELDS + ("grant_types", "response_types", "contacts"):
        value = meta.get(field)
        if value is not None and not (
            isinstance(value, list) and all(isinstance(v, str) for v in value)
        ):
            error = URI_RULES[field].error if field in URI_RULES else "invalid_client_metadata"
            raise MetadataError(error, f"{field} must be an array of strings", field)


def check_uris(meta: Mapping[str, Any], policy: Policy) -> None:
    for field in URI_RULES:
        value = meta.get(field)
        if value is None:
            continue
        for uri in value if field in LIST_FIELDS else [value]:
            check_uri(field, uri, policy)


def check_grant_and_response_types(meta: Mapping[str, Any], policy: Policy) -> None:
    grants = meta.get("grant_types") or ["authorization_code"]
    for grant in grants:
        if grant not in GRANT_TYPES:
            raise _fail("grant_types", f"{grant!r} is not supported ({', '.join(GRANT_TYPES)})")
    responses = meta.get("response_types")
    if responses is None:
        responses = ["code"] if "authorization_code" in grants else []
    if any(rt != "code" for rt in responses):
        raise _fail("response_types", "only the response type code is supported")
    if "authorization_code" in grants and "code" not in responses:
        raise _fail("response_types", "the authorization_code grant needs response type code")
    if "authorization_code" in grants and not meta.get("redirect_uris"):
        raise MetadataError(
            "invalid_redirect_uri",
            "redirect_uris: the authorization_code grant needs at least one redirect URI",
            "redirect_uris",
        )


def check_auth_method(meta: Mapping[str, Any], policy: Policy) -> None:
    method = meta.get("token_endpoint_auth_method", "client_secret_basic")
    if method not in AUTH_METHODS:
        raise _fail("token_endpoint_auth_method", f"must be one of {', '.join(AUTH_METHODS)}")
    for grant in ("client_credentials", TOKEN_EXCHANGE):
        if method == "none" and grant in (meta.get("grant_types") or []):
            raise _fail("token_endpoint_auth_method", f"a public client (none) cannot use {grant}")
    if method in ("private_key_jwt", "self_signed_tls_client_auth") and not (
            meta.get("jwks_uri") or meta.get("jwks")):
        raise _fail("token_endpoint_auth_method", f"{method} needs a jwks_uri (or jwks)")
    _check_tls_subject(meta, method)


def _check_tls_subject(meta: Mapping[str, Any], method: str) -> None:
    """RFC 8705 §2.1.2: a ``tls_client_auth`` client registers exactly one subject DN or SAN
    value (a non-empty string without control characters); other clients none. (Such a client
    authenticates only where ``[mtls] client_cert_header`` passes certificates on.)"""
    given = [f for f in TLS_SUBJECT_FIELDS if meta.get(f) is not None]
    for field in given:
        value = meta[field]
        if not isinstance(value, str) or not 0 < len(value) <= MAX_URI_LENGTH or any(
                c < " " or c == "\x7f" for c in value):
            raise _fail(field, f"must be a string of 1-{MAX_URI_LENGTH} characters without "
                        "control characters")
    if given and method != "tls_client_auth":
        raise _fail(given[0], "only for token_endpoint_auth_method tls_client_auth")
    if method == "tls_client_auth" and len(given) != 1:
        raise _fail("token_endpoint_auth_method", "tls_client_auth needs exactly one of "
                    f"{', '.join(TLS_SUBJECT_FIELDS)}")


def check_keys(meta: Mapping[str, Any], policy: Policy) -> None:
    if meta.get("jwks") and meta.get("jwks_uri"):
        raise _fail("jwks", "jwks and jwks_uri are exclusive")
    jwks = meta.get("jwks")
    if jwks is not None and not (isinstance(jwks, dict) and isinstance(jwks.get("keys"), list)):
        raise _fail("jwks", "must be a JWK Set")


def check_algorithms(meta: Mapping[str, Any], policy: Policy) -> None:
    for field in (
        "id_token_signed_response_alg",
        "userinfo_signed_response_alg",
        "access_token_signed_response_alg",
        "authorization_signed_response_alg",
    ):
        if field in meta and meta[field] not in SIGNING_ALGS:
            raise _fail(field, f"must be one of {', '.join(SIGNING_ALGS)}")


def encryption_keys(jwks: Any, alg: str) -> list[dict[str, Any]]:
    """The keys of a JWK Set a response may be encrypted to with ``alg``: of a fitting key
    type, meant for encryption (``use: enc``, or no ``use``), without ``key_ops`` that exclude
    it."""
    keys = jwks.get("keys") if isinstance(jwks, dict) else None
    fitting = []
    for key in keys if isinstance(keys, list) else []:
        if not isinstance(key, dict) or key.get("kty") not in ENCRYPTION_KTY.get(alg, ()):
            continue
        if key.get("use", "enc") != "enc" or key.get("alg", alg) != alg:
            continue
        ops = key.get("key_ops")
        if ops is not None and not (
            isinstance(ops, list) and any(op in ("encrypt", "wrapKey") for op in ops)
        ):
            continue
        fitting.append(key)
    return fitting


def check_authorization_encryption(meta: Mapping[str, Any], policy: Policy) -> None:
    """JARM §3: ``authorization_encrypted_response_enc`` needs ``..._alg``; the client must
    publish keys, and keys given inline (``jwks``) must hold one fit for the algorithm (keys
    behind ``jwks_uri`` are looked at when a response is sent)."""
    alg = meta.get("authorization_encrypted_response_alg")
    enc = meta.get("authorization_encrypted_response_enc")
    if alg is None:
        if enc is not None:
            raise _fail(
                "authorization_encrypted_response_enc",
                "needs authorization_encrypted_response_alg",
            )
        return
    if alg not in AUTHORIZATION_ENCRYPTION_ALGS:
        raise _fail(
            "authorization_encrypted_response_alg",
            f"must be one of {', '.join(AUTHORIZATION_ENCRYPTION_ALGS)}",
        )
    if enc is not None and enc not in AUTHORIZATION_ENCRYPTION_ENCS:
        raise _fail(
            "authorization_encrypted_response_enc",
            f"must be one of {', '.join(AUTHORIZATION_ENCRYPTION_ENCS)}",
        )
    if not (meta.get("jwks") or meta.get("jwks_uri")):
        raise _fail(
            "authorization_encrypted_response_alg", "needs the client's keys (jwks_uri or jwks)"
        )
    if meta.get("jwks") and not encryption_keys(meta["jwks"], alg):
        raise _fail(
            "authorization_encrypted_response_alg",
            f"jwks holds no encryption key (use: enc) for {alg}",
        )


def _host(uri: str) -> str:
    parts = urlsplit(uri)
    # A private-use scheme (RFC 8252 §7.1, a reverse domain name) names a native app's sector.
    return (parts.hostname or parts.scheme).lower()


def sector_of(meta: Mapping[str, Any]) -> str | None:
    """OIDC Core §8.1: the sector of a pairwise client, the host of its
    ``sector_identifier_uri``, else the one host all its redirect URIs share (None when they
    have none or several)."""
    uri = meta.get("sector_identifier_uri")
    if isinstance(uri, str) and uri:
        return _host(uri)
    hosts = {_host(u) for u in meta.get("redirect_uris") or [] if isinstance(u, str)}
    return hosts.pop() if len(hosts) == 1 else None


def check_subject_type(meta: Mapping[str, Any], policy: Policy) -> None:
    """OIDC Core §8, Registration §5: ``public`` or ``pairwise``; a pairwise client without a
    ``sector_identifier_uri`` needs redirect URIs on one host (that host is its sector). The
    document at ``sector_identifier_uri`` is fetched by the service that writes the client
    (``idp.oidc.subjects.check_sector_document``), never here."""
    kind = meta.get("subject_type", "public")
    if kind not in SUBJECT_TYPES:
        raise _fail("subject_type", f"must be one of {', '.join(SUBJECT_TYPES)}")
    if kind == "pairwise" and sector_of(meta) is None:
        raise _fail(
            "subject_type",
            "pairwise needs redirect URIs on one host, or a sector_identifier_uri listing "
            "them all",
        )


def check_scope(meta: Mapping[str, Any], policy: Policy) -> None:
    if "scope" in meta and not isinstance(meta["scope"], str):
        raise _fail("scope", "must be a string")


def check_resources(meta: Mapping[str, Any], policy: Policy) -> None:
    """The resource servers a client may name (RFC 8707 §2): each an absolute URI without a
    fragment; a query is allowed. They are identifiers, never fetched or shown."""
    resources = meta.get("resources", [])
    if not isinstance(resources, list) or not all(isinstance(r, str) for r in resources):
        raise _fail("resources", "must be a list of URIs")
    for uri in resources:
        if not _PRINTABLE_ASCII.fullmatch(uri) or len(uri) > MAX_URI_LENGTH:
            raise _fail("resources", f"{uri!r} is not a printable URI of at most "
                        f"{MAX_URI_LENGTH} characters")
        try:
            parts = urlsplit(uri)
        except ValueError:  # "http://[x": an IPv6 literal that does not close
            raise _fail("resources", f"{uri!r} is not a valid URI") from None
        if not parts.scheme or (not parts.netloc and not parts.path):
            raise _fail("resources", f"{uri!r} is not an absolute URI")
        if "#" in uri:
            raise _fail("resources", f"{uri!r} must not have a fragment (RFC 8707 §2)")


# The IdP's own per-client settings (docs/oidc.md), read by the token engine: a wrong type
# here would only fail later, at a sign-in.
LIFETIME_RANGE = (30, 86400)
ACCESS_TOKEN_FORMATS = ("jwt", "opaque")


def check_own_settings(meta: Mapping[str, Any], policy: Policy) -> None:
    for field in ("access_token_lifetime", "id_token_lifetime"):
        value = meta.get(field)
        if value is None:
            continue
        low, high = LIFETIME_RANGE
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise _fail(field, f"must be a whole number of seconds from {low} to {high}")
    for field in ("refresh_token_rotation", "require_pkce",
                  "require_pushed_authorization_requests", "require_signed_request_object"):
        if field in meta and not isinstance(meta[field], bool):
            raise _fail(field, "must be true or false")
    fmt = meta.get("access_token_format")
    if fmt is not None and fmt not in ACCESS_TOKEN_FORMATS:
        raise _fail("access_token_format", f"must be one of {', '.join(ACCESS_TOKEN_FORMATS)}")


def check_request_objects(meta: Mapping[str, Any], policy: Policy) -> None:
    """RFC 9101 §10.5 / OIDC Registration §2: ``request_object_signing_alg`` is one we
    verify; HMAC needs the client secret itself, which is kept (sealed) only for
    ``client_secret_jwt`` clients."""
    alg = meta.get("request_object_signing_alg")
    if alg is None:
        return
    if alg not in REQUEST_OBJECT_ALGS:
        raise _fail("request_object_signing_alg", f"must be one of "
                    f"{', '.join(REQUEST_OBJECT_ALGS)}")
    if alg.startswith("HS") and meta.get("token_endpoint_auth_method") != "client_secret_jwt":
        raise _fail("request_object_signing_alg", "HMAC needs token_endpoint_auth_method "
                    "client_secret_jwt (the only clients whose secret is kept)")


def check_upstreams(meta: Mapping[str, Any], policy: Policy) -> None:
    """``allowed_upstreams``: the upstream identity providers offered to the client's sign-ins
    (docs/brokering.md), as their aliases."""
    value = meta.get("allowed_upstreams")
    if value is None:
        return
    if not isinstance(value, list) or not all(
        isinstance(a, str) and ALIAS_RE.match(a) for a in value
    ):
        raise _fail("allowed_upstreams", "must be a list of upstream aliases")


def check_sender_constraints(meta: Mapping[str, Any], policy: Policy) -> None:
    """RFC 9449 §5.2 ``dpop_bound_access_tokens`` and RFC 8705 §3.4
    ``tls_client_certificate_bound_access_tokens``: booleans."""
    for field in ("dpop_bound_access_tokens", "tls_client_certificate_bound_access_tokens"):
        if field in meta and not isinstance(meta[field], bool):
            raise _fail(field, "must be true or false")


# RFC 8693 token exchange: the client's policy (docs/oidc.md, "Token exchange"). Default deny:
# without it, or with empty lists and false flags, every exchange is refused.
TOKEN_EXCHANGE_LISTS = ("accept_from", "audiences")
TOKEN_EXCHANGE_FLAGS = ("delegation", "impersonation", "refresh_tokens")
MAX_POLICY_ENTRIES = 50


def check_token_exchange(meta: Mapping[str, Any], policy: Policy) -> None:
    """``token_exchange``: ``accept_from`` (client ids whose tokens may be exchanged),
    ``audiences`` (audience / resource values it may ask for), ``delegation``,
    ``impersonation``, ``refresh_tokens`` (booleans), ``max_lifetime`` (seconds)."""
    field = "token_exchange"
    value = meta.get(field)
    if value is None:
        return
    if not isinstance(value, Mapping):
        raise _fail(field, "must be an object")
    known = {*TOKEN_EXCHANGE_LISTS, *TOKEN_EXCHANGE_FLAGS, "max_lifetime"}
    unknown = sorted(set(value) - known)
    if unknown:
        raise _fail(field, f"{unknown[0]!r} is not a policy member ({', '.join(sorted(known))})")
    for name in TOKEN_EXCHANGE_LISTS:
        items = value.get(name, [])
        if not isinstance(items, list) or len(items) > MAX_POLICY_ENTRIES or not all(
            isinstance(v, str) and 0 < len(v) <= MAX_URI_LENGTH and _PRINTABLE_ASCII.fullmatch(v)
            for v in items
        ):
            raise _fail(field, f"{name} must be a list of at most {MAX_POLICY_ENTRIES} "
                        "non-empty printable strings")
    for name in TOKEN_EXCHANGE_FLAGS:
        if name in value and not isinstance(value[name], bool):
            raise _fail(field, f"{name} must be true or false")
    lifetime = value.get("max_lifetime")
    low, high = LIFETIME_RANGE
    if lifetime is not None and (isinstance(lifetime, bool) or not isinstance(lifetime, int)
                                 or not low <= lifetime <= high):
        raise _fail(field, f"max_lifetime must be a whole number of seconds from {low} to {high}")


def _rsa_bits(key: Mapping[str, Any]) -> int:
    """The modulus length of an RSA JWK (RFC 7518 §6.3.1.1: ``n`` without leading zeros)."""
    n = key.get("n")
    try:
        return int.from_bytes(base64.urlsafe_b64decode(n + "=" * (-len(n) % 4))).bit_length()
    except (TypeError, ValueError):
        return 0


def check_fapi_profile(meta: Mapping[str, Any], policy: Policy) -> None:
    """``fapi_profile``: one of FAPI_PROFILES; with it, what FAPI 2.0 forbids is refused here,
    naming the member (a public or secret-based client, RS256 / HS* / none, weak keys, the
    PKCE or PAR requirement switched off)."""
    profile = meta.get("fapi_profile")
    if profile is None:
        return
    if profile not in FAPI_PROFILES:
        raise _fail("fapi_profile", f"must be one of {', '.join(FAPI_PROFILES)}")
    method = meta.get("token_endpoint_auth_method", "client_secret_basic")
    if method not in FAPI_AUTH_METHODS:
        raise _fail("token_endpoint_auth_method", "the FAPI 2.0 profile allows only "
                    f"{', '.join(FAPI_AUTH_METHODS)} (a confidential client holding a key)")
    for field in _ALG_FIELDS:
        if field in meta and meta[field] not in FAPI_ALGS:
            raise _fail(field, f"the FAPI 2.0 profile allows only {', '.join(FAPI_ALGS)}")
    for field in ("require_pkce", "require_pushed_authorization_requests"):
        if meta.get(field) is False:
            raise _fail(field, "the FAPI 2.0 profile requires it")
    for key in (meta.get("jwks") or {}).get("keys") or []:
        if not isinstance(key, Mapping) or key.get("kty") not in ("RSA", "EC", "OKP"):
            raise _fail("jwks", "the FAPI 2.0 profile allows only RSA, EC and OKP keys")
        if key["kty"] == "RSA" and _rsa_bits(key) < FAPI_MIN_RSA_BITS:
            raise _fail("jwks", f"the FAPI 2.0 profile needs RSA keys of at least "
                        f"{FAPI_MIN_RSA_BITS} bits")


CHECKS: tuple[Check, ...] = (
    check_list_types,
    check_uris,
    check_grant_and_response_types,
    check_auth_method,
    check_keys,
    check_algorithms,
    check_authorization_encryption,
    check_subject_type,
    check_scope,
    check_resources,
    check_own_settings,
    check_request_objects,
    check_upstreams,
    check_sender_constraints,
    check_token_exchange,
    check_fapi_profile,
)


def check_client_metadata(meta: Any, policy: Policy = Policy()) -> None:
    """Run every check over a client's whole metadata document; raise ``MetadataError``."""
    if not isinstance(meta, Mapping):
        raise MetadataError("invalid_client_metadata", "the metadata must be a JSON object")
    for check in CHECKS:
        check(meta, policy)
