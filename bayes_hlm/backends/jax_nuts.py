"""NUTS in one compiled JAX program, cached across processes (``sampler="jax"``).

NumPyro's NUTS kernel (``numpyro.infer.hmc.hmc``: Stan-style windowed diagonal
mass-matrix and dual-averaging step-size adaptation, multinomial trajectories,
max tree depth 10) runs on the PyMC model's jaxified log density, all chains
vectorised (``vmap``) in one XLA program.

What makes a second fit start warm:

* the model's shared variables (the sufficient statistics of the marginal
  backend) are *arguments* of the program, not constants, so new data of the
  same shapes reuse it;
* the three compiled XLA executables (init, a chunk of NUTS iterations,
  draws -> posterior variables) are serialised
  (``jax.experimental.serialize_executable``) under a key computed from
  the model graph's *structure* (ops, wiring, constants, shapes and names of
  shared variables, transforms), the chain/tune/target-accept settings and the
  library versions and the host CPU: a warm process neither rewrites the
  PyTensor graph nor traces, lowers or compiles anything;
* a cached program that fails to load or run is deleted and rebuilt.

The cache lives in ``$BAYES_HLM_CACHE`` (default ``~/.cache/bayes_hlm``).
A serialised executable *is* code (and JAX reads it with pickle), so nothing
is read from the cache unless it authenticates: every entry carries an
HMAC-SHA256 made with a per-user secret key kept *outside* the cache
directory (``$BAYES_HLM_KEY_DIR``, default ``~/.config/bayes_hlm/cache.key``,
created 0600 in a 0700 directory). An entry someone else wrote or changed
fails the check and is rebuilt, never unpickled; without a usable key the
disk cache is not used at all (in-process reuse only).
Sampling runs in chunks of iterations so a progress line can be shown and
Ctrl-C keeps the draws finished so far.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import os
import secrets
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from ..progress import phase

ENGINE_VERSION = "1"
#: below this many iterations per chunk the per-call overhead starts to show
_MIN_CHUNK = 50


# --------------------------------------------------------------------------- #
# cache location and JAX configuration
# --------------------------------------------------------------------------- #
def cache_dir() -> Path:
    root = os.environ.get("BAYES_HLM_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "bayes_hlm")
    return Path(root)


def key_path() -> Path:
    """Where the cache's secret key lives: outside the cache directory."""
    root = os.environ.get("BAYES_HLM_KEY_DIR") or os.path.join(
        os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config"),
        "bayes_hlm")
    return Path(root) / "cache.key"


def _secret() -> bytes | None:
    """The per-user HMAC key (created on first use), or None when it cannot be trusted.

    Refused: a key inside the cache directory (whoever writes the cache could read or
    replace it), a symlink, a file of another user or readable/writable by others.
    """
    path = key_path()
    try:
        cache = cache_dir().resolve()
        kdir = path.parent.resolve()
        if kdir == cache or cache in kdir.parents:
            return None
        if not path.exists():
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:  # another process made it first
                pass
            else:
                with os.fdopen(fd, "wb") as f:
                    f.write(secrets.token_bytes(32))
        st = os.lstat(path)
        import stat

        if not stat.S_ISREG(st.st_mode) or st.st_mode & 0o077 or (
                hasattr(os, "getuid") and st.st_uid != os.getuid()):
            return None
        key = path.read_bytes()
    except OSError:
        return None
    return key if len(key) == 32 else None


def _mac(key: bytes, entry: str, meta: dict, blobs: dict) -> str:
    """HMAC over the entry's name, its metadata and every blob."""
    h = hmac.new(key, digestmod=hashlib.sha256)
    h.update(entry.encode() + b"\0" + json.dumps(meta, sort_keys=True).encode())
    for name in sorted(blobs):
        h.update(b"\0" + name.encode() + b"\0" + hashlib.sha256(blobs[name]).digest())
    return h.hexdigest()


_CONFIGURED = False


