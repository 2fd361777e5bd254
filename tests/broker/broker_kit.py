"""The brokering test set-up: an upstream IdP served for real on loopback (a second instance of
this IdP, ``live_idp`` of the SAML flow tests) where our broker is a registered OIDC client, and
the brokering IdP itself driven by Flask's test client. The "browser" is a requests session at
the upstream and the test client here; the upstream's redirects back are handed over by path.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import requests
from oidc_support import PASSWORD, pkce
from saml_support import LiveIdP, live_idp
from support import base_overrides, init_database

BROKER = "http://127.0.0.1:5999"
RP = "https://rp.example.org/cb"
RP_BYE = "https://rp.example.org/bye"
ALIASES = ("corp", "gh", "other", "off", "sync")


def csrf(html: str) -> str:
    match = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', html)
    assert match, "no CSRF token in the page"
    return match.group(1)


def query(location: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


@dataclass
class Upstream:
    live: LiveIdP
    secret: str

    @property
    def url(self) -> str:
        return self.live.url


@contextmanager
def upstream_idp(tmp_path_factory) -> Iterator[Upstream]:
    """The upstream IdP: people with verified and unverified addresses, a group, and our
    broker registered as its confidential client."""
    from idp.backends.chain import password_hasher
    from idp.storage.clients import ClientRegistry
    from idp.storage.directory import Directory, NewUser

    instance = tmp_path_factory.mktemp("upstream") / "instance"
    instance.mkdir()
    with live_idp(instance) as live:
        svc = live.svc
        hasher = password_hasher(svc)
        with svc.sessions.begin() as db:
            d = Directory(db)
            d.create_group("admins")
            people = [
                ("uma", "uma@corp.example", True, ["admins"]),
                ("vic", "vic@corp.example", True, []),
                ("walt", "walt@corp.example", True, []),
                ("xena", "xena@corp.example", False, []),
                ("yan", "yan@corp.example", True, []),
                ("zoe", "zoe@corp.example", True, []),
                ("quin", "quin@corp.example", True, []),
                ("ray", "ray@corp.example", True, []),
                ("pat", "pat@corp.example", True, []),
                ("sam", "sam@corp.example", True, ["admins"]),
                ("tess", "tess@corp.example", True, []),
                ("mia", "mia@corp.example", True, []),
                ("lou", "lou@corp.example", True, []),
            ]
            for name, email, verified, groups in people:
                user = d.create_user(
                    NewUser(username=name, email=email, given_name=name.title(),
                            family_name="Upstream", password_hash=hasher.hash(PASSWORD)),
                    groups=groups)
                user.email_verified = verified
            reg = ClientRegistry(db, svc.hasher, svc.sealer)
            _, secret = reg.create(
                "broker", name="Broker",
                redirect_uris=[f"{BROKER}/broker/{a}/callback" for a in ALIASES],
                post_logout_redirect_uris=[f"{BROKER}/logout"],
                grant_types=["authorization_code"],
                scope="openid profile email groups", first_party=True)
        yield Upstream(live, secret or "")


@dataclass
class Broker:
    app: Any
    svc: Any
    rp_secret: str

    def client(self):
        return self.app.test_client()


@contextmanager
def broker_idp(tmp_path_factory, upstream: Upstream) -> Iterator[Broker]:
    """The brokering IdP: a downstream RP client, local users, and the upstreams ``corp``
    (OIDC, JIT on, HRD corp.example, a group mapping), ``gh`` (plain OAuth 2 over the
    upstream's endpoints), ``other`` (allowed to no client but ``rp2``), ``sync`` (profile
    applied at every sign-in, hidden from the login page) and ``off`` (disabled)."""
    from idp.app import create_app
    from idp.backends.chain import password_hasher
    from idp.manage import Actor, transaction, upstreams
    from idp.storage.clients import ClientRegistry
    from idp.storage.directory import Directory, NewUser

    instance = tmp_path_factory.mktemp("broker") / "instance"
    instance.mkdir()
    overrides = base_overrides(
        instance, issuer=BROKER,
        broker={"allow_http": True, "allow_private_addresses": True})
    init_database(overrides)
    app = create_app(overrides)
    app.config["TESTING"] = True
    svc = app.extensions["idp"]
    hasher = password_hasher(svc)
    with svc.sessions.begin() as db:
        d = Directory(db)
        d.create_group("Admins")
        for name, verified in (("walt", True), ("xena", True), ("ray", True)):
            user = d.create_user(NewUser(username=f"local-{name}", email=f"{name}@corp.example",
                                         given_name=name.title(),
                                         password_hash=hasher.hash(PASSWORD)))
            user.email_verified = verified
        reg = ClientRegistry(db, svc.hasher, svc.sealer)
        _, rp_secret = reg.create("rp", name="Downstream", redirect_uris=[RP],
                                  post_logout_redirect_uris=[RP_BYE],
                                  grant_types=["authorization_code"],
                                  scope="openid profile email groups", first_party=True)
        reg.create("rp2", name="Only other", redirect_uris=[RP],
                   grant_types=["authorization_code"], scope="openid", first_party=True,
                   extra={"allowed_upstreams": ["other"]})
    oidc_config = {"issuer": upstream.url, "client_id": "broker",
                   "scopes": "openid profile email groups"}
    with transaction(svc, Actor.operator("test")) as ctx:
        upstreams.create(ctx, "corp", "oidc", {
            "display_name": "Corp", "config": oidc_config, "create_users": True,
            "hrd_domains": ["corp.example"],
            "mapping": [{"claim": "groups", "value": "admins", "group": "Admins"},
                        {"claim": "preferred_username", "field": "username"}],
        }, upstream.secret)
        upstreams.create(ctx, "gh", "oauth2", {
            "display_name": "Hub", "create_users": True, "config": {
                # This IdP's userinfo answers only tokens with openid: asked for, and the ID
                # token that comes with it left unread (plain OAuth 2 has none).
                "client_id": "broker", "scopes": "openid profile email",
                "authorization_endpoint": f"{upstream.url}/oauth2/authorize",
                "token_endpoint": f"{upstream.url}/oauth2/token",
                "userinfo_endpoint": f"{upstream.url}/oauth2/userinfo",
                "subject_claim": "sub",
            }}, upstream.secret)
        upstreams.create(ctx, "other", "oidc", {
            "display_name": "Other", "config": oidc_config}, upstream.secret)
        upstreams.create(ctx, "sync", "oidc", {
            "display_name": "Synced", "config": oidc_config, "create_users": True,
            "sync_mode": "force", "hide_on_login": True,
            "mapping": [{"claim": "groups", "value": "admins", "group": "Admins"}]},
            upstream.secret)
        upstreams.create(ctx, "off", "oidc", {
            "display_name": "Off", "config": oidc_config, "enabled": False}, upstream.secret)
    try:
        yield Broker(app, svc, rp_secret or "")
    finally:
        svc.engine.dispose()


# --- the browser ------------------------------------------------------------------------------


def authorize(client, **extra: str) -> tuple[Any, str]:
    """Start an authorization request of the downstream RP at the broker; (response at the
    login page or wherever it went, PKCE verifier)."""
    verifier, challenge = pkce()
    params = {"response_type": "code", "client_id": "rp", "redirect_uri": RP,
              "scope": "openid profile email", "state": "s1", "nonce": "n-rp",
              "code_challenge": challenge, "code_challenge_method": "S256", **extra}
    resp = client.get("/oauth2/authorize", query_string=params)
    assert resp.status_code in (302, 303), resp.status_code
    return resp, verifier


def login_page(client, location: str) -> tuple[str, str]:
    """(rid, csrf) of the broker's login page at ``location``."""
    page = client.get(location)
    assert page.status_code == 200
    return query(location).get("r", ""), csrf(page.get_data(as_text=True))


