"""Sign-in through an upstream OIDC (and plain OAuth 2) provider, end to end: a second instance
of this IdP serves as the upstream for real (loopback HTTP), our broker is its client, and the
downstream RP's ID token from the broker is verified with PyJWT (not our code). Every refusal
also shows that nothing was linked or created."""

from __future__ import annotations

import base64
import re

import jwt
import pytest
import requests
from broker_kit import (
    BROKER,
    RP,
    RP_BYE,
    audits,
    authorize,
    back,
    broker_idp,
    choose,
    csrf,
    follow_to_rp,
    login_page,
    query,
    state_of,
    upstream_idp,
    upstream_login,
    user_named,
)
from login_kit import link_in, outbox
from oidc_support import PASSWORD


@pytest.fixture(scope="module")
def upstream(tmp_path_factory):
    with upstream_idp(tmp_path_factory) as up:
        yield up


@pytest.fixture(scope="module")
def broker(tmp_path_factory, upstream):
    with broker_idp(tmp_path_factory, upstream) as b:
        yield b


def _redeem(broker, client, code: str, verifier: str) -> dict:
    raw = base64.b64encode(f"rp:{broker.rp_secret}".encode()).decode()
    resp = client.post("/oauth2/token", headers={"Authorization": f"Basic {raw}"}, data={
        "grant_type": "authorization_code", "code": code, "redirect_uri": RP,
        "code_verifier": verifier})
    assert resp.status_code == 200, resp.get_json()
    return resp.get_json()


def _rp_id_token(broker, client, answer: dict, verifier: str) -> dict:
    """The RP's view: redeem the code, verify the ID token with PyJWT and the broker's JWKS."""
    assert "code" in answer, answer
    token = _redeem(broker, client, answer["code"], verifier)["id_token"]
    doc = client.get("/.well-known/openid-configuration").get_json()
    jwks = client.get(doc["jwks_uri"].removeprefix(BROKER)).get_json()
    header = jwt.get_unverified_header(token)
    key = next(k for k in jwks["keys"] if k["kid"] == header["kid"])
    return jwt.decode(token, jwt.PyJWK(key).key, algorithms=[header["alg"]], audience="rp",
                      issuer=BROKER)


def _through_upstream(broker, upstream, username: str, alias: str = "corp", **extra):
    """An RP request at the broker, "Sign in with <alias>", the upstream's login as
    ``username``; (broker test client, the broker's answer to the callback, PKCE verifier)."""
    client = broker.client()
    resp, verifier = authorize(client, **extra)
    started = choose(client, resp.headers["Location"], alias)
    assert started.status_code == 303, started.get_data(as_text=True)[:300]
    assert started.headers["Location"].startswith(upstream.url)
    returned = upstream_login(requests.Session(), started.headers["Location"], username)
    return client, back(client, returned), verifier


def test_first_sign_in_creates_the_account_maps_it_and_reaches_the_rp(broker, upstream):
    before = state_of(broker.svc)
    client, resp, verifier = _through_upstream(broker, upstream, "uma")
    claims = _rp_id_token(broker, client, follow_to_rp(client, resp), verifier)
    assert claims["amr"] == ["fed"]
    assert claims["email"] == "uma@corp.example"
    after = state_of(broker.svc)
    assert after["users"] == before["users"] + 1
    assert len(after["links"]) == len(before["links"]) + 1
    uma = user_named(broker.svc, "uma")  # the mapping's username rule
    assert uma.source == "broker" and uma.email_verified and uma.given_name == "Uma"
    assert claims["sub"] == uma.uuid
    assert after["members"] == before["members"] + 1  # groups "admins" -> local "Admins"
    created = audits(broker.svc, "user.created")[-1]
    assert created["provider"] == "corp" and created["mapped_groups"] == ["Admins"]
    assert audits(broker.svc, "broker.linked")[-1]["_target"] == uma.uuid
    exported = client.get("/account/export").get_json()  # the person's own data export
    assert [link["provider"] for link in exported["upstream_links"]] == ["corp"]


def test_a_linked_account_signs_in_again_without_a_new_account(broker, upstream):
    client, resp, verifier = _through_upstream(broker, upstream, "vic")
    first = _rp_id_token(broker, client, follow_to_rp(client, resp), verifier)
    before = state_of(broker.svc)
    client, resp, verifier = _through_upstream(broker, upstream, "vic")
    again = _rp_id_token(broker, client, follow_to_rp(client, resp), verifier)
    assert again["sub"] == first["sub"]
    assert state_of(broker.svc) == before
    assert audits(broker.svc, "broker.login")[-1]["_target"] == first["sub"]


