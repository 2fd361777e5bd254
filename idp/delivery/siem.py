"""The audit stream for a SIEM ([audit] stream): every committed audit row as one JSON line,
appended to a file or sent to syslog (RFC 5424 over UDP, or a local Unix socket). A sink is
called after the commit (idp.storage.audit); what fails here is logged and never reaches the
request whose change was committed."""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..storage.audit import stream_record

log = logging.getLogger(__name__)

# <PRI> of authpriv.info (facility 10, severity 6): security events, readable by admins only.
_PRI = 10 * 8 + 6
Sink = Callable[[list[Mapping[str, Any]]], None]


def _lines(rows: list[Mapping[str, Any]]) -> list[str]:
    return [json.dumps(stream_record(r), sort_keys=True, separators=(",", ":")) for r in rows]


class FileSink:
    """Appends the lines to one file (0600), whole lines at a time across threads."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def __call__(self, rows: list[Mapping[str, Any]]) -> None:
        text = "".join(line + "\n" for line in _lines(rows))
        with self._lock:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            with os.fdopen(fd, "a", encoding="utf-8") as f:
                f.write(text)


class SyslogSink:
    """One RFC 5424 datagram per row to ``host:port`` (UDP) or a Unix datagram socket path."""

    def __init__(self, address: str) -> None:
        if address.startswith("/"):
            self._family, self._target = socket.AF_UNIX, address
        else:
            host, _, port = address.rpartition(":")
            self._family, self._target = socket.AF_INET, (host.strip("[]"), int(port))
            if ":" in host:
                self._family = socket.AF_INET6
        self._host = socket.gethostname() or "-"

    def __call__(self, rows: list[Mapping[str, Any]]) -> None:
        stamp = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        with socket.socket(self._family, socket.SOCK_DGRAM) as sock:
            for line in _lines(rows):
                message = f"<{_PRI}>1 {stamp} {self._host} idp - audit - {line}"
                sock.sendto(message.encode(), self._target)


def make_audit_sink(audit: Any, instance_dir: str) -> Sink | None:
    """The sink [audit] stream names, or None when streaming is off."""
    if audit.stream == "file":
        path = Path(audit.stream_path)
        return FileSink(path if path.is_absolute() else Path(instance_dir) / path)
    if audit.stream == "syslog":
        return SyslogSink(audit.syslog_address)
    return None
