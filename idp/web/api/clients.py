"""``/api/v1/clients``: OAuth 2.0 / OpenID Connect clients (``docs/api.md``, "OIDC clients").

A client is shown as ``client_id``, ``name``, ``enabled``, ``first_party``, ``service_roles``
and its RFC 7591 ``metadata``; never its secret. The secret appears in exactly two answers: the
one that creates the client and the one that rotates it. A PATCH is a JSON merge patch
(RFC 7396): a ``metadata`` member given replaces the stored one and ``null`` removes it; the
whole result passes the one client-metadata validator (``idp.core.client_metadata``) or
nothing changes (400 naming the field).
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal
from urllib.parse import quote

from pydantic import AfterValidator, ConfigDict, Field, StrictBool, model_validator

from ...core.broker import ALIAS_RE
from ...core.client_metadata import (
    ACCESS_TOKEN_FORMATS,
    AUTH_METHODS,
    AUTHORIZATION_ENCRYPTION_ALGS,
    AUTHORIZATION_ENCRYPTION_ENCS,
    ENCRYPTION_KTY,
    FAPI_PROFILES,
    GRANT_TYPES,
    MAX_POLICY_ENTRIES,
    REQUEST_OBJECT_ALGS,
    SIGNING_ALGS,
    SUBJECT_TYPES,
    TLS_SUBJECT_FIELDS,
    TOKEN_EXCHANGE,
    URI_RULES,
    MetadataError,
    uri_problem,
)
from ...manage import clients
from ...oidc.subjects import SectorDocumentError
from ...storage.clients import DEFAULT_SCOPE
from ...storage.models import Client
from .common import (
    EXACT_QUERY,
    ApiModel,
    Page,
    PageQuery,
    Strict,
    anchored,
    drop_null_defaults,
    matching,
)
from .framework import PREFIX, ApiProblem, Call, Reply, etag_of, operation
from .shapes import json_int

# The URI forms the API accepts, published as patterns in the OpenAPI document and enforced
# exactly: each is a subset of what the one validator accepts for the field
# (``idp.core.client_metadata.uri_problem``), which also runs first so that a refusal says why
# ("uses the forbidden scheme javascript:", "must not contain a fragment").
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_HOST = rf"{_LABEL}(?:\.{_LABEL})*"
_PUBLIC_HOST = rf"(?:{_LABEL}\.)+[a-z](?:[a-z0-9-]{{0,61}}[a-z0-9])?"  # a name, not an address
_PATH_CHARS = r"A-Za-z0-9._~!$&'()*+,;=:@%/-"
_QUERY_CHARS = r"A-Za-z0-9._~!$&'()*+,;=:@%/?-"
_REST = rf"(?::[1-9][0-9]{{0,3}})?(?:/[{_PATH_CHARS}]*)?(?:\?[{_QUERY_CHARS}]*)?"
_HTTPS = rf"https://{_HOST}{_REST}"
_LOOPBACK = rf"http://(?:localhost|127\.0\.0\.1|\[::1\]){_REST}"
_NATIVE = rf"[a-z][a-z0-9-]*(?:\.[a-z][a-z0-9-]*)+:/[{_PATH_CHARS}]*"


URI_PATTERNS = {
    "redirect": anchored(f"{_HTTPS}|{_LOOPBACK}|{_NATIVE}"),
    "browser": anchored(f"{_HTTPS}|{_LOOPBACK}"),
    "fetched": anchored(f"https://{_PUBLIC_HOST}{_REST}"),
    "https": anchored(_HTTPS),
}
_FORM_HINT = {
    "redirect": "https://host/path, http://localhost/path or a native app's com.example.app:/path",
    "browser": "https://host/path or http://localhost/path",
    "fetched": "https://host.name/path (a DNS name, not an address)",
    "https": "https://host/path",
}


def _uri(field: str, kind: str) -> Any:
    pattern = re.compile(URI_PATTERNS[kind])

    def check(value: str) -> str:
        problem = uri_problem(field, value) if field in URI_RULES else None
        if problem:
            raise ValueError(problem)
        if not pattern.search(value):
            raise ValueError(f"must look like {_FORM_HINT[kind]} (no fragment, no spaces)")
        return value

    return Annotated[
        str,
        Field(max_length=2000, json_schema_extra={"pattern": URI_PATTERNS[kind]}),
        AfterValidator(check),
    ]


def _uris(field: str, kind: str, min_items: int = 0) -> Any:
    return Annotated[list[_uri(field, kind)], Field(min_length=min_items, max_length=100)]


GrantType = Literal[GRANT_TYPES]
GrantTypes = Annotated[list[GrantType], Field(min_length=1, max_length=len(GRANT_TYPES))]
# The grants a client without redirect_uris may have.
WITHOUT_REDIRECT = [g for g in GRANT_TYPES if g != "authorization_code"]
SigningAlg = Literal[SIGNING_ALGS]
RequestObjectAlg = Literal[REQUEST_OBJECT_ALGS]
FapiProfile = Literal[FAPI_PROFILES]
# RFC 8705 §2.1.2: a subject DN or SAN value of a tls_client_auth client's certificate.
TlsSubject = Annotated[str, Field(min_length=1, max_length=2000, pattern=r"^[^\x00-\x1f\x7f]+$")]
EncryptionAlg = Literal[AUTHORIZATION_ENCRYPTION_ALGS]
EncryptionEnc = Literal[AUTHORIZATION_ENCRYPTION_ENCS]
SubjectType = Literal[SUBJECT_TYPES]
Lifetime = json_int(30, 86400)
Upstreams = Annotated[
    list[Annotated[str, Field(pattern=ALIAS_RE.pattern)]],
    Field(max_length=100, description="aliases of the upstream identity providers offered to "
                                      "its sign-ins (docs/brokering.md); absent = all enabled"),
]
MaxAge = json_int(0, 10 * 365 * 86400)
RoleName = Annotated[str, Field(max_length=200)]
Contacts = Annotated[list[Annotated[str, Field(max_length=320)]], Field(max_length=20)]


class JwkSet(ApiModel):
    """A JWK Set (RFC 7517 §5)."""

    model_config = ConfigDict(extra="allow")

    keys: list[dict[str, Any]]


def _schema_tidy(extra: dict[str, Any] | None = None) -> Any:
    """No ``"default": null`` for members that are not nullable; ``extra`` merged into the
    model's schema."""

    def tidy(schema: dict[str, Any]) -> None:
        drop_null_defaults(schema)
        schema.update(extra or {})

    return tidy


