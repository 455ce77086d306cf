"""Issue #21 "Security" and #19 item 3: formulas are data, result files and caches are untrusted.

* any formula built from dangerous fragments is refused (FormulaError) before anything runs;
* formulae evaluates with an empty environment (a call that slipped past finds nothing);
* R's spellings (``I(x^2)``, ``(a+b)^2``, ``scale(x, scale = FALSE)``) and lme4's term names;
* ``load()`` refuses tampered files (checksum), crafted formulas and bad metadata;
* the JAX program cache never unpickles an entry it cannot authenticate.
"""

from __future__ import annotations

import builtins
import json
import os
import pickle
import subprocess
import warnings
from contextlib import ExitStack
from unittest import mock

import h5netcdf
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import bayes_hlm as bh
from bayes_hlm.errors import BayesHLMError, BayesHLMWarning, DataError, FormulaError
from bayes_hlm.families import get_family
from bayes_hlm.results import io as rio
from bayes_hlm.spec.build import build_spec, design_matrices
from bayes_hlm.spec.formula import parse_formula


class Executed(Exception):
    """Raised by every patched dangerous function: seeing it means code ran."""


def _boom(*args, **kwargs):
    raise Executed(args)


def _tripwires() -> ExitStack:
    stack = ExitStack()
    for target in ("os.system", "os.popen", "subprocess.Popen", "subprocess.call",
                   "subprocess.run", "numpy.load", "numpy.fromfile", "numpy.save",
                   "pandas.read_csv", "pickle.loads", "pickle.load"):
        stack.enter_context(mock.patch(target, _boom))
    stack.enter_context(mock.patch.object(builtins, "open", _boom))
    return stack


DANGEROUS = [
    'pd.io.common.os.system("touch /tmp/bhlm_pwned")', 'np.load("p.npy", allow_pickle=True)',
    'pd.read_csv("/etc/hostname")', 'open("/etc/passwd")', '__import__("os").system("id")',
    'exec("import os")', 'eval("1")', 'os.system("id")', 'subprocess.call("id")',
    'np.lib.npyio.load("x")', 'getattr(np, "load")("x")', "x.__class__", "(lambda: 1)()",
    "[c for c in x]", "x[0]", "globals()", "np.log.__self__", 'C(x, levels=open("f"))',
    'log(x, base=np.load("p"))', 'I(np.load("p"))', 'f"{x}"', "breakpoint()",
    'np.save("f", x)', 'np.fromfile("f")', 'I(x) # pd.read_csv("f")', "pickle.loads(b'x')",
    'I(x, **{"a": 1})', 'scale(x, center=np.load("p"))', 'C(x, Treatment(open("f")))',
    'np.log(x).__class__.__init__.__globals__', "x; import os", 'C(x, Treatment("a\'), '
    'evil(), (\'"))', "{os.system('id')}", "x.y.z(1)", "np.log(np.load('p'))",
]
SAFE = ["x", "log(x)", "I(x^2)", "1", "0", "z", "sqrt(z)", "x:z", "(x + z)^2", "`x`",
        "poly(x, 2)", "scale(x)", "np.exp(x)"]
OPS = [" + ", " * ", ":", " - ", " / "]


@st.composite
def hostile_formulas(draw):
    frags = draw(st.lists(st.sampled_from(DANGEROUS + SAFE), min_size=1, max_size=4))
    assume_danger = draw(st.sampled_from(DANGEROUS))
    pos = draw(st.integers(0, len(frags)))
    frags.insert(pos, assume_danger)  # at least one dangerous fragment somewhere
    ops = [draw(st.sampled_from(OPS)) for _ in frags[1:]]
    rhs = frags[0] + "".join(o + f for o, f in zip(ops, frags[1:]))
    where = draw(st.sampled_from(["fixed", "random", "response"]))
    if where == "random":
        return f"y ~ x + ({rhs} | g)"
    if where == "response":
        return f"{rhs} ~ x + (1 | g)"
    return f"y ~ {rhs} + (1 | g)"


FRAME = pd.DataFrame({"y": [1.0, 2.0, 3.0, 4.0, 2.5, 1.5, 3.5, 2.0],
                      "x": [0.1, 0.5, 0.2, 0.9, 0.3, 0.7, 0.4, 0.6],
                      "z": [1.0, 2.0, 1.5, 3.0, 2.5, 1.0, 2.0, 3.5],
                      "g": list("aabbccdd")})