def test_the_local_mfa_policy_still_applies_after_the_upstream(broker, upstream):
    from idp.storage.models import User

    client, resp, _v = _through_upstream(broker, upstream, "mia")
    follow_to_rp(client, resp)
    with broker.svc.sessions.begin() as db:
        db.query(User).filter(User.username == "mia").update({"require_mfa": True})
    client, resp, _v = _through_upstream(broker, upstream, "mia")
    assert resp.status_code in (302, 303)
    assert resp.headers["Location"].endswith("/login/step")  # not the RP yet


def test_verified_email_of_a_local_user_links_only_after_the_local_password(broker, upstream):
    before = state_of(broker.svc)
    client, resp, verifier = _through_upstream(broker, upstream, "walt")
    assert resp.status_code == 303 and resp.headers["Location"].endswith("/broker/link")
    page = client.get("/broker/link")
    assert "walt@corp.example" in page.get_data(as_text=True)
    token = csrf(page.get_data(as_text=True))
    wrong = client.post("/broker/link", data={"csrf_token": token, "password": "nope"})
    assert wrong.status_code == 401
    assert state_of(broker.svc) == before  # nothing linked on a wrong password
    assert audits(broker.svc, "broker.link_refused")[-1]["reason"] == "wrong_password"
    right = client.post("/broker/link", data={"csrf_token": token, "password": PASSWORD})
    claims = _rp_id_token(broker, client, follow_to_rp(client, right), verifier)
    assert claims["sub"] == user_named(broker.svc, "local-walt").uuid
    after = state_of(broker.svc)
    assert after["users"] == before["users"] and len(after["links"]) == len(before["links"]) + 1
    assert audits(broker.svc, "broker.linked")[-1]["confirmed"] is True


def test_verified_email_links_through_a_mailed_confirmation(broker, upstream):
    client, resp, verifier = _through_upstream(broker, upstream, "ray")
    page = client.get(resp.headers["Location"])
    before = state_of(broker.svc)
    sent = client.post("/broker/link", data={"csrf_token": csrf(page.get_data(as_text=True)),
                                             "mail": "E-mail me a confirmation link"})
    assert sent.status_code == 200
    again = client.post("/broker/link", data={"csrf_token": csrf(page.get_data(as_text=True)),
                                              "mail": "E-mail me a confirmation link"})
    assert again.status_code == 200
    mails = [m for m in outbox(broker.svc) if m["To"] == "ray@corp.example"]
    assert len(mails) == 1  # one a minute: pressing again sends nothing
    mail = mails[-1]
    link = link_in(mail, "/broker/link/mail")
    assert state_of(broker.svc) == before  # mailing links nothing
    other = broker.client()  # another browser cannot use the link
    assert other.get(link.removeprefix(BROKER)).status_code == 400
    assert client.get("/broker/link/mail?t=forged").status_code == 400
    assert state_of(broker.svc) == before
    done = client.get(link.removeprefix(BROKER))
    claims = _rp_id_token(broker, client, follow_to_rp(client, done), verifier)
    assert claims["sub"] == user_named(broker.svc, "local-ray").uuid


def test_unverified_email_matching_a_local_user_is_refused_and_nothing_linked(broker, upstream):
    before = state_of(broker.svc)
    _client, resp, _v = _through_upstream(broker, upstream, "xena")
    assert resp.status_code == 403
    assert "did not confirm" in resp.get_data(as_text=True)
    assert state_of(broker.svc) == before
    assert audits(broker.svc, "broker.link_refused")[-1]["reason"] == "email_not_verified"


def test_a_locked_linked_account_is_refused(broker, upstream):
    from idp.storage.models import User

    client, resp, verifier = _through_upstream(broker, upstream, "quin")
    follow_to_rp(client, resp)
    with broker.svc.sessions.begin() as db:
        db.query(User).filter(User.username == "quin").update({"status": "locked"})
    before = state_of(broker.svc)
    _client, resp, _v = _through_upstream(broker, upstream, "quin")
    assert resp.status_code == 403
    assert state_of(broker.svc) == before
    assert audits(broker.svc, "broker.refused")[-1]["reason"] == "account_locked"


def test_home_realm_discovery_sends_a_corp_address_upstream(broker, upstream):
    client = broker.client()
    resp, _v = authorize(client)
    rid, token = login_page(client, resp.headers["Location"])
    sent = client.post("/login", data={"csrf_token": token, "r": rid,
                                       "username": "someone@Corp.Example", "password": ""})
    assert sent.status_code == 303
    target = sent.headers["Location"]
    assert target.startswith(upstream.url + "/oauth2/authorize")
    assert query(target)["login_hint"] == "someone@Corp.Example"
    elsewhere = client.post("/login", data={"csrf_token": token, "r": rid,
                                            "username": "someone@elsewhere.example",
                                            "password": ""})
    assert elsewhere.status_code == 400  # no upstream: the ordinary "fill in both fields"


