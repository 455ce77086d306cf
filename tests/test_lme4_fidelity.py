"""Issue 19: formulas, CSVs, level order and names as lme4 / R read them.

Reference numbers: ``tests/fixtures/lme4_fidelity.json`` (R 4.2, lme4 1.1-31), made with
``tests/r/make_fidelity_fixtures.R`` from the CSVs beside it; the tests never need R.
"""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bayes_hlm.cli import main, read_table
from bayes_hlm.spec.build import build_spec
from bayes_hlm.spec.collate import r_sort_key, r_sorted
from bayes_hlm.spec.formula import parse_formula

ROOT = Path(__file__).resolve().parents[1]
FIX = ROOT / "tests" / "fixtures"
REF = json.loads((FIX / "lme4_fidelity.json").read_text())
MACHINES = str(FIX / "fidelity_machines.csv")
ALFALFA = str(FIX / "fidelity_alfalfa.csv")

#: case -> (our formula, REML?) for the lme4 fits in the fixture
CASES = {
    "machines_dblbar": ("score ~ Machine + (Machine || Worker)", True),
    "machines_dblbar_ml": ("score ~ Machine + (Machine || Worker)", False),
    "machines_diag": ("score ~ Machine + diag(Machine | Worker)", True),
    "machines_corr": ("score ~ Machine + (Machine | Worker)", True),
    "machines_nested": ("score ~ Machine + (1 | Worker/Machine)", True),
    "alfalfa": ("Yield ~ Date + (1 | Block)", True),
}
#: lme4 writes the diag() columns of the fixture as dummy(Machine, "B") etc.
DIAG_TERMS = {'dummy(Machine, "B")': "MachineB", 'dummy(Machine, "C")': "MachineC"}


def run(argv, capsys):
    rc = main(argv)
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def _rel(a, b, atol=1e-4):
    return abs(a - b) <= 5e-5 * abs(b) + atol


@pytest.fixture(scope="module")
def fits():
    from bayes_hlm.reml import reml

    out = {}
    for case, (formula, is_reml) in CASES.items():
        path = ALFALFA if case == "alfalfa" else MACHINES
        df = read_table(path, formula, [], {})
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out[case] = reml(formula, df, method="REML" if is_reml else "ML")
    return out


# ---------------------------------------------------------------- item 1: CSVs as read.csv

def test_level_named_none_is_data_and_only_na_and_empty_are_missing():
    df = read_table(ALFALFA, CASES["alfalfa"][0], [], {})
    assert list(df["Date"].cat.categories) == REF["alfalfa_levels"] == ["None", "O7", "S1", "S20"]
    assert int((df["Date"] == "None").sum()) == 6           # every "None" row kept
    assert int(df["Yield"].isna().sum()) == 2               # the NA cell and the empty cell


@pytest.mark.parametrize("token", ["None", "NULL", "null", "nan", "N/A", "n/a", "<NA>", "#N/A",
                                   "NaN", "-NaN", "1.#IND", "n.a."])
def test_pandas_na_tokens_are_ordinary_labels(tmp_path, token):
    p = tmp_path / "t.csv"
    p.write_text("y,f,g\n" + "\n".join(f"{i},{[token, 'b'][i % 2]},g{i % 3}" for i in range(12)))
    df = read_table(str(p), "y ~ f + (1|g)", [], {})
    assert list(df["f"].cat.categories) == r_sorted([token, "b"])
    assert not df["f"].isna().any()


def test_nan_in_numeric_column_is_missing_as_in_r(tmp_path):
    p = tmp_path / "t.csv"
    p.write_text("y,x,g\n1.5,NaN,a\n2,1,b\n3,2,a\nNA,3,b\n,4,a\n")
    df = read_table(str(p), "y ~ x + (1|g)", [], {})
    assert pd.api.types.is_float_dtype(df["x"]) and int(df["x"].isna().sum()) == 1
    assert int(df["y"].isna().sum()) == 2