class _Exact(Strict):
    # Whitespace is kept as sent: the published patterns judge the value that is stored.
    model_config = ConfigDict(
        extra="forbid", str_strip_whitespace=False, json_schema_extra=_schema_tidy()
    )


PolicyEntry = Annotated[str, *matching(anchored(r"[!-~]{1,2000}"))]
PolicyList = Annotated[list[PolicyEntry], Field(max_length=MAX_POLICY_ENTRIES)]


class TokenExchangePolicy(_Exact):
    """Which token exchanges (RFC 8693) the client may make (docs/oidc.md, "Token exchange").
    Default deny: an empty list or a false flag allows nothing."""

    accept_from: PolicyList = Field(
        None, description="client ids whose tokens it may present as subject tokens"
    )
    audiences: PolicyList = Field(
        None, description="audience / resource values it may ask the new token for"
    )
    delegation: StrictBool = Field(None, description="with an actor token: act claim")
    impersonation: StrictBool = Field(None, description="without an actor token")
    refresh_tokens: StrictBool = Field(None, description="requested_token_type refresh_token")
    max_lifetime: Lifetime = Field(None, description="ceiling of the new token's lifetime")


def _without(member: str) -> dict[str, Any]:
    return {"not": {"required": [member]}}


def _tls_subject_rules() -> list[dict[str, Any]]:
    """RFC 8705 §2.1.2: ``tls_client_auth`` takes exactly one subject DN or SAN member, and
    no other method takes any."""
    tls = {"required": ["token_endpoint_auth_method"],
           "properties": {"token_endpoint_auth_method": {"const": "tls_client_auth"}}}
    return [
        {"anyOf": [{"not": tls}, {"oneOf": [{"required": [f]} for f in TLS_SUBJECT_FIELDS]}]},
        *({"anyOf": [{"not": {"required": [f]}}, tls]} for f in TLS_SUBJECT_FIELDS),
    ]