def test_idp_hint_goes_straight_to_the_upstream(broker, upstream):
    client = broker.client()
    resp, _v = authorize(client, idp_hint="corp")
    page = client.get(resp.headers["Location"])
    assert page.status_code == 303
    assert page.headers["Location"].startswith(upstream.url + "/oauth2/authorize")


def test_the_login_page_offers_the_clients_upstreams_only(broker, upstream):
    client = broker.client()
    resp, _v = authorize(client)
    html = client.get(resp.headers["Location"]).get_data(as_text=True)
    assert re.search(r'value="corp">Sign in with Corp', html)
    assert 'value="other"' in html and 'value="off"' not in html
    resp, _v = authorize(client, client_id="rp2", scope="openid")
    html = client.get(resp.headers["Location"]).get_data(as_text=True)
    assert 'value="other"' in html and 'value="corp"' not in html


def test_an_upstream_not_allowed_for_the_client_is_refused(broker, upstream):
    client = broker.client()
    resp, _v = authorize(client, client_id="rp2", scope="openid", idp_hint="corp")
    page = client.get(resp.headers["Location"])
    assert page.status_code == 200  # the hint is ignored: the login page shows
    before = state_of(broker.svc)
    refused = choose(client, resp.headers["Location"], "corp")
    assert refused.status_code == 403
    assert audits(broker.svc, "broker.refused")[-1]["reason"] == "upstream_not_allowed"
    assert state_of(broker.svc) == before


def test_a_disabled_upstream_is_refused(broker, upstream):
    client = broker.client()
    resp, _v = authorize(client)
    refused = choose(client, resp.headers["Location"], "off")
    assert refused.status_code == 403
    assert audits(broker.svc, "broker.refused")[-1]["reason"] == "upstream_disabled"


def _callback_of(broker, upstream, username: str):
    """A real callback URL from the upstream, not yet followed, and the browser it is for."""
    client = broker.client()
    resp, _v = authorize(client)
    started = choose(client, resp.headers["Location"], "corp")
    return client, upstream_login(requests.Session(), started.headers["Location"], username)


def test_replayed_missing_and_foreign_state_are_refused(broker, upstream):
    client, returned = _callback_of(broker, upstream, "yan")
    path = returned.removeprefix(BROKER)
    before = state_of(broker.svc)
    stranger = broker.client()  # another browser with the victim's callback
    assert stranger.get(path).status_code == 400
    assert audits(broker.svc, "broker.refused")[-1]["reason"] == "unknown_state"
    other, _mine = _callback_of(broker, upstream, "yan")  # one with a flight of its own
    assert other.get(path).status_code == 400
    no_state = re.sub(r"state=[^&]+&?", "", path)
    assert client.get(no_state).status_code == 400
    assert state_of(broker.svc) == before
    client, returned = _callback_of(broker, upstream, "yan")
    first = client.get(returned.removeprefix(BROKER))
    assert first.status_code in (302, 303)
    again = client.get(returned.removeprefix(BROKER))  # replay of a used callback
    assert again.status_code == 400


def test_an_error_from_the_upstream_is_refused(broker, upstream):
    client = broker.client()
    resp, _v = authorize(client)
    started = choose(client, resp.headers["Location"], "corp")
    state = query(started.headers["Location"])["state"]
    before = state_of(broker.svc)
    answer = client.get(f"/broker/corp/callback?error=access_denied&state={state}")
    assert answer.status_code == 403
    assert audits(broker.svc, "broker.refused")[-1]["reason"] == "error_from_upstream"
    assert state_of(broker.svc) == before


def test_logout_here_visits_the_upstreams_end_session_endpoint(broker, upstream):
    client, resp, _v = _through_upstream(broker, upstream, "zoe")
    follow_to_rp(client, resp)
    page = client.get("/logout")
    out = client.post("/logout", data={"csrf_token": csrf(page.get_data(as_text=True))})
    assert out.status_code == 302
    target = out.headers["Location"]
    assert target.startswith(upstream.url)
    params = query(target)
    assert params["post_logout_redirect_uri"] == f"{BROKER}/logout"
    hint = jwt.decode(params["id_token_hint"], options={"verify_signature": False})
    assert hint["iss"] == upstream.url and hint["aud"] == "broker"
    done = requests.get(target, allow_redirects=False, timeout=10)  # accepted, back here
    assert done.status_code in (302, 303), done.text[:300]
    assert done.headers["Location"].startswith(f"{BROKER}/logout")
    assert client.get(done.headers["Location"].removeprefix(BROKER)).status_code == 200


