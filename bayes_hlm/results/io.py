"""Save and load results as one netCDF file (atomic write: temp file + rename).

The file holds the ArviZ groups plus a ``model_data`` group with the used
columns of the training rows (factor levels in order) and JSON attributes for
the formula, priors, control and fit info, so a loaded result rebuilds its
design exactly and can ``predict``.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from ..spec.build import build_spec
from .atomic import atomic_path
from ..spec.priors import Prior, PriorSet

FORMAT_VERSION = 1


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
    cols = {}
    for var in ds.data_vars:
        if var == "row_index":
            continue
        a = ds[var]
        name = a.attrs["name"]
        if a.attrs["kind"] == "categorical":
            cats = json.loads(a.attrs["categories"])
            cols[name] = pd.Categorical.from_codes(a.values.astype(int), categories=cats, ordered=True)
        else:
            cols[name] = a.values
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
    return path


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


def load_result(path: str | os.PathLike):
    """Read a result written by :func:`save_result`."""
    from .bayes_result import BayesResult, FitInfo

    tree = xr.open_datatree(path, engine="h5netcdf").load()
    meta = json.loads(tree.attrs["bayes_hlm"])
    data = _decode_data(tree["model_data"].to_dataset())
    import warnings

    from ..errors import BayesHLMWarning
    from ..spec.checks import Control

    with warnings.catch_warnings():  # the fit already warned
        warnings.simplefilter("ignore", BayesHLMWarning)
        spec = build_spec(meta["formula"], data, control=Control(**meta.get("control", {})),
                          na_action=meta.get("na_action", "omit"))
    priors = {k: Prior.from_dict(v) for k, v in meta["priors"].items()}
    from ..spec.priors import resolve_priors

    ps: PriorSet = resolve_priors(spec.design, priors)
    info = FitInfo(**meta["info"])
    keep = {k: tree[k].to_dataset() for k in tree.children if k != "model_data"}
    generator = None
    if info.method == "marginal":
        from ..backends.marginal import effect_generator

        from .arviz_layout import to_backend

        generator = effect_generator(spec.design, to_backend(keep["posterior"], spec.design),
                                     info.extra["effects_seed"])
    return BayesResult(spec, ps, xr.DataTree.from_dict(keep), info, generator)