def _encryption_key_rules() -> list[dict[str, Any]]:
    """JARM encryption (``idp.core.client_metadata.check_authorization_encryption``): the
    algorithm needs the client's keys, and an inline ``jwks`` holds a key fit for the
    algorithm (its key type, ``use`` enc when given, that ``alg`` when given, ``key_ops``
    allowing encryption when given)."""
    alg_member = "authorization_encrypted_response_alg"
    rules: list[dict[str, Any]] = [
        {"anyOf": [_without(alg_member), {"required": ["jwks_uri"]}, {"required": ["jwks"]}]},
    ]
    for alg, ktys in ENCRYPTION_KTY.items():
        key = {
            "type": "object",
            "required": ["kty"],
            "properties": {
                "kty": {"enum": list(ktys)},
                "use": {"const": "enc"},
                "alg": {"const": alg},
                "key_ops": {"type": "array", "contains": {"enum": ["encrypt", "wrapKey"]}},
            },
        }
        rules.append(
            {
                "if": {"required": [alg_member, "jwks"],
                       "properties": {alg_member: {"const": alg}}},
                "then": {"properties": {"jwks": {"properties": {"keys": {"contains": key}}}}},
            }
        )
    return rules


class ClientMetadataIn(_Exact):
    """RFC 7591 client metadata (and this IdP's own per-client settings, docs/oidc.md) of a new
    client. The rules between members are in the schema (``allOf``) and enforced as written:
    the authorization_code grant (the default) needs ``redirect_uris``; a public client
    (``none``) cannot use client_credentials; ``private_key_jwt`` needs ``jwks_uri`` or
    ``jwks`` (and so does ``self_signed_tls_client_auth``); ``tls_client_auth`` takes exactly
    one ``tls_client_auth_subject_dn`` / ``_san_*`` member (RFC 8705 §2.1.2) and no other
    method any; ``jwks`` and ``jwks_uri`` exclude each other; ``pairwise`` without a
    ``sector_identifier_uri`` takes exactly one redirect URI here; JARM encryption needs keys
    (inline ones fit for the algorithm) and ``..._enc`` needs ``..._alg``."""

    model_config = ConfigDict(
        extra="forbid",
        str_strip_whitespace=False,
        json_schema_extra=_schema_tidy(
            {
                "allOf": [
                    {
                        "anyOf": [
                            {"required": ["redirect_uris"]},
                            {
                                "required": ["grant_types"],
                                "properties": {
                                    "grant_types": {
                                        "items": {"enum": WITHOUT_REDIRECT}
                                    }
                                },
                            },
                        ]
                    },
                    *(
                        {
                            "not": {
                                "required": ["token_endpoint_auth_method", "grant_types"],
                                "properties": {
                                    "token_endpoint_auth_method": {"const": "none"},
                                    "grant_types": {"contains": {"const": grant}},
                                },
                            }
                        }
                        for grant in ("client_credentials", TOKEN_EXCHANGE)
                    ),
                    {
                        "anyOf": [
                            {
                                "properties": {
                                    "token_endpoint_auth_method": {
                                        "enum": [m for m in AUTH_METHODS if m not in (
                                            "private_key_jwt", "self_signed_tls_client_auth")]
                                    }
                                }
                            },
                            {"required": ["jwks_uri"]},
                            {"required": ["jwks"]},
                        ]
                    },
                    {"not": {"required": ["jwks", "jwks_uri"]}},
                    *_tls_subject_rules(),
                    # Pairwise without a sector document: one redirect URI here (the one
                    # validator takes several on one host; the schema cannot say "one host").
                    {
                        "anyOf": [
                            {"not": {"required": ["subject_type"],
                                     "properties": {"subject_type": {"const": "pairwise"}}}},
                            {"required": ["sector_identifier_uri"]},
                            {"required": ["redirect_uris"],
                             "properties": {"redirect_uris": {"maxItems": 1}}},
                        ]
                    },
                    *_encryption_key_rules(),
                ],
                # JARM: the content encryption needs the key management algorithm.
                "dependentRequired": {
                    "authorization_encrypted_response_enc": ["authorization_encrypted_response_alg"]
                },
            }
        ),
    )

    redirect_uris: _uris("redirect_uris", "redirect", 1) = None
    post_logout_redirect_uris: _uris("post_logout_redirect_uris", "browser") = None
    grant_types: GrantTypes = None
    token_endpoint_auth_method: Literal[AUTH_METHODS] = None
    scope: str = Field(None, max_length=2000)
    backchannel_logout_uri: _uri("backchannel_logout_uri", "fetched") = None
    backchannel_logout_session_required: StrictBool = None
    frontchannel_logout_uri: _uri("frontchannel_logout_uri", "browser") = None
    frontchannel_logout_session_required: StrictBool = None
    jwks_uri: _uri("jwks_uri", "fetched") = None
    jwks: JwkSet = None
    id_token_signed_response_alg: SigningAlg = None
    userinfo_signed_response_alg: SigningAlg = None
    access_token_signed_response_alg: SigningAlg = None
    access_token_format: Literal[ACCESS_TOKEN_FORMATS] = None
    authorization_signed_response_alg: SigningAlg = None
    authorization_encrypted_response_alg: EncryptionAlg = None
    authorization_encrypted_response_enc: EncryptionEnc = None
    subject_type: SubjectType = None
    sector_identifier_uri: _uri("sector_identifier_uri", "fetched") = None
    access_token_lifetime: Lifetime = None
    id_token_lifetime: Lifetime = None
    refresh_token_rotation: StrictBool = None
    require_pkce: StrictBool = None
    require_pushed_authorization_requests: StrictBool = None
    require_signed_request_object: StrictBool = None
    request_object_signing_alg: RequestObjectAlg = None
    request_uris: _uris("request_uris", "fetched") = None
    allowed_upstreams: Upstreams = None
    fapi_profile: FapiProfile = Field(
        None, description="Hold the client to the FAPI 2.0 Security Profile (docs/oidc.md)"
    )
    tls_client_auth_subject_dn: TlsSubject = None
    tls_client_auth_san_dns: TlsSubject = None
    tls_client_auth_san_uri: TlsSubject = None
    tls_client_auth_san_ip: TlsSubject = None
    tls_client_auth_san_email: TlsSubject = None
    dpop_bound_access_tokens: StrictBool = None
    tls_client_certificate_bound_access_tokens: StrictBool = None
    resources: _uris("resources", "https") = Field(
        None, description="RFC 8707 resource servers the client may name"
    )
    token_exchange: TokenExchangePolicy = None
    logo_uri: _uri("logo_uri", "https") = None
    client_uri: _uri("client_uri", "https") = None
    policy_uri: _uri("policy_uri", "https") = None
    tos_uri: _uri("tos_uri", "https") = None
    contacts: Contacts = None
    default_max_age: MaxAge = None
    require_auth_time: StrictBool = None

    @model_validator(mode="after")
    def _rules(self) -> ClientMetadataIn:
        given = self.model_fields_set
        grants = self.grant_types or ["authorization_code"]
        method = self.token_endpoint_auth_method
        if "authorization_code" in grants and "redirect_uris" not in given:
            raise ValueError("redirect_uris: the authorization_code grant needs redirect URIs")
        for grant in ("client_credentials", TOKEN_EXCHANGE):
            if method == "none" and grant in grants:
                raise ValueError(
                    f"token_endpoint_auth_method: a public client (none) cannot use {grant}"
                )
        if method in ("private_key_jwt", "self_signed_tls_client_auth") and not (
                given & {"jwks_uri", "jwks"}):
            raise ValueError(f"token_endpoint_auth_method: {method} needs jwks_uri or jwks")
        subjects = [f for f in TLS_SUBJECT_FIELDS if f in given]
        if subjects and method != "tls_client_auth":
            raise ValueError(f"{subjects[0]}: only for token_endpoint_auth_method tls_client_auth")
        if method == "tls_client_auth" and len(subjects) != 1:
            raise ValueError("token_endpoint_auth_method: tls_client_auth needs exactly one of "
                             + ", ".join(TLS_SUBJECT_FIELDS))
        if {"jwks", "jwks_uri"} <= given:
            raise ValueError("jwks: jwks and jwks_uri exclude each other")
        if (
            self.subject_type == "pairwise"
            and "sector_identifier_uri" not in given
            and len(self.redirect_uris or []) != 1
        ):
            raise ValueError(
                "subject_type: pairwise without a sector_identifier_uri needs exactly one "
                "redirect URI"
            )
        return self


