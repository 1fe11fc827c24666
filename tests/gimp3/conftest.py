"""The real GIMP 3 for every test here: found or built once (harness.ensure_gimp), else skipped."""

import pytest

from tests.gimp3 import harness


@pytest.fixture(scope="session")
def gimp_mode():
    try:
        return harness.ensure_gimp()
    except harness.Unavailable as reason:
        pytest.skip(str(reason))
