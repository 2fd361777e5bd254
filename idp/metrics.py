"""Prometheus metrics (``/metrics``), with prometheus-client's multiprocess mode.

Each worker process writes its counters to memory-mapped files in one directory, and the
worker that answers a scrape adds them all up, so any worker gives the whole server's numbers.
``idp serve`` sets ``PROMETHEUS_MULTIPROC_DIR`` to ``{instance}/metrics`` (emptied at start)
before its workers start; under gunicorn the operator sets it (docs/deployment.md); without it
each process counts for itself (the Flask test client, a single process).

prometheus-client chooses where a value lives when the value is made, from the variable it
reads when first imported; ``idp serve`` imports it before it knows the instance directory, so
:func:`count_in_directory` makes that choice again. Every metric here has labels, so no value
exists before a request is counted: all of them are made after the choice, in the workers.

What is counted, and where:
- HTTP requests and their latency per route pattern (``/api/v1/users/<id>``, never the raw path,
  so the number of series stays bounded), in ``idp.app``'s request hooks;
- sign-in outcomes (``login.success``, ``login.failure`` by reason, ``login.locked``, ...) and
  every other audited action, where an audit row is written (``idp.storage.audit``): the
  audit log and the counters can never disagree;
- tokens issued by grant type, at the token endpoint;
- requests refused by a rate limit, by rule (``idp.web.ratelimit``);
- errors of the parts the IdP depends on (database, store, LDAP, SMTP), where they are caught;
- queue depths: mails waiting in the workers' queues, and the durable queues the ``/metrics``
  view reads from the database at scrape time.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
    values,
)
from prometheus_client.core import GaugeMetricFamily

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = CONTENT_TYPE_LATEST

HTTP_REQUESTS = Counter(
    "idp_http_requests_total",
    "HTTP requests answered, by route pattern, method and status code.",
    ["endpoint", "method", "status"],
)
HTTP_LATENCY = Histogram(
    "idp_http_request_duration_seconds",
    "Time from the first request hook to the response, by route pattern.",
    ["endpoint"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
SIGNINS = Counter(
    "idp_signins_total",
    "Sign-in events from the audit log (login.*): the outcome and, for refusals, the reason.",
    ["outcome", "reason"],
)
AUDIT_EVENTS = Counter("idp_audit_events_total", "Audit rows written, by action.", ["action"])
TOKENS = Counter(
    "idp_tokens_issued_total", "Successful token endpoint answers, by grant type.", ["grant_type"]
)
BACKEND_ERRORS = Counter(
    "idp_backend_errors_total",
    "Failures of the parts the IdP depends on: database, store, ldap, smtp.",
    ["backend"],
)
RATE_LIMITED = Counter(
    "idp_rate_limited_total",
    "Requests refused with 429 by a [rate_limits] rule, by rule.",
    ["rule"],
)
_MAIL_QUEUE = Gauge(
    "idp_mail_queue_depth",
    "Mails in the outbox table not yet sent or given up, as the workers' mail threads last saw it.",
    ["queue"],
    multiprocess_mode="livemax",
)

GRANT_TYPES = frozenset({
    "authorization_code",
    "refresh_token",
    "client_credentials",
    "urn:ietf:params:oauth:grant-type:device_code",
    "urn:ietf:params:oauth:grant-type:token-exchange",
    "urn:ietf:params:oauth:grant-type:jwt-bearer",
})
BACKENDS = frozenset({"database", "store", "ldap", "smtp", "sms"})
# Reasons are the code's own words; anything else (never expected) is counted as "other", so a
# value that came from outside can never add series.
_WORD = re.compile(r"[a-z][a-z0-9_.-]{0,39}")


def observe_request(endpoint: str | None, method: str, status: int, seconds: float) -> None:
    endpoint = endpoint or "unmatched"
    HTTP_REQUESTS.labels(endpoint, method, str(status)).inc()
    HTTP_LATENCY.labels(endpoint).observe(seconds)


def token_issued(grant_type: str) -> None:
    TOKENS.labels(grant_type if grant_type in GRANT_TYPES else "other").inc()


def rate_limited(rule: str) -> None:
    RATE_LIMITED.labels(rule if _WORD.fullmatch(rule) else "other").inc()


def mail_waiting(count: int) -> None:
    _MAIL_QUEUE.labels("mail").set(count)


def backend_error(backend: str) -> None:
    BACKEND_ERRORS.labels(backend if backend in BACKENDS else "other").inc()


def audited(action: str, details: object) -> None:
    """One audit row was written (called once per row, whichever path wrote it)."""
    action = action if _WORD.fullmatch(action) else "other"
    AUDIT_EVENTS.labels(action).inc()
    if action.startswith("login."):
        reason = details.get("reason") if isinstance(details, dict) else None
        reason = reason if isinstance(reason, str) and _WORD.fullmatch(reason) else ""
        SIGNINS.labels(action.removeprefix("login."), reason).inc()


class _Queues:
    def __init__(self, depths: Mapping[str, int]) -> None:
        self.depths = depths

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "idp_queue_depth", "Items waiting in durable queues, read at scrape time.",
            labels=["queue"],
        )
        for name, depth in sorted(self.depths.items()):
            family.add_metric([name], float(depth))
        yield family


def _forget_dead_workers(directory: str) -> None:
    """Live gauges (the mail queue) of worker processes that are gone would count forever:
    granian does not tell us when a worker exits, so the scrape looks for them."""
    for path in Path(directory).glob("gauge_live*_*.db"):
        pid = path.stem.rpartition("_")[2]
        if not pid.isascii() or not pid.isdigit():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            multiprocess.mark_process_dead(int(pid), directory)
        except PermissionError:
            continue


def exposition(queues: Mapping[str, int]) -> bytes:
    """The text format of every worker's metrics (or this process's, without the directory),
    and the depth of each durable queue in ``queues``."""
    directory = os.environ.get(MULTIPROC_ENV)
    if directory:
        _forget_dead_workers(directory)
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=directory)
    else:
        from prometheus_client import REGISTRY as registry
    text = generate_latest(registry)
    if not queues:
        return text
    scraped = CollectorRegistry()
    scraped.register(_Queues(queues))
    return text + generate_latest(scraped)


def count_in_directory(directory: Path) -> None:
    """From now on, in this process and the workers it forks, values live in files under
    ``directory`` (emptied first: an earlier run's files would add to this one's numbers)."""
    directory.mkdir(parents=True, exist_ok=True)
    for old in directory.glob("*.db"):
        old.unlink()
    os.environ[MULTIPROC_ENV] = str(directory)
    values.ValueClass = values.get_value_class()