def test_rp_initiated_logout_visits_the_upstream_then_returns_to_the_rp(broker, upstream):
    client, resp, verifier = _through_upstream(broker, upstream, "lou")
    answer = follow_to_rp(client, resp)
    hint = _redeem(broker, client, answer["code"], verifier)["id_token"]
    out = client.get("/oauth2/logout", query_string={
        "id_token_hint": hint, "post_logout_redirect_uri": RP_BYE, "state": "rp-state"})
    assert out.status_code == 303
    assert out.headers["Location"].startswith(upstream.url)
    back_here = requests.get(out.headers["Location"], allow_redirects=False, timeout=10)
    assert back_here.headers["Location"].startswith(f"{BROKER}/logout?state=")
    path = back_here.headers["Location"].removeprefix(BROKER)
    onward = client.get(path)
    assert onward.status_code == 303
    assert onward.headers["Location"] == f"{RP_BYE}?state=rp-state"
    assert client.get(path).status_code == 200  # the state leads on once


def test_plain_oauth2_upstream_signs_in_from_userinfo(broker, upstream):
    before = state_of(broker.svc)
    client, resp, verifier = _through_upstream(broker, upstream, "pat", alias="gh")
    claims = _rp_id_token(broker, client, follow_to_rp(client, resp), verifier)
    assert claims["amr"] == ["fed"]
    assert state_of(broker.svc)["users"] == before["users"] + 1
    pat = user_named(broker.svc, "pat")
    assert pat.external_id.startswith("gh:") and pat.email_verified


def test_force_sync_applies_the_upstream_profile_at_every_sign_in(broker, upstream):
    from idp.storage.models import User

    client, resp, _v = _through_upstream(broker, upstream, "sam", alias="sync")
    follow_to_rp(client, resp)
    assert user_named(broker.svc, "sam").given_name == "Sam"
    with upstream.live.svc.sessions.begin() as db:
        db.query(User).filter(User.username == "sam").update({"given_name": "Samuel"})
    client, resp, _v = _through_upstream(broker, upstream, "sam", alias="sync")
    follow_to_rp(client, resp)
    assert user_named(broker.svc, "sam").given_name == "Samuel"
    assert audits(broker.svc, "broker.login")[-1]["mapped_groups"] == ["Admins"]


def test_a_hidden_upstream_has_no_button_but_answers_its_hint(broker, upstream):
    client = broker.client()
    resp, _v = authorize(client)
    assert 'value="sync"' not in client.get(resp.headers["Location"]).get_data(as_text=True)
    resp, _v = authorize(client, idp_hint="sync")
    assert client.get(resp.headers["Location"]).headers["Location"].startswith(upstream.url)


def test_a_saml_sp_request_resumes_after_the_upstream_sign_in(broker, upstream, tmp_path):
    """The hub is protocol-neutral: a pysaml2 SP's AuthnRequest at the broker, "Sign in with
    Corp", and the SAML Response pysaml2 accepts names the brokered user."""
    from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT
    from saml2.xmldsig import DIGEST_SHA256, SIG_RSA_SHA256
    from saml_support import form_with, pysaml2_sp

    from idp.saml.registry import SpRegistry

    client = broker.client()
    metadata = client.get("/saml/metadata").get_data(as_text=True)
    sp, sp_metadata = pysaml2_sp(tmp_path, metadata, entity_id="https://sp.example.org/broker")
    with broker.svc.sessions.begin() as db:
        SpRegistry(db).add(sp_metadata, replace=True)
    reqid, info = sp.prepare_for_authenticate(
        entityid=f"{BROKER}/saml/metadata", relay_state="/after", binding=BINDING_HTTP_REDIRECT,
        sigalg=SIG_RSA_SHA256, digest_alg=DIGEST_SHA256)
    resp = client.get(dict(info["headers"])["Location"].removeprefix(BROKER))
    assert resp.status_code in (302, 303) and resp.headers["Location"].startswith("/login?r=")
    started = choose(client, resp.headers["Location"], "corp")
    returned = upstream_login(requests.Session(), started.headers["Location"], "tess")
    resp = back(client, returned)
    for _ in range(6):
        if resp.status_code not in (302, 303):
            break
        resp = client.get(resp.headers["Location"].removeprefix(BROKER))
    _, fields = form_with(resp.get_data(as_text=True), "SAMLResponse")
    answer = sp.parse_authn_request_response(fields["SAMLResponse"], BINDING_HTTP_POST,
                                             outstanding={reqid: "/after"})
    assert answer.get_identity()["uid"] == ["tess"]
    assert answer.get_identity()["mail"] == ["tess@corp.example"]