def test_alfalfa_cli_matches_lme4(capsys, tmp_path):
    out = tmp_path / "a.json"
    rc, _, err = run(["reml", CASES["alfalfa"][0], ALFALFA, "--levels", "Date=None,S1,S20,O7",
                      "--out", str(out)], capsys)
    assert rc == 0, err
    assert "dropped 2 of 24 rows" in err
    d = json.loads(out.read_text())
    ref = REF["cases"]["alfalfa"]
    assert d["nobs"] == ref["nobs"] == 22
    assert _rel(d["reml_criterion"], ref["reml_criterion"])
    # --levels reorders (reference None kept): compare the level-order-free quantities
    assert _rel(d["sigma"], ref["sigma"]) and _rel(d["logLik"], ref["logLik"])
    assert _rel(d["fixed"]["DateS1"]["estimate"] - d["fixed"]["DateO7"]["estimate"],
                ref["fixed"]["DateS1"] - ref["fixed"]["DateO7"])


def test_na_values_option(tmp_path, capsys):
    p = tmp_path / "t.csv"
    p.write_text("y,f,g\n" + "\n".join(
        f"{'.' if i == 3 else i},{['NA', 'b'][i % 2]},g{i % 3}" for i in range(12)))
    df = read_table(str(p), "y ~ f + (1|g)", [], {}, na_values=["."])
    assert int(df["y"].isna().sum()) == 1                    # "." is missing
    assert list(df["f"].cat.categories) == ["b", "NA"]       # "NA" now a label (as na.strings=".")
    df = read_table(str(p), "y ~ f + (1|g)", [], {}, na_values=[".", "NA"])
    assert int(df["f"].isna().sum()) == 6
    rc, _, err = run(["reml", "y ~ 1 + (1|g)", str(p), "--na-values", '[".", "NA"]'], capsys)
    assert rc == 0, err
    rc, _, err = run(["reml", "y ~ 1 + (1|g)", str(p)], capsys)  # "." is text in numeric y
    assert rc == 1 and "--na-values" in err


def test_levels_naming_absent_label_is_an_error(capsys):
    rc, _, err = run(["reml", CASES["alfalfa"][0], ALFALFA, "--levels", "Date=None,S1,S20,O7,X9"],
                     capsys)
    assert rc == 1
    line = err.strip().splitlines()[-1]
    assert line.startswith("error:") and "'Date'" in line and "X9" in line
    rc, _, err = run(["reml", CASES["alfalfa"][0], ALFALFA, "--levels", "Date=None,S1,S20,O7,NA"],
                     capsys)
    assert rc == 1 and "--na-values" in err                  # the label is read as missing
    rc, _, err = run(["reml", CASES["alfalfa"][0], ALFALFA, "--levels", "Date=None,S1,S1,O7"], capsys)
    assert rc == 2 and "more than once" in err


def test_levels_json_list_allows_commas(tmp_path, capsys):
    p = tmp_path / "t.csv"
    rows = [f'{i * 0.3 + (i % 2)},"{["a,b", "c"][i % 2]}",g{i % 4}' for i in range(16)]
    p.write_text("y,f,g\n" + "\n".join(rows))
    df = read_table(str(p), "y ~ f + (1|g)", [], {"f": ["c", "a,b"]})
    assert list(df["f"].cat.categories) == ["c", "a,b"]
    out = tmp_path / "r.json"
    rc, _, err = run(["reml", "y ~ f + (1|g)", str(p), "--levels", 'f=["c", "a,b"]',
                      "--out", str(out)], capsys)
    assert rc == 0, err
    assert "fa,b" in json.loads(out.read_text())["fixed"]
    rc, _, err = run(["reml", "y ~ f + (1|g)", str(p), "--levels", 'f=["c", 1]'], capsys)
    assert rc == 2 and "strings" in err
    rc, _, err = run(["reml", "y ~ f + (1|g)", str(p), "--levels", 'f=["c"'], capsys)
    assert rc == 2 and "JSON" in err


