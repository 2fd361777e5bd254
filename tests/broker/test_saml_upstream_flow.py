"""Sign-in through an upstream SAML IdP, end to end: a second instance of this IdP serves as the
upstream for real (its /saml/sso on a loopback port, our broker registered there as an SP from
the broker's own signed SP metadata); its Responses come back encrypted (AES-GCM, RSA-OAEP)
and signed. The upstream is added through the management layer with ``metadata_url`` (fetched
under the outbound policy) and the CLI; hostile posts at the ACS are refused and change nothing
but the audit log."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
import requests
from broker_kit import BROKER, authorize, broker_idp, choose, follow_to_rp, query, upstream_idp
from saml_support import form_with
from sqlalchemy import func, select

pytestmark = pytest.mark.slow

ALIAS = "campus"


@pytest.fixture(scope="module")
def upstream(tmp_path_factory):
    with upstream_idp(tmp_path_factory) as up:
        yield up


@pytest.fixture(scope="module")
def broker(tmp_path_factory, upstream):
    from idp.manage import Actor, transaction, upstreams

    with broker_idp(tmp_path_factory, upstream) as b:
        with transaction(b.svc, Actor.operator("test")) as ctx:
            view = upstreams.create(
                ctx,
                ALIAS,
                "saml",
                {
                    "display_name": "Campus",
                    "create_users": True,
                    "config": {
                        "metadata_url": f"{upstream.url}/saml/metadata",
                        "allow_http": True,
                        "trust_email": True,
                    },
                },
            )
        assert view["sp_metadata_url"] == f"{BROKER}/broker/{ALIAS}/saml/metadata"
        sp_md = b.client().get(f"/broker/{ALIAS}/saml/metadata")
        assert sp_md.status_code == 200
        upstream.live.register_sp(sp_md.get_data(as_text=True), allow_http=True)
        yield b


def _path(url: str) -> str:
    parts = urlsplit(url)
    return parts.path + ("?" + parts.query if parts.query else "")


def upstream_sign_in(browser: requests.Session, url: str, username: str) -> tuple[str, dict]:
    """Follow the broker's redirect to the upstream's /saml/sso through its login; the
    upstream's POST-binding form back to the broker: (action, fields)."""
    from oidc_support import PASSWORD

    resp = browser.get(url, allow_redirects=False)
    for _ in range(8):
        if resp.status_code == 200:
            action, fields = form_with(resp.text, "SAMLResponse")
            return action, fields
        location = resp.headers["Location"]
        target = location if location.startswith("http") else url.split("/saml/")[0] + location
        if urlsplit(target).path == "/login":
            page = browser.get(target)
            token = form_with(page.text, "csrf_token")[1]["csrf_token"]
            resp = browser.post(
                target.split("?")[0],
                allow_redirects=False,
                data={
                    "csrf_token": token,
                    "r": query(target).get("r", ""),
                    "username": username,
                    "password": PASSWORD,
                },
            )
            continue
        resp = browser.get(target, allow_redirects=False)
    raise AssertionError("the upstream never answered with a SAML Response")


def start(broker, client) -> str:
    resp, _verifier = authorize(client)
    started = choose(client, resp.headers["Location"], ALIAS)
    assert started.status_code == 303, started.get_data(as_text=True)[:300]
    return started.headers["Location"]


def state(broker) -> tuple:
    """Everything a refused Response must leave as it was: the short-lived store (flights,
    sessions, pending logins), users and links."""
    from idp.storage.models import KVEntry, User
    from idp.storage.models_broker import UpstreamLink

    with broker.svc.sessions() as db:
        keys = tuple(sorted(db.scalars(select(KVEntry.key)).all()))
        users = db.scalar(select(func.count()).select_from(User))
        links = db.scalar(select(func.count()).select_from(UpstreamLink))
    return keys, users, links


def last_refusal(broker) -> str | None:
    from idp.storage.models import AuditEvent

    with broker.svc.sessions() as db:
        row = db.scalars(
            select(AuditEvent)
            .where(AuditEvent.action == "broker.refused")
            .order_by(AuditEvent.id.desc())
        ).first()
        return (row.details or {}).get("reason") if row else None


def _replay_markers(keys: tuple) -> set:
    return {k for k in keys if k.startswith("broker:saml:seen:")}


