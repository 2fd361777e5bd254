"""SP endpoint Locations are checked when metadata is imported: an AssertionConsumerService or
SingleLogoutService Location (or ResponseLocation) becomes a form action or a redirect, so a
``javascript:`` one would run in our origin. https only (http for an SP registered with
``--allow-http``, a lab flag stored with the SP), never javascript:, data:, file: or vbscript:.

Imports from a file (`idp saml sp add --metadata`), a URL (`--url`) and a federation aggregate
are each refused with a clear reason and store nothing (an aggregate keeps its good SPs)."""

from __future__ import annotations

import json
import logging
from datetime import timedelta

import pytest
from federation_kit import MD, NOW, aggregate, refresh, sp_entity, sps
from sqlalchemy import select
from support import set_instance_env

from idp.cli import main

SP = "https://lab.example/sp"
POST = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST"
REDIRECT = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect"


def sp_metadata(acs: str, slo: str | None = None, slo_response: str | None = None) -> str:
    slo_el = ""
    if slo is not None:
        response = f' ResponseLocation="{slo_response}"' if slo_response else ""
        slo_el = f'<md:SingleLogoutService Binding="{REDIRECT}" Location="{slo}"{response}/>'
    return (
        f'<md:EntityDescriptor xmlns:md="{MD}" entityID="{SP}">'
        '<md:SPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">'
        f"{slo_el}"
        f'<md:AssertionConsumerService Binding="{POST}" Location="{acs}" index="0"/>'
        "</md:SPSSODescriptor></md:EntityDescriptor>"
    )


GOOD = "https://lab.example/acs"
BAD = [
    pytest.param(sp_metadata("javascript:alert(document.domain)"), "javascript:", id="js-acs"),
    pytest.param(sp_metadata("JaVaScRiPt:alert(1)"), "javascript:", id="js-mixed-case"),
    pytest.param(sp_metadata("java&#9;script:alert(1)"), "control characters", id="js-tab"),
    pytest.param(sp_metadata(" javascript:alert(1)"), "control characters", id="js-space"),
    pytest.param(sp_metadata("data:text/html,&lt;script>x&lt;/script>"), "data:", id="data-acs"),
    pytest.param(sp_metadata("vbscript:msgbox(1)"), "vbscript:", id="vbscript-acs"),
    pytest.param(sp_metadata("file:///etc/passwd"), "file:", id="file-acs"),
    pytest.param(sp_metadata("http://lab.example/acs"), "only https", id="http-acs"),
    pytest.param(sp_metadata("https:///acs"), "has no host", id="no-host"),
    pytest.param(sp_metadata(GOOD, "javascript:alert(1)"), "SingleLogoutService", id="js-slo"),
    pytest.param(
        sp_metadata(GOOD, "https://lab.example/slo", "javascript:alert(1)"),
        "ResponseLocation",
        id="js-slo-response",
    ),
]


@pytest.fixture
def cli_env(monkeypatch, instance_dir, capsys):
    set_instance_env(monkeypatch, instance_dir)
    assert main(["init", "--admin-password", "x" * 16, "--json"]) == 0
    capsys.readouterr()
    return instance_dir


def _listed(capsys) -> list:
    assert main(["saml", "sp", "list", "--json"]) == 0
    return json.loads(capsys.readouterr()[0])["service_providers"]


@pytest.mark.parametrize(("xml", "why"), BAD)
@pytest.mark.parametrize("source", ["file", "url"])
def test_bad_locations_are_refused_at_import(cli_env, tmp_path, capsys, xml, why, source):
    path = tmp_path / "sp.xml"
    path.write_text(xml)
    where = ["--metadata", str(path)] if source == "file" else ["--url", path.as_uri()]
    assert main(["saml", "sp", "add", *where, "--json"]) == 1
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("idp: ") and err.count("\n") == 1
    assert why in err and SP in err
    assert _listed(capsys) == []


