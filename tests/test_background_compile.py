"""The density compiled in a child process on a cold cache (#18 item 5): the fit loads what
the child cached; a child that fails, hangs or is never joined changes nothing and is
never left behind."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from bayes_hlm.backends import background_compile as bc
from bayes_hlm.backends import numba_nuts

ROOT = Path(__file__).resolve().parent.parent
TESTS = Path(__file__).resolve().parent


@pytest.fixture
def child_env(tmp_path, monkeypatch):
    """An empty Numba cache for this process and its children; the children find tiny_kernels."""
    import numba

    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), str(TESTS)]))
    monkeypatch.delenv(bc.OFF_ENV, raising=False)
    monkeypatch.setattr(bc, "_cores", lambda: 2)
    monkeypatch.setattr(numba.config, "CACHE_DIR", str(tmp_path))
    yield tmp_path
    bc._stop_all()


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_child_compiles_into_the_cache_a_fresh_process_loads(child_env):
    """The child's callbacks land in the cache: a fresh process then compiles nothing."""
    import tiny_kernels

    assert bc.start(tiny_kernels.logp_sq, ("tiny_kernels", "get", ("logp_sq",)))
    assert bc.pending()
    assert bc.join(tiny_kernels.logp_sq) is True
    assert not bc.pending()
    code = textwrap.dedent("""
        from bayes_hlm.backends import numba_nuts
        import tiny_kernels
        cold = numba_nuts.compile_cache_cold(tiny_kernels.logp_sq)
        logp, _ = numba_nuts.callbacks(tiny_kernels.logp_sq)
        print(cold, logp.cache_hits)
    """)
    env = dict(os.environ, NUMBA_CACHE_DIR=str(child_env))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=300, cwd=ROOT)
    assert out.stdout.split() == ["False", "1"], out.stderr


def test_a_child_started_ahead_compiles_the_kernel_it_is_handed(child_env):
    """prestart: the child runs its first part at once, then compiles the kernel start() names
    (no second child); its callbacks land in the cache."""
    import tiny_kernels

    assert bc.prestart(("tiny_kernels", "get", ("_plus_one",)))
    assert not bc.prestart(("tiny_kernels", "get", ("_plus_one",)))  # one at a time
    proc = bc._WAITING[0]
    assert bc.start(tiny_kernels.logp_sq, ("tiny_kernels", "get", ("logp_sq",)))
    assert not bc._WAITING and bc._CHILDREN["logp_sq"] is proc
    assert bc.join(tiny_kernels.logp_sq) is True
    code = ("from bayes_hlm.backends import numba_nuts; import tiny_kernels; "
            "print(numba_nuts.compile_cache_cold(tiny_kernels.logp_sq))")
    out = subprocess.run([sys.executable, "-c", code], env=dict(os.environ, NUMBA_CACHE_DIR=str(child_env)),
                         capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert out.stdout.split() == ["False"], out.stderr


def test_a_child_started_ahead_and_let_go_exits(child_env, monkeypatch):
    import tiny_kernels

    monkeypatch.setenv(bc.OFF_ENV, "1")
    assert not bc.prestart(("tiny_kernels", "get", ("_plus_one",)))
    monkeypatch.delenv(bc.OFF_ENV)
    assert bc.prestart(("tiny_kernels", "get", ("_plus_one",)))
    bc.release()  # the fit needed no kernel
    assert not bc._WAITING
    assert bc._RELEASED[-1].wait(120) == 0
    assert bc.join(tiny_kernels.logp_sq) is None


def test_a_failing_child_leaves_the_compile_to_this_process(child_env):
    import tiny_kernels

    assert bc.start(tiny_kernels.logp_sq, ("tiny_kernels", "broken", ()))
    proc = bc._CHILDREN[tiny_kernels.logp_sq.py_func.__name__]
    assert bc.join(tiny_kernels.logp_sq) is False
    assert proc.returncode not in (None, 0)  # reaped
    logp, _ = numba_nuts.callbacks(tiny_kernels.logp_sq)  # compiles here as before
    assert logp.ctypes is not None


def test_a_hung_child_is_killed_and_reaped(child_env, monkeypatch):
    import tiny_kernels

    monkeypatch.setattr(bc, "_command", lambda factory: [sys.executable, "-c",
                                                         "import time; time.sleep(120)"])
    assert bc.start(tiny_kernels.logp_sq, ("tiny_kernels", "get", ("logp_sq",)))
    proc = bc._CHILDREN[tiny_kernels.logp_sq.py_func.__name__]
    t = time.perf_counter()
    assert bc.join(tiny_kernels.logp_sq, timeout=0.5) is False
    assert time.perf_counter() - t < 30
    assert proc.returncode is not None and _gone(proc.pid)


def test_no_child_when_turned_off_or_without_a_python(child_env, monkeypatch):
    import tiny_kernels

    monkeypatch.setenv(bc.OFF_ENV, "1")
    assert not bc.start(tiny_kernels.logp_sq, ("tiny_kernels", "get", ("logp_sq",)))
    monkeypatch.delenv(bc.OFF_ENV)
    monkeypatch.setattr(bc, "_command", lambda factory: ["/nonexistent/python"])
    assert not bc.start(tiny_kernels.logp_sq, ("tiny_kernels", "get", ("logp_sq",)))
    assert not bc.pending()
    assert bc.join(tiny_kernels.logp_sq) is None  # nothing to wait for


def test_a_child_never_joined_is_stopped_at_exit(tmp_path):
    """A fit that fails (or takes another engine) after starting the child: the interpreter's
    exit stops and reaps it."""
    code = textwrap.dedent("""
        from bayes_hlm.backends import background_compile as bc
        import sys, tiny_kernels
        bc._cores = lambda: 2
        bc._command = lambda factory: [sys.executable, "-c", "import time; time.sleep(120)"]
        assert bc.start(tiny_kernels.logp_sq, ("tiny_kernels", "get", ("logp_sq",)))
        print(bc._CHILDREN["logp_sq"].pid, flush=True)
    """)
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path),
               PYTHONPATH=os.pathsep.join([str(ROOT), str(TESTS)]))
    env.pop(bc.OFF_ENV, None)
    t = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=120, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert time.perf_counter() - t < 60  # did not wait for the 120 s child
    pid = int(out.stdout.split()[0])
    assert _gone(pid)


