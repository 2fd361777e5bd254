"""Helpers shared by test packages (plain functions; fixtures live in conftest.py files)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

IN_CI = os.environ.get("CI", "").lower() == "true"


def require(condition: bool, reason: str) -> None:
    """Skip (locally) or fail (in CI) when a tier's dependency is missing."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"CI needs this tier: {reason}")
    pytest.skip(reason)


def base_overrides(instance: Path, **extra: Any) -> dict[str, Any]:
    # Settings changed by another app on the same database (a CLI run, a second "worker") are
    # read before every request, as tests expect them at once; the poll window has its own test.
    overrides: dict[str, Any] = {
        "instance_dir": str(instance),
        "logging": {"access_log": False},
    }
    overrides.update(extra)
    overrides["server"] = {"reload_poll_seconds": 0, **extra.get("server", {})}
    return overrides


def init_database(overrides: dict[str, Any]) -> None:
    """What `idp init` does to storage: migrate, then create signing keys and role templates."""
    from idp.services import build_services
    from idp.settings import load_settings
    from idp.storage.migrate import upgrade
    from idp.storage.seed import seed_role_templates

    svc = build_services(load_settings(overrides))
    upgrade(svc.engine)
    svc.keys.ensure()
    with svc.sessions.begin() as db:
        seed_role_templates(db)
    svc.engine.dispose()
