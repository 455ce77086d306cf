"""nutpie's C callbacks around a compiled density: one factory for every compiled density
(the collapsed Gaussian one's per-structure entry points, the GLMM densities).

nutpie samples any model given as a C log-density callback plus a data pointer. A density
kernel ``logp_grad(x, buf, grad)`` (a ``cache=True`` Numba dispatcher) gets its callbacks here,
compiled once per machine into Numba's cache. Light on purpose (NumPy and Numba only): a
background compile's child (:mod:`.background_compile`) imports this and the density's module,
not the samplers, PyMC or pandas. :mod:`.numba_nuts` re-exports these names.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import inspect
import textwrap
import types

import numpy as np

#: a kernel with this attribute set (true) gets its body compiled into its callback, not called
#: from it (:func:`_fused_logp`)
FUSE = "fuse_into_callback"


# --------------------------------------------------------------------------- #
# C callbacks for nutpie: one factory for every compiled density
# --------------------------------------------------------------------------- #
def _logp_c(dim, x_, out_, logp_, data_):
    """nutpie's log-density callback around a density kernel ``logp_grad(x, buf, grad)``
    (a template: :func:`_bound_logp` binds ``logp_grad`` per kernel). ``data_`` is the packed
    buffer, its length in its first slot. Returns 0, or nutpie's codes 4 (log density not
    finite) and 3 (gradient not finite)."""
    head = numba.carray(data_, (1,), dtype=np.float64)
    buf = numba.carray(data_, (int(head[0]),), dtype=np.float64)
    x = numba.carray(x_, (dim,))
    out = numba.carray(out_, (dim,))
    val = logp_grad(x, buf, out)  # noqa: F821 - bound per kernel in the function's globals
    logp_[0] = val
    if not np.isfinite(val):
        return 4
    for i in range(dim):
        if not np.isfinite(out[i]):
            return 3
    return 0


def _expand_c(dim, expanded, x_, out_, data_):
    # the draws are stored as sampled; the posterior variables are derived afterwards
    for i in range(dim):
        out_[i] = x_[i]
    return 0


def _signatures():
    import numba

    d = numba.types.CPointer(numba.types.double)
    logp = numba.types.int64(numba.types.uint64, d, d, d, numba.types.voidptr)
    expand = numba.types.int64(numba.types.uint64, numba.types.uint64, d, d, numba.types.voidptr)
    return logp, expand


@functools.cache
def _bound_logp(kernel):
    """:func:`_logp_c` calling ``kernel`` (a ``cache=True`` Numba dispatcher), as a function of
    its own that Numba caches on disk.

    Numba does not cache a closure over a dispatcher (the pickled closure differs between
    processes: every process compiled again, measured), so the template's code is re-bound
    with ``kernel`` as its global ``logp_grad``, named after the kernel and filed under the
    kernel's source file and line: Numba keys the cache file by that name and line, and checks
    it against that file's time stamp, so editing the density also invalidates its callback
    (which has the density compiled into it)."""
    import numba

    f = kernel.py_func
    if getattr(kernel, FUSE, False):
        return _fused_logp(kernel)
    name = f"{f.__name__}_logp_c"
    code = _logp_c.__code__.replace(co_name=name, co_filename=f.__code__.co_filename,
                                    co_firstlineno=f.__code__.co_firstlineno)
    g = types.FunctionType(code, {"numba": numba, "np": np, "logp_grad": kernel}, name)
    g.__qualname__ = f"{f.__qualname__}_logp_c"
    g.__module__ = f.__module__
    g.__doc__ = _logp_c.__doc__
    return g


def _fused_logp(kernel):
    """:func:`_logp_c` with ``kernel``'s Python body in place of its call: one function, so
    Numba types, lowers and optimises the density once, in the callback, instead of compiling
    the kernel into a library of its own (LLVM's full optimisation and machine code) and the
    callback again around it (#18 item 5: ~1 s of a cold first fit's compile).

    The kernel's body must end in its one ``return``; its arguments take the template's
    arrays. The branches its compile-time constants rule out (an entry point's ``_KIND``) are
    left out of the source (:func:`_prune_constant_branches`), so Numba reads only the code
    that the entry point runs. Filed, as :func:`_bound_logp`'s, under the kernel's source file
    and line (editing the density invalidates it); the name carries a hash of the template's
    and these functions' source, so that editing them does too. The numbers are the kernel's (the same code
    compiled in one piece: tested bit for bit)."""
    import numba

    f = kernel.py_func
    src = textwrap.dedent(inspect.getsource(f))
    fn = ast.parse(src).body[0]
    tpl = ast.parse(textwrap.dedent(inspect.getsource(_logp_c))).body[0]
    returns = [n for n in ast.walk(fn) if isinstance(n, ast.Return)]
    if not (isinstance(fn, ast.FunctionDef) and len(returns) == 1 and fn.body[-1] is returns[0]
            and len(fn.args.args) == 3 and not f.__closure__):
        raise ValueError(f"{f.__name__}: cannot be compiled into its callback (one final return, "
                         "three arguments, no closure)")
    ast.increment_lineno(fn, f.__code__.co_firstlineno - fn.lineno)
    # the template's call `val = logp_grad(x, buf, out)`: its argument names, the kernel's names
    at = next(i for i, st in enumerate(tpl.body) if isinstance(st, ast.Assign)
              and isinstance(st.value, ast.Call) and getattr(st.value.func, "id", "") == "logp_grad")
    names = {a.arg: arg.id for a, arg in zip(fn.args.args, tpl.body[at].value.args)}
    # the template's own locals that the kernel also uses (a loop index): renamed apart
    local = {n.id for n in ast.walk(tpl) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
    used = {n.id for n in ast.walk(fn) if isinstance(n, ast.Name)}
    apart = {n: f"{n}_cb" for n in (local - set(names.values())) & used}
    if (apart.keys() & {a.arg for a in tpl.args.args} or set(apart.values()) & (used | local)
            or used & (set(names.values()) - set(names))):
        raise ValueError(f"{f.__name__}: cannot be compiled into its callback (names)")

    class Rename(ast.NodeTransformer):
        def __init__(self, to):
            self.to = to

        def visit_Name(self, node):
            node.id = self.to.get(node.id, node.id)
            return node

    tpl = Rename(apart).visit(tpl)
    fn = _prune_constant_branches(fn, f.__globals__)

    body = fn.body[1:-1] if isinstance(fn.body[0], ast.Expr) and isinstance(
        getattr(fn.body[0], "value", None), ast.Constant) else fn.body[:-1]  # no docstring
    body = [Rename(names).visit(st) for st in body]
    ret = ast.Assign(targets=[tpl.body[at].targets[0]], value=Rename(names).visit(returns[0].value))
    for node in ast.walk(tpl):  # the template's lines at the kernel's
        if hasattr(node, "lineno"):
            node.lineno = node.end_lineno = fn.lineno
    tpl.body[at:at + 1] = body + [ast.copy_location(ret, returns[0])]
    tag = hashlib.sha1("".join(inspect.getsource(h) for h in (
        _logp_c, _fused_logp, _prune_constant_branches)).encode()).hexdigest()[:8]
    name = f"{f.__name__}_logp_cf{tag}"
    tpl.name, tpl.decorator_list, tpl.lineno = name, [], fn.lineno
    tree = ast.fix_missing_locations(ast.Module(body=[tpl], type_ignores=[]))
    scope = {**f.__globals__, "numba": numba, "np": np}
    exec(compile(tree, f.__code__.co_filename, "exec"), scope)
    g = scope.pop(name)
    g.__qualname__ = name
    g.__module__ = f.__module__
    g.__doc__ = f"{f.__name__} compiled into nutpie's callback (:func:`_fused_logp`)."
    return g


def _prune_constant_branches(fn: ast.FunctionDef, globals_: dict) -> ast.FunctionDef:
    """``fn`` without the ``if`` branches that its compile-time constants rule out: tests
    made of module constants (a global str, int or bool the function never assigns, such as
    an entry point's ``_KIND``) compared with literals, ``and``, ``or``, ``not``.

    Numba freezes globals and prunes such branches itself, but only after building the whole
    function's IR: its untyped passes (bytecode, IR, closure inlining) ran over every
    structure's code for each entry point's callback (~0.3 s of a cold first fit, #18 item 5).
    The code that remains is what Numba would compile after its own pruning."""
    assigned = {n.id for n in ast.walk(fn) if isinstance(n, ast.Name)
                and not isinstance(n.ctx, ast.Load)} | {a.arg for a in fn.args.args}

    def value(node):
        """The test's value when the constants decide it, else ``None``."""
        if isinstance(node, ast.Constant) and isinstance(node.value, (str, int, bool)):
            return node
        if (isinstance(node, ast.Name) and node.id not in assigned
                and type(globals_.get(node.id)) in (str, int, bool)):
            return ast.Constant(globals_[node.id])
        return None

    def decide(node):
        if isinstance(node, ast.Compare) and len(node.ops) == 1:
            a, b = value(node.left), value(node.comparators[0])
            if a is not None and b is not None:
                op = node.ops[0]
                if isinstance(op, ast.Eq):
                    return a.value == b.value
                if isinstance(op, ast.NotEq):
                    return a.value != b.value
            return None
        if isinstance(node, ast.BoolOp):
            known = [decide(v) for v in node.values]
            stop = isinstance(node.op, ast.Or)  # the value that decides: True for or
            if stop in known:
                return stop
            return (not stop) if all(k is not None for k in known) else None
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            v = decide(node.operand)
            return None if v is None else not v
        return None

    class Prune(ast.NodeTransformer):
        def visit_If(self, node):
            self.generic_visit(node)
            taken = decide(node.test)
            if taken is None:
                return node
            kept = node.body if taken else node.orelse
            return kept or ast.copy_location(ast.Pass(), node)

    return Prune().visit(fn)


def compile_cache_cold(kernel) -> bool:
    """True when :func:`callbacks` for ``kernel`` will compile (no usable Numba cache entry
    for its callback on this machine: first use, an upgrade, an empty ``NUMBA_CACHE_DIR``)."""
    from numba.core.caching import FunctionCache

    from ..progress import numba_cache_cold

    try:
        cache = FunctionCache(_bound_logp(kernel))
    except Exception:  # no cache locator (e.g. a read-only install): cannot tell, don't claim
        return False
    return numba_cache_cold(types.SimpleNamespace(_cache=cache))


#: kernel -> its (logp, expand) callbacks, built in this process
_CALLBACKS: dict = {}


def callbacks(kernel):
    """``(logp, expand)`` C callbacks for nutpie around the density ``kernel``
    (``logp_grad(x, buf, grad) -> log density``, gradient written to ``grad``), compiled on
    first use, then loaded from Numba's cache (once per process)."""
    if kernel not in _CALLBACKS:
        import numba

        kw = dict(cache=True, nogil=True, error_model="numpy")
        logp_sig, expand_sig = _signatures()
        _CALLBACKS[kernel] = (numba.cfunc(logp_sig, **kw)(_bound_logp(kernel)),
                              numba.cfunc(expand_sig, **kw)(_expand_c))
    return _CALLBACKS[kernel]


def loaded(kernel) -> bool:
    """True when ``kernel``'s callbacks were built in this process already."""
    return kernel in _CALLBACKS
