"""Optional OpenTelemetry tracing (``[tracing] enabled``): a span per request (the Flask
instrumentation, W3C ``traceparent`` honoured) and per SQL statement (the SQLAlchemy
instrumentation), exported over OTLP/HTTP or printed.

Off by default and free when off: ``create_app`` imports this module only when tracing is on,
so no OpenTelemetry package is even loaded otherwise. The packages come with the ``otel`` extra
(``pip install 'idp[otel]'``); asking for tracing without them stops the start with one line.
"""

from __future__ import annotations

from typing import Any

from .errors import ConfigError


class TracingUnavailable(ConfigError):
    """Tracing is on but OpenTelemetry is not installed."""


_PACKAGES = (
    "opentelemetry.exporter.otlp.proto.http.trace_exporter",
    "opentelemetry.instrumentation.flask",
    "opentelemetry.instrumentation.sqlalchemy",
    "opentelemetry.sdk.resources",
    "opentelemetry.sdk.trace",
    "opentelemetry.sdk.trace.export",
    "opentelemetry.sdk.trace.sampling",
)


def _unavailable(name: str | None) -> TracingUnavailable:
    return TracingUnavailable(
        f"tracing is on but OpenTelemetry is not installed ({name}): "
        "pip install 'idp[otel]', or set [tracing] enabled = false"
    )


def check_installed() -> None:
    """TracingUnavailable unless every package ``install`` imports can be found (found, not
    imported: ``idp serve`` checks this before its workers start, in a process that keeps
    nothing)."""
    import importlib.util

    for name in _PACKAGES:
        try:
            found = importlib.util.find_spec(name) is not None
        except ImportError:  # a parent package is missing
            found = False
        if not found:
            raise _unavailable(name)


def install(app: Any, engine: Any, cfg: Any) -> Any:
    """Instrument ``app`` and ``engine``; returns the tracer provider (flushed at exit)."""
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.instrumentation.flask import FlaskInstrumentor
        from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
        from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
    except ImportError as exc:
        raise _unavailable(exc.name) from None

    provider = TracerProvider(
        resource=Resource.create({"service.name": cfg.service_name}),
        sampler=ParentBased(TraceIdRatioBased(cfg.sample_ratio)),
    )
    exporter = (
        OTLPSpanExporter(endpoint=cfg.endpoint) if cfg.exporter == "otlp" else ConsoleSpanExporter()
    )
    provider.add_span_processor(BatchSpanProcessor(exporter))
    # The provider is passed, not set globally: several apps in one process (tests) each keep
    # their own, and nothing else in the process is traced by surprise.
    FlaskInstrumentor().instrument_app(app, tracer_provider=provider)
    # Its declared range stops below SQLAlchemy 2.1, which it traces all the same (the
    # engine's cursor events did not change): tests/test_tracing.py holds that.
    SQLAlchemyInstrumentor().instrument(
        engine=engine, tracer_provider=provider, skip_dep_check=True
    )
    app.extensions["idp_tracer_provider"] = provider
    return provider