def _configure_jax():
    """x64 (the executables themselves are cached by this module, see get_programs)."""
    global _CONFIGURED
    import jax

    if not _CONFIGURED:
        jax.config.update("jax_enable_x64", True)
        _CONFIGURED = True
    return jax


def available() -> bool:
    """Whether JAX and NumPyro are installed: looked up, not imported (importing JAX takes
    seconds, wasted when another engine runs; a broken install fails at run time, and the
    engine chooser then falls back, see :func:`bayes_hlm.backends.engine.run_with_fallback`)."""
    import importlib.util
    import sys

    def installed(name: str) -> bool:
        # in sys.modules: imported, or a lazy module another library registered, whose
        # __spec__ (what find_spec would read) imports it: seconds for JAX
        if name in sys.modules:
            return sys.modules[name] is not None
        return importlib.util.find_spec(name) is not None

    try:
        return all(installed(m) for m in ("jax", "numpyro"))
    except (ImportError, ValueError):
        return False


# --------------------------------------------------------------------------- #
# structural key of a PyMC model
# --------------------------------------------------------------------------- #
def _op_sig(op) -> str:
    props = getattr(op, "__props__", None)
    if props:
        try:
            vals = [repr(getattr(op, p)) for p in props]
            return f"{type(op).__module__}.{type(op).__qualname__}({','.join(vals)})"
        except Exception:
            pass
    return f"{type(op).__module__}.{type(op).__qualname__}:{op}"


def _transform_sig(t) -> str:
    if t is None:
        return "None"
    attrs = {k: repr(v) for k, v in sorted(vars(t).items())} if hasattr(t, "__dict__") else {}
    return f"{type(t).__qualname__}{attrs}"


def model_structure(model) -> tuple[str, list]:
    """(hex key, data inputs in a stable order) of a PyMC model.

    The key covers every op and its parameters, the wiring, the values of
    integer/boolean constants, the type (dtype, shape) and name of each shared
    variable and float constant, the variable names, dims and transforms. The
    values held by shared variables and float constants (the data, and prior
    parameters, which Bambi scales by the data) are not in it: they become
    arguments of the compiled program, so models that differ only in their
    data share the key and the program.
    """
    from pytensor.compile.sharedvalue import SharedVariable
    from pytensor.graph.basic import Constant
    from pytensor.graph.traversal import io_toposort
    from pytensor.graph.traversal import graph_inputs

    outs = list(model.free_RVs) + list(model.potentials) + list(model.deterministics) \
        + list(model.observed_RVs)
    h = hashlib.sha256()
    ids: dict = {}
    shared: list = []

    def ref(v):
        if v in ids:
            return ids[v]
        ids[v] = len(ids)
        if isinstance(v, SharedVariable):
            if _is_rng(v):
                h.update(b"rng;")
            elif _liftable(v):
                shared.append(v)
                h.update(f"shared:{v.name}:{v.type};".encode())
            else:  # integer data (indices, sizes) may set shapes: baked in as constants
                a = np.ascontiguousarray(v.get_value(borrow=True))
                h.update(f"baked:{v.name}:{v.type}:".encode())
                h.update(hashlib.sha1(a.tobytes()).digest())
        elif isinstance(v, Constant) and _liftable(v):
            # prior parameters (Bambi's scale with the data) become program inputs too
            shared.append(v)
            h.update(f"lifted:{v.type};".encode())
        elif isinstance(v, Constant):
            a = np.asarray(v.data)
            h.update(f"const:{v.type}:{a.dtype}:{a.shape}:".encode())
            raw = repr(v.data).encode() if a.dtype == object else np.ascontiguousarray(a).tobytes()
            h.update(hashlib.sha1(raw).digest())
        else:
            h.update(f"in:{v.type}:{v.name};".encode())
        return ids[v]

    for v in graph_inputs(outs):
        ref(v)
    for node in io_toposort([], outs):
        ins = [ref(i) for i in node.inputs]
        h.update(f"{_op_sig(node.op)}{ins};".encode())
        for o in node.outputs:
            ids[o] = len(ids)
            h.update(f"{o.type};".encode())
    for v in outs:
        h.update(f"out:{v.name}:{ref(v)}:{model.named_vars_to_dims.get(v.name)};".encode())
    for rv in model.free_RVs:
        h.update(f"tr:{rv.name}:{_transform_sig(model.rvs_to_transforms.get(rv))};".encode())
    return h.hexdigest(), shared


