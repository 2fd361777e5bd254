"""OpenTelemetry tracing ([tracing]): with it on, a request's server span and the SQL statements
it ran reach a real OTLP/HTTP receiver on loopback (decoded with the OTLP protobuf classes),
joined to the caller's trace by its W3C traceparent; with it off, no OpenTelemetry module is
even imported; on without the packages, the start stops with one line."""

from __future__ import annotations

import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest


class _Receiver(BaseHTTPRequestHandler):
    bodies: list[bytes]

    def do_POST(self):  # noqa: N802 - http.server's name
        length = int(self.headers.get("Content-Length", "0"))
        self.server.bodies.append((self.path, self.rfile.read(length)))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def receiver():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    server.bodies = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _spans(bodies):
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    out = []
    for path, body in bodies:
        assert path == "/v1/traces"
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        for resource_spans in request.resource_spans:
            attrs = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    out.append((attrs, span))
    return out


def test_request_and_sql_spans_reach_an_otlp_receiver(make_app, receiver):
    port = receiver.server_address[1]
    app = make_app(tracing={
        "enabled": True,
        "endpoint": f"http://127.0.0.1:{port}/v1/traces",
        "service_name": "idp-under-test",
    })
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    resp = app.test_client().get(
        "/readyz", headers={"traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"}
    )
    assert resp.status_code == 200
    provider = app.extensions["idp_tracer_provider"]
    assert provider.force_flush(10_000)
    spans = _spans(receiver.bodies)
    assert spans, "nothing exported"
    assert {attrs["service.name"] for attrs, _ in spans} == {"idp-under-test"}
    server = [s for _, s in spans if s.kind == s.SPAN_KIND_SERVER]
    assert [s.name for s in server] == ["GET /readyz"]
    assert server[0].trace_id.hex() == trace_id
    sql = [s for _, s in spans if s.kind == s.SPAN_KIND_CLIENT
           and any(a.key == "db.system" or a.key == "db.system.name" for a in s.attributes)]
    assert sql, [s.name for _, s in spans]
    # The readiness probe's statement ran inside the request: a child of its server span.
    inside = [s for s in sql if s.trace_id.hex() == trace_id]
    assert inside and all(s.parent_span_id == server[0].span_id for s in inside)
    provider.shutdown()


def _python(code: str, tmp_path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "IDP_INSTANCE_DIR": str(tmp_path / "instance")},
    )


def test_off_imports_nothing_of_opentelemetry(tmp_path):
    out = _python(
        "import sys\n"
        "from idp.app import create_app\n"
        "create_app()\n"
        "print(sorted(m for m in sys.modules if m.startswith('opentelemetry')))\n",
        tmp_path,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_on_without_the_packages_stops_with_one_line(tmp_path):
    out = _python(
        "import sys\n"
        "sys.modules['opentelemetry.instrumentation.flask'] = None\n"
        "from idp.app import create_app\n"
        "from idp.errors import ConfigError\n"
        "try:\n"
        "    create_app({'tracing': {'enabled': True}})\n"
        "except ConfigError as exc:\n"
        "    print(exc)\n",
        tmp_path,
    )
    assert out.returncode == 0, out.stderr
    line = out.stdout.strip()
    assert "\n" not in line
    assert "pip install 'idp[otel]'" in line and "opentelemetry" in line