def test_http_only_with_the_lab_flag_which_is_stored(cli_env, tmp_path, capsys):
    path = tmp_path / "sp.xml"
    path.write_text(sp_metadata("http://127.0.0.1:9000/acs", "http://127.0.0.1:9000/slo"))
    assert main(["saml", "sp", "add", "--metadata", str(path), "--allow-http", "--json"]) == 0
    capsys.readouterr()
    assert [s["entity_id"] for s in _listed(capsys)] == [SP]
    # Taking the flag away is refused while the metadata still has http endpoints.
    assert main(["saml", "sp", "set", SP, "--setting", "allow_http=false"]) == 1
    assert "only https" in capsys.readouterr()[1]
    # javascript: is refused even with the lab flag.
    path.write_text(sp_metadata("javascript:alert(1)"))
    assert main(["saml", "sp", "add", "--metadata", str(path), "--allow-http", "--replace"]) == 1
    assert "javascript:" in capsys.readouterr()[1]
    from idp.app import create_app
    from idp.storage.models import SamlServiceProvider

    svc = create_app().extensions["idp"]
    try:
        with svc.sessions() as db:
            row = db.get(SamlServiceProvider, SP)
            assert row.settings == {"allow_http": True}
            assert "http://127.0.0.1:9000/acs" in row.metadata_xml
    finally:
        svc.engine.dispose()


def test_cli_sp_add_flags_are_stored(cli_env, tmp_path, capsys):
    path = tmp_path / "sp.xml"
    path.write_text(sp_metadata(GOOD))
    args = ["--logout-unsigned-ok", "--allow-sha1", "--encryption-algorithm", "aes256-cbc"]
    assert main(["saml", "sp", "add", "--metadata", str(path), *args, "--json"]) == 0
    capsys.readouterr()
    assert main(["saml", "sp", "set", SP, "--setting", "display_name=Lab", "--json"]) == 0
    assert json.loads(capsys.readouterr()[0])["settings"] == {
        "want_logout_signed": False,
        "allow_sha1": True,
        "encryption_algorithm": "aes256-cbc",
        "display_name": "Lab",
    }
    path.write_text(sp_metadata(GOOD).replace(SP, "https://other.example/sp"))
    bad = ["--encryption-algorithm", "des3-cbc"]
    assert main(["saml", "sp", "add", "--metadata", str(path), *bad]) == 1
    assert "encryption_algorithm must be one of" in capsys.readouterr()[1]
    assert [s["entity_id"] for s in _listed(capsys)] == [SP]


def test_aggregate_keeps_good_sps_and_refuses_bad_ones_with_a_logged_reason(
    fed_env,  # noqa: F811 (the fixture imported above)
    caplog,
):
    svc, key, cert = fed_env

    def entity(entity_id: str, acs: str) -> str:
        return sp_entity(entity_id).replace(f'Location="{entity_id}/acs"', f'Location="{acs}"')

    data = aggregate(
        [
            sp_entity("https://good.example/sp"),
            entity("https://evil.example/sp", "javascript:alert(document.cookie)"),
            entity("https://plain.example/sp", "http://plain.example/acs"),
        ],
        key,
        cert,
        valid_until=NOW + timedelta(days=7),
    )
    with caplog.at_level(logging.WARNING, logger="idp.saml.federation"):
        out = refresh(svc, data)
    assert sps(svc) == {"https://good.example/sp": "federation:testfed"}
    assert out["entities"] == 1 and out["added"] == 1 and out["skipped"] == 2
    reasons = {r["entity_id"]: r["reason"] for r in out["refused"]}
    assert set(reasons) == {"https://evil.example/sp", "https://plain.example/sp"}
    assert "javascript: scheme, which is never accepted" in reasons["https://evil.example/sp"]
    assert "only https" in reasons["https://plain.example/sp"]
    logged = " ".join(r.getMessage() for r in caplog.records)
    assert "https://evil.example/sp refused" in logged and "javascript:" in logged


def test_registry_refuses_without_storing(make_app):
    from idp.errors import ValidationError
    from idp.saml.registry import SpRegistry
    from idp.storage.models import SamlServiceProvider

    svc = make_app().extensions["idp"]
    with svc.sessions.begin() as db:
        with pytest.raises(ValidationError, match="javascript: scheme"):
            SpRegistry(db).add(sp_metadata("javascript:alert(1)"))
    with svc.sessions() as db:
        assert db.scalars(select(SamlServiceProvider)).all() == []
