"""Federation aggregates: a signed EntitiesDescriptor built here is verified against the
configured certificate, refused when the signature is bad, stripped, wrapped or expired
(validUntil), and filtered; cacheDuration drives the next refresh. Also the `idp saml` CLI."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from federation_kit import IDP_ENTITY, MD, NOW, aggregate, keypair, refresh, sp_entity, sps
from support import set_instance_env

from idp.cli import main


def test_signed_aggregate_is_imported_with_refresh_from_cache_duration(fed_env):
    svc, key, cert = fed_env
    data = aggregate(
        [sp_entity("https://a.example/sp"), sp_entity("https://b.example/sp"), IDP_ENTITY],
        key,
        cert,
        valid_until=NOW + timedelta(days=7),
        cache="PT6H",
    )
    out = refresh(svc, data)
    assert out["entities"] == 2 and out["added"] == 2
    assert out["skipped"] == 1  # the IdP entity is not a service provider
    assert datetime.fromisoformat(out["next_refresh"]) == NOW + timedelta(hours=6)
    assert sps(svc) == {
        "https://a.example/sp": "federation:testfed",
        "https://b.example/sp": "federation:testfed",
    }
    # The next aggregate no longer lists b: it is removed; a stays.
    data = aggregate(
        [sp_entity("https://a.example/sp")], key, cert, valid_until=NOW + timedelta(days=7)
    )
    out = refresh(svc, data)
    assert out["removed"] == 1
    assert set(sps(svc)) == {"https://a.example/sp"}


@pytest.mark.parametrize("case", ["bad-signature", "unsigned", "other-key", "expired", "wrapped"])
def test_untrusted_aggregates_are_refused_and_change_nothing(fed_env, tmp_path, case):
    from federation.aggregate import AggregateError

    svc, key, cert = fed_env
    good = aggregate(
        [sp_entity("https://a.example/sp")], key, cert, valid_until=NOW + timedelta(days=7)
    )
    refresh(svc, good)
    before = sps(svc)
    valid = NOW + timedelta(days=7)
    if case == "bad-signature":
        data = good.replace(b"https://a.example/sp/acs", b"https://evil.example/acs")
    elif case == "unsigned":
        data = aggregate(
            [sp_entity("https://evil.example/sp")], key, cert, valid_until=valid, sign=False
        )
    elif case == "other-key":
        okey, ocert = keypair(tmp_path, "other")
        data = aggregate([sp_entity("https://evil.example/sp")], okey, ocert, valid_until=valid)
    elif case == "expired":
        data = aggregate(
            [sp_entity("https://a.example/sp")], key, cert, valid_until=NOW - timedelta(seconds=1)
        )
    else:
        # Signature wrapping: the signed aggregate moved inside an unsigned one.
        data = (
            (
                f'<md:EntitiesDescriptor xmlns:md="{MD}">{sp_entity("https://evil.example/sp")}'
            ).encode()
            + good
            + b"</md:EntitiesDescriptor>"
        )
    with pytest.raises(AggregateError):
        refresh(svc, data)
    assert sps(svc) == before


def test_entity_filters(fed_env):
    from idp.storage.models_saml import SamlFederation

    svc, key, cert = fed_env
    with svc.sessions.begin() as db:
        db.get(SamlFederation, "testfed").filters = {
            "exclude": ["/^https://blocked\\./"],
            "registration_authority": ["https://fed.example/"],
            "entity_category": ["http://refeds.org/category/research-and-scholarship"],
        }
    rs = "http://refeds.org/category/research-and-scholarship"
    data = aggregate(
        [
            sp_entity("https://good.example/sp", rs, "https://fed.example/"),
            sp_entity("https://blocked.example/sp", rs, "https://fed.example/"),
            sp_entity("https://nocat.example/sp", None, "https://fed.example/"),
            sp_entity("https://otherfed.example/sp", rs, "https://other.example/"),
        ],
        key,
        cert,
        valid_until=NOW + timedelta(days=1),
    )
    out = refresh(svc, data)
    assert set(sps(svc)) == {"https://good.example/sp"}
    assert out["skipped"] == 3


# --- CLI -----------------------------------------------------------------------------------------


@pytest.fixture
def cli_env(monkeypatch, instance_dir, capsys):
    set_instance_env(monkeypatch, instance_dir)
    assert main(["init", "--admin-password", "x" * 16, "--json"]) == 0
    capsys.readouterr()
    return instance_dir


def test_cli_sp_add_list_remove(cli_env, tmp_path, capsys):
    md = tmp_path / "sp.xml"
    md.write_text(
        f'<md:EntitiesDescriptor xmlns:md="{MD}">'
        + sp_entity("https://cli.example/sp").replace(
            "<md:EntityDescriptor", f'<md:EntityDescriptor xmlns:md="{MD}"', 1
        )
        + "</md:EntitiesDescriptor>"
    )
    assert main(["saml", "sp", "add", "--metadata", str(md), "--json"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out) == {"entity_id": "https://cli.example/sp"} and err == ""
    # Again: refused with one line, nothing changed.
    assert main(["saml", "sp", "add", "--metadata", str(md), "--json"]) == 1
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and "already registered" in err
    assert main(["saml", "sp", "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr()[0])["service_providers"]
    assert [s["entity_id"] for s in listed] == ["https://cli.example/sp"]
    assert (
        main(
            [
                "saml",
                "sp",
                "set",
                "https://cli.example/sp",
                "--setting",
                "name_id_format=email",
                "--json",
            ]
        )
        == 0
    )
    assert json.loads(capsys.readouterr()[0])["settings"] == {"name_id_format": "email"}
    assert main(["saml", "sp", "remove", "https://cli.example/sp", "--json"]) == 0
    capsys.readouterr()
    assert main(["saml", "sp", "list", "--json"]) == 0
    assert json.loads(capsys.readouterr()[0])["service_providers"] == []


@pytest.mark.parametrize(
    "content",
    [
        "<not xml",
        '<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><x>&e;</x>',
        f'<md:EntityDescriptor xmlns:md="{MD}" entityID="https://idp-only.example/"/>',
    ],
)
def test_cli_refuses_bad_metadata(cli_env, tmp_path, capsys, content):
    md = tmp_path / "bad.xml"
    md.write_text(content)
    assert main(["saml", "sp", "add", "--metadata", str(md), "--json"]) == 1
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("idp: ") and err.count("\n") == 1
    assert main(["saml", "sp", "list", "--json"]) == 0
    assert json.loads(capsys.readouterr()[0])["service_providers"] == []


def test_init_demo_registers_the_demo_sp(cli_env, capsys):
    assert main(["init", "--demo", "--admin-password", "x" * 16, "--json"]) == 0
    out = json.loads(capsys.readouterr()[0])
    sp = out["demo"]["saml_sp"]
    assert sp["entity_id"] == "http://127.0.0.1:8081/saml/metadata"
    assert Path(sp["key_file"]).stat().st_mode & 0o077 == 0
    assert main(["saml", "sp", "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr()[0])["service_providers"]
    assert [s["entity_id"] for s in listed] == [sp["entity_id"]]


def test_cli_refreshes_federations_from_settings(monkeypatch, cli_env, tmp_path, capsys):
    key, cert = keypair(tmp_path, "conf")
    agg = tmp_path / "agg.xml"
    agg.write_bytes(
        aggregate(
            [sp_entity("https://conf.example/sp")],
            key,
            cert,
            valid_until=datetime.now(UTC) + timedelta(days=1),
        )
    )
    monkeypatch.setenv("IDP_SAML_FEDERATION_SOURCES", json.dumps([f"conf file://{agg} {cert}"]))
    assert main(["saml", "federation", "refresh", "--json"]) == 0
    out = json.loads(capsys.readouterr()[0])
    assert out["refreshed"][0]["federation"] == "conf"
    assert out["refreshed"][0]["added"] == 1
    assert main(["saml", "sp", "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr()[0])["service_providers"]
    assert [(s["entity_id"], s["origin"]) for s in listed] == [
        ("https://conf.example/sp", "federation:conf")
    ]
