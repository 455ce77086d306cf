"""The package's layering (docs/architecture.md), enforced on the source with ``ast``.

* every import between subpackages follows :data:`ALLOWED` (which is itself acyclic);
* the only imports that go back up are the lazy ones in :data:`LAZY_EXCEPTIONS` (convenience
  methods on the result objects, and one deprecated alias), each inside the named function;
* no module imports another subpackage's private (``_name``) names.

A top-level module (``errors.py``, ``settings.py``, ``cli.py``, ...) counts as a subpackage.
"""

from __future__ import annotations

import ast
import pathlib
from graphlib import CycleError, TopologicalSorter

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1] / "bayes_hlm"

_BASE = {"errors", "foreign_warnings", "progress", "_numba_cache", "_xarray_build", "_large_arrays",
         "_blas"}  # leaf modules every layer may use
#: Who may import whom (eager or lazy), lowest layer first. Mirrors the table in
#: docs/architecture.md: data flow is formula + data -> spec -> statistics -> backends ->
#: fitting -> results -> reporters; reml sits beside backends; distributed is a data source
#: the pipeline calls; interop translates Bambi models for fit().
ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    "foreign_warnings": set(),
    "_numba_cache": set(),
    "_xarray_build": set(),
    "_large_arrays": set(),
    "_blas": set(),
    "progress": set(),
    "datasets": _BASE,
    "families": _BASE,
    "spec": _BASE | {"families"},
    "statistics": _BASE | {"spec"},
    "settings": _BASE | {"families", "spec"},
    "inference": _BASE | {"families", "spec"},
    "backends": _BASE | {"families", "settings", "spec", "statistics"},
    "reml": _BASE | {"families", "inference", "spec", "statistics"},
    "glmer": _BASE | {"families", "inference", "reml", "spec", "statistics"},
    "distributed": _BASE | {"backends", "settings", "spec", "statistics"},
    "interop": _BASE | {"families", "spec"},
    "results": _BASE | {"backends", "families", "glmer", "inference", "interop", "reml", "settings",
                        "spec", "statistics"},
    "fitting": _BASE | {"backends", "distributed", "families", "interop", "results", "settings",
                        "spec", "statistics"},
    "reporters": _BASE | {"backends", "families", "inference", "reml", "results", "spec",
                          "statistics"},
    "cli": {"*"},
    "demo": {"*"},
    "warmup": {"*"},
    "__main__": {"*"},
    "__init__": {"*"},
}

#: The imports allowed to go back up: (module, enclosing function, target subpackage). Each
#: must be lazy (inside that function), so importing the lower package never loads the upper.
LAZY_EXCEPTIONS: set[tuple[str, str, str]] = {
    # BayesResult's convenience methods: plots and the workflow, implemented further up
    ("results.bayes_result", "BayesResult.report", "reporters"),
    ("results.bayes_result", "BayesResult.plot_shrinkage", "reporters"),
    ("results.bayes_result", "BayesResult.plot_caterpillar", "reporters"),
    ("results.bayes_result", "BayesResult.conditional_effects", "reporters"),
    ("results.bayes_result", "BayesResult.plot_conditional_effects", "reporters"),
    ("results.bayes_result", "BayesResult.pp_check", "reporters"),
    ("results.bayes_result", "BayesResult.prior_predictive", "fitting"),
    ("results.workflow", "update", "fitting"),  # BayesResult.update's implementation
    # deprecated alias: bayes_hlm.distributed.fit_dask -> bayes_hlm.fitting.fit_dask
    ("distributed", "__getattr__", "fitting"),
}


def _subpackage(module: str) -> str:
    """``results.bayes_result`` -> ``results``; top-level ``cli`` -> ``cli``."""
    return module.split(".")[0] if module else "__init__"


def _imports():
    """Every import of a ``bayes_hlm`` module in the package: (module, line, enclosing
    function qualname or None, target module, imported names)."""
    out = []
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT).with_suffix("")
        parts = list(rel.parts)
        is_pkg = parts[-1] == "__init__"
        if is_pkg:
            parts = parts[:-1]
        module = ".".join(parts)
        package = parts if is_pkg else parts[:-1]
        tree = ast.parse(path.read_text(encoding="utf-8"))

        def visit(node, scope):
            for child in ast.iter_child_nodes(node):
                if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                    inner = scope + [child.name]
                    visit(child, inner)
                    continue
                if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                    continue  # annotations only: never executed
                func = ".".join(scope) or None
                if isinstance(child, ast.ImportFrom):
                    if child.level:
                        base = package[: len(package) - (child.level - 1)]
                        target = ".".join(base + ([child.module] if child.module else []))
                    elif (child.module or "").startswith("bayes_hlm"):
                        target = child.module.removeprefix("bayes_hlm").lstrip(".")
                    else:
                        continue
                    names = [a.name for a in child.names]
                    targets = ([f"{target}.{n}".lstrip(".") for n in names] if child.module is None
                               else [target])
                    for t in targets:
                        out.append((module, child.lineno, func, t, names))
                elif isinstance(child, ast.Import):
                    for a in child.names:
                        if a.name == "bayes_hlm" or a.name.startswith("bayes_hlm."):
                            t = a.name.removeprefix("bayes_hlm").lstrip(".")
                            out.append((module, child.lineno, func, t, []))
                visit(child, scope)

        visit(tree, [])
    return out


