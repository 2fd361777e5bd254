"""Claims configured per client reach the ID token and userinfo of that client only (the
claims mapper's rules through the real endpoints, read with PyJWT)."""

from __future__ import annotations

import jwt as pyjwt
from oidc_support import RP, authorize, token


def test_per_client_rules_shape_that_clients_tokens_only(env):
    from idp.oidc.clients import client_cache
    from idp.storage.claims import save_rule
    from idp.storage.models import Client

    with env.svc.sessions.begin() as db:
        row = db.get(Client, "fapi")
        row.meta = dict(row.meta, id_token_signed_response_alg="RS256")
        save_rule(db, {"target": "app_roles", "source": {"type": "roles"}, "multi": True,
                       "case": "upper", "prefix": "ROLE_"}, client_id="fapi", scope="roles")
        save_rule(db, {"target": "badge", "source": {
            "type": "template", "template": "{family_name}, {given_name}"}},
            client_id="fapi", scope="profile")
    client_cache(env.svc).bump()

    def tokens(client_id):
        c = env.client()
        got = authorize(c, client_id=client_id, scope="openid profile roles")
        body = token(c, {"grant_type": "authorization_code", "code": got["code"],
                         "redirect_uri": RP}, auth=(client_id, env.secrets[client_id])).json
        info = c.get("/oauth2/userinfo",
                     headers={"Authorization": f"Bearer {body['access_token']}"})
        return pyjwt.decode(body["id_token"], options={"verify_signature": False}), info

    claims, info = tokens("fapi")
    info = info.json if info.mimetype == "application/json" else pyjwt.decode(
        info.get_data(as_text=True), options={"verify_signature": False})
    for doc in (claims, info):
        assert doc["app_roles"] == ["ROLE_EDITOR"]
        assert doc["badge"] == "Adams, Alice"
    other, other_info = tokens("web")
    for doc in (other, other_info.json):
        assert "app_roles" not in doc and "badge" not in doc
        assert "editor" in doc["roles"]
