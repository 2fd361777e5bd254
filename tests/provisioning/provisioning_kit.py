"""Downstream SCIM servers for the provisioning tests: a second IdP served for real on a
loopback port (its /scim/v2 is the target), read back with scim2-client; and a tiny stub that
answers what a test scripts (faults: 5xx, 4xx, 429, garbage) and else like a minimal SCIM
service provider."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from api_kit import service_token
from scim2_client.engines.wsgi import WSGISCIMClient
from scim2_models import SearchRequest
from support import base_overrides, init_database
from werkzeug.serving import make_server

from idp.manage import Actor, transaction
from idp.provisioning import targets, worker

OUTBOUND_LOOPBACK = {"allow_http": True, "allow_private_addresses": True}


@contextmanager
def served_idp(instance: Path) -> Iterator[tuple[Any, str, str]]:
    """(app, its /scim/v2 URL, a token with scope scim there), served on 127.0.0.1."""
    from idp.app import create_app

    overrides = base_overrides(instance)
    init_database(overrides)
    app = create_app(overrides)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        token = service_token(app, scope="scim")
        yield app, f"http://127.0.0.1:{server.server_port}/scim/v2", token
    finally:
        server.shutdown()
        app.extensions["idp"].engine.dispose()


class Downstream:
    """The served IdP read through scim2-client (an outside SCIM client library)."""

    def __init__(self, app: Any, url: str, token: str) -> None:
        self.url, self.token = url, token
        self.client = WSGISCIMClient(
            app, base_url="http://localhost/scim/v2",
            headers={"Authorization": f"Bearer {token}"},
        )
        self.client.discover()
        self.User = self.client.get_resource_model("User")
        self.Group = self.client.get_resource_model("Group")

    def user(self, user_name: str) -> Any:
        found = self.client.query(
            self.User, query_parameters=SearchRequest(filter=f'userName eq "{user_name}"')
        )
        resources = found.resources or []
        assert len(resources) <= 1
        return resources[0] if resources else None

    def group(self, name: str) -> Any:
        found = self.client.query(
            self.Group, query_parameters=SearchRequest(filter=f'displayName eq "{name}"')
        )
        resources = found.resources or []
        return resources[0] if resources else None


class Stub:
    """``script`` maps "METHOD /Path" to a list of (status, body bytes, headers) answered in
    turn; unscripted calls get minimal SCIM answers. ``calls`` records (method, path, body)."""

    def __init__(self, port: int = 0) -> None:
        self.script: dict[str, list[tuple[int, bytes, dict[str, str]]]] = {}
        self.calls: list[tuple[str, str, Any]] = []
        self.lock = threading.Lock()
        self.created = 0
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_args: Any) -> None:
                pass

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                body = json.loads(raw) if raw else None
                path = self.path.split("?", 1)[0].removeprefix("/scim")
                with stub.lock:
                    stub.calls.append((self.command, self.path, body))
                    key = f"{self.command} {path}"
                    scripted = stub.script.get(key)
                    answer = scripted.pop(0) if scripted else stub.default(self.command, path)
                status, data, headers = answer
                self.send_response(status)
                self.send_header("Content-Type", "application/scim+json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _answer

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/scim"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def default(self, method: str, path: str) -> tuple[int, bytes, dict[str, str]]:
        if method == "GET" and path == "/ServiceProviderConfig":
            return 200, json.dumps({"patch": {"supported": True}}).encode(), {}
        if method == "GET":
            return 200, json.dumps({"totalResults": 0, "Resources": []}).encode(), {}
        if method == "POST":
            self.created += 1
            return 201, json.dumps({"id": f"remote-{self.created}"}).encode(), {}
        if method == "DELETE":
            return 204, b"", {}
        return 200, b"{}", {}

    def posts(self) -> list[Any]:
        return [body for method, _path, body in self.calls if method == "POST"]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def add_target(svc: Any, url: str, token: str, **fields: Any) -> int:
    with transaction(svc, Actor.operator("test")) as ctx:
        data = targets.TargetInput(name=fields.pop("name", "downstream"), base_url=url,
                                   token=token, **fields)
        return targets.create(ctx, data).id


def drain(svc: Any) -> worker.DrainReport:
    return worker.drain(svc)