IMPORTS = _imports()


def _cross(imports=IMPORTS):
    for module, line, func, target, names in imports:
        src, dst = _subpackage(module), _subpackage(target)
        if dst != src and target:
            yield module, line, func, target, names, src, dst


def test_allowed_graph_is_acyclic():
    graph = {k: {d for d in v if d != "*"} for k, v in ALLOWED.items()}
    try:
        list(TopologicalSorter(graph).static_order())
    except CycleError as exc:  # pragma: no cover - the table itself is wrong
        pytest.fail(f"the allowed import table has a cycle: {exc.args[1]}")


def test_every_subpackage_is_in_the_table():
    found = {_subpackage(m) for m, *_ in IMPORTS} | {_subpackage(t) for *_, t, _ in IMPORTS if t}
    found |= {p.name for p in ROOT.iterdir() if (p / "__init__.py").exists()}
    assert found <= set(ALLOWED), f"add to ALLOWED (and docs/architecture.md): {found - set(ALLOWED)}"


def test_imports_follow_the_layers():
    bad = []
    for module, line, func, target, _names, src, dst in _cross():
        if "*" in ALLOWED[src] or dst in ALLOWED[src]:
            continue
        lazy = func is not None and _in_function(module, func)
        if lazy and (module, func, dst) in LAZY_EXCEPTIONS:
            continue
        bad.append(f"bayes_hlm/{module.replace('.', '/')} line {line}: "
                   f"{'lazy' if lazy else 'eager'} import of {target} ({src} -> {dst})")
    assert not bad, ("imports against the layering (docs/architecture.md):\n  " + "\n  ".join(bad))


def test_listed_exceptions_still_exist():
    seen = {(m, f, dst) for m, _l, f, _t, _n, _s, dst in _cross() if f is not None}
    stale = LAZY_EXCEPTIONS - seen
    assert not stale, f"LAZY_EXCEPTIONS lists imports that are gone (remove them): {stale}"


def test_no_private_names_across_subpackages():
    bad = [f"bayes_hlm/{m.replace('.', '/')} line {line}: {t}.{n}"
           for m, line, _f, t, names, _s, _d in _cross()
           for n in names if n.startswith("_") and not n.startswith("__")]
    assert not bad, "private names imported from another subpackage:\n  " + "\n  ".join(bad)


_FUNCS: dict[str, set[str]] = {}


def _in_function(module: str, qualname: str) -> bool:
    """True when ``qualname`` in ``module`` ends in a function (a class body is not lazy)."""
    if module not in _FUNCS:
        parts = module.split(".") if module else []
        path = ROOT.joinpath(*parts).with_suffix(".py") if parts else ROOT / "__init__.py"
        if not path.exists():
            path = ROOT.joinpath(*parts, "__init__.py")
        funcs: set[str] = set()

        def visit(node, scope):
            for child in ast.iter_child_nodes(node):
                if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                    q = scope + [child.name]
                    if not isinstance(child, ast.ClassDef):
                        funcs.add(".".join(q))
                    visit(child, q)
                else:
                    visit(child, scope)

        visit(ast.parse(path.read_text(encoding="utf-8")), [])
        _FUNCS[module] = funcs
    parts = qualname.split(".")
    return any(".".join(parts[:i]) in _FUNCS[module] for i in range(1, len(parts) + 1))


def test_old_module_paths_still_work():
    import warnings

    import bayes_hlm.distributed as distributed
    from bayes_hlm.backends import naming
    from bayes_hlm.fitting import fit_dask
    from bayes_hlm.inference.contract import MixedModelResult
    from bayes_hlm.results.base import MixedModelResult as Old
    from bayes_hlm.spec import variable_names

    assert Old is MixedModelResult and naming.sd_var is variable_names.sd_var
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert distributed.fit_dask is fit_dask
    assert any(issubclass(w.category, DeprecationWarning) for w in caught)
