"""A server worker starts without the modules few requests need (docs/performance.md, "Cold
start and memory"): spreadsheets, images, QR codes, LDAP, OpenTelemetry, pysaml2's signature
layer with its XML schema, scim2-models. Each is imported by the request that needs it, which
still works. ``idp serve`` checks the instance without building the app a second time, and
without importing the other commands.

The workers are built in a fresh interpreter (``python -c``): what other tests of this process
imported would hide an eager import."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from instance_template import initialised

from idp.cli import CliFailure

REPO = Path(__file__).resolve().parent.parent

# Modules a worker must not import at start (with the default settings: no LDAP, no tracing).
DEFERRED = (
    "openpyxl",  # XLSX import / export
    "PIL",  # profile photos
    "segno",  # the TOTP enrolment QR code
    "ldap3",  # LDAP, only when a directory is configured and used
    "opentelemetry",  # tracing, only when on
    "saml2.sigver",  # pysaml2's signatures: builds its whole XML schema on import
    "saml2.xml.schema",
    "xmlschema",
    "scim2_models",  # SCIM 2.0 (inbound and outbound provisioning)
    "idp.web.scim.views",
    "requests",  # the SMS gateways
    "webauthn",  # passkeys and security keys: their ceremonies
)

_PROBE = """
import json, sys
from idp.serving import worker_app

watch = json.loads(sys.argv[1])
app = worker_app()
loaded = lambda: sorted(m for m in watch if m in sys.modules)
at_start = loaded()
client = app.test_client()
statuses = {p: client.get(p).status_code for p in json.loads(sys.argv[2])}
app.extensions["idp"].mail_queue.stop()
print(json.dumps({"at_start": at_start, "after": loaded(), "statuses": statuses}))
"""


def _worker(instance: Path, paths: list[str] = (), **env: str) -> dict:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("IDP_")}
    clean.update(
        IDP_INSTANCE_DIR=str(instance), PYTHONPATH=str(REPO), PYTHONWARNINGS="ignore", **env
    )
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE, json.dumps(DEFERRED), json.dumps(list(paths))],
        env=clean,
        cwd=instance,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture
def instance(tmp_path: Path) -> Path:
    path = tmp_path / "instance"
    path.mkdir()
    initialised(path)
    return path


def test_a_worker_starts_without_the_modules_few_requests_need(instance: Path):
    got = _worker(instance, ["/scim/v2/ServiceProviderConfig", "/saml/metadata"])
    assert got["at_start"] == []
    # The first request that needs them imports them, and is answered as before.
    assert got["statuses"]["/saml/metadata"] == 200
    assert got["statuses"]["/scim/v2/ServiceProviderConfig"] in (200, 401)
    for module in ("saml2.sigver", "saml2.xml.schema", "scim2_models", "idp.web.scim.views"):
        assert module in got["after"], got


def test_tracing_on_loads_opentelemetry_at_start(instance: Path):
    """The probe sees an eager import: with tracing on, OpenTelemetry is there at start."""
    got = _worker(instance, IDP_TRACING_ENABLED="true")
    assert "opentelemetry" in got["at_start"]  # (its OTLP exporter brings requests along)


_CHECK = """
import sys
from idp.cli.serve import _check_start
_check_start()
watch = ("idp.app", "idp.web.api", "idp.web.login", "flask", "idp.manage", "idp.cli.users")
print(sorted(m for m in watch if m in sys.modules))
"""


def test_serve_checks_the_instance_without_building_the_app(instance: Path):
    """Nor does ``idp serve`` import the other command groups or the management layer."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("IDP_")}
    clean.update(IDP_INSTANCE_DIR=str(instance), PYTHONPATH=str(REPO), PYTHONWARNINGS="ignore")
    proc = subprocess.run(
        [sys.executable, "-c", _CHECK], env=clean, capture_output=True, text=True, timeout=180
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == "[]"


def test_serve_check_refuses_an_install_missing_a_surface(instance: Path, monkeypatch):
    from idp.cli import serve
    from idp.web import blueprints

    monkeypatch.setenv("IDP_INSTANCE_DIR", str(instance))
    monkeypatch.setattr(blueprints, "BLUEPRINTS", [*blueprints.BLUEPRINTS, ".web.no_such_surface"])
    with pytest.raises(
        CliFailure, match=r"incomplete: module idp\.web\.no_such_surface is missing"
    ):
        serve._check_start()


def test_serve_check_refuses_tracing_without_its_packages(instance: Path, monkeypatch):
    from idp import tracing
    from idp.cli import serve

    monkeypatch.setenv("IDP_INSTANCE_DIR", str(instance))
    monkeypatch.setenv("IDP_TRACING_ENABLED", "true")
    monkeypatch.setattr(tracing, "_PACKAGES", (*tracing._PACKAGES, "opentelemetry_no_such.sdk"))
    with pytest.raises(tracing.TracingUnavailable, match=r"not installed \(opentelemetry_no_such"):
        serve._check_start()
