"""A fit compiles only its structure's density (#18 item 5): per-structure entry points of
the collapsed density (numba_density.kernel) compute logp_grad's numbers bit for bit, and the
one nutpie callback factory (numba_nuts.callbacks) is cached across processes."""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from bayes_hlm.backends import numba_nuts
import tiny_kernels
from bayes_hlm.backends.kernel_variants import specialised

ROOT = Path(__file__).resolve().parent.parent


def test_specialised_prunes_the_branches_its_constants_decide():
    """The generic kernel cannot compile (a branch calls an untypable kernel); the variant with
    the constant fixed never types that branch, so it compiles and runs."""
    one = specialised(tiny_kernels.pick, "one", {"_MODE": "one"})
    assert one(1.5) == 2.5
    assert one.py_func.__name__ == "pick_one"
    with pytest.raises(Exception):
        tiny_kernels.pick(1.5)


def _call(cfunc, x, buf):
    g, lp = np.zeros(x.size), np.zeros(1)
    dp = ctypes.POINTER(ctypes.c_double)
    rc = cfunc.ctypes(x.size, x.ctypes.data_as(dp), g.ctypes.data_as(dp), lp.ctypes.data_as(dp),
                      buf.ctypes.data_as(ctypes.c_void_p))
    return rc, lp[0], g


def test_callback_calls_its_kernel_and_reports_non_finite():
    buf = tiny_kernels.buffer([1.0, 2.0])
    logp, expand = numba_nuts.callbacks(tiny_kernels.logp_sq)
    assert numba_nuts.loaded(tiny_kernels.logp_sq)
    assert numba_nuts.callbacks(tiny_kernels.logp_sq) == (logp, expand)  # once per process
    rc, lp, g = _call(logp, np.array([0.0, 0.0]), buf)
    assert rc == 0 and lp == -2.5 and list(g) == [1.0, 2.0]
    assert _call(logp, np.array([np.inf, 0.0]), buf)[0] == 4  # log density not finite


def test_callback_is_loaded_from_the_cache_in_a_new_process(tmp_path):
    """Numba does not cache a closure over a dispatcher; the factory's callbacks must be: the
    second process loads the callback compiled by the first."""
    code = textwrap.dedent("""
        from bayes_hlm.backends import numba_nuts
        import tiny_kernels
        cold = numba_nuts.compile_cache_cold(tiny_kernels.logp_sq)
        logp, _ = numba_nuts.callbacks(tiny_kernels.logp_sq)
        print(cold, logp.cache_hits)
    """)
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path), PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "tests")]))
    runs = [subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                           timeout=300, cwd=ROOT) for _ in range(2)]
    assert [r.stdout.split() for r in runs] == [["True", "0"], ["False", "1"]], runs[-1].stderr


def test_a_fused_kernel_is_compiled_into_its_callback_only(tmp_path):
    """A kernel marked ``fuse_into_callback`` (the collapsed density's entry points) has its body
    compiled inside its callback: the kernel itself is not compiled (one compile of the density,
    not two, on a cold cache), the callback gives its numbers, and names it shares with the
    callback's template are kept apart."""
    code = textwrap.dedent("""
        import ctypes, numpy as np
        from bayes_hlm.backends import numba_nuts
        import tiny_kernels
        k = tiny_kernels.logp_sq_fused
        logp, _ = numba_nuts.callbacks(k)
        print(len(k.signatures), logp.__wrapped__.__name__.startswith("logp_sq_fused_logp_cf"))
        buf, x = tiny_kernels.buffer([1.0, 2.0]), np.array([0.5, -1.0])
        g, lp, g0 = np.zeros(2), np.zeros(1), np.zeros(2)
        dp = ctypes.POINTER(ctypes.c_double)
        rc = logp.ctypes(2, x.ctypes.data_as(dp), g.ctypes.data_as(dp), lp.ctypes.data_as(dp),
                         buf.ctypes.data_as(ctypes.c_void_p))
        print(rc, lp[0] == k(x, buf, g0) == tiny_kernels.logp_sq(x, buf, np.zeros(2)),
              np.array_equal(g, g0))
    """)
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path), PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "tests")]))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=300, cwd=ROOT)
    assert out.stdout.split() == ["0", "True", "0", "True", "True"], out.stderr


def test_a_kernel_that_cannot_be_fused_says_so():
    with pytest.raises(ValueError, match="two_returns: cannot be compiled into its callback"):
        numba_nuts.callbacks(tiny_kernels.two_returns)
    assert not numba_nuts.loaded(tiny_kernels.two_returns)


def _packed(formula, data):
    from bayes_hlm.backends.numba_density import pack
    from bayes_hlm.backends.sufficient_stats import compute_stats
    from bayes_hlm.spec.build import build_spec
    from bayes_hlm.spec.priors import resolve_priors

    spec = build_spec(formula, data)
    ps = resolve_priors(spec.design, None)
    return pack(spec.design, ps, compute_stats(spec.design))


