"""granian's main process and the workers' app factory for ``idp serve``.

``idp serve`` checks the instance (settings, database, keys: the services, not a whole app),
prints its URLs and then replaces itself (``exec``, same process id) with ``python -m
idp.serving``: the main process lives as long as the server, and the command line's imports
(about a thousand modules) would stay in its memory for nothing. This module imports granian
and the standard library only; each worker builds the app through :func:`worker_app`, the one
full build of a start. Modules few requests need (pysaml2's signature layer and XML schema,
scim2-models, ldap3, Pillow, segno, openpyxl, OpenTelemetry when tracing is off) are imported
by the first request that needs them (tests/test_lean_imports.py).
"""

from __future__ import annotations

import gc
import json
import sys
from typing import Any


def worker_app() -> Any:
    """The app of one server worker: its mail thread keeps running, so mail queued by another
    worker, or before a restart, goes out without waiting for a page to queue more; and with
    ``[provisioning] serve_drain`` a provisioning pusher thread (a process of its own held
    ~100 MB for a loop that mostly sleeps)."""
    # The cyclic garbage collector is off while the app is built: the build creates several
    # hundred thousand objects that all live as long as the worker, and the collector would walk
    # them again and again (~10 % of a worker's start). Afterwards they are frozen (``gc.freeze``,
    # after one collection for the little garbage the build left): every later collection in
    # this worker skips them.
    gc.disable()
    try:
        from .app import create_app

        app = create_app()
    finally:
        gc.enable()
    gc.collect()
    gc.freeze()
    svc = app.extensions["idp"]
    svc.mail_queue.start()
    if svc.settings.provisioning.serve_drain:
        from .provisioning.worker import start_in_thread

        start_in_thread(svc)
    return app


def main(argv: list[str]) -> None:
    """Run granian with the options ``idp serve`` chose (one JSON object)."""
    from granian import Granian
    from granian.constants import HTTPModes, Interfaces

    options = json.loads(argv[0])
    Granian(
        target="idp.serving:worker_app",
        factory=True,
        interface=Interfaces.WSGI,
        address=options["host"],
        port=options["port"],
        workers=options["workers"],
        blocking_threads=options["threads"],
        http=HTTPModes.http1 if options["http"] == "1" else HTTPModes.auto,
        log_access=False,
        respawn_failed_workers=True,
    ).serve()


if __name__ == "__main__":
    main(sys.argv[1:])
