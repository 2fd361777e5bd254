"""The OIDC engine tests' app: one per module, with users and clients."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from oidc_support import Env, build_env

# The tests' RPs (JWKS, sector documents, back-channel receivers) are local http servers.
LOCAL_RPS = {"allow_http": True, "allow_private_addresses": True}


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> Iterator[Env]:
    with build_env(tmp_path_factory, LOCAL_RPS) as built:
        yield built