def _is_rng(v) -> bool:
    return "Random" in type(v.type).__name__ or "RandomGenerator" in str(v.type)


def _liftable(c) -> bool:
    """Float constants of the model graph are passed as arguments, not baked in."""
    dt = getattr(c.type, "dtype", "")
    return isinstance(dt, str) and dt.startswith("float")


def input_values(inputs) -> list[np.ndarray]:
    """Current values of the program's data inputs (shared variables and lifted constants)."""
    from pytensor.graph.basic import Constant

    return [np.asarray(v.data if isinstance(v, Constant) else v.get_value(borrow=True))
            for v in inputs]


def _versions() -> str:
    import jax
    import numpyro
    import pymc
    import pytensor

    import jaxlib

    from . import group_kernel, group_term_op

    # this engine's code and the JAX kernels it lowers custom ops to
    src = hashlib.sha1(Path(__file__).read_bytes() + Path(group_kernel.__file__).read_bytes()
                       + Path(group_term_op.__file__).read_bytes()).hexdigest()[:12]
    return f"{ENGINE_VERSION}:{src}:jax{jax.__version__}:jaxlib{jaxlib.__version__}:" \
           f"numpyro{numpyro.__version__}:pymc{pymc.__version__}:pytensor{pytensor.__version__}:" \
           f"{_host_id()}"


def _host_id() -> str:
    """Compiled executables are specific to the CPU's instruction set."""
    import platform

    flags = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("flags", "Features", "model name")):
                    flags += line
                    if line.startswith(("flags", "Features")):
                        break
    except OSError:
        pass
    return platform.machine() + ":" + hashlib.sha1(flags.encode()).hexdigest()[:12]


def chunk_size(tune: int, draws: int) -> int:
    """Iterations per compiled call: about a tenth of the run, a divisor when one is near."""
    total = tune + draws
    for n in range(10, 4, -1):
        if total % n == 0 and total // n >= _MIN_CHUNK:
            return total // n
    return max(min(total, _MIN_CHUNK), math.ceil(total / 10))


# --------------------------------------------------------------------------- #
# building (cold) and loading (warm) the compiled programs
# --------------------------------------------------------------------------- #
class Programs:
    def __init__(self, run, post, meta):
        self.run, self.post, self.meta = run, post, meta


def _register_asserts():
    """Parameter checks as pass-through in JAX, as ``pymc.sampling.jax`` does (importing
    that module would also set ``XLA_FLAGS`` to 100 host devices)."""
    from pymc.logprob.utils import CheckParameterValue
    from pytensor.link.jax.dispatch import jax_funcify
    from pytensor.raise_op import Assert

    def funcify(op, **kwargs):
        def assert_fn(value, *inps):
            return value

        return assert_fn

    jax_funcify.register(Assert)(funcify)
    jax_funcify.register(CheckParameterValue)(funcify)
    from .group_kernel import register_jax

    register_jax()