def test_effect_draws_compiled_ahead_are_the_fit_s_signatures():
    """conditional_draws.compile_ahead compiles the kernels (and argument types) the fit's own
    draws use: those then add no signature."""
    import bayes_hlm as bh
    from bayes_hlm.backends import conditional_draws as cd
    from bayes_hlm.backends.keyed_noise import _fill_serial
    from bayes_hlm.backends.sufficient_stats import compute_stats
    from bayes_hlm.spec.build import build_spec

    spec = build_spec("Reaction ~ Days + (Days | Subject)", bh.datasets.load("sleepstudy"))
    stats = compute_stats(spec.design)
    cd.compile_ahead(stats)
    n = len(cd._block_draws_serial.signatures), len(_fill_serial.signatures)
    S = 300
    L = np.broadcast_to(np.eye(2) * 25.0, (S, 2, 2))
    b = cd.draw_group_effects(stats, np.zeros((S, 2)), np.full(S, 20.0), [L], seed=5)
    assert b[0].shape == (S, 18, 2)
    assert (len(cd._block_draws_serial.signatures), len(_fill_serial.signatures)) == n


def test_a_cold_fit_loads_the_density_its_child_compiled(tmp_path):
    """On an empty cache a one-factor fit starts the child when the model is built, draws
    nothing meanwhile but the effect-draw compile, and loads the child's density from the
    cache (the callback counts a cache hit: this process did not compile it)."""
    code = textwrap.dedent("""
        import warnings
        import bayes_hlm as bh
        from bayes_hlm.backends import background_compile as bc, numba_nuts
        from bayes_hlm.backends.numba_density import kernel
        started = []
        _start = bc.start
        bc._cores = lambda: 2
        bc.start = lambda *a: started.append(a[1]) or _start(*a)
        warnings.simplefilter("ignore")
        m = bh.fit("Reaction ~ Days + (1 | Subject)", bh.datasets.load("sleepstudy"), chains=1,
                   draws=30, tune=30, seed=1, progressbar=False)
        logp, _ = numba_nuts._CALLBACKS[kernel("single", 1)]
        import hashlib
        draws = hashlib.sha1(m.tree["posterior"]["fixed"].values.tobytes()).hexdigest()
        print(m.info.sampler, started, logp.cache_hits, bc.pending())
        print(draws)
    """)
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path), BAYES_HLM_CACHE=str(tmp_path / "bh"),
               PYTHONPATH=str(ROOT))
    env.pop(bc.OFF_ENV, None)
    cold, warm = [subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                                 text=True, timeout=900, cwd=ROOT) for _ in range(2)]
    assert cold.returncode == 0, cold.stderr
    assert cold.stdout.split("\n")[-3] == (
        "numba [('bayes_hlm.backends.numba_density', 'kernel', ('single', 1))] 1 False"), cold.stdout
    # the same draws as a warm fit's, bit for bit (nothing compiled in this process is what
    # its loaded callback calls: the JIT would bind the callback's kernels to those copies)
    assert warm.stdout.split("\n")[-3] == "numba [] 1 False", warm.stdout
    assert cold.stdout.split("\n")[-2] == warm.stdout.split("\n")[-2]


def test_the_child_s_imports_are_light():
    """The child imports the density and the callback factory only: no pandas, PyTensor, PyMC
    or xarray (seconds of its CPU on the cold path, #18 item 5)."""
    code = ("import sys, bayes_hlm.backends.background_compile, bayes_hlm.backends.numba_density, "
            "bayes_hlm.backends.nuts_callbacks; "
            "print(sorted(m for m in ('pandas', 'pytensor', 'pymc', 'xarray', 'arviz') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert out.stdout.strip() == "[]"


def test_group_kernel_s_op_names_resolve_lazily():
    from bayes_hlm.backends import group_kernel, group_term_op

    assert group_kernel.GroupMarginalTerm is group_term_op.GroupMarginalTerm
    assert group_kernel.register_jax is group_term_op.register_jax
    with pytest.raises(AttributeError):
        group_kernel.no_such_name
