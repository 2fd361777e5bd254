"""schemathesis drives every operation of the OpenAPI document against the real app (WSGI), with
an Administrator's token: no 5xx, every response (errors included) matches its documented
schema, status code and content type; with generated invalid input, the app refuses (4xx).
The document is the one the app serves, so it is the code's own declaration that is checked."""

from __future__ import annotations

import os

import pytest
import schemathesis
from api_kit import service_token
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.config import SchemathesisConfig
from schemathesis.core.parameters import ParameterLocation
from schemathesis.specs.openapi.checks import negative_data_rejection

from idp.web.api.framework import OPERATIONS, PREFIX

pytestmark = pytest.mark.slow

_OPS = sorted({(op.method, PREFIX + op.path) for op in OPERATIONS})


def _invalid_part_never_sent(case) -> bool:
    """Whether the request the app receives is a valid one after all, so a 200 is right (every
    other check still runs): the only invalid part was a header, and the headers that count are
    replaced on the way (the test's own Authorization; If-Match is text whatever was generated),
    or an empty array in the query string, which is sent as no parameter at all."""
    meta = case.meta
    negative = {loc for loc, part in meta.components.items() if part.mode.is_negative}
    if negative and negative <= {ParameterLocation.HEADER}:
        return True
    return bool(case.query) and any(value == [] for value in case.query.values())


# A well-formed request may still be refused by the state it meets: 404 (a reference to
# nothing), 409 (a clash) and 412 (a generated If-Match that is not the resource's version).
_CONFIG = SchemathesisConfig.from_str(
    """
[checks.positive_data_acceptance]
expected-statuses = ["2xx", "3xx", "401", "403", "404", "409", "412", "429", "5xx"]
"""
)


@pytest.fixture(scope="module")
def api_app(tmp_path_factory):
    from support import base_overrides, init_database

    from idp.app import create_app

    instance = tmp_path_factory.mktemp("schemathesis") / "instance"
    instance.mkdir()
    overrides = base_overrides(instance)
    init_database(overrides)
    app = create_app(overrides)
    app.config["TESTING"] = True
    app.config["_token"] = service_token(app)
    yield app
    app.extensions["idp"].engine.dispose()


@pytest.fixture(scope="module")
def api_schema(api_app):
    return schemathesis.openapi.from_wsgi("/api/v1/openapi.json", api_app, config=_CONFIG)


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
@pytest.mark.parametrize(("method", "path"), _OPS, ids=[f"{m} {p}" for m, p in _OPS])
def test_operation_conforms(api_app, api_schema, method, path, mode):
    operation = api_schema[path][method]
    headers = {"Authorization": f"Bearer {api_app.config['_token']}"}

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=30,
        deadline=None,
        # The same examples on every CI run (a finding is then reproducible, not a flake);
        # fresh ones on every local run.
        derandomize=os.environ.get("CI") == "true",
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def run(case):
        excluded = []
        if mode is GenerationMode.NEGATIVE and _invalid_part_never_sent(case):
            excluded.append(negative_data_rejection)
        case.call_and_validate(headers=headers, excluded_checks=excluded)

    run()