def _build(model, shared, chains: int, tune: int, draws: int, chunk: int, target_accept: float,
           data):
    """Trace and compile init/chunk/post; returns (Programs, serialised blobs)."""
    jax = _configure_jax()
    import jax.numpy as jnp
    from numpyro.infer.hmc import hmc
    from pymc.util import get_default_varnames
    from pytensor.compile.mode import JAX as JAX_MODE
    from pytensor.graph.fg import FunctionGraph
    from pytensor.graph.replace import clone_replace
    from pytensor.link.jax.dispatch import jax_funcify
    _register_asserts()
    from pytensor.graph.traversal import graph_inputs

    from pymc.initial_point import make_initial_point_expression

    free = list(model.free_RVs)
    value_vars = [model.rvs_to_values[rv] for rv in free]
    inputs = [s.type(name=f"_bh_input{i}") for i, s in enumerate(shared)]
    repl = dict(zip(shared, inputs))
    import pytensor.tensor as pt
    from pytensor.compile.sharedvalue import SharedVariable

    outs_all = list(model.free_RVs) + list(model.potentials) + list(model.deterministics)
    for v in graph_inputs(outs_all):
        if isinstance(v, SharedVariable) and v not in repl and not _is_rng(v):
            repl[v] = pt.constant(v.get_value(borrow=True), dtype=v.type.dtype)

    def jaxify(outputs, with_values=True):
        outs = clone_replace(outputs, replace=repl) if repl else outputs
        fg = FunctionGraph(inputs=(value_vars if with_values else []) + inputs, outputs=outs,
                           clone=True)
        JAX_MODE.optimizer.rewrite(fg)
        return jax_funcify(fg)

    # PyMC's initial point (support points, transformed) as a function of the inputs, since the
    # prior parameters are inputs too; PyMC's U(-1, 1) jitter is added on the host's draws
    rvs2 = clone_replace(free, replace=repl) if repl else free
    ip_exprs = make_initial_point_expression(
        free_rvs=rvs2,
        rvs_to_transforms={r2: model.rvs_to_transforms.get(r) for r, r2 in zip(free, rvs2)},
        initval_strategies={r2: model.rvs_to_initial_values.get(r) for r, r2 in zip(free, rvs2)},
        return_transformed=True)
    by_name = {v.name: v for v in inputs}
    back = {v: by_name[v.name] for v in graph_inputs(ip_exprs)
            if v.name in by_name and v is not by_name[v.name]}
    ip_exprs = clone_replace(ip_exprs, replace=back) if back else ip_exprs
    rngs = [v for v in graph_inputs(ip_exprs) if isinstance(v, SharedVariable) and v not in back]
    fg = FunctionGraph(inputs=inputs + rngs, outputs=ip_exprs, clone=True)
    JAX_MODE.optimizer.rewrite(fg)
    if any(fg.clients[r] for r in fg.inputs[len(inputs):]):
        raise NotImplementedError("the model's initial point needs random draws")
    fg = FunctionGraph(inputs=fg.inputs[:len(inputs)], outputs=fg.outputs, clone=False)
    ip_fn = jax_funcify(fg)

    logp_fn = jaxify([model.logp()])
    out_vars = list(get_default_varnames(model.unobserved_value_vars, include_transformed=False))
    post_fn = jaxify(out_vars)

    ip = jax.eval_shape(ip_fn, *[jax.ShapeDtypeStruct(np.shape(a), np.asarray(a).dtype)
                                 for a in data])
    shapes = [tuple(a.shape) for a in ip]
    sizes = [int(np.prod(s)) for s in shapes]
    dim = int(sum(sizes))

    def unflat(x):
        out, o = [], 0
        for s, n in zip(shapes, sizes):
            out.append(x[o:o + n].reshape(s))
            o += n
        return out

    def pot_gen(*d):
        return lambda x: -logp_fn(*unflat(x), *d)[0]

    init_k, sample_k = hmc(potential_fn_gen=pot_gen, algo="NUTS")

    def init(u, keys, *d):
        pot = pot_gen(*d)
        x0 = jnp.concatenate([jnp.ravel(a).astype(jnp.float64) for a in ip_fn(*d)])

        def one(uj, key):
            xj = x0 + uj
            x = jnp.where(jnp.isfinite(pot(xj)), xj, x0)
            st = init_k(x, num_warmup=tune, target_accept_prob=target_accept, model_args=d,
                        rng_key=key)
            return jax.tree_util.tree_leaves(st)

        return jax.vmap(one)(u, keys)

    # the state's tree structure, known from one abstract evaluation
    d_abs = [jax.ShapeDtypeStruct(np.shape(a), np.asarray(a).dtype) for a in data]
    x_abs = jax.ShapeDtypeStruct((dim,), jnp.float64)
    xs_abs = jax.ShapeDtypeStruct((chains, dim), jnp.float64)
    k_abs = jax.ShapeDtypeStruct((chains, 2), jnp.uint32)

    treedef_box = {}

    def init_tree(x0, key, *d):
        st = init_k(x0, num_warmup=tune, target_accept_prob=target_accept, model_args=d,
                    rng_key=key)
        treedef_box["t"] = jax.tree_util.tree_structure(st)
        return st

    jax.eval_shape(init_tree, x_abs, jax.ShapeDtypeStruct((2,), jnp.uint32), *d_abs)
    treedef = treedef_box["t"]

    def chunk_fn(leaves, *d):
        def one(lv):
            st = jax.tree_util.tree_unflatten(treedef, lv)

            def body(s, _):
                s = sample_k(s, model_args=d)
                return s, (s.z, s.potential_energy, s.energy, s.num_steps, s.accept_prob,
                           s.diverging, s.adapt_state.step_size)

            st, tr = jax.lax.scan(body, st, None, length=chunk)
            return jax.tree_util.tree_leaves(st), tr

        return jax.vmap(one)(leaves)

    def post(zs, *d):  # zs: (S, dim)
        return jax.vmap(lambda x: post_fn(*unflat(x), *d))(zs)

    leaves_abs = [jax.ShapeDtypeStruct(a.shape, a.dtype)
                  for a in jax.eval_shape(init, xs_abs, k_abs, *d_abs)]

    def run(leaves, first, u, keys, *d):
        # one executable for both: a second one would cost its own load time when warm
        leaves = jax.lax.cond(first, lambda: init(u, keys, *d), lambda: list(leaves))
        return chunk_fn(leaves, *d)

    # Compiled afresh, not from JAX's persistent cache: an executable loaded from that cache
    # serialises without its kernels ("Function ... not found" when the blob is loaded).
    prev = jax.config.jax_enable_compilation_cache
    jax.config.update("jax_enable_compilation_cache", False)
    try:
        run_c = jax.jit(run).lower(leaves_abs, jax.ShapeDtypeStruct((), jnp.bool_), xs_abs,
                                   k_abs, *d_abs).compile()
        post_c = jax.jit(post).lower(
            jax.ShapeDtypeStruct((chains * draws, dim), jnp.float64), *d_abs).compile()
    finally:
        jax.config.update("jax_enable_compilation_cache", prev)
    meta = dict(
        value_vars=[v.name for v in value_vars], shapes=shapes, dim=dim,
        out_names=[v.name for v in out_vars], chains=chains, tune=tune, draws=draws,
        chunk=chunk, target_accept=target_accept,
        leaves=[[list(a.shape), str(np.dtype(a.dtype))] for a in leaves_abs],
    )
    progs = Programs(run_c, post_c, meta)
    blobs = {}
    try:
        import pickle

        from jax.experimental import serialize_executable as se

        for name, c in (("run", run_c), ("post", post_c)):
            blobs[name] = pickle.dumps(se.serialize(c))
    except Exception:  # not serialisable on this backend: in-process reuse only
        blobs = {}
    return progs, blobs