class ClientMetadataPatch(_Exact):
    """A merge patch of the metadata: a member given replaces the stored one, ``null`` removes
    it. The result must still pass the validator's rules between members, or the PATCH is
    refused with 409 naming the member. The authentication method cannot change."""

    redirect_uris: _uris("redirect_uris", "redirect", 1) | None = None
    post_logout_redirect_uris: _uris("post_logout_redirect_uris", "browser") | None = None
    grant_types: GrantTypes | None = None
    scope: str | None = Field(None, max_length=2000)
    backchannel_logout_uri: _uri("backchannel_logout_uri", "fetched") | None = None
    backchannel_logout_session_required: StrictBool | None = None
    frontchannel_logout_uri: _uri("frontchannel_logout_uri", "browser") | None = None
    frontchannel_logout_session_required: StrictBool | None = None
    jwks_uri: _uri("jwks_uri", "fetched") | None = None
    jwks: JwkSet | None = None
    id_token_signed_response_alg: SigningAlg | None = None
    userinfo_signed_response_alg: SigningAlg | None = None
    access_token_signed_response_alg: SigningAlg | None = None
    access_token_format: Literal[ACCESS_TOKEN_FORMATS] | None = None
    authorization_signed_response_alg: SigningAlg | None = None
    authorization_encrypted_response_alg: EncryptionAlg | None = None
    authorization_encrypted_response_enc: EncryptionEnc | None = None
    subject_type: SubjectType | None = None
    sector_identifier_uri: _uri("sector_identifier_uri", "fetched") | None = None
    access_token_lifetime: Lifetime | None = None
    id_token_lifetime: Lifetime | None = None
    refresh_token_rotation: StrictBool | None = None
    require_pkce: StrictBool | None = None
    require_pushed_authorization_requests: StrictBool | None = None
    require_signed_request_object: StrictBool | None = None
    request_object_signing_alg: RequestObjectAlg | None = None
    request_uris: _uris("request_uris", "fetched") | None = None
    allowed_upstreams: Upstreams | None = None
    fapi_profile: FapiProfile | None = None
    tls_client_auth_subject_dn: TlsSubject | None = None
    tls_client_auth_san_dns: TlsSubject | None = None
    tls_client_auth_san_uri: TlsSubject | None = None
    tls_client_auth_san_ip: TlsSubject | None = None
    tls_client_auth_san_email: TlsSubject | None = None
    dpop_bound_access_tokens: StrictBool | None = None
    tls_client_certificate_bound_access_tokens: StrictBool | None = None
    resources: _uris("resources", "https") | None = None
    token_exchange: TokenExchangePolicy | None = None
    logo_uri: _uri("logo_uri", "https") | None = None
    client_uri: _uri("client_uri", "https") | None = None
    policy_uri: _uri("policy_uri", "https") | None = None
    tos_uri: _uri("tos_uri", "https") | None = None
    contacts: Contacts | None = None
    default_max_age: MaxAge | None = None
    require_auth_time: StrictBool | None = None


