"""Issue 7's done-when: roles and groups reach ID tokens, userinfo and SAML assertions *as
configured per client / SP*. Rules are saved through the claims mapper's storage API; the
tokens come from the real endpoints and are read by independent clients (PyJWT; pysaml2 as SP,
validating the signed response itself)."""

from __future__ import annotations

import pytest
import requests
from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT
from saml2.xmldsig import DIGEST_SHA256, SIG_RSA_SHA256
from saml_support import form_with, live_idp, pysaml2_sp

pytestmark = pytest.mark.slow


def _save(svc, rule, **where):
    from idp.storage.claims import save_rule

    with svc.sessions.begin() as db:
        save_rule(db, rule, **where)


def test_saml_attributes_configured_per_sp(instance_dir, tmp_path):
    with live_idp(instance_dir) as idp:
        metadata = requests.get(idp.metadata_url, timeout=10).text
        (tmp_path / "a").mkdir()
        (tmp_path / "b").mkdir()
        hr, md = pysaml2_sp(tmp_path / "a", metadata, entity_id="https://hr.example.org/md")
        hr_id = idp.register_sp(md)
        wiki, md = pysaml2_sp(tmp_path / "b", metadata, entity_id="https://wiki.example.org/md")
        idp.register_sp(md)
        uuid = idp.create_user("alice", groups=["staff"], member_of=["staff"])
        from idp.storage.directory import Directory

        with idp.svc.sessions.begin() as db:
            d = Directory(db)
            d.create_group("payroll", "staff")
            d.create_role("hr-admin", ["hr:*:*"])
            alice = d.user_by_username("alice")
            from idp.storage.models import GroupMember, UserRole

            db.add(GroupMember(group_id=d.group_by_path("staff/payroll").id, user_id=alice.id))
            db.add(UserRole(user_id=alice.id, role_id=d.role_by_name("hr-admin").id))
        # HR wants full group paths as memberOf and roles upper-cased with a prefix.
        _save(idp.svc, {"saml_name": "memberOf", "source": {"type": "groups",
                                                            "full_path": True}, "multi": True},
              sp_entity_id=hr_id)
        _save(idp.svc, {"saml_name": "hrRole", "source": {"type": "roles"}, "multi": True,
                        "case": "upper", "prefix": "ROLE_"}, sp_entity_id=hr_id)

        def identity(client):
            browser = requests.Session()
            idp.login(browser, uuid)
            reqid, info = client.prepare_for_authenticate(
                entityid=idp.metadata_url, relay_state="/", binding=BINDING_HTTP_REDIRECT,
                sigalg=SIG_RSA_SHA256, digest_alg=DIGEST_SHA256)
            r = browser.get(dict(info["headers"])["Location"], allow_redirects=False, timeout=10)
            _, fields = form_with(r.text, "SAMLResponse")
            resp = client.parse_authn_request_response(
                fields["SAMLResponse"], BINDING_HTTP_POST, outstanding={reqid: "/"})
            return resp.get_identity()

        at_hr = identity(hr)
        assert sorted(at_hr["memberOf"]) == ["/staff", "/staff/payroll"]
        assert at_hr["hrRole"] == ["ROLE_HR-ADMIN"]
        at_wiki = identity(wiki)  # only the realm defaults
        assert "memberOf" not in at_wiki and "hrRole" not in at_wiki
        assert sorted(at_wiki["isMemberOf"]) == ["payroll", "staff"]
        assert "hr-admin" in at_wiki["Role"]
