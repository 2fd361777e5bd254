"""Federation aggregates: a signed EntitiesDescriptor built here is verified against the
configured certificate, refused when the signature is bad, stripped, wrapped or expired
(validUntil), and filtered; cacheDuration drives the next refresh. Also the `idp saml` CLI."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import xmlsec
from lxml import etree
from sqlalchemy import select

from idp.cli import main

MD = "urn:oasis:names:tc:SAML:2.0:metadata"
NOW = datetime(2030, 1, 1, tzinfo=UTC)


def keypair(folder: Path, name: str) -> tuple[Path, Path]:
    import sys

    sys.path.insert(0, str(Path(__file__).parent / "flows"))
    from saml_support import make_keypair

    return make_keypair(folder, name)


def sp_entity(entity_id: str, category: str | None = None, authority: str | None = None) -> str:
    ext = ""
    if category or authority:
        parts = []
        if authority:
            parts.append(
                '<mdrpi:RegistrationInfo xmlns:mdrpi="urn:oasis:names:tc:SAML:metadata:rpi" '
                f'registrationAuthority="{authority}"/>'
            )
        if category:
            parts.append(
                "<mdattr:EntityAttributes "
                'xmlns:mdattr="urn:oasis:names:tc:SAML:metadata:attribute">'
                '<saml:Attribute xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" '
                'Name="http://macedir.org/entity-category">'
                f"<saml:AttributeValue>{category}</saml:AttributeValue></saml:Attribute>"
                "</mdattr:EntityAttributes>"
            )
        ext = f"<md:Extensions>{''.join(parts)}</md:Extensions>"
    return (
        f'<md:EntityDescriptor entityID="{entity_id}">{ext}'
        '<md:SPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">'
        '<md:AssertionConsumerService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST" '
        f'Location="{entity_id}/acs" index="0"/></md:SPSSODescriptor></md:EntityDescriptor>'
    )


IDP_ENTITY = (
    '<md:EntityDescriptor entityID="https://idp.partner.example/">'
    '<md:IDPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">'
    '<md:SingleSignOnService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect" '
    'Location="https://idp.partner.example/sso"/></md:IDPSSODescriptor></md:EntityDescriptor>'
)


def aggregate(
    entities: list[str],
    key: Path,
    cert: Path,
    *,
    valid_until: datetime,
    cache: str = "PT6H",
    sign: bool = True,
) -> bytes:
    xml = (
        f'<md:EntitiesDescriptor xmlns:md="{MD}" ID="agg1" Name="urn:test:fed" '
        f'validUntil="{valid_until.strftime("%Y-%m-%dT%H:%M:%SZ")}" cacheDuration="{cache}">'
        + "".join(entities)
        + "</md:EntitiesDescriptor>"
    )
    root = etree.fromstring(xml.encode())
    if sign:
        sig = xmlsec.template.create(
            root, xmlsec.constants.TransformExclC14N, xmlsec.constants.TransformRsaSha256
        )
        root.insert(0, sig)
        ref = xmlsec.template.add_reference(sig, xmlsec.constants.TransformSha256, uri="#agg1")
        xmlsec.template.add_transform(ref, xmlsec.constants.TransformEnveloped)
        xmlsec.template.add_transform(ref, xmlsec.constants.TransformExclC14N)
        xmlsec.tree.add_ids(root, ["ID"])
        ctx = xmlsec.SignatureContext()
        ctx.key = xmlsec.Key.from_file(str(key), xmlsec.constants.KeyDataFormatPem)
        ctx.sign(sig)
    return etree.tostring(root)


@pytest.fixture
def fed_env(tmp_path, make_app):
    app = make_app()
    svc = app.extensions["idp"]
    key, cert = keypair(tmp_path, "fed")
    from idp.storage.models_saml import SamlFederation

    with svc.sessions.begin() as db:
        db.add(
            SamlFederation(
                name="testfed",
                url="file:///dev/null",
                cert_pem=cert.read_text(),
                filters={},
                refresh_seconds=86400,
            )
        )
    return svc, key, cert


def _sps(svc) -> dict[str, str]:
    from idp.storage.models import SamlServiceProvider

    with svc.sessions() as db:
        return {r.entity_id: r.origin for r in db.scalars(select(SamlServiceProvider))}


def _refresh(svc, data: bytes):
    from federation.aggregate import refresh

    return refresh(
        svc.sessions, "testfed", NOW, max_bytes=10**7, timeout=5, min_refresh=300, data=data
    )


def test_signed_aggregate_is_imported_with_refresh_from_cache_duration(fed_env):
    svc, key, cert = fed_env
    data = aggregate(
        [sp_entity("https://a.example/sp"), sp_entity("https://b.example/sp"), IDP_ENTITY],
        key,
        cert,
        valid_until=NOW + timedelta(days=7),
        cache="PT6H",
    )
    out = _refresh(svc, data)
    assert out["entities"] == 2 and out["added"] == 2
    assert out["skipped"] == 1  # the IdP entity is not a service provider
    assert datetime.fromisoformat(out["next_refresh"]) == NOW + timedelta(hours=6)
    assert _sps(svc) == {
        "https://a.example/sp": "federation:testfed",
        "https://b.example/sp": "federation:testfed",
    }
    # The next aggregate no longer lists b: it is removed; a stays.
    data = aggregate(
        [sp_entity("https://a.example/sp")], key, cert, valid_until=NOW + timedelta(days=7)
    )
    out = _refresh(svc, data)
    assert out["removed"] == 1
    assert set(_sps(svc)) == {"https://a.example/sp"}


@pytest.mark.parametrize("case", ["bad-signature", "unsigned", "other-key", "expired", "wrapped"])
def test_untrusted_aggregates_are_refused_and_change_nothing(fed_env, tmp_path, case):
    from federation.aggregate import AggregateError

    svc, key, cert = fed_env
    good = aggregate(
        [sp_entity("https://a.example/sp")], key, cert, valid_until=NOW + timedelta(days=7)
    )
    _refresh(svc, good)
    before = _sps(svc)
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
        _refresh(svc, data)
    assert _sps(svc) == before


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
    out = _refresh(svc, data)
    assert set(_sps(svc)) == {"https://good.example/sp"}
    assert out["skipped"] == 3


# --- CLI -----------------------------------------------------------------------------------------


@pytest.fixture
def cli_env(monkeypatch, instance_dir, capsys):
    monkeypatch.setenv("IDP_INSTANCE_DIR", str(instance_dir))
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