def test_headers_as_read_csv_names_them(tmp_path, capsys):
    """read.csv's check.names: R users write ``Plant.Height`` for a header ``Plant Height``."""
    p = tmp_path / "t.csv"
    p.write_text("Plant Height,2019,grp id\n" + "\n".join(
        f"{i * 0.7 % 3 + (i % 4)},{i % 5},g{i % 4}" for i in range(20)))
    df = read_table(str(p), "Plant.Height ~ X2019 + (1|grp.id)", [], {})
    assert list(df.columns) == ["Plant.Height", "X2019", "grp.id"]
    df = read_table(str(p), "`Plant Height` ~ 1 + (1|grp.id)", [], {})  # the header as written
    assert list(df.columns) == ["Plant Height", "2019", "grp.id"]
    rc, _, err = run(["reml", "Plant.Height ~ X2019 + (1|grp.id)", str(p)], capsys)
    assert rc == 0, err


def test_help_says_how_csvs_are_read(capsys):
    with pytest.raises(SystemExit):
        main(["reml", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "--na-values" in out and "Empty cells are always missing" in out
    assert "JSON list" in out


# ---------------------------------------------------------------- item 2: (f || g) as lme4 1.1

def test_double_bar_splits_terms_not_factor_columns():
    p = parse_formula("y ~ M + (M || W)")
    assert [(t.expr, t.correlated) for t in p.random] == [("1", True), ("0 + M", True)]
    p = parse_formula("y ~ (x * z || g)")
    assert [t.expr for t in p.random] == ["1", "0 + x", "0 + z", "0 + x:z"]
    p = parse_formula("y ~ (0 + x + M || g)")
    assert [t.expr for t in p.random] == ["0 + x", "0 + M"]


def test_diag_spelling_is_one_diagonal_term():
    p = parse_formula("y ~ x + diag(M | W) + (1 | h)")
    assert p.fixed_rhs == "x"
    assert [(t.expr, t.factor, t.correlated) for t in p.random] == [("1 + M", "W", False),
                                                                     ("1", "h", True)]
    with pytest.raises(Exception, match="single"):
        parse_formula("y ~ diag(M || W)")


def test_double_bar_design_keeps_factor_block_correlated():
    df = read_table(MACHINES, "score ~ Machine + (1|Worker)", [], {})
    d = build_spec("score ~ Machine + (Machine || Worker)", df).design
    assert [(g.terms, g.correlated) for g in d.groups] == [
        (("Intercept",), False), (("MachineA", "MachineB", "MachineC"), True)]
    d = build_spec("score ~ Machine + diag(Machine | Worker)", df).design
    assert [(g.terms, g.correlated) for g in d.groups] == [
        (("Intercept", "MachineB", "MachineC"), False)]
    df["x"] = np.arange(len(df)) % 5
    d = build_spec("score ~ x + (x || Worker)", df).design  # numeric: two independent variances
    assert [(g.terms, g.correlated) for g in d.groups] == [(("Intercept",), False), (("x",), False)]


@pytest.mark.parametrize("case", list(CASES))
def test_reml_matches_lme4(fits, case):
    r, ref = fits[case], REF["cases"][case]
    d = r.to_dict(names="lme4")
    assert d["nobs"] == ref["nobs"] and d["ngrps"] == ref["ngrps"]
    if ref["REML"]:
        assert _rel(d["reml_criterion"], ref["reml_criterion"]) and d["deviance"] is None
    else:
        assert _rel(d["deviance"], ref["deviance"]) and d["reml_criterion"] is None
    for k in ("logLik", "AIC", "BIC", "sigma"):
        assert _rel(d[k], ref[k]), (k, d[k], ref[k])
    for name, est in ref["fixed"].items():
        assert _rel(d["fixed"][name]["estimate"], est, atol=1e-3)
        assert _rel(d["fixed"][name]["se"], ref["se"][name], atol=1e-3)
    for row in ref["varcorr_sd"]:  # lme4 group names: Worker, Worker.1, Machine:Worker
        if row["group"] == "Residual":
            continue
        term = DIAG_TERMS.get(row["term"], row["term"])
        group = "Worker" if case == "machines_diag" else row["group"]
        assert _rel(d["group_sd"][group][term], row["sd"], atol=2e-3), row
    got = {(c["group"], c["term1"], c["term2"]): c["corr"] for c in d["group_corr_list"]}
    assert set(got) == {(c["group"], c["term1"], c["term2"]) for c in ref["varcorr_cor"]}
    for c in ref["varcorr_cor"]:
        assert _rel(got[(c["group"], c["term1"], c["term2"])], c["corr"], atol=1e-3), c
    assert d["singular"] == ref["singular"]
    if case != "machines_diag":  # getME(m, "theta") names and values
        assert set(d["theta"]) == set(ref["theta"])
        for k, v in ref["theta"].items():
            assert abs(d["theta"][k] - v) < 2e-3, (k, d["theta"][k], v)


def test_double_bar_differs_from_diag_as_in_lme4(fits):
    a, b = REF["cases"]["machines_dblbar"], REF["cases"]["machines_diag"]
    assert abs(a["reml_criterion"] - b["reml_criterion"]) > 1
    assert _rel(fits["machines_dblbar"].reml_criterion, a["reml_criterion"])
    assert _rel(fits["machines_diag"].reml_criterion, b["reml_criterion"])


def test_bayesian_backends_get_the_same_terms():
    """The full and marginal PyMC models are built from the same expanded group terms."""
    pytest.importorskip("pymc")
    from bayes_hlm.backends.full import build_full_model
    from bayes_hlm.backends.marginal import build_marginal_model
    from bayes_hlm.backends import naming
    from bayes_hlm.spec.priors import default_priors

    df = read_table(MACHINES, "score ~ Machine + (1|Worker)", [], {})
    spec = build_spec("score ~ Machine + (Machine || Worker)", df)
    ps = default_priors(spec.design)
    for build in (build_full_model, build_marginal_model):
        built = build(spec.design, ps)
        model = built[0] if isinstance(built, tuple) else built
        names = {v.name for v in model.unobserved_RVs} | {v.name for v in model.deterministics}
        assert naming.sd_var("Worker") in names and naming.corr_var("Worker") in names
        assert any(n.startswith("_chol1__Worker") for n in names)      # the Machine block: LKJ
        assert not any(n.startswith("_chol0__") for n in names)        # intercept: a plain SD


# ---------------------------------------------------------------- item 4: R's level order

def test_collation_matches_r_sort():
    col = REF["collation"]
    assert r_sorted(col["input"]) == col["sorted"]
    assert r_sorted([chr(i) for i in range(32, 127)]) == col["ascii_sorted"]
    assert r_sort_key("chilled") < r_sort_key("Nonchilled")


def test_default_levels_use_r_order_in_api_and_cli(tmp_path):
    rng = np.random.default_rng(1)
    df = pd.DataFrame({"y": rng.normal(size=24), "trt": ["Nonchilled", "chilled"] * 12,
                       "g": np.repeat(list("abcdef"), 4)})
    d = build_spec("y ~ trt + (1|g)", df).design
    assert d.fixed_names == ("Intercept", "trtNonchilled")  # "chilled" is the reference, as R
    p = tmp_path / "t.csv"
    df.to_csv(p, index=False)
    assert list(read_table(str(p), "y ~ trt + (1|g)", [], {})["trt"].cat.categories) == [
        "chilled", "Nonchilled"]


# ---------------------------------------------------------------- items 5, 6: JSON and names

def test_reml_json_same_fields_for_reml_and_ml(capsys, tmp_path):
    keys = []
    for extra, case in (([], "machines_dblbar"), (["--ml"], "machines_dblbar_ml")):
        out = tmp_path / f"{case}.json"
        rc, _, err = run(["reml", CASES[case][0], MACHINES, "--out", str(out), *extra], capsys)
        assert rc == 0, err
        d = json.loads(out.read_text())
        keys.append(set(d))
        ref = REF["cases"][case]
        assert d["nobs"] == 54 and d["ngrps"] == {"Worker": 6} and d["method"] == ("ML" if extra else "REML")
        assert _rel(d["AIC"], ref["AIC"]) and _rel(d["BIC"], ref["BIC"]) and _rel(d["logLik"], ref["logLik"])
        assert d["wall_s"] > 0 and len(d["theta"]) == 7
        assert "Intercept" in d["fixed"] and "Worker" in d["group_sd"]   # default names
    assert keys[0] == keys[1]


def test_lme4_names(fits, capsys, tmp_path):
    r = fits["machines_nested"]
    vc = r.varcorr(names="lme4")
    assert list(vc["group"]) == ["Worker", "Machine:Worker", "Residual"]
    assert set(r.varcorr()["group"]) == {"Worker", "Worker:Machine", "Residual"}
    from bayes_hlm.results.tidy import tidy

    t = tidy(fits["machines_dblbar"], names="lme4")
    assert "(Intercept)" in set(t["term"])
    assert {"Worker", "Worker.1", "Residual"} == set(t.loc[t["effect"] == "ran_pars", "group"])
    assert "cor__MachineA.MachineB" in set(t["term"])
    t = tidy(fits["machines_nested"], effects=["ran_vals"], names="lme4")
    assert set(t["group"]) == {"Worker", "Machine:Worker"}
    inner = t[t["group"] == "Machine:Worker"].set_index("level")["estimate"]
    ref = REF["nested_ranef_head"]  # lme4's labels (inner level first) and conditional modes
    for lvl, v in zip(ref["levels"], ref["condval"]):
        assert abs(inner[lvl] - v) < 1e-3, (lvl, inner[lvl], v)
    assert "W1:A" in set(tidy(fits["machines_nested"], effects=["ran_vals"])["level"])
    with pytest.raises(ValueError, match="names"):
        r.varcorr(names="R")
    out = tmp_path / "n.json"
    rc, _, err = run(["reml", CASES["machines_dblbar"][0], MACHINES, "--names", "lme4",
                      "--out", str(out)], capsys)
    assert rc == 0, err
    d = json.loads(out.read_text())
    assert set(d["group_sd"]) == {"Worker", "Worker.1"} and "(Intercept)" in d["fixed"]
    assert d["group_corr"]["Worker.1"]["MachineA,MachineB"] == d["group_corr_list"][0]["corr"]


def test_corr_records_unambiguous_with_commas_in_terms(tmp_path, capsys):
    p = tmp_path / "t.csv"
    rng = np.random.default_rng(2)
    rows = [f'{rng.normal() + (i % 3 == 1)},"{["a,b", "c", "d"][i % 3]}",g{i % 8}' for i in range(96)]
    p.write_text("y,f,g\n" + "\n".join(rows))
    out = tmp_path / "r.json"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rc, _, err = run(["reml", "y ~ f + (0 + f|g)", str(p), "--out", str(out)], capsys)
    assert rc == 0, err
    recs = json.loads(out.read_text())["group_corr_list"]
    assert {(c["term1"], c["term2"]) for c in recs} == {("fa,b", "fc"), ("fa,b", "fd"), ("fc", "fd")}


# ---------------------------------------------------------------- item 7: singular-fit message

def test_singular_message_points_to_our_docs(fits):
    from bayes_hlm.reml.result import SINGULAR_MSG

    assert "isSingular" not in SINGULAR_MSG and "docs/r_to_bayes_hlm.md" in SINGULAR_MSG
    assert "#### Singular fits" in (ROOT / "docs" / "r_to_bayes_hlm.md").read_text()
    r = fits["machines_dblbar"]
    assert r.singular and SINGULAR_MSG in r.summary(print_out=False)


# ---------------------------------------------------------------- lazy imports

def test_reml_command_does_not_import_pymc():
    code = (
        "import sys\n"
        "from bayes_hlm.cli import main\n"
        f"rc = main(['reml', 'score ~ Machine + (1|Worker)', {MACHINES!r}])\n"
        "heavy = [m for m in ('pymc', 'pytensor', 'arviz', 'numba', 'jax', 'nutpie', 'xarray',"
        " 'matplotlib', 'dask', 'scipy.stats') if m in sys.modules]\n"
        "print('RESULT', rc, heavy)\n"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                       timeout=300, env={**__import__("os").environ, "PYTHONPATH": str(ROOT)})
    line = [ln for ln in p.stdout.splitlines() if ln.startswith("RESULT")]
    assert line == ["RESULT 0 []"], p.stdout[-2000:] + p.stderr[-2000:]


def test_package_attributes_still_resolve():
    import bayes_hlm as bh

    assert callable(bh.fit) and callable(bh.build_spec) and callable(bh.tidy)
    assert bh.load == bh.BayesResult.load and "fit" in dir(bh)
    with pytest.raises(AttributeError):
        bh.not_a_thing  # noqa: B018


# ---------------------------------------------------------------- the issue's data: lme4's Machines

def test_machines_data_matches_lme4():
    """Real Machines data (pinned by tests/r/make_glmer_fixtures.R): REML 208.31, not 211.94.

    ``(1|Worker) + (0 + Machine|Worker)`` is not identified: the intercept variance trades off
    against the common part of the Machine block along a flat ridge, so lme4's individual SDs
    are one arbitrary point on it. What the data determine - the criterion, the fixed effects
    and the per-worker covariance of the three machine scores - must match.
    """
    from bayes_hlm.reml import reml

    ref = json.loads((FIX / "glmer_reference.json").read_text())["gaussian_cases"]
    df = read_table(str(FIX / "machines.csv"), "score ~ Machine + (1|Worker)", [], {})
    cases = {"machines_double_bar": "score ~ Machine + (Machine || Worker)",
             "machines_independent": "score ~ Machine + (1 | Worker) + diag(0 + Machine | Worker)",
             "machines_nested": "score ~ Machine + (1 | Worker) + (1 | Worker:Machine)"}
    for case, formula in cases.items():
        R = ref[case]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            r = reml(formula, df)
        assert _rel(r.reml_criterion, R["reml_criterion"]), case
        fe = r.fixef()
        for name, row in R["fixed"].items():
            ours = fe.loc["Intercept" if name == "(Intercept)" else name]
            assert _rel(ours["estimate"], row["estimate"], atol=1e-4), (case, name)
            assert abs(ours["se"] / row["se"] - 1) < 5e-4, (case, name)
    vc = ref["machines_double_bar"]["varcorr"]
    sd = np.array([vc["Worker.1"]["sd"][f"Machine{m}"] for m in "ABC"])
    cor = np.eye(3)
    for (i, a), (j, b) in [((0, "A"), (1, "B")), ((0, "A"), (2, "C")), ((1, "B"), (2, "C"))]:
        cor[i, j] = cor[j, i] = vc["Worker.1"]["cor"][f"Machine{a},Machine{b}"]
    total_r = np.outer(sd, sd) * cor + vc["Worker"]["sd"]["(Intercept)"] ** 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        S = reml(cases["machines_double_bar"], df).covariances()["Worker"]
    total = S[1:, 1:] + S[0, 0]
    np.testing.assert_allclose(total, total_r, rtol=5e-4)  # measured 1.3e-4
