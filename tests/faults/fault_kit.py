"""Helpers of the fault tests: row counts to prove nothing changed, a real `idp serve` that a
test may stop, kill and start again on the same instance."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import secret_watch
from sqlalchemy import func, select
from test_serve import clean_env, free_port, stop, wait_for

from idp.storage.models import Base

IDP = str(Path(sys.executable).with_name("idp"))


def row_counts(svc: Any, skip: tuple[str, ...] = ("kv_store",)) -> dict[str, int]:
    """Rows per table of the whole schema (but the short-lived store's)."""
    with svc.sessions() as db:
        return {
            name: db.scalar(select(func.count()).select_from(table))
            for name, table in Base.metadata.tables.items()
            if name not in skip
        }


class Served:
    """``idp init`` once, then ``idp serve`` started, stopped or killed as the test says."""

    def __init__(self, workdir: Path, workers: int = 2, **env: str) -> None:
        self.workdir = workdir
        self.workers = workers
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.env = clean_env(
            IDP_INSTANCE_DIR=str(workdir / "instance"), IDP_ISSUER=self.base, **env
        )
        self.proc: subprocess.Popen | None = None
        self.log_path = workdir / "server.log"
        secret_watch.watch_file(self.log_path)

    def idp(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        done = subprocess.run(
            [IDP, *args], cwd=self.workdir, env=self.env, capture_output=True, text=True,
            timeout=120,
        )
        if check:
            assert done.returncode == 0, done.stderr
        return done

    def idp_json(self, *args: str) -> dict:
        out = json.loads(self.idp(*args, "--json").stdout)
        secret_watch.register_json(out)  # client secrets, passwords, tokens it printed
        return out

    def start(self) -> None:
        with self.log_path.open("a") as log:
            self.proc = subprocess.Popen(
                [IDP, "serve", "--workers", str(self.workers), "--port", str(self.port)],
                cwd=self.workdir, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        wait_for(f"{self.base}/readyz", 200, 60)

    def stop(self, sig: int = signal.SIGINT) -> None:
        if self.proc is not None:
            stop(self.proc, sig)
            self.proc = None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")