def _save(path: Path, blobs: dict, meta: dict):
    key = _secret()
    if key is None:  # nothing on disk we could later verify
        return
    path.mkdir(parents=True, exist_ok=True)
    for name, b in blobs.items():
        fd, tmp = tempfile.mkstemp(dir=path, prefix=f".{name}.")
        with os.fdopen(fd, "wb") as f:
            f.write(b)
        os.replace(tmp, path / f"{name}.bin")
    fd, tmp = tempfile.mkstemp(dir=path, prefix=".meta.")
    with os.fdopen(fd, "w") as f:
        json.dump({"meta": meta, "hmac": _mac(key, path.name, meta, blobs)}, f)
    os.replace(tmp, path / "meta.json")  # written last: its presence marks a complete entry


def _load(path: Path) -> Programs | None:
    if not (path / "meta.json").exists():
        return None
    key = _secret()
    if key is None:
        return None
    try:  # authenticate before anything is unpickled or loaded as an executable
        entry = json.loads((path / "meta.json").read_text())
        meta, tag = entry["meta"], entry["hmac"]
        blobs = {n: (path / f"{n}.bin").read_bytes() for n in ("run", "post")}
        if not (isinstance(tag, str) and hmac.compare_digest(tag, _mac(key, path.name, meta, blobs))):
            return None
    except (OSError, ValueError, KeyError, TypeError):
        return None
    _configure_jax()
    try:
        import pickle

        from jax.experimental import serialize_executable as se

        import jax

        # LAPACK's function pointers are set up lazily, when a linalg op is first lowered; a
        # loaded executable calls them directly, so without this a fresh process segfaults
        # on its first Cholesky (every model with a correlation block)
        from jax._src.lax import linalg as _linalg

        _linalg.initialize_lapack()
        dev = jax.devices("cpu")[:1]  # pymc.sampling.jax may have asked XLA for 100 CPU devices
        progs = [se.deserialize_and_load(*pickle.loads(blobs[n]),
                                         backend=dev[0].client, execution_devices=dev)
                 for n in ("run", "post")]
    except Exception:
        return None
    meta["shapes"] = [tuple(s) for s in meta["shapes"]]
    return Programs(*progs, meta)


