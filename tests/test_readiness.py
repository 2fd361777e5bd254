"""/readyz follows the database: 503 with the reason while PostgreSQL is unreachable, 200 again
when it is back, without rebuilding the app. And what several workers starting at once share
in the instance dir (generated secret key) is the same for all of them."""

from __future__ import annotations

import multiprocessing as mp
import socket
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy import create_engine
from sqlalchemy.engine import make_url

from idp.settings import load_settings


class TcpProxy:
    """A loopback TCP forwarder the test can cut and restore, standing in for a network
    outage between the IdP and its database (the shared PostgreSQL itself stays up)."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.port = 0
        self._listener: socket.socket | None = None
        self._open: list[socket.socket] = []
        self._lock = threading.Lock()

    def start(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(16)
        self.port = listener.getsockname()[1]
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, 5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._open += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def stop(self) -> None:
        if self._listener is not None:
            try:  # wakes the thread blocked in accept(); close() alone does not on Linux
                self._listener.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self._listener.close()
            self._listener = None
        with self._lock:
            for s in self._open:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()
            self._open.clear()


@pytest.fixture
def proxied_pg_url(pg_url: str) -> Iterator[tuple[str, TcpProxy]]:
    url = make_url(pg_url)
    proxy = TcpProxy(url.host or "127.0.0.1", url.port or 5432)
    proxy.start()
    yield url.set(host="127.0.0.1", port=proxy.port).render_as_string(False), proxy
    proxy.stop()


def test_readyz_follows_a_database_outage_without_restart(make_app, proxied_pg_url):
    url, proxy = proxied_pg_url
    app = make_app(database_url=url, database={"connect_timeout": 2})
    client = app.test_client()
    assert client.get("/readyz").status_code == 200

    proxy.stop()
    down = client.get("/readyz")
    assert down.status_code == 503
    body = down.get_json()
    assert body["status"] == "unavailable"
    assert "is not reachable" in body["checks"]["database"]
    assert body["checks"]["store"] != "ok"  # the embedded store lives in that database
    assert client.get("/healthz").status_code == 200  # alive, only not ready

    proxy.start()
    up = client.get("/readyz")
    assert up.status_code == 200, up.get_json()
    assert up.get_json()["checks"] == {"database": "ok", "store": "ok"}


def test_readyz_reason_never_shows_the_database_password(make_app):
    app = make_app()
    unreachable = create_engine(
        "postgresql+psycopg://idp:pw-never-shown@127.0.0.1:9/idp",
        connect_args={"connect_timeout": 1},
    )
    svc = app.extensions["idp"]
    settings = load_settings(
        {
            "instance_dir": svc.settings.instance_dir,
            "database_url": unreachable.url.render_as_string(False),
        },
        environ={},
    )
    app.extensions["idp"] = replace(svc, engine=unreachable, settings=settings)
    resp = app.test_client().get("/readyz")
    assert resp.status_code == 503
    assert "is not reachable" in resp.get_json()["checks"]["database"]
    assert "pw-never-shown" not in resp.get_data(as_text=True)
    unreachable.dispose()


def _start_worker(instance: str, start, results) -> None:
    from idp.services import build_services
    from idp.settings import load_settings

    start.wait(30)
    svc = build_services(load_settings({"instance_dir": instance}, environ={}))
    results.put(svc.secret_key)


@pytest.mark.slow
def test_workers_starting_together_share_one_secret_key(tmp_path: Path):
    instance = tmp_path / "instance"
    ctx = mp.get_context("spawn")
    start, results = ctx.Event(), ctx.Queue()
    procs = [
        ctx.Process(target=_start_worker, args=(str(instance), start, results)) for _ in range(6)
    ]
    for p in procs:
        p.start()
    start.set()
    keys = [results.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    assert len(set(keys)) == 1 and len(keys[0]) >= 48
    assert (instance / "secret_key").read_text() == keys[0]
    assert sorted(p.name for p in instance.iterdir()) == ["secret_key"]  # no temp files left
