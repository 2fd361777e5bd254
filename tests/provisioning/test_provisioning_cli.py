"""``idp provisioning run --once``: pushes what is due and says how it went (one JSON object
with --json); a user created with ``idp users create`` reaches the target."""

from __future__ import annotations

import pytest
from provisioning_kit import Stub, add_target
from test_cli import ok_json

from idp.cli import main
from idp.services import build_services
from idp.settings import load_settings


@pytest.fixture
def stub():
    server = Stub()
    yield server
    server.close()


def test_run_once_pushes_the_queue(monkeypatch, instance_dir, capsys, stub):
    monkeypatch.setenv("IDP_INSTANCE_DIR", str(instance_dir))
    monkeypatch.setenv("IDP_OUTBOUND_ALLOW_HTTP", "true")
    monkeypatch.setenv("IDP_OUTBOUND_ALLOW_PRIVATE_ADDRESSES", "true")
    assert main(["init", "--admin-password", "pw-for-tests-0", "--json"]) == 0
    capsys.readouterr()
    svc = build_services(load_settings())
    add_target(svc, stub.url, "token")
    svc.engine.dispose()
    ok_json(capsys, "users", "create", "--username", "carol", "--email", "carol@example.org")
    assert ok_json(capsys, "provisioning", "run", "--once") == {
        "pushed": 1, "retried": 0, "failed": 0,
    }
    assert [b["userName"] for b in stub.posts()] == ["carol"]
    assert ok_json(capsys, "provisioning", "run", "--once") == {
        "pushed": 0, "retried": 0, "failed": 0,
    }