def assert_refused(broker, before, resp, reason: str) -> None:
    assert resp.status_code == 403, resp.get_data(as_text=True)[:300]
    text = resp.get_data(as_text=True)
    assert "not possible" in text and "Traceback" not in text
    assert last_refusal(broker) == reason
    after = state(broker)
    assert after[1:] == before[1:]
    assert set(after[0]) - _replay_markers(after[0]) == set(before[0]) - _replay_markers(before[0])


def test_sign_in_through_the_upstream_saml_idp_reaches_the_rp(broker, upstream):
    from idp.storage.models import User
    from idp.storage.models_broker import UpstreamLink

    client = broker.client()
    url = start(broker, client)
    assert url.startswith(f"{upstream.url}/saml/sso?SAMLRequest=")
    action, fields = upstream_sign_in(requests.Session(), url, "vic")
    assert action == f"{BROKER}/broker/{ALIAS}/saml/acs"
    before = state(broker)
    answer = follow_to_rp(client, client.post(_path(action), data=fields))
    assert "code" in answer, answer
    with broker.svc.sessions() as db:
        user = db.scalar(select(User).where(User.email == "vic@corp.example"))
        link = db.scalar(select(UpstreamLink).where(UpstreamLink.user_id == user.id))
    assert link.subject and link.subject != "vic"  # the upstream's persistent NameID
    assert user.email_verified is True  # trust_email
    assert state(broker)[1] == before[1] + 1
    # Posting the same Response and RelayState again: the flight is gone, the assertion seen.
    again = state(broker)
    assert_refused(broker, again, post_acs(client, action, fields), "unknown_request")


def bounced(resp) -> dict:
    """The fields of the same-origin form a cookieless POST to the ACS is bounced through."""
    assert resp.status_code == 200, resp.get_data(as_text=True)[:300]
    action, fields = form_with(resp.get_data(as_text=True), "SAMLResponse")
    assert action == f"/broker/{ALIAS}/saml/acs" and fields["bounced"] == "1"
    return fields


def post_acs(client, action: str, fields: dict):
    """POST to the ACS as a browser does, following the bounce when it comes."""
    resp = client.post(_path(action), data=fields)
    if resp.status_code == 200 and 'name="bounced"' in resp.get_data(as_text=True):
        resp = client.post(_path(action), data=bounced(resp))
    return resp


def test_a_response_posted_without_our_cookie_is_bounced_through_our_origin(broker, upstream):
    """The upstream's cross-site POST carries no SameSite=Lax cookie: the ACS answers with a
    form posting the same fields to itself, which the browser sends with its cookie."""
    client = broker.client()
    url = start(broker, client)
    action, fields = upstream_sign_in(requests.Session(), url, "yan")
    cross_site = broker.app.test_client(use_cookies=False)
    before = state(broker)
    again = bounced(cross_site.post(_path(action), data=fields))
    assert state(broker) == before
    resp = client.post(_path(action), data=again)
    assert resp.status_code in (302, 303), resp.get_data(as_text=True)[:300]


def test_a_response_posted_from_another_browser_is_refused(broker, upstream):
    client = broker.client()
    url = start(broker, client)
    action, fields = upstream_sign_in(requests.Session(), url, "uma")
    before = state(broker)
    stranger = broker.client()
    assert_refused(broker, before, post_acs(stranger, action, fields), "unknown_request")
    # The sign-in of the browser that started it is untouched and still completes.
    answer = follow_to_rp(client, client.post(_path(action), data=fields))
    assert "code" in answer, answer


def test_an_altered_response_is_refused(broker, upstream):
    import base64

    client = broker.client()
    url = start(broker, client)
    action, fields = upstream_sign_in(requests.Session(), url, "yan")
    xml = base64.b64decode(fields["SAMLResponse"]).decode()
    altered = xml.replace("/saml/acs", "/saml/acs?x=1", 1)
    assert altered != xml
    before = state(broker)
    forged = {**fields, "SAMLResponse": base64.b64encode(altered.encode()).decode()}
    assert_refused(broker, before, client.post(_path(action), data=forged), "bad_signature")
    doctype = '<!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>' + xml.split("?>", 1)[-1]
    xxe = {**fields, "SAMLResponse": base64.b64encode(doctype.encode()).decode()}
    assert_refused(broker, before, client.post(_path(action), data=xxe), "bad_xml")


