"""The OIDC engine runs on plain request data, with no Flask app and no request context: the
token endpoint (client_credentials, RFC 6749 §4.4) and discovery answer typed results."""

from __future__ import annotations

import base64
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support import base_overrides, init_database

ENGINE_MODULES = ("authorize", "discovery", "endpoints", "logout", "registration", "userinfo")


# The client secret of each fixture-built Services (shown once at creation).
SECRETS: dict[int, str] = {}


@pytest.fixture
def svc(tmp_path: Path) -> Iterator[Any]:
    from idp.services import build_services
    from idp.settings import load_settings
    from idp.storage.clients import ClientRegistry

    overrides = base_overrides(tmp_path)
    init_database(overrides)
    services = build_services(load_settings(overrides))
    with services.sessions.begin() as db:
        _, secret = ClientRegistry(db, services.hasher, services.sealer).create(
            "svc", name="Service", grant_types=["client_credentials"], scope="api"
        )
    SECRETS[id(services)] = secret
    yield services
    services.engine.dispose()


def _token_request(svc, form: dict[str, list[str]], secret: str):
    from idp.oidc.http import Headers, HttpRequest

    basic = base64.b64encode(f"svc:{secret}".encode()).decode()
    return HttpRequest(
        method="POST",
        uri=f"{svc.settings.issuer}/oauth2/token",
        headers=Headers(
            {"Authorization": f"Basic {basic}", "Content-Type": "application/x-www-form-urlencoded"}
        ),
        form=form,
        content_type="application/x-www-form-urlencoded",
    )


def test_engine_modules_import_no_web_framework() -> None:
    code = (
        "import sys\n"
        + "".join(f"import idp.oidc.{m}\n" for m in ENGINE_MODULES)
        + "print(sorted(m for m in ('flask', 'werkzeug', 'flask_babel', 'flask_wtf', "
        "'idp.web', 'idp.app') if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert out.stdout.strip() == "[]"


def test_client_credentials_token_from_plain_data(svc) -> None:
    import flask

    from idp.oidc.endpoints import token
    from idp.oidc.results import JsonResult
    from idp.oidc.server import engine

    result = token(
        svc,
        _token_request(
            svc, {"grant_type": ["client_credentials"], "scope": ["api"]}, SECRETS[id(svc)]
        ),
    )
    assert not flask.has_app_context()
    assert isinstance(result, JsonResult)
    assert result.status == 200
    assert result.headers["Cache-Control"] == "no-store"
    assert result.body["token_type"] == "Bearer"
    assert result.body["scope"] == "api"
    claims = engine(svc).validate_access_token(result.body["access_token"])
    assert claims is not None
    assert claims["client_id"] == "svc"
    assert claims["sub"] == "svc"


def test_wrong_secret_is_a_typed_401(svc) -> None:
    from idp.oidc.endpoints import token

    result = token(svc, _token_request(svc, {"grant_type": ["client_credentials"]}, "wrong"))
    assert result.status == 401
    assert result.body["error"] == "invalid_client"
    assert result.headers["WWW-Authenticate"].startswith("Basic ")


def test_parameters_in_the_url_are_refused(svc) -> None:
    from idp.oidc.endpoints import token
    from idp.oidc.http import HttpRequest

    req = _token_request(svc, {"grant_type": ["client_credentials"]}, SECRETS[id(svc)])
    result = token(
        svc, HttpRequest(req.method, req.uri, req.headers, {"x": ["1"]}, req.form, req.content_type)
    )
    assert result.status == 400
    assert result.body["error"] == "invalid_request"


def test_discovery_metadata_is_plain_data() -> None:
    from idp.oidc.discovery import metadata

    doc = metadata("https://idp.example.org")
    assert doc["token_endpoint"] == "https://idp.example.org/oauth2/token"
    assert doc["code_challenge_methods_supported"] == ["S256"]