_MEMO: dict = {}  # in-process: key -> Programs with jitted callables


def get_programs(model, chains: int, tune: int, draws: int, target_accept: float,
                 rebuild: bool = False):
    """Programs for this model structure and settings, plus the shared variables' values.

    ``rebuild=True`` discards the cached entry (in process and on disk) first.
    """
    key, shared = model_structure(model)
    data = input_values(shared)
    chunk = chunk_size(tune, draws)
    full = hashlib.sha256(
        f"{key}|{_versions()}|{chains}|{tune}|{draws}|{chunk}|{float(target_accept)!r}".encode()).hexdigest()[:32]
    path = cache_dir() / "nuts" / full
    if rebuild:
        _MEMO.pop(full, None)
        shutil.rmtree(path, ignore_errors=True)
    if full in _MEMO:
        return _MEMO[full], data, True
    with phase("loading the compiled JAX sampler from the cache"):
        progs = _load(path)
    warm = progs is not None
    if progs is None:
        # cached per model structure and settings: a refit of this model loads it
        with phase("compiling the model's NUTS sampler with JAX (once per model structure "
                   "and settings on this machine)", long=True):
            progs, blobs = _build(model, shared, chains, tune, draws, chunk, float(target_accept),
                                  data)
        if blobs:
            try:
                _save(path, blobs, progs.meta)
            except OSError:
                pass
    _MEMO[full] = progs
    return progs, data, warm


# --------------------------------------------------------------------------- #
# sampling
# --------------------------------------------------------------------------- #
def _progress(done: int, total: int, t0: float, div: int, enabled: bool):
    if not enabled:
        return
    el = time.perf_counter() - t0
    sys.stderr.write(f"\rNUTS (jax) {done}/{total} iterations, {div} divergences, {el:.1f}s")
    if done >= total:
        sys.stderr.write("\n")
    sys.stderr.flush()


def sample_jax(model, cfg, var_names=None):
    """Sample ``model`` with the cached JAX NUTS; returns ``SampleOutput``."""
    t0 = time.perf_counter()
    progs, data, warm = get_programs(model, cfg.chains, cfg.tune, cfg.draws, cfg.target_accept)
    jax = _configure_jax()
    try:
        return _sample_with(progs, data, warm, model, cfg, var_names, t0)
    except jax.errors.JaxRuntimeError:
        if not warm:
            raise
        # a cached executable that does not run (e.g. written by another JAX build): rebuild
        progs, data, warm = get_programs(model, cfg.chains, cfg.tune, cfg.draws,
                                         cfg.target_accept, rebuild=True)
        return _sample_with(progs, data, warm, model, cfg, var_names, t0)


