"""CLI reliability: every bad input -> non-zero exit and one clear ``error:`` line on stderr;
column-type rules; the ``fit`` and ``reml`` JSON schemas."""

from __future__ import annotations

import json
import re
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bayes_hlm.cli import main, read_table

ROOT = Path(__file__).resolve().parents[1]


def _good_rows(n=40, seed=0):
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(8), n // 8)
    y = 2 + 0.5 * rng.normal(size=n) + rng.normal(size=8)[g]
    return ["y,x,g,s,k"] + [
        f"{y[i]:.4f},{rng.normal():.4f},g{g[i]},{'ba'[i % 2]},{i % 3 + 1}" for i in range(n)]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("csv")
    rows = _good_rows()

    def put(name, text, mode="w", **kw):
        p = d / name
        with open(p, mode, **kw) as fh:
            fh.write(text)
        return str(p)

    def edit(i, col, value):
        r = list(rows)
        cells = r[i].split(",")
        cells[col] = value
        r[i] = ",".join(cells)
        return "\n".join(r) + "\n"

    f = {
        "good": put("good.csv", "\n".join(rows) + "\n"),
        "garbage": put("garbage.bin", bytes(np.random.default_rng(0).integers(0, 256, 4000,
                                                                              dtype=np.uint8)), "wb"),
        "empty": put("empty.csv", ""),
        "blank": put("blank.csv", "\n\n  \n"),
        "header": put("header.csv", "y,x,g\n"),
        "ragged": put("ragged.csv", "y,x,g\n1,2,a\n3,4,b,5,6\n1,2,c\n"),
        "quote": put("quote.csv", 'y,x,g\n1,2,"a\n3,4,b\n'),
        "text_in_x": put("text_x.csv", edit(5, 1, "abc")),
        "text_in_y": put("text_y.csv", edit(3, 0, "oops")),
        "inf_in_y": put("inf_y.csv", edit(7, 0, "inf")),
        "dup_header": put("dup.csv", "y,x,x,g\n" + "\n".join(
            f"{i},{i},{i},{'ab'[i % 2]}" for i in range(10)) + "\n"),
        "one_group": put("one.csv", "y,x,g\n" + "\n".join(f"{i * 0.3},{i},a" for i in range(10))),
        "semicolon": put("semi.csv", "\n".join(r.replace(",", ";") for r in rows) + "\n"),
        "utf16": put("utf16.csv", "\n".join(rows) + "\n", encoding="utf-16"),
        "dir": str(d),
        "missing": str(d / "nope.csv"),
    }
    (d / "ro").mkdir()
    f["ro_dir"] = str(d / "ro")
    os.chmod(d / "ro", 0o500)
    yield f
    os.chmod(d / "ro", 0o700)


def run(argv, capsys):
    rc = main(argv)
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


F = "y ~ x + (1|g)"

