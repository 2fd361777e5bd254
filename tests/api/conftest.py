"""Fixtures the admin API's test modules share (``svc`` and ``app`` come from tests/conftest.py).

``admin`` is an Administrator calling /api/v1 through a ``Caller``; a module that sends its own
requests defines ``admin`` as the bare service token instead."""

from __future__ import annotations

import pytest
from directory_api_kit import Caller, service_caller


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def admin(app) -> Caller:
    return service_caller(app)