def _sample_with(progs, data, warm, model, cfg, var_names, t0):
    import xarray as xr
    from pymc.backends.arviz import coords_and_dims_for_inferencedata

    from .sampling import SampleOutput

    jax = _configure_jax()
    meta = progs.meta
    chains, tune, draws, C = cfg.chains, cfg.tune, cfg.draws, meta["chunk"]
    rng = np.random.default_rng(cfg.seed)
    u = rng.uniform(-1, 1, size=(chains, meta["dim"]))  # PyMC's default jitter
    # raw threefry keys, one per chain, without a JAX call (its first call costs ~0.5 s)
    keys = np.random.SeedSequence([cfg.seed, 2718]).generate_state(2 * chains).reshape(chains, 2)
    state = [np.zeros(shape, dtype) for shape, dtype in meta["leaves"]]
    t1 = time.perf_counter()

    total = tune + draws
    n_chunks = math.ceil(total / C)
    traces, done, interrupted, ndiv = [], 0, False, 0
    try:
        for k in range(n_chunks):
            state, tr = progs.run(state, np.bool_(k == 0), u, keys, *data)
            tr = jax.device_get(tr)
            traces.append(tr)
            done += C
            ndiv += int(np.sum(tr[5][:, max(0, tune - (done - C)):]) if done > tune else 0)
            _progress(min(done, total), total, t1, ndiv, cfg.progressbar)
    except KeyboardInterrupt:
        interrupted = True
        if cfg.progressbar:
            sys.stderr.write("\ninterrupted: keeping the draws done so far\n")
    t2 = time.perf_counter()
    if not traces or done <= tune:
        raise KeyboardInterrupt("interrupted before any post-warmup draw")
    tr = [np.concatenate([t[i] for t in traces], axis=1)[:, tune:tune + draws] for i in range(7)]
    z, pe, energy, nsteps, acc, div, step = tr
    n = z.shape[1]
    zp = z if n == draws else np.concatenate(
        [z, np.repeat(z[:, -1:], draws - n, axis=1)], axis=1)  # interrupted: pad, then cut
    outs = progs.post(zp.reshape(chains * draws, -1), *data)
    outs = [np.asarray(o).reshape((chains, draws) + np.shape(o)[1:])[:, :n] for o in outs]

    coords, dims = coords_and_dims_for_inferencedata(model)
    pvars = {}
    for name, arr in zip(meta["out_names"], outs):
        if var_names is not None and name not in var_names:
            continue
        vd = list(dims.get(name) or [])
        vd += [f"{name}_dim_{i}" for i in range(len(vd), arr.ndim - 2)]
        pvars[name] = (("chain", "draw", *vd), arr)
    used = {d for _, (vd, _) in pvars.items() for d in vd}
    pc = {"chain": np.arange(chains), "draw": np.arange(n)}
    pc.update({k: np.asarray(v) for k, v in coords.items() if k in used})
    attrs = {"sampling_time": t2 - t1, "tuning_steps": tune, "inference_library": "numpyro",
             "engine": "bayes_hlm.jax_nuts", "cache_warm": warm}
    posterior = xr.Dataset(pvars, coords=pc, attrs=attrs)
    tree_depth = np.ceil(np.log2(nsteps.astype(np.float64) + 1)).astype(np.int64)
    stats = xr.Dataset({
        "diverging": (("chain", "draw"), div.astype(bool)),
        "energy": (("chain", "draw"), energy),
        "lp": (("chain", "draw"), -pe),
        "tree_depth": (("chain", "draw"), tree_depth),
        "n_steps": (("chain", "draw"), nsteps.astype(np.int64)),
        "acceptance_rate": (("chain", "draw"), acc),
        "step_size": (("chain", "draw"), step),
    }, coords={"chain": pc["chain"], "draw": pc["draw"]}, attrs=attrs)
    tree = xr.DataTree.from_dict({"posterior": posterior, "sample_stats": stats})
    t3 = time.perf_counter()
    # compile_s: cache lookup/build + init; sampling: the NUTS iterations; the
    # posterior transform (one vectorised call) is counted with sampling
    return SampleOutput(tree=tree, compile_s=t1 - t0, sample_s=t3 - t1, interrupted=interrupted)