@settings(max_examples=150, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(hostile_formulas())
def test_dangerous_formulas_never_execute(formula):
    with _tripwires():
        with pytest.raises(FormulaError) as info:
            parse_formula(formula)
        with pytest.raises(FormulaError):
            build_spec(formula, FRAME)
    msg = str(info.value)
    assert any(k in msg for k in ("allowed", "'^'", "quote", "backslash", "cannot read")), msg


@pytest.mark.parametrize("formula,named", [
    ('y ~ x + pd.io.common.os.system("touch /tmp/bhlm_pwned") + (1|g)', "pd.io.common.os.system"),
    ('y ~ np.load("p.npy", allow_pickle=True) + (1|g)', "np.load"),
    ('y ~ pd.read_csv("/etc/hostname") + (1|g)', "pd.read_csv"),
    ('y ~ x + (np.load("p") | g)', "np.load"),
    ('log(open("f")) ~ x + (1|g)', "open"),
])
def test_issue_examples_are_refused_naming_the_call(formula, named, tmp_path):
    import bayes_hlm.fitting  # noqa: F401 - its (lazy) imports read config files: not ours

    with _tripwires():
        for call in (lambda: parse_formula(formula), lambda: build_spec(formula, FRAME),
                     lambda: bh.get_prior(formula, FRAME),
                     lambda: bh.fit(formula, FRAME, draws=10, tune=10, chains=1)):
            with pytest.raises(FormulaError) as info:
                call()
            assert repr(named) in str(info.value), str(info.value)
    assert not os.path.exists("/tmp/bhlm_pwned")


def test_update_formula_with_a_call_is_refused():
    with _tripwires(), pytest.raises(FormulaError, match="pd.io.common.os.system"):
        build_spec(bh.update_formula("y ~ x + (1|g)", '. ~ . + pd.io.common.os.system("id")'),
                   FRAME)


def test_formulae_environment_holds_only_the_allow_list():
    """Defence in depth: even unchecked, formulae cannot reach modules or numpy's I/O."""
    with _tripwires():
        for f in ['y ~ pd.io.common.os.system("id")', 'y ~ np.load("p")', "y ~ os.getcwd()",
                  'y ~ open("f")']:
            with pytest.raises(Exception) as info:
                design_matrices(f, FRAME)
            assert not isinstance(info.value, Executed)
    assert design_matrices("y ~ np.log(z) + log(z)", FRAME).common.design_matrix.shape == (8, 3)


def test_r_power_inside_I_is_the_same_design_with_lme4_name(sleepstudy):
    a = build_spec("Reaction ~ Days + I(Days^2) + (Days | Subject)", sleepstudy).design
    b = build_spec("Reaction ~ Days + I(Days**2) + (Days | Subject)", sleepstudy).design
    np.testing.assert_array_equal(a.X, b.X)
    assert a.fixed_names == b.fixed_names == ("Intercept", "Days", "I(Days^2)")
    c = build_spec("Reaction ~ Days + (Days + I(Days^2) | Subject)", sleepstudy).design
    assert c.groups[0].terms == ("Intercept", "Days", "I(Days^2)")


def test_r_power_inside_I_with_a_family_and_a_factor_response():
    """R's glmer example as written: ``I(age^2)`` with a factor 0/1 response, family by name
    (the spelling ``fit`` takes) or as an object; the column is the square, printed as in R."""
    d = bh.datasets.load("contraception")
    formula = "use ~ age + I(age^2) + urban + livch + (urban | district)"
    a = build_spec(formula, d, family="bernoulli")
    b = build_spec(formula.replace("^", "**"), d, family=get_family("bernoulli"))
    assert a.family.name == "bernoulli"
    assert a.design.fixed_names == ("Intercept", "age", "I(age^2)", "urbanY", "livch1", "livch2",
                                    "livch3+")
    np.testing.assert_array_equal(a.design.X, b.design.X)
    np.testing.assert_allclose(a.design.X[:, 2], d["age"].to_numpy(float) ** 2)
    np.testing.assert_array_equal(a.design.y, (d["use"] == "Y").to_numpy(float))
    # integers: a power, never Python's XOR
    ints = FRAME.assign(k=np.arange(len(FRAME)) % 5)
    np.testing.assert_array_equal(build_spec("y ~ I(k^2) + (1 | g)", ints).design.X[:, 1],
                                  ints.k.to_numpy() ** 2)


def test_r_spellings_of_transformations(sleepstudy):
    d = sleepstudy.assign(D1=sleepstudy.Days + 1)
    spec = build_spec("log(Reaction) ~ poly(Days, degree = 2, raw = TRUE) + log(D1, base = 2) "
                      "+ (1 | Subject)", d)
    assert spec.design.fixed_names == ("Intercept", "poly(Days, degree = 2, raw = TRUE)1",
                                       "poly(Days, degree = 2, raw = TRUE)2", "log(D1, base = 2)")
    np.testing.assert_allclose(spec.design.X[:, 3], np.log2(d.D1))
    np.testing.assert_allclose(spec.design.y, np.log(d.Reaction))
    cen = build_spec("Reaction ~ scale(Days, scale = FALSE) + (1 | Subject)", d).design
    np.testing.assert_allclose(cen.X[:, 1], d.Days - d.Days.mean())
    # R's scale(): the sample SD (n - 1), as lme4 sees it; new rows use the training constants
    spec = build_spec("Reaction ~ scale(Days) + log(scale(D1, center = TRUE, scale = TRUE) + 9) "
                      "+ (1 | Subject)", d)
    z = (d.Days - d.Days.mean()) / d.Days.std(ddof=1)
    np.testing.assert_allclose(spec.design.X[:, 1], z)
    assert spec.design.fixed_names[1:] == ("scale(Days)", "log(scale(D1) + 9)")
    np.testing.assert_allclose(spec.fixed_matrix(d.iloc[5:9]), spec.design.X[5:9])
    plain = build_spec("Reaction ~ scale(Days, center = FALSE, scale = FALSE) + (1 | Subject)", d)
    np.testing.assert_allclose(plain.design.X[:, 1], d.Days)


def test_power_outside_I_is_r_interaction_expansion():
    df = FRAME.assign(w=FRAME.x ** 2 + FRAME.z)
    a = build_spec("y ~ (x + z)^2 + (1 | g)", df).design
    assert a.fixed_names == ("Intercept", "x", "z", "x:z")
    with pytest.raises(FormulaError, match="interaction expansion"):
        parse_formula("y ~ (x + z)^x + (1 | g)")


@pytest.mark.parametrize("formula,fragment", [
    ("0~2", "response '0'"),
    ("2 ~ x + (1|g)", "response '2'"),
    ("Reaction ~ (Days | Subject) + (Days | Subject)", "(Days | Subject) twice"),
    ("Reaction ~ (1 | Subject) + (Days || Subject)", "twice"),
])
def test_formula_crashes_are_clear_errors(formula, fragment):
    with pytest.raises(FormulaError) as info:
        parse_formula(formula)
    assert fragment in str(info.value), str(info.value)


@settings(max_examples=1, deadline=None, derandomize=True, database=None)
@given(st.just("0~2"))
def test_hypothesis_found_0_tilde_2(text):
    """The string hypothesis found on a fresh machine (#21): kept as an explicit example."""
    with pytest.raises(FormulaError):
        parse_formula(text)


def test_model_without_fixed_effects(sleepstudy):
    """lme4 fits 'y ~ 0 + (1|g)'; REML does too; the samplers refuse it clearly."""
    from bayes_hlm.reml import reml

    r = reml("Reaction ~ 0 + (1 | Subject)", sleepstudy)
    assert r.design.p == 0 if hasattr(r, "design") else True
    with pytest.raises(FormulaError, match="no fixed effects"):
        bh.fit("Reaction ~ 0 + (1 | Subject)", sleepstudy, chains=1, draws=10, tune=10)


# --------------------------------------------------------------------------- load()
@pytest.fixture(scope="module")
def small_fit():
    ss = bh.datasets.load("sleepstudy")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return bh.fit("Reaction ~ Days + (1 | Subject)", ss, chains=2, draws=100, tune=100,
                      seed=3)


def _set_attr(path, name, value):
    with h5netcdf.File(path, "a") as f:
        if value is None:
            del f.attrs[name]
        else:
            f.attrs[name] = value


def test_saved_result_round_trips_with_checksum(small_fit, tmp_path):
    p = small_fit.save(tmp_path / "r.nc") or tmp_path / "r.nc"
    with warnings.catch_warnings():
        warnings.simplefilter("error", BayesHLMWarning)
        back = bh.load(p)
    np.testing.assert_array_equal(back.posterior["sigma"].values,
                                  small_fit.posterior["sigma"].values)


def test_one_flipped_byte_in_draws_is_refused(small_fit, tmp_path):
    p = tmp_path / "r.nc"
    small_fit.save(p)
    raw = bytearray(p.read_bytes())
    needle = np.ascontiguousarray(small_fit.posterior["sigma"].values).tobytes()[8 * 5:8 * 6]
    at = raw.find(needle)
    assert at > 0
    raw[at] ^= 0x01  # lowest mantissa bit of one draw of sigma
    p.write_bytes(bytes(raw))
    with pytest.raises(DataError) as info:
        bh.load(p)
    assert str(p) in str(info.value) and "checksum" in str(info.value)


def test_file_without_checksum_loads_with_warning(small_fit, tmp_path):
    p = tmp_path / "old.nc"
    small_fit.save(p)
    _set_attr(p, rio.CHECKSUM_ATTR, None)
    with pytest.warns(BayesHLMWarning, match="could not be verified"):
        back = bh.load(p)
    assert back.formula == small_fit.formula


def _recheck(p):
    """What an attacker can do: rewrite the checksum after editing (SHA-256 is no secret)."""
    _set_attr(p, rio.CHECKSUM_ATTR, None)
    rio._write_checksum(p)


@pytest.mark.parametrize("edit,fragment", [
    (lambda m: m.update(formula='Reaction ~ Days + pd.io.common.os.system("id") + (1 | Subject)'),
     "pd.io.common.os.system"),
    (lambda m: m.update(formula='Reaction ~ np.load("x", allow_pickle=True) + (1 | Subject)'),
     "np.load"),
    (lambda m: m["priors"].update(sigma={"dist": "__import__('os').system", "sigma": 1}),
     "prior 'sigma'"),
    (lambda m: m["info"].update(evil=1), "unknown fit-info"),
    (lambda m: m.update(formula=7), "'formula'"),
])
def test_crafted_metadata_is_refused_without_running_it(small_fit, tmp_path, edit, fragment):
    p = tmp_path / "crafted.nc"
    small_fit.save(p)
    with h5netcdf.File(p, "r") as f:
        meta = json.loads(f.attrs["bayes_hlm"])
    edit(meta)
    _set_attr(p, "bayes_hlm", json.dumps(meta))
    _recheck(p)
    with mock.patch("os.system", _boom), mock.patch("numpy.load", _boom):
        with pytest.raises(DataError) as info:
            bh.load(p)
    assert fragment in str(info.value) and str(p) in str(info.value), str(info.value)


def test_garbage_file_is_refused_naming_it(tmp_path):
    p = tmp_path / "junk.nc"
    p.write_bytes(b"\x89HDF\r\n\x1a\n" + os.urandom(300))
    with pytest.raises(BayesHLMError) as info:
        bh.load(p)
    assert str(p) in str(info.value)


# --------------------------------------------------------------------------- JAX cache
class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_planted_pickle_in_jax_cache_is_not_executed(tmp_path, monkeypatch):
    from bayes_hlm.backends import jax_nuts

    cache, keys = tmp_path / "cache", tmp_path / "keys"
    monkeypatch.setenv("BAYES_HLM_CACHE", str(cache))
    monkeypatch.setenv("BAYES_HLM_KEY_DIR", str(keys))
    marker = tmp_path / "pwned"
    entry = cache / "nuts" / ("0" * 32)
    entry.mkdir(parents=True)
    bomb = pickle.dumps(_Payload(marker))
    for n in ("run", "post"):
        (entry / f"{n}.bin").write_bytes(bomb)
    meta = {"shapes": [], "value_vars": []}
    # old layout (bare meta), a forged MAC, and a MAC made with a key the attacker guessed
    for content in (meta, {"meta": meta, "hmac": "0" * 64},
                    {"meta": meta, "hmac": jax_nuts._mac(b"k" * 32, entry.name, meta,
                                                         {"run": bomb, "post": bomb})}):
        (entry / "meta.json").write_text(json.dumps(content))
        assert jax_nuts._load(entry) is None
        assert not marker.exists()
    key = jax_nuts.key_path()
    assert key.exists() and (key.stat().st_mode & 0o777) == 0o600
    # a key inside the cache directory is never trusted
    monkeypatch.setenv("BAYES_HLM_KEY_DIR", str(cache / "k"))
    assert jax_nuts._secret() is None


def test_jax_cache_entry_authenticates_only_with_the_right_key(tmp_path, monkeypatch):
    from bayes_hlm.backends import jax_nuts

    monkeypatch.setenv("BAYES_HLM_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("BAYES_HLM_KEY_DIR", str(tmp_path / "keys"))
    entry = tmp_path / "cache" / "nuts" / "abc"
    blobs = {"run": b"r" * 10, "post": b"p" * 10}
    jax_nuts._save(entry, blobs, {"shapes": [[2]]})
    stored = json.loads((entry / "meta.json").read_text())
    key = jax_nuts._secret()
    assert stored["hmac"] == jax_nuts._mac(key, "abc", {"shapes": [[2]]}, blobs)
    (entry / "run.bin").write_bytes(b"r" * 9 + b"x")  # tampered blob: refused before unpickling
    with mock.patch("pickle.loads", _boom):
        assert jax_nuts._load(entry) is None


_SAVE = """
import pickle, sys
from pathlib import Path
import jax, jax.numpy as jnp
jax.config.update("jax_enable_x64", True)
from jax.experimental import serialize_executable as se
from bayes_hlm.backends import jax_nuts
f = lambda x: jnp.linalg.cholesky(jnp.outer(x, x) + 3 * jnp.eye(3)).sum()
c = jax.jit(f).lower(jax.ShapeDtypeStruct((3,), jnp.float64)).compile()
blob = pickle.dumps(se.serialize(c))
jax_nuts._save(Path(sys.argv[1]), {"run": blob, "post": blob}, {"shapes": []})
print(float(c(jnp.ones(3))))
"""
_LOAD = """
import sys
from pathlib import Path
import numpy as np
from bayes_hlm.backends import jax_nuts
progs = jax_nuts._load(Path(sys.argv[1]))
assert progs is not None, "authenticated entry not loaded"
print(float(progs.run(np.ones(3))))
"""


def test_jax_cache_entry_with_lapack_runs_in_a_fresh_process(tmp_path):
    """A loaded executable calling LAPACK (Cholesky) segfaulted in a new process."""
    import sys

    from bayes_hlm.backends import jax_nuts

    if not jax_nuts.available():
        pytest.skip("jax not installed")
    env = dict(os.environ, BAYES_HLM_CACHE=str(tmp_path / "cache"),
               BAYES_HLM_KEY_DIR=str(tmp_path / "keys"),
               PYTHONPATH=os.pathsep.join([os.getcwd(), os.environ.get("PYTHONPATH", "")]))
    entry = str(tmp_path / "cache" / "nuts" / "lapack")
    runs = [subprocess.run([sys.executable, "-c", code, entry], env=env, capture_output=True,
                           text=True, timeout=300) for code in (_SAVE, _LOAD)]
    for r in runs:
        assert r.returncode == 0, r.stderr[-2000:]
    assert runs[0].stdout.split()[-1] == runs[1].stdout.split()[-1]


def test_binomial_responses_pass_the_allow_list_only_on_the_left():
    assert parse_formula("cbind(s, n - s) ~ x + (1 | g)").response == "cbind(s, n - s)"
    assert parse_formula("p(s, n) ~ x + (1 | g)").response == "p(s, n)"
    for bad in ['cbind(s, np.load("p")) ~ x + (1 | g)', "y ~ cbind(s, f) + (1 | g)",
                "cbind(s) ~ x + (1 | g)"]:
        with pytest.raises(FormulaError):
            parse_formula(bad)


@pytest.mark.parametrize("cmd", ["reml", "fit"])
def test_cli_refuses_a_formula_that_calls_code(cmd, tmp_path, capsys):
    from bayes_hlm.cli import main

    data = tmp_path / "d.csv"
    FRAME.to_csv(data, index=False)
    marker = tmp_path / "pwned"
    formula = f'y ~ x + pd.io.common.os.system("touch {marker}") + (1|g)'
    rc = main([cmd, formula, str(data)])
    err = capsys.readouterr().err
    assert rc != 0 and "pd.io.common.os.system" in err, err
    assert not marker.exists()


def test_other_entry_points_refuse_it_too():
    import pymc  # noqa: F401 - sample_prior_predictive imports it lazily; it reads its config
    from bayes_hlm.distributed.design_meta import ModelFrame

    bad = 'y ~ x + pd.io.common.os.system("id") + (1|g)'
    with _tripwires():
        for call in (lambda: ModelFrame.make(bad, FRAME.columns),
                     lambda: bh.sample_prior_predictive(bad, FRAME, draws=5)):
            with pytest.raises(FormulaError, match="pd.io.common.os.system"):
                call()
