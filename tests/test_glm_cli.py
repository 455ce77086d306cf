"""``bayes-hlm fit --family/--link`` (#15): the summary and the JSON state the family and link,
``sigma`` only where the family has one, ``dispersion`` where it has other parameters; a
two-level string response in a CSV follows R's rule (first level = failure; ``--levels``)."""

import json

import numpy as np
import pytest

from bayes_hlm.cli import main, read_table
from bayes_hlm.families import get_family
from bayes_hlm.spec.build import build_spec

FIT = ["--method", "full", "--chains", "1", "--draws", "40", "--tune", "40", "--seed", "2"]


@pytest.fixture(scope="module")
def csv(tmp_path_factory):
    rng = np.random.default_rng(5)
    g = np.repeat(np.arange(8), 6)
    x = rng.normal(size=g.size)
    yes = rng.random(g.size) < 1 / (1 + np.exp(-(0.3 + x)))
    counts = rng.poisson(np.exp(0.5 + 0.3 * x))
    path = tmp_path_factory.mktemp("glmcli") / "d.csv"
    path.write_text("outcome,n,x,g\n" + "\n".join(
        f"{'yes' if a else 'no'},{c},{b:.4f},g{k}" for a, c, b, k in zip(yes, counts, x, g)) + "\n")
    return str(path), yes.astype(float)


def test_string_response_is_coded_as_r_does_and_levels_reorder_it(csv):
    path, yes = csv
    fam = get_family("bernoulli")
    df = read_table(path, "outcome ~ x + (1|g)", [], {})
    assert list(df["outcome"].cat.categories) == ["no", "yes"]  # R's sort order: "no" fails
    np.testing.assert_array_equal(build_spec("outcome ~ x + (1|g)", df, family=fam).design.y, yes)
    df = read_table(path, "outcome ~ x + (1|g)", [], {"outcome": ["yes", "no"]})
    np.testing.assert_array_equal(build_spec("outcome ~ x + (1|g)", df, family=fam).design.y,
                                  1 - yes)


def test_bernoulli_json_states_family_and_link_without_sigma_or_reml(csv, capsys):
    rc = main(["fit", "outcome ~ x + (1|g)", csv[0], *FIT, "--family", "bernoulli",
               "--link", "probit", "--json"])
    cap = capsys.readouterr()
    assert rc == 0, cap.err
    d = json.loads(cap.out)
    assert (d["family"], d["link"]) == ("bernoulli", "probit")
    assert "sigma" not in d and "dispersion" not in d
    assert "reml" not in d  # a Gaussian REML fit is no reference for a binary outcome
    assert set(d["fixed"]) == {"Intercept", "x"} and d["fixed"]["x"]["mean"] > 0


def test_negativebinomial_summary_and_json_report_the_dispersion(csv, capsys, tmp_path):
    out = tmp_path / "nb.json"
    rc = main(["fit", "n ~ x + (1|g)", csv[0], *FIT, "--family", "negativebinomial",
               "--out", str(out)])
    cap = capsys.readouterr()
    assert rc == 0, cap.err
    assert "Family: negativebinomial" in cap.out and "Links: mu = log; alpha = identity" in cap.out
    assert "Family Specific Parameters:" in cap.out and "sigma" not in cap.out
    d = json.loads(out.read_text())
    assert (d["family"], d["link"]) == ("negativebinomial", "log")
    assert "sigma" not in d and set(d["dispersion"]) == {"alpha"}
    assert d["dispersion"]["alpha"]["mean"] > 0


@pytest.mark.parametrize("flags, words", [
    (["--family", "poisso"], ["unknown family", "poisson"]),
    (["--family", "poisson", "--link", "logit"], ["link 'logit'", "poisson", "log"]),
])
def test_bad_family_or_link_is_a_usage_error_before_reading_data(flags, words, capsys):
    rc = main(["fit", "y ~ x + (1|g)", "/nonexistent.csv", *flags])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert err.startswith("error: ") and err.count("\n") == 1
    for w in words:
        assert w in err, err


def test_dask_engine_refuses_other_families(capsys):
    rc = main(["fit", "y ~ x + (1|g)", "/nonexistent.csv", "--engine", "dask", "--family", "poisson"])
    assert rc == 2 and "Gaussian models only" in capsys.readouterr().err


def test_separation_is_one_warning_line_naming_the_level(tmp_path, capsys):
    rng = np.random.default_rng(1)
    x = rng.normal(size=48)
    arm = np.where(np.arange(48) % 4 == 0, "new", "old")
    y = np.where(arm == "new", "yes", np.where(rng.random(48) < 0.5, "yes", "no"))
    path = tmp_path / "sep.csv"
    path.write_text("y,x,arm,g\n" + "\n".join(
        f"{a},{b:.4f},{c},g{i % 6}" for i, (a, b, c) in enumerate(zip(y, x, arm))) + "\n")
    rc = main(["fit", "y ~ x + arm + (1|g)", str(path), *FIT, "--family", "bernoulli", "--json",
               "--levels", "arm=old,new"])
    err = capsys.readouterr().err
    assert rc == 0, err
    lines = [ln for ln in err.splitlines() if "separation" in ln]
    assert len(lines) == 1 and lines[0].startswith("warning: quasi-complete separation"), err
    assert "['armnew']" in lines[0] and "every row with armnew = 1 is a success" in lines[0]
