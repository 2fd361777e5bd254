"""The coverage-guided fuzz target for the inbound SAML reader (tests/fuzz/fuzz_saml_inbound.py)
run for a bounded number of inputs and time, seeded, in a subprocess: it fails on any crash (an
exception other than the reader's ``BadMessage``), naming the input libFuzzer kept. Where
atheris cannot be installed (no wheel for the Python in use), the same property runs with
hypothesis on a large budget instead, never a skip."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from saml_fuzz_kit import TYPED_ERRORS, hostile_documents, read_inbound

pytestmark = pytest.mark.slow

HERE = Path(__file__).resolve().parent
RUNS = 300_000
SECONDS = 60


def test_inbound_reader_survives_coverage_guided_fuzzing(tmp_path):
    if importlib.util.find_spec("atheris") is None:
        return _hypothesis_fallback()
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    done = subprocess.run(
        [
            sys.executable,
            str(HERE / "fuzz_saml_inbound.py"),
            f"-runs={RUNS}",
            f"-max_total_time={SECONDS}",
            "-seed=1",
            "-timeout=10",
            "-max_len=8192",
            f"-dict={HERE / 'saml.dict'}",
            f"-artifact_prefix={tmp_path}/",
            str(corpus),
        ],
        capture_output=True,
        text=True,
        timeout=SECONDS + 120,
    )
    crashes = sorted(p.name for p in tmp_path.glob("crash-*"))
    assert done.returncode == 0 and not crashes, (crashes, done.stderr[-3000:])
    assert "Done" in done.stderr, done.stderr[-1000:]


@settings(
    max_examples=4_000,  # about a minute, like the atheris run
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)
@given(case=hostile_documents(), mode=st.sampled_from([0, 1, 2]), noise=st.binary(max_size=64))
def _hypothesis_fallback(case, mode, noise):
    """Without atheris: the same property on a large budget of generated documents, some with
    their tail replaced by random bytes."""
    data = case[0] if not noise else case[0][: len(noise)] + noise
    try:
        read_inbound(data, mode)
    except TYPED_ERRORS:
        pass