ClientId = Annotated[str, *matching(anchored(r"[A-Za-z0-9._~-]{1,255}"))]


class ClientCreate(_Exact):
    client_id: ClientId = Field(
        None, description="URL-safe characters only (1-255); generated when absent"
    )
    name: str = Field(None, max_length=200)
    first_party: StrictBool = Field(
        False, description="first-party clients skip the consent screen"
    )
    service_roles: Annotated[list[RoleName], Field(max_length=50)] = Field(
        default_factory=list,
        description="global roles of the client's service account (client_credentials)",
    )
    metadata: ClientMetadataIn


class ClientPatch(_Exact):
    """JSON merge patch (RFC 7396): absent members stay; in ``metadata``, ``null`` removes a
    member."""

    name: str = Field(None, max_length=200)
    enabled: StrictBool = None
    first_party: StrictBool = None
    service_roles: Annotated[list[RoleName], Field(max_length=50)] = Field(
        None, description="replaces the service account's roles"
    )
    metadata: ClientMetadataPatch = None


class ClientOut(ApiModel):
    client_id: str
    name: str | None
    enabled: bool
    first_party: bool
    service_roles: list[str]
    metadata: dict[str, Any]
    created_at: datetime | None
    updated_at: datetime | None


class ClientCreated(ClientOut):
    client_secret: str | None = Field(
        description="shown once, here; null for clients that authenticate without a secret"
    )


