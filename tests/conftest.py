"""Shared test setup: headless plotting, the --runslow switch, small cached fits."""

import os

import matplotlib

matplotlib.use("Agg")
os.environ.setdefault("PYTHONHASHSEED", "0")

import pytest  # noqa: E402
from hypothesis import settings  # noqa: E402

# Hypothesis explores new inputs on every run unless told otherwise; a suite that must be
# green on every machine runs it derandomized (a fixed, input-derived seed), with no example
# database and no deadline (CI machines are slow and shared). Every crash it has found is
# kept as an explicit @example on its test. `HYPOTHESIS_PROFILE=explore` opts back in to
# random exploration locally (to look for new failures).
settings.register_profile("ci", derandomize=True, database=None, deadline=None,
                          print_blob=True)
settings.register_profile("explore", deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

SHARED_DATA = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data")


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", default=False,
                     help="also run tests marked slow (long statistical checks)")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--runslow"):
        return
    skip = pytest.mark.skip(reason="slow statistical check: run with --runslow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def sleepstudy():
    import bayes_hlm as bh

    return bh.datasets.load("sleepstudy")


@pytest.fixture(scope="session")
def sleep_fit(sleepstudy):
    """A small full-model fit of the sleepstudy random-slope model, shared by tests."""
    import warnings

    import bayes_hlm as bh

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return bh.fit("Reaction ~ Days + (Days | Subject)", sleepstudy, method="full",
                      chains=2, draws=500, tune=500, seed=11)
