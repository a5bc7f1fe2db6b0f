"""Hypothesis profiles of the fuzz suites (docs/testing.md).

`fuzz` (the default, what `make test` runs): a fixed, derandomized budget per target so a CI
run is reproducible and the whole directory stays well under a minute on a 2-core machine.
`long`: a random campaign, 50x the examples (scale with VOXBUS_FUZZ_SCALE), failures kept
in the local example database (.hypothesis/) so a rerun replays them first.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, settings

from tests.fuzz.budget import PROFILE

_COMMON = settings(
    deadline=None,  # no timing assertions: a slow CI machine is not a failure
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,  # a failure prints @reproduce_failure(...) for the exact example
)

settings.register_profile("fuzz", _COMMON, derandomize=True, database=None)
settings.register_profile("long", _COMMON, derandomize=False)
settings.load_profile(PROFILE)


@pytest.fixture(autouse=True)
def _quiet_logs() -> Iterator[None]:
    """Thousands of refused inputs log thousands of warnings: formatting them would cost
    more than the examples. Failures still show the exception and the example."""
    logging.disable(logging.CRITICAL)
    yield
    logging.disable(logging.NOTSET)