class ClientPage(Page[ClientOut]):
    pass


class ClientsQuery(PageQuery):
    model_config = EXACT_QUERY

    q: str = Field(None, max_length=200, description="contains, over client_id and name")
    enabled: bool = None


class SecretQuery(Strict):
    model_config = EXACT_QUERY

    grace_seconds: int = Field(
        0,
        ge=0,
        le=clients.MAX_GRACE_SECONDS,
        description="how long the old secret keeps working (0: it stops now); "
        "client_secret_basic and client_secret_post only",
    )


class SecretOut(ApiModel):
    client_id: str
    client_secret: str
    previous_secret_valid_until: datetime | None


def _out(ctx, row: Client) -> ClientOut:
    return ClientOut(
        client_id=row.client_id,
        name=row.name,
        enabled=row.enabled,
        first_party=row.first_party,
        service_roles=clients.service_roles(ctx, row.client_id),
        metadata=dict(row.meta or {}),
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _location(client_id: str) -> str:
    return f"{PREFIX}/clients/{quote(client_id, safe='')}"


def _refused(exc: MetadataError, status: int = 400) -> ApiProblem:
    """The validator's refusal as a problem naming the field under ``metadata``: 400 for a
    new client, 409 for a patch whose result would break a rule given the stored metadata, or
    when the client's sector document refuses it."""
    field = f"metadata.{exc.field}" if exc.field else "metadata"
    title, kind = (
        ("Invalid request", "invalid-request") if status == 400 else ("Conflict", "conflict")
    )
    return ApiProblem(
        status,
        title,
        exc.description,
        kind=kind,
        errors=[{"field": field, "message": exc.description}],
    )


@operation(
    "GET",
    "/clients",
    tag="clients",
    summary="List clients",
    query=ClientsQuery,
    response=ClientPage,
)
def list_clients(call: Call) -> Reply:
    q: ClientsQuery = call.query
    with call.transaction() as ctx:
        rows, total = clients.search(
            ctx, clients.ClientQuery(q.q, q.enabled, page=q.page, per_page=q.per_page)
        )
        items = [_out(ctx, r) for r in rows]
    return Reply(body=ClientPage(items=items, total=total, page=q.page, per_page=q.per_page))


@operation(
    "POST",
    "/clients",
    tag="clients",
    summary="Create a client",
    body=ClientCreate,
    response=ClientCreated,
    status=201,
    errors=(404, 409),
    description="Answers the client with its `client_secret`, shown this once. 404 names a "
    "service role that does not exist; 409 a client_id that does, or a `sector_identifier_uri` "
    "document that cannot be fetched or does not list every redirect URI.",
)
def create_client(call: Call) -> Reply:
    body: ClientCreate = call.body
    meta = body.metadata.model_dump(exclude_none=True)
    options: dict[str, Any] = {
        "redirect_uris": meta.pop("redirect_uris", []),
        "grant_types": meta.pop("grant_types", []),
        "auth_method": meta.pop("token_endpoint_auth_method", "client_secret_basic"),
        "scope": meta.pop("scope", DEFAULT_SCOPE),
        "post_logout_redirect_uris": meta.pop("post_logout_redirect_uris", []),
        "backchannel_logout_uri": meta.pop("backchannel_logout_uri", None),
        "frontchannel_logout_uri": meta.pop("frontchannel_logout_uri", None),
        "jwks_uri": meta.pop("jwks_uri", None),
    }
    try:
        with call.transaction() as ctx:
            row, secret = clients.create(
                ctx,
                body.client_id,
                name=body.name,
                roles=list(body.service_roles),
                first_party=body.first_party,
                extra=meta,
                **options,
            )
            out = _out(ctx, row)
    except SectorDocumentError as exc:
        # The request is well formed; the sector document (outside it) refuses it.
        raise _refused(exc, 409) from None
    except MetadataError as exc:
        raise _refused(exc) from None
    return Reply(
        status=201,
        body=ClientCreated(**out.model_dump(), client_secret=secret),
        headers={"Location": _location(out.client_id)},
    )


@operation(
    "GET",
    "/clients/{client_id}",
    tag="clients",
    summary="Read a client",
    response=ClientOut,
    etag=True,
)
def read_client(call: Call, client_id: str) -> Reply:
    with call.transaction() as ctx:
        out = _out(ctx, clients.get(ctx, client_id))
    return Reply(body=out)


@operation(
    "PATCH",
    "/clients/{client_id}",
    tag="clients",
    summary="Change a client (JSON merge patch)",
    body=ClientPatch,
    response=ClientOut,
    etag=True,
    errors=(409,),
    description="JSON merge patch (RFC 7396). 409 when the resulting metadata would break a "
    "rule between members (e.g. removing the redirect URIs of an authorization_code client).",
)
def patch_client(call: Call, client_id: str) -> Reply:
    body: ClientPatch = call.body
    try:
        with call.transaction() as ctx:
            call.if_match(etag_of(_out(ctx, clients.get(ctx, client_id))))
            row = clients.patch(
                ctx,
                client_id,
                metadata=body.metadata.model_dump(exclude_unset=True) if body.metadata else None,
                name=body.name,
                enabled=body.enabled,
                first_party=body.first_party,
                roles=body.service_roles,
            )
            out = _out(ctx, row)
    except MetadataError as exc:
        raise _refused(exc, 409) from None
    return Reply(body=out)


@operation(
    "DELETE",
    "/clients/{client_id}",
    tag="clients",
    summary="Delete a client",
    status=204,
    etag=True,
)
def delete_client(call: Call, client_id: str) -> Reply:
    with call.transaction() as ctx:
        call.if_match(etag_of(_out(ctx, clients.get(ctx, client_id))))
        clients.delete(ctx, client_id)
    return Reply(status=204)


@operation(
    "POST",
    "/clients/{client_id}/secret",
    tag="clients",
    summary="Rotate a client's secret",
    query=SecretQuery,
    response=SecretOut,
    errors=(409,),
    description="A new secret, shown this once. The old one stops working at once, or after "
    "`grace_seconds`. 409 for a client that authenticates without a secret.",
)
def rotate_client_secret(call: Call, client_id: str) -> Reply:
    q: SecretQuery = call.query
    with call.transaction() as ctx:
        secret = clients.rotate_secret(ctx, client_id, grace_seconds=q.grace_seconds)
        now = ctx.svc.clock.utcnow()
    until = now + timedelta(seconds=q.grace_seconds) if q.grace_seconds else None
    return Reply(
        body=SecretOut(client_id=client_id, client_secret=secret, previous_secret_valid_until=until)
    )