def test_sign_out_here_signs_out_at_the_upstream_too(broker, upstream):
    from idp.sso.sessions import COOKIE, session_id_of

    client = broker.client()
    url = start(broker, client)
    browser = requests.Session()
    action, fields = upstream_sign_in(browser, url, "zoe")
    follow_to_rp(client, client.post(_path(action), data=fields))
    page = client.get("/logout")
    token = form_with(page.get_data(as_text=True), "csrf_token")[1]["csrf_token"]
    out = client.post("/logout", data={"csrf_token": token})
    assert out.status_code in (302, 303)
    to_upstream = out.headers["Location"]
    assert to_upstream.startswith(f"{upstream.url}/saml/slo?SAMLRequest=")
    assert "Signature=" in to_upstream
    upstream_sid = session_id_of(browser.cookies.get(COOKIE))
    assert upstream_sid and upstream.live.svc.sso_sessions.peek(upstream_sid) is not None
    answer = browser.get(to_upstream, allow_redirects=False)
    assert answer.status_code in (302, 303), answer.text[:300]
    back = answer.headers["Location"]
    assert back.startswith(f"{BROKER}/broker/{ALIAS}/saml/sls?SAMLResponse=")
    assert upstream.live.svc.sso_sessions.peek(upstream_sid) is None
    done = client.get(_path(back))
    # Back to /logout with the state the sign-out left for the upstream's return.
    assert done.status_code == 303 and "/logout?state=" in done.headers["Location"]
    # The LogoutResponse is used up.
    assert client.get(_path(back)).status_code == 400


def test_the_upstream_signing_out_ends_the_session_here(broker, upstream):
    from idp.sso.sessions import COOKIE, session_id_of

    client = broker.client()
    url = start(broker, client)
    browser = requests.Session()
    action, fields = upstream_sign_in(browser, url, "quin")
    follow_to_rp(client, client.post(_path(action), data=fields))
    sid = session_id_of(client.get_cookie(COOKIE).value)
    assert broker.svc.sso_sessions.peek(sid) is not None
    page = browser.get(f"{upstream.url}/saml/logout")
    form_action, form = form_with(page.text, "token")
    r = browser.post(upstream.url + form_action, data=form, allow_redirects=False)
    assert r.status_code in (302, 303), r.text[:300]
    to_us = r.headers["Location"]
    assert to_us.startswith(f"{BROKER}/broker/{ALIAS}/saml/sls?SAMLRequest=")
    answer = client.get(_path(to_us))
    assert answer.status_code in (302, 303), answer.get_data(as_text=True)[:300]
    assert answer.headers["Location"].startswith(f"{upstream.url}/saml/slo?SAMLResponse=")
    assert broker.svc.sso_sessions.peek(sid) is None
    finished = browser.get(answer.headers["Location"], allow_redirects=False)
    assert finished.status_code in (200, 302, 303)
    # Replaying the upstream's LogoutRequest is refused.
    assert client.get(_path(to_us)).status_code == 400


def test_the_cli_adds_a_saml_upstream_from_a_metadata_file(
    broker, upstream, tmp_path, monkeypatch, capsys
):
    import json

    from idp.cli import main

    md = tmp_path / "idp.xml"
    md.write_text(requests.get(f"{upstream.url}/saml/metadata", timeout=10).text)
    config = tmp_path / "c.json"
    config.write_text(json.dumps({"allow_http": True}))
    monkeypatch.setenv("IDP_INSTANCE_DIR", str(broker.svc.settings.instance_dir))
    monkeypatch.setenv("IDP_ISSUER", BROKER)
    code = main(
        [
            "upstreams",
            "add",
            "lab",
            "--kind",
            "saml",
            "--display-name",
            "Lab",
            "--metadata",
            str(md),
            "--config",
            str(config),
            "--email-attribute",
            "mail",
            "--name-id-format",
            "email",
            "--json",
        ]
    )
    out, err = capsys.readouterr()
    assert code == 0, err
    view = json.loads(out)
    assert view["kind"] == "saml" and view["config"]["name_id_format"].endswith("emailAddress")
    assert view["acs_url"] == f"{BROKER}/broker/lab/saml/acs"
    before = state(broker)
    code = main(
        [
            "upstreams",
            "add",
            "lab2",
            "--kind",
            "saml",
            "--display-name",
            "Lab",
            "--metadata",
            str(config),
        ]
    )
    out, err = capsys.readouterr()
    assert code != 0 and out == "" and err.count("\n") == 1 and "Traceback" not in err
    assert "metadata" in err
    assert state(broker) == before