def choose(client, location: str, alias: str):
    """Press "Sign in with <alias>" on the broker's login page."""
    rid, token = login_page(client, location)
    return client.post("/broker/start", data={"csrf_token": token, "r": rid, "upstream": alias})


def upstream_login(browser: requests.Session, url: str, username: str,
                   password: str = PASSWORD) -> str:
    """Follow ``url`` (the broker's redirect to the upstream) through the upstream's login as
    ``username``; return the upstream's redirect back to the broker."""
    resp = browser.get(url, allow_redirects=False, timeout=10)
    for _ in range(8):
        location = resp.headers.get("Location", "")
        if location.startswith(BROKER):
            return location
        assert resp.status_code in (302, 303), (resp.status_code, resp.text[:300])
        target = location if location.startswith("http") else browser_base(url) + location
        if urlsplit(target).path == "/login":
            page = browser.get(target, timeout=10)
            form = {"csrf_token": csrf(page.text), "r": query(target).get("r", ""),
                    "username": username, "password": password}
            resp = browser.post(browser_base(url) + "/login", data=form, allow_redirects=False,
                                timeout=10)
            continue
        resp = browser.get(target, allow_redirects=False, timeout=10)
    raise AssertionError("the upstream never sent the browser back")


def browser_base(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def back(client, location: str):
    """The upstream's redirect to the broker, as the browser follows it."""
    parts = urlsplit(location)
    return client.get(parts.path + ("?" + parts.query if parts.query else ""))


def follow_to_rp(client, resp) -> dict[str, str]:
    """Follow the broker's redirects until it answers the RP; the RP's query parameters."""
    for _ in range(8):
        location = resp.headers.get("Location", "")
        assert resp.status_code in (302, 303), (resp.status_code, resp.get_data(as_text=True)[:400])
        if location.startswith(RP):
            return query(location)
        resp = client.get(location)
    raise AssertionError("no answer to the RP")


# --- what changed -----------------------------------------------------------------------------


def state_of(svc) -> dict[str, Any]:
    """Rows a refused sign-in must not change: users, links, group members."""
    from sqlalchemy import func, select

    from idp.storage.models import GroupMember, User
    from idp.storage.models_broker import UpstreamLink

    with svc.sessions() as db:
        return {
            "users": db.scalar(select(func.count()).select_from(User)),
            "links": sorted(tuple(r) for r in db.execute(
                select(UpstreamLink.user_id, UpstreamLink.subject)).all()),
            "members": db.scalar(select(func.count()).select_from(GroupMember)),
        }


def audits(svc, action: str) -> list[dict[str, Any]]:
    from sqlalchemy import select

    from idp.storage.models import AuditEvent

    with svc.sessions() as db:
        rows = db.scalars(select(AuditEvent).where(AuditEvent.action == action)
                          .order_by(AuditEvent.id)).all()
        return [dict(r.details or {}, _target=r.target) for r in rows]


def user_named(svc, username: str):
    from sqlalchemy import select

    from idp.storage.models import User

    with svc.sessions() as db:
        user = db.scalar(select(User).where(User.username == username))
        if user is not None:
            db.expunge(user)
        return user