def _cases():
    import bayes_hlm as bh

    sleep = bh.datasets.load("sleepstudy")
    sim = bh.datasets.simulate(n_groups=6, rows_per_group=8, slope=False, nested=3,
                               group_sd=(1.0,), sigma=1.0, seed=3)
    sleep3 = sleep.assign(Days2=sleep["Days"] ** 2 / 10.0)
    return {
        "single": ("Reaction ~ Days + (Days | Subject)", sleep),
        "single_intercept": ("Reaction ~ Days + (1 | Subject)", sleep),
        "single_q3": ("Reaction ~ Days + (Days + Days2 | Subject)", sleep3),
        "nested_q1": (sim.formula, sim.data),
        "crossed": ("diameter ~ 1 + (1 | plate) + (1 | sample)", bh.datasets.load("penicillin")),
    }


#: case -> the entry point it runs (one factor: per q of its group term; q >= 3 share one)
_ENTRY = {"single": "single_q2", "single_intercept": "single_q1", "single_q3": "single_qn",
          "nested_q1": "nested_q1", "crossed": "crossed"}


@pytest.mark.parametrize("name", list(_ENTRY))
def test_entry_point_is_logp_grad_bit_for_bit(name):
    """Each structure's entry point (and its C callback) gives logp_grad's log density and
    gradient exactly: the same Python body with the other structures pruned (one factor: the
    chunk loop calls its q's group-term kernel without the run-time choice by q)."""
    from bayes_hlm.backends.numba_density import kernel_for, logp_grad

    pk = _packed(*_cases()[name])
    k = kernel_for(pk)
    assert k.py_func.__name__ == f"logp_grad_{_ENTRY[name]}"
    logp, _ = numba_nuts.callbacks(k)
    rng = np.random.default_rng(1)
    for _ in range(8):
        x = pk.init + rng.normal(0.0, 0.3, pk.ndim)
        g0, g1 = np.zeros(pk.ndim), np.zeros(pk.ndim)
        lp0 = logp_grad(x, pk.buf, g0)
        assert k(x, pk.buf, g1) == lp0 and np.array_equal(g0, g1)
        rc, lp2, g2 = _call(logp, x, pk.buf)
        assert rc == 0 and lp2 == lp0 and np.array_equal(g0, g2)


def test_the_shared_kernels_are_compiled_as_the_entry_points_call_them(tmp_path):
    """numba_density.compile_shared (a child's work before the model is known) compiles the
    kernels every entry point calls with the argument types the entry points pass: its
    signatures are among theirs when an entry point compiles (a fresh cache, so it does)."""
    code = textwrap.dedent("""
        import numpy as np
        from bayes_hlm.backends import numba_density as nd
        from test_kernel_entry_points import _cases, _packed
        pk = _packed(*_cases()["single_intercept"])
        nd.kernel_for(pk)(pk.init.copy(), pk.buf, np.zeros(pk.ndim))
        print(all(tuple(sig) in [tuple(s) for s in f.signatures] for f, sig in nd._shared().items()))
    """)
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path), PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "tests")]))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=300, cwd=ROOT)
    assert out.stdout.split() == ["True"], out.stderr


def test_a_fused_callback_drops_the_branches_its_constants_rule_out():
    """The fused callback's source keeps only what the entry point's constants leave (#18 item
    5: Numba's untyped passes no longer run over every structure's code): decided tests drop
    their dead branch, undecided ones stay, and a name the function assigns is no constant."""
    import ast

    from bayes_hlm.backends.nuts_callbacks import _prune_constant_branches

    src = textwrap.dedent("""
        def f(x, buf, grad):
            if _MODE == "one":
                a = 1
            else:
                a = untypable(x)
            if _MODE != "one" and x:
                b = 2
            if _MODE == "one" or x:
                c = 3
            if x and _MODE == "one":
                d = 4
            if not _MODE == "two":
                e = 5
            if local == "one":
                g = 6
            local = "one"
            return a
    """)
    fn = _prune_constant_branches(ast.parse(src).body[0], {"_MODE": "one", "local": "one"})
    assert ast.unparse(fn) == textwrap.dedent("""\
        def f(x, buf, grad):
            a = 1
            pass
            c = 3
            if x and _MODE == 'one':
                d = 4
            e = 5
            if local == 'one':
                g = 6
            local = 'one'
            return a""")


def test_the_one_factor_callback_holds_no_other_structure_s_code():
    from bayes_hlm.backends.numba_density import kernel

    logp, _ = numba_nuts.callbacks(kernel("single", 2))
    names = set(logp.__wrapped__.__code__.co_names)
    assert "_term_in_chunks" in names and "fixed_prior" in names
    assert not names & {"nested_term", "_csr_matvec", "_fold", "_sampled_q1", "term_and_grad"}