# (id, argv builder (files -> argv), expected exit code, fragment of the error line)
BAD_CLI = [
    ("binary-garbage", lambda f: ["reml", F, f["garbage"]], 1, "binary file"),
    ("empty-file", lambda f: ["reml", F, f["empty"]], 1, "is empty"),
    ("blank-file", lambda f: ["reml", F, f["blank"]], 1, "is empty"),
    ("header-only", lambda f: ["reml", F, f["header"]], 1, "no data rows"),
    ("ragged-rows", lambda f: ["reml", F, f["ragged"]], 1, "Expected 3 fields in line 3"),
    ("open-quote", lambda f: ["reml", F, f["quote"]], 1, "cannot read"),
    ("text-in-numeric", lambda f: ["reml", F, f["text_in_x"]], 1, "column 'x' is numeric except"),
    ("text-in-response", lambda f: ["reml", F, f["text_in_y"]], 1, "response column 'y' must be numeric"),
    ("inf-in-response", lambda f: ["reml", F, f["inf_in_y"]], 1, "column 'y' has 1 infinite"),
    ("duplicate-header", lambda f: ["reml", F, f["dup_header"]], 1, "repeated column name 'x'"),
    ("single-level", lambda f: ["reml", F, f["one_group"]], 1, "'g' has 1 level"),
    ("missing-file", lambda f: ["reml", F, f["missing"]], 1, "does not exist"),
    ("data-is-dir", lambda f: ["reml", F, f["dir"]], 1, "is not a file"),
    ("unbalanced", lambda f: ["reml", "y ~ x + (1|g", f["good"]], 1, "unbalanced parentheses"),
    ("empty-bar", lambda f: ["reml", "y ~ x + (x|)", f["good"]], 1, "no grouping factor"),
    ("unknown-fn", lambda f: ["reml", "y ~ foo(x) + (1|g)", f["good"]], 1, "unknown function 'foo'"),
    ("missing-col", lambda f: ["reml", "y ~ xx + (1|g)", f["good"]], 1, "did you mean 'x'"),
    ("string-response", lambda f: ["reml", "s ~ x + (1|g)", f["good"]], 1, "response 's' is not numeric"),
    ("singletons", lambda f: ["reml", "y ~ x + (1|x)", f["good"]], 1, "must be < number of observations"),
    ("out-no-dir", lambda f: ["reml", F, f["good"], "--out", "/nonexistent/d/o.json"], 1, "does not exist"),
    ("out-is-dir", lambda f: ["reml", F, f["good"], "--out", f["dir"]], 1, "is a directory"),
    ("out-read-only", lambda f: ["reml", F, f["good"], "--out", f["ro_dir"] + "/o.json"], 1,
     "cannot write output"),
    ("levels-syntax", lambda f: ["reml", F, f["good"], "--levels", "s"], 2, "COL=L1,L2"),
    ("levels-missing-value", lambda f: ["reml", F, f["good"], "--levels", "s=a"], 1, "['b']"),
    ("factor-unknown-col", lambda f: ["reml", F, f["good"], "--factor", "zz"], 2, "'zz'"),
    ("unknown-flag", lambda f: ["reml", F, f["good"], "--bogus"], 2, "unrecognized arguments"),
    ("chains-zero", lambda f: ["fit", F, f["good"], "--chains", "0"], 2, "--chains"),
    ("chains-text", lambda f: ["fit", F, f["good"], "--chains", "two"], 2, "invalid int value"),
    ("draws-negative", lambda f: ["fit", F, f["good"], "--draws", "-5"], 2, "--draws"),
    ("tune-negative", lambda f: ["fit", F, f["good"], "--tune", "-1"], 2, "--tune"),
    ("target-accept", lambda f: ["fit", F, f["good"], "--target-accept", "1.5"], 2, "--target-accept"),
    ("bad-method", lambda f: ["fit", F, f["good"], "--method", "bogus"], 2, "invalid choice"),
    ("bad-mass-matrix", lambda f: ["fit", F, f["good"], "--mass-matrix", "dense"], 2, "invalid choice"),
    ("missing-data-arg", lambda f: ["fit", F], 2, "required"),
    ("no-command", lambda f: [], 2, "choose a command"),
    ("bad-command", lambda f: ["bogus"], 2, "invalid choice"),
    ("empty-formula", lambda f: ["reml", "", f["good"]], 1, "non-empty string"),
]


@pytest.mark.parametrize("argv,code,fragment", [b[1:] for b in BAD_CLI], ids=[b[0] for b in BAD_CLI])
def test_bad_cli_input(files, capsys, argv, code, fragment):
    if fragment == "cannot write output" and os.geteuid() == 0:
        pytest.skip("root can write into a read-only directory")
    rc, out, err = run(argv(files), capsys)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("error: ")]
    assert rc == code, (rc, err)
    assert len(errors) == 1, err
    assert fragment in errors[0], errors[0]
    assert "Traceback" not in err and out == ""


