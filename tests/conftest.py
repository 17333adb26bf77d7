import os

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile("ci", max_examples=30, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache_dir(tmp_path_factory):
    """Every test session compiles into its own cache directory (tests that need another one override it)."""
    if "PREPJIT_CACHE_DIR" not in os.environ or not os.environ.get("PREPJIT_TEST_KEEP_CACHE"):
        os.environ["PREPJIT_CACHE_DIR"] = str(tmp_path_factory.mktemp("prepjit-cache"))
    yield
