"""Save and load results as one netCDF file (atomic write: temp file + rename).

The file holds the ArviZ groups plus a ``model_data`` group with the used
columns of the training rows (factor levels in order) and JSON attributes for
the formula, priors, control and fit info, so a loaded result rebuilds its
design exactly and can ``predict``.

What :func:`load_result` trusts: nothing. A result file may come from anyone,
so loading never executes anything from it: the netCDF is read as plain
arrays and JSON (no pickles), the stored formula passes the same allow-list as
any formula (:mod:`bayes_hlm.spec.formula_safety`) before it is re-parsed,
metadata and arrays are checked for type and shape, and a SHA-256 checksum
written at save over every stored array and attribute must match: one flipped
byte in the draws and the file is refused, naming it. Files from before the
checksum (format 1) still load, with a warning that they could not be verified.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import warnings
from dataclasses import asdict, fields
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from ..errors import BayesHLMWarning, DataError, FormulaError
from ..spec.build import build_spec
from ..spec.formula import parse_formula
from .atomic import atomic_path
from ..spec.priors import Prior, PriorSet

FORMAT_VERSION = 2  # 2: adds the checksum attribute
CHECKSUM_ATTR = "bayes_hlm_sha256"


def _encode_data(df: pd.DataFrame) -> xr.Dataset:
    ds = xr.Dataset()
    for name in df.columns:
        col = df[name]
        if isinstance(col.dtype, pd.CategoricalDtype):
            cats = col.cat.categories
            ds[f"col{len(ds.data_vars)}"] = ("row", np.asarray(col.cat.codes, dtype=np.int64), {
                "name": str(name), "kind": "categorical",
                "categories": json.dumps([c.item() if hasattr(c, "item") else c for c in cats]),
            })
        else:
            ds[f"col{len(ds.data_vars)}"] = ("row", col.to_numpy(), {"name": str(name), "kind": "numeric"})
    idx = df.index
    ds["row_index"] = ("row", np.asarray(idx) if pd.api.types.is_numeric_dtype(idx) else np.asarray(idx, dtype=str))
    return ds


def _decode_data(ds: xr.Dataset) -> pd.DataFrame:
    """The stored training rows; every column checked (1-d, kind, codes in range)."""
    cols = {}
    for var in ds.data_vars:
        if var == "row_index":
            continue
        a = ds[var]
        name, kind = a.attrs.get("name"), a.attrs.get("kind")
        if a.dims != ("row",) or not isinstance(name, str):
            raise ValueError(f"model_data variable {var!r} is not a named column of rows")
        if kind == "categorical":
            cats = json.loads(a.attrs["categories"])
            codes = np.asarray(a.values)
            if not isinstance(cats, list) or codes.dtype.kind not in "iu" \
                    or (codes.size and (codes.min() < -1 or codes.max() >= len(cats))):
                raise ValueError(f"column {name!r}: category codes do not match its levels")
            cols[name] = pd.Categorical.from_codes(codes.astype(int), categories=cats, ordered=True)
        elif kind == "numeric":
            if a.dtype.kind not in "biuf":
                raise ValueError(f"column {name!r} is stored as {a.dtype}, not numbers")
            cols[name] = a.values
        else:
            raise ValueError(f"column {name!r} has unknown kind {kind!r}")
    return pd.DataFrame(cols, index=pd.Index(ds["row_index"].values))


def save_result(result, path: str | os.PathLike) -> Path:
    """Write ``result`` to ``path`` atomically; the old file survives an interrupted write."""
    path = Path(path)
    groups = {k: result.tree[k].to_dataset() for k in result.tree.children}
    meta = {
        "format_version": FORMAT_VERSION,
        "formula": result.formula,
        "priors": {k: p.to_dict() for k, p in result.priors.priors.items()},
        "info": asdict(result.info),
        "kind": "bayes",
        "control": asdict(result.spec.control),
    }
    groups["model_data"] = _encode_data(result.spec.data)
    tree = xr.DataTree.from_dict(groups)
    tree.attrs["bayes_hlm"] = json.dumps(meta, default=_json_default)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:  # the file gets the umask's mode, as a plain write would
        tree.to_netcdf(tmp, engine="h5netcdf")
        _write_checksum(tmp)
    return path


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


def _checksum(tree: xr.DataTree) -> str:
    """SHA-256 over every group's variables (names, dims, dtypes, values) and attributes.

    Computed on the tree *as read back from the file*, so save and load hash the
    same objects whatever netCDF does to dtypes on the way.
    """
    h = hashlib.sha256()

    def attrs(a) -> None:
        a = {k: v for k, v in a.items() if k != CHECKSUM_ATTR}
        h.update(json.dumps(a, sort_keys=True, default=_json_default).encode())

    for node in sorted(tree.subtree, key=lambda n: n.path):
        h.update(f"group {node.path}\n".encode())
        attrs(node.attrs)
        ds = node.to_dataset(inherit=False)
        for name in sorted(map(str, ds.variables)):
            v = ds.variables[name]
            h.update(f"var {name} {v.dims} {v.dtype.str} {v.shape}\n".encode())
            attrs(v.attrs)
            vals = np.asarray(v.values)
            if vals.dtype.kind in "biufcmM":
                h.update(np.ascontiguousarray(vals).tobytes())
            else:
                h.update(json.dumps([str(x) for x in vals.ravel()]).encode())
    return h.hexdigest()


def _open(path) -> xr.DataTree:
    try:
        with xr.open_datatree(path, engine="h5netcdf") as tree:
            return tree.load()  # in memory: the file is closed on return
    except FileNotFoundError:
        raise
    except Exception as exc:
        raise DataError(f"{str(path)!r} is not a readable bayes_hlm result file "
                        f"({type(exc).__name__}: {exc}); it may be damaged") from None


def _write_checksum(path) -> None:
    import h5netcdf

    digest = _checksum(_open(path))
    with h5netcdf.File(path, "a") as f:
        f.attrs[CHECKSUM_ATTR] = digest


def _verify(tree: xr.DataTree, path) -> None:
    stored = tree.attrs.get(CHECKSUM_ATTR)
    if stored is None:
        warnings.warn(f"result file {str(path)!r} has no checksum (saved by an older "
                      "bayes_hlm): it could not be verified; save it again to add one",
                      BayesHLMWarning, stacklevel=3)
        return
    if not isinstance(stored, str) or stored != _checksum(tree):
        raise DataError(f"result file {str(path)!r} fails its checksum: its contents changed "
                        "after it was saved (damaged or edited); refusing to load it")


def _bad(path, what: str) -> DataError:
    return DataError(f"result file {str(path)!r} is not a valid bayes_hlm result: {what}")


_META_TYPES = {"formula": str, "priors": dict, "info": dict, "control": dict}
_IDENT = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


def _read_meta(tree: xr.DataTree, path) -> dict:
    """The JSON metadata, checked for types before anything uses it."""
    raw = tree.attrs.get("bayes_hlm")
    if not isinstance(raw, str):
        raise _bad(path, "no 'bayes_hlm' metadata attribute")
    try:
        meta = json.loads(raw)
    except ValueError as exc:
        raise _bad(path, f"metadata is not JSON ({exc})") from None
    if not isinstance(meta, dict):
        raise _bad(path, "metadata is not a JSON object")
    for key, typ in _META_TYPES.items():
        if key in meta and not isinstance(meta[key], typ) or key in ("formula", "info") \
                and key not in meta:
            raise _bad(path, f"metadata field {key!r} missing or not a {typ.__name__}")
    if meta.get("na_action", "omit") not in ("omit", "raise"):
        raise _bad(path, "metadata field 'na_action' must be 'omit' or 'raise'")
    for k, d in meta.get("priors", {}).items():
        if not (isinstance(d, dict) and isinstance(d.get("dist"), str)
                and _IDENT.match(d["dist"])):
            raise _bad(path, f"prior {k!r} is not a distribution name with parameters")
    known = {f.name for f in fields(_fit_info())}
    extra = set(meta["info"]) - known
    if extra:
        raise _bad(path, f"unknown fit-info field(s) {sorted(extra)}")
    if "posterior" not in tree.children or "model_data" not in tree.children:
        raise _bad(path, "no 'posterior' or 'model_data' group")
    return meta


def _fit_info():
    from .bayes_result import FitInfo

    return FitInfo


def load_result(path: str | os.PathLike):
    """Read a result written by :func:`save_result`, trusting nothing in the file.

    Raises
    ------
    DataError
        Naming the file, when its checksum fails, its metadata or arrays are not
        what :func:`save_result` writes, or its stored formula is not allowed.
    """
    from .bayes_result import BayesResult, FitInfo

    from ..spec.control import Control

    tree = _open(path)
    _verify(tree, path)
    meta = _read_meta(tree, path)
    try:  # the stored formula is data like any other: the allow-list first
        parse_formula(meta["formula"])
    except FormulaError as exc:
        raise _bad(path, f"its stored formula is refused: {exc}") from None
    try:
        data = _decode_data(tree["model_data"].to_dataset())
        control = Control(**meta.get("control", {}))
        priors = {k: Prior.from_dict(v) for k, v in meta.get("priors", {}).items()}
        info = FitInfo(**meta["info"])
    except (KeyError, TypeError, ValueError) as exc:
        raise _bad(path, f"{type(exc).__name__}: {exc}") from None
    from ..families import get_family

    req = info.requested  # family and link as fitted (#15); older files: Gaussian
    family = get_family(getattr(req, "family", "gaussian"), getattr(req, "link", None))
    with warnings.catch_warnings():  # the fit already warned
        warnings.simplefilter("ignore", BayesHLMWarning)
        spec = build_spec(meta["formula"], data, control=control,
                          na_action=meta.get("na_action", "omit"), family=family,
                          weights=getattr(req, "weights", None))
    from ..spec.priors import resolve_priors

    ps: PriorSet = resolve_priors(spec.design, priors, family)
    keep = {k: tree[k].to_dataset() for k in tree.children if k != "model_data"}
    generator = None
    if info.method == "marginal":
        from ..backends.marginal import effect_generator

        from .arviz_layout import to_backend

        generator = effect_generator(spec.design, to_backend(keep["posterior"], spec.design),
                                     info.extra["effects_seed"])
    return BayesResult(spec, ps, xr.DataTree.from_dict(keep), info, generator)
