"""``/api/v1/upstreams``: upstream identity providers people may sign in with (identity
brokering, docs/brokering.md), and ``/api/v1/users/{id}/upstream-links``: a user's links to
them. The client secret is write-only (``client_secret``); answers say ``has_secret``.
Permissions: see ``idp.manage.upstreams``."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import Field

from ...core.broker import ALIAS_RE, MAX_RULES
from ...manage import upstreams as manage_upstreams
from .common import ApiModel, Page, PageQuery, Strict
from .framework import Call, Reply, etag_of, operation
from .shapes import AS_SENT, Flag, Name, created, data_refusal, given, path_id

TAG = "upstreams"
Alias = Annotated[str, AS_SENT, Field(pattern=ALIAS_RE.pattern,
                                      description="the provider's name in URLs and audit rows")]
Secret = Annotated[str, AS_SENT, Field(min_length=1, max_length=2000, pattern=r"^[^\x00]*$",
                                       description="the client secret (write-only)")]
Config = Annotated[dict[str, Any], Field(
    description="protocol settings: OIDC `issuer`, `client_id`, `scopes`...; OAuth 2 its "
                "endpoints; SAML `metadata_xml` or `metadata_url` and its settings "
                "(docs/brokering.md)")]
Rules = Annotated[list[dict[str, str]], Field(
    max_length=MAX_RULES, description='mapping rules, e.g. {"claim": "groups", "value": '
                                      '"admins", "group": "Admins"}')]
Domains = Annotated[list[Annotated[str, Field(max_length=253)]], Field(
    max_length=100, description="home-realm discovery: e-mail domains that sign in here")]
SyncMode = Literal["import", "force"]


class UpstreamOut(ApiModel):
    alias: str
    kind: str
    display_name: str
    enabled: bool
    hide_on_login: bool
    config: dict[str, Any]
    has_secret: bool
    mapping: list[dict[str, str]]
    hrd_domains: list[str]
    sync_mode: str
    create_users: bool
    link_by_email: bool
    redirect_uri: str
    # SAML: what to register at the upstream IdP (our SP's metadata URL is its entityID).
    sp_metadata_url: str | None = None
    acs_url: str | None = None
    sls_url: str | None = None


class UpstreamPage(Page[UpstreamOut]):
    pass


class UpstreamIn(Strict):
    alias: Alias
    kind: Literal["oidc", "oauth2", "saml"]
    display_name: Name
    config: Config
    client_secret: Secret | None = None
    enabled: Flag = True
    hide_on_login: Flag = False
    mapping: Rules = []
    hrd_domains: Domains = []
    sync_mode: SyncMode = "import"
    create_users: Flag = False
    link_by_email: Flag = True


class UpstreamPatch(Strict):
    """A JSON merge patch; ``config`` is replaced whole, ``client_secret`` replaces the
    secret."""

    display_name: Name = Field(None)
    config: Config = Field(None)
    client_secret: Secret = Field(None)
    enabled: Flag = Field(None)
    hide_on_login: Flag = Field(None)
    mapping: Rules = Field(None)
    hrd_domains: Domains = Field(None)
    sync_mode: SyncMode = Field(None)
    create_users: Flag = Field(None)
    link_by_email: Flag = Field(None)


class LinkOut(ApiModel):
    provider: str
    subject: str
    linked_at: datetime
    last_login_at: datetime | None


class LinkList(ApiModel):
    items: list[LinkOut]


@operation("GET", "/upstreams", tag=TAG, summary="List upstream identity providers",
           query=PageQuery, response=UpstreamPage)
def list_upstreams(call: Call) -> Reply:
    """By alias (``broker:upstreams:read``)."""
    q: PageQuery = call.query
    with call.transaction() as ctx:
        rows = manage_upstreams.list_all(ctx)
    start = (q.page - 1) * q.per_page
    items = [UpstreamOut(**v) for v in rows[start : start + q.per_page]]
    return Reply(body=UpstreamPage(items=items, total=len(rows), page=q.page, per_page=q.per_page))


@operation("POST", "/upstreams", tag=TAG, summary="Add an upstream identity provider",
           body=UpstreamIn, response=UpstreamOut, status=201, etag=True, errors=(409,))
def create_upstream(call: Call) -> Reply:
    """``broker:upstreams:create``. 409: the alias is taken, or the configuration, mapping or
    domains are refused (the detail names the problem)."""
    body: UpstreamIn = call.body
    values = body.model_dump(exclude={"alias", "kind", "client_secret"})
    with call.transaction() as ctx, data_refusal():
        out = UpstreamOut(**manage_upstreams.create(
            ctx, body.alias, body.kind, values, body.client_secret))
    return created(f"/upstreams/{out.alias}", out)


@operation("GET", "/upstreams/{alias}", tag=TAG, summary="Read an upstream identity provider",
           response=UpstreamOut, etag=True)
def read_upstream(call: Call, alias: str) -> Reply:
    """``broker:upstreams:read``."""
    with call.transaction() as ctx:
        out = UpstreamOut(**manage_upstreams.get(ctx, alias))
    return Reply(body=out)


@operation("PATCH", "/upstreams/{alias}", tag=TAG, summary="Change an upstream identity provider",
           body=UpstreamPatch, response=UpstreamOut, etag=True, errors=(409,))
def update_upstream(call: Call, alias: str) -> Reply:
    """``broker:upstreams:update``. 409: the change is refused (the detail says why)."""
    changes = {k: v for k, v in given(call.body).items() if v is not None}
    secret = changes.pop("client_secret", None)
    with call.transaction() as ctx:
        call.if_match(etag_of(UpstreamOut(**manage_upstreams.get(ctx, alias))))
        with data_refusal():
            out = UpstreamOut(**manage_upstreams.update(ctx, alias, changes, secret))
    return Reply(body=out)


@operation("DELETE", "/upstreams/{alias}", tag=TAG,
           summary="Remove an upstream identity provider and its links", status=204, etag=True)
def delete_upstream(call: Call, alias: str) -> Reply:
    """``broker:upstreams:delete``. Linked people keep their local accounts."""
    with call.transaction() as ctx:
        call.if_match(etag_of(UpstreamOut(**manage_upstreams.get(ctx, alias))))
        manage_upstreams.delete(ctx, alias)
    return Reply(status=204)


@operation("GET", "/users/{user_id}/upstream-links", tag=TAG,
           summary="A user's links to upstream identity providers", response=LinkList)
def list_links(call: Call, user_id: str) -> Reply:
    """``users:users:read`` over the user."""
    uid = path_id(user_id, "user")
    with call.transaction() as ctx:
        items = [LinkOut(**link) for link in manage_upstreams.links_of(ctx, uid)]
    return Reply(body=LinkList(items=items))


@operation("DELETE", "/users/{user_id}/upstream-links/{alias}", tag=TAG,
           summary="Remove a user's link to an upstream identity provider", status=204)
def delete_link(call: Call, user_id: str, alias: str) -> Reply:
    """``users:users:update`` over the user. The next sign-in there is a first login again."""
    uid = path_id(user_id, "user")
    with call.transaction() as ctx:
        manage_upstreams.unlink(ctx, uid, alias)
    return Reply(status=204)