def test_python_m_entry_point_bad_input(files):
    p = subprocess.run([sys.executable, "-m", "bayes_hlm", "reml", "y ~ xx + (1|g)", files["good"]],
                       capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert p.returncode == 1
    assert p.stderr.strip().splitlines()[-1].startswith("error: column 'xx'")
    assert "Traceback" not in p.stderr


def test_semicolon_and_utf16_files_are_read(files):
    for key in ("semicolon", "utf16"):
        df = read_table(files[key], F, [], {})
        assert list(df.columns) == ["y", "x", "g", "s", "k"] and len(df) == 40


# ---------------------------------------------------------------- column-type rules

def test_column_type_rules(files):
    df = read_table(files["good"], "y ~ x + k + s + (1|g)", [], {})
    assert pd.api.types.is_float_dtype(df["y"]) and pd.api.types.is_float_dtype(df["x"])
    assert pd.api.types.is_numeric_dtype(df["k"])                       # numeric-looking: numeric
    assert isinstance(df["g"].dtype, pd.CategoricalDtype)                # grouping: factor
    assert list(df["s"].cat.categories) == ["a", "b"]                   # strings: sorted levels
    df = read_table(files["good"], "y ~ x + k + s + (1|g)", ["k"], {"s": ["b", "a"]})
    assert list(df["k"].cat.categories) == ["1", "2", "3"]               # --factor
    assert list(df["s"].cat.categories) == ["b", "a"]                   # --levels order
    # numeric grouping column: factor with numeric level order (2 before 10)
    df = read_table(files["good"], "y ~ x + (1|k)", [], {})
    assert isinstance(df["k"].dtype, pd.CategoricalDtype)


def test_numeric_grouping_levels_sorted_numerically(tmp_path):
    p = tmp_path / "n.csv"
    p.write_text("y,g\n" + "\n".join(f"{i * 0.1},{[10, 2, 1][i % 3]}" for i in range(12)))
    df = read_table(str(p), "y ~ 1 + (1|g)", [], {})
    assert list(df["g"].cat.categories) == ["1", "2", "10"]


def test_levels_sets_reference_level(files, capsys, tmp_path):
    out = tmp_path / "r.json"
    rc, _, err = run(["reml", "y ~ x + s + (1|g)", files["good"], "--levels", "s=b,a",
                      "--out", str(out)], capsys)
    assert rc == 0, err
    assert "sa" in json.loads(out.read_text())["fixed"]


def test_text_in_numeric_column_allowed_with_factor_flag(files):
    df = read_table(files["text_in_x"], F, ["x"], {})
    assert isinstance(df["x"].dtype, pd.CategoricalDtype) and "abc" in list(df["x"].cat.categories)
    # an unused column with text is never an error
    df = read_table(files["text_in_x"], "y ~ 1 + (1|g)", [], {})
    assert isinstance(df["x"].dtype, pd.CategoricalDtype)


# ---------------------------------------------------------------- JSON schemas

STAT = {"mean", "sd", "hdi_low", "hdi_high", "ess_bulk", "r_hat"}


def test_reml_json_schema(files, capsys, tmp_path):
    out = tmp_path / "reml.json"
    rc, stdout, err = run(["reml", "y ~ x + (1|g)", files["good"], "--out", str(out)], capsys)
    assert rc == 0, err
    assert "deprecated" not in err  # our own JSON writer once used fit.nobs as a number
    assert stdout.strip()  # the summary
    d = json.loads(out.read_text())
    # issue 19: glance()'s statistics, the correlation records and the fit's wall time too
    assert set(d) == {"fixed", "group_sd", "group_corr", "sigma", "reml_criterion", "singular",
                      "group_corr_list", "method", "nobs", "ngrps", "npar", "df_residual", "theta",
                      "logLik", "AIC", "BIC", "deviance", "wall_s"}
    assert set(d["fixed"]) == {"Intercept", "x"}
    for v in d["fixed"].values():
        assert set(v) == {"estimate", "se", "df", "p"}
    assert set(d["group_sd"]) == {"g"} and isinstance(d["singular"], bool)
    assert not [p for p in os.listdir(tmp_path) if ".tmp" in p]


def test_fit_json_schema(files, capsys, tmp_path):
    out = tmp_path / "fit.json"
    rc, _, err = run(["fit", "y ~ x + (1|g)", files["good"], "--method", "marginal", "--sampler",
                      "pymc", "--chains", "1", "--draws", "60", "--tune", "60", "--seed", "3",
                      "--mass-matrix", "diag", "--out", str(out)], capsys)
    assert rc == 0, err
    for ln in err.splitlines():  # warnings are single lines too
        # progress.phase lines ("loading libraries … ", "…: done in 3.1 s") appear whenever a
        # phase takes over progress.DELAY_S, e.g. imports on a loaded machine
        phase_line = ln.rstrip().endswith("…") or re.search(r": done in [\d.]+ s$", ln.rstrip())
        assert ln.startswith(("warning: ", "error: ")) or not ln.strip() or "NUTS" in ln \
            or "Sampling" in ln or "Initializing" in ln or "Sequential" in ln or phase_line, ln
    d = json.loads(out.read_text())
    required = {"formula", "n_obs", "groups", "fixed", "sigma", "group_sd", "group_corr", "icc",
                "r2_bayes", "r2_marginal", "r2_conditional", "diagnostics", "reml"}
    assert required <= set(d), required - set(d)
    assert d["formula"] == "y ~ x + (1|g)" and d["n_obs"] == 40 and d["groups"] == {"g": 8}
    for stat in [*d["fixed"].values(), d["sigma"], *d["group_sd"]["g"].values(), d["icc"],
                 d["r2_bayes"], d["r2_marginal"], d["r2_conditional"]]:
        assert STAT <= set(stat), stat
    assert {"divergences", "max_r_hat", "max_r_hat_all", "min_ess_bulk", "wall_s"} <= set(d["diagnostics"])
    assert {"fixed", "group_sd", "sigma", "reml_criterion", "singular"} <= set(d["reml"])


def test_control_flag_relaxes_a_check(tmp_path, capsys):
    """--control lets the CLI go on where lme4's check would stop (lmerControl)."""
    import numpy as np
    import pandas as pd

    from bayes_hlm.cli import main

    df = bh_load_sleep().assign(g=np.arange(180) // 2)
    path = tmp_path / "d.csv"
    df.to_csv(path, index=False)
    code = main(["reml", "Reaction ~ Days + (Days|g)", str(path)])
    err = capsys.readouterr().err
    assert code == 1 and "--control check_nobs_vs_nRE=warning" in err
    code = main(["reml", "Reaction ~ Days + (Days|g)", str(path), "--control", "check_nobs_vs_nRE=ignore"])
    assert code == 0
    assert main(["reml", "Reaction ~ Days + (1|Subject)", str(path), "--control", "check_nobs=ignore"]) == 2
    assert main(["reml", "Reaction ~ Days + (1|Subject)", str(path), "--control", "check_rank=warning"]) == 2
    assert "Linear mixed model fit by REML" in capsys.readouterr().out


def bh_load_sleep():
    import bayes_hlm as bh

    return bh.datasets.load("sleepstudy")
