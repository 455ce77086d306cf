"""Out-of-core data sources: pandas / Dask DataFrames, CSV, Parquet files, directories or globs.

Every source becomes a list of *partitions*: Dask ``Delayed`` objects that each
produce one pandas DataFrame holding only the used columns.  Nothing here reads
all rows into one process.

Parquet files are read with pyarrow directly (one partition per file, or per
row group for large files).  Dictionary-encoded columns (pandas categoricals
written by :func:`bayes_hlm.datasets.write_parquet`) keep their codes; the
dictionary is converted to pandas categories once per worker process and reused
for every file that carries the same dictionary, so 1M-level grouping columns
cost no per-partition string conversion.
"""

from __future__ import annotations

import glob as _glob
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import DataError

__all__ = ["Partitions", "open_source", "read_parquet_part"]

# rows per partition when a pandas frame is split
PANDAS_PARTITION_ROWS = 1_000_000
# Parquet files with more rows than this are split by row group
MAX_PART_ROWS = 2_000_000


@dataclass
class Partitions:
    """Delayed pandas partitions of a source.

    Attributes
    ----------
    parts : list of dask.delayed.Delayed
        Each computes to a pandas DataFrame with (a superset of) ``columns``.
    columns : list of str
        Columns available in the source.
    kind : str
        ``"pandas"``, ``"dask"``, ``"csv"`` or ``"parquet"``.
    description : str
    """

    parts: list
    columns: list
    kind: str
    description: str

    @property
    def npartitions(self) -> int:
        return len(self.parts)


# --------------------------------------------------------------------------- #
# Parquet
# --------------------------------------------------------------------------- #
_DICT_CACHE: dict = {}
_DICT_LOCK = threading.Lock()


def _categorical_dtype(name: str, dictionary) -> pd.CategoricalDtype:
    """pandas dtype of an Arrow dictionary, cached per process (compared by value)."""
    key = (name, len(dictionary))
    with _DICT_LOCK:
        hit = _DICT_CACHE.get(key)
        if hit is not None and (hit[0] is dictionary or hit[0].equals(dictionary)):
            return hit[1]
    cats = pd.Index(dictionary.to_pandas())
    dtype = pd.CategoricalDtype(cats, ordered=False)
    with _DICT_LOCK:
        if len(_DICT_CACHE) > 64:
            _DICT_CACHE.clear()
        _DICT_CACHE[key] = (dictionary, dtype)
    return dtype


def read_parquet_part(path: str, columns: list[str], row_groups: list[int] | None = None) -> pd.DataFrame:
    """One Parquet file (or some of its row groups) as a pandas frame of ``columns``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(path)
    table = pf.read_row_groups(row_groups, columns=columns) if row_groups is not None \
        else pf.read(columns=columns)
    out = {}
    for name in columns:
        col = table.column(name)
        if pa.types.is_dictionary(col.type):
            if col.num_chunks > 1:
                col = col.unify_dictionaries()
            chunks = col.chunks
            if not chunks:
                out[name] = pd.Categorical([])
                continue
            dic = chunks[0].dictionary
            codes = np.concatenate([c.indices.fill_null(-1).to_numpy(zero_copy_only=False)
                                    for c in chunks]).astype(np.int64, copy=False)
            out[name] = pd.Categorical.from_codes(codes, dtype=_categorical_dtype(name, dic))
        else:
            out[name] = col.to_pandas()
    return pd.DataFrame(out, copy=False)


def _parquet_files(source: str) -> list[str]:
    p = Path(source)
    if p.is_dir():
        files = sorted(str(f) for f in p.rglob("*.parquet"))
        files += sorted(str(f) for f in p.rglob("*.parq") if str(f) not in files)
    elif any(ch in source for ch in "*?["):
        files = sorted(f for f in _glob.glob(source, recursive=True) if os.path.isfile(f))
    else:
        files = [source] if p.is_file() else []
    if not files:
        raise DataError(f"no Parquet files found at {source!r}")
    return files


def _parquet_parts(source: str, columns: list[str] | None):
    import dask
    import pyarrow.parquet as pq

    files = _parquet_files(source)
    schema = pq.ParquetFile(files[0]).schema_arrow
    available = list(schema.names)
    cols = available if columns is None else [c for c in columns if c in available]
    read = dask.delayed(read_parquet_part, pure=True)
    parts = []
    for f in files:
        md = pq.ParquetFile(f).metadata
        if md.num_rows > MAX_PART_ROWS and md.num_row_groups > 1:
            group, rows = [], 0
            for i in range(md.num_row_groups):
                group.append(i)
                rows += md.row_group(i).num_rows
                if rows >= MAX_PART_ROWS // 2:
                    parts.append(read(f, cols, group, dask_key_name=f"read-parquet-{_tok(f, group)}"))
                    group, rows = [], 0
            if group:
                parts.append(read(f, cols, group, dask_key_name=f"read-parquet-{_tok(f, group)}"))
        else:
            parts.append(read(f, cols, None, dask_key_name=f"read-parquet-{_tok(f, None)}"))
    return Partitions(parts, available, "parquet", f"{len(files)} Parquet file(s) at {source}")


def _tok(*args) -> str:
    from dask.base import tokenize

    return tokenize(*args)


# --------------------------------------------------------------------------- #
# Dispatcher
# --------------------------------------------------------------------------- #
def _is_parquet_path(source: str) -> bool:
    p = Path(source)
    if p.is_dir():
        return True
    return source.endswith((".parquet", ".parq", ".pq")) or (
        any(ch in source for ch in "*?[") and "parq" in source)


def open_source(source, columns: list[str] | None = None, *, npartitions: int | None = None) -> Partitions:
    """Partitions of ``source`` restricted to ``columns`` (when they exist).

    Parameters
    ----------
    source : pandas.DataFrame, dask.dataframe.DataFrame, str or path
        A CSV file (``*.csv``, ``*.csv.gz``; a glob of CSV files works too), a
        Parquet file, a directory of Parquet files, or a glob such as
        ``"data/part-*.parquet"``.
    columns : list of str, optional
        Columns to read (projection pushed into the reader).
    npartitions : int, optional
        pandas input only: number of partitions (default: one per 1M rows).
    """
    import dask
    import dask.dataframe as dd

    if isinstance(source, pd.DataFrame):
        cols = [c for c in (columns or list(source.columns)) if c in source.columns]
        n = len(source)
        k = npartitions or max(1, -(-n // PANDAS_PARTITION_ROWS))
        bounds = np.linspace(0, n, k + 1).astype(int)
        sub = source[cols]
        parts = [dask.delayed(sub.iloc[a:b], pure=True, name=f"pandas-part-{_tok(id(source), a, b)}")
                 for a, b in zip(bounds[:-1], bounds[1:])]
        return Partitions(parts, list(source.columns), "pandas", f"pandas DataFrame ({n} rows, {k} partitions)")
    if isinstance(source, dd.DataFrame):
        cols = [c for c in (columns or list(source.columns)) if c in source.columns]
        return Partitions(list(source[cols].to_delayed()), list(source.columns), "dask",
                          f"Dask DataFrame ({source.npartitions} partitions)")
    if isinstance(source, (str, os.PathLike)):
        s = os.fspath(source)
        low = s.lower()
        if low.endswith((".csv", ".csv.gz", ".tsv", ".txt")) or (
                any(ch in s for ch in "*?[") and ".csv" in low):
            from ..spec.read_options import read_csv_na_kwargs  # only NA / empty cells, as R

            ddf = dd.read_csv(s, sep="\t" if low.endswith(".tsv") else ",", blocksize="64MB",
                              **read_csv_na_kwargs())
            cols = [c for c in (columns or list(ddf.columns)) if c in ddf.columns]
            return Partitions(list(ddf[cols].to_delayed()), list(ddf.columns), "csv",
                              f"CSV {s} ({ddf.npartitions} partitions)")
        if _is_parquet_path(s) or Path(s).is_file():
            return _parquet_parts(s, columns)
        raise DataError(f"no data at {s!r}: expected a CSV file, a Parquet file, directory or glob")
    raise DataError(
        f"data must be a pandas DataFrame, a Dask DataFrame or a path (CSV / Parquet), not "
        f"{type(source).__name__}")


def source_columns(source) -> list[str]:
    """Column names of a source without reading its rows (one tiny read for CSV)."""
    return open_source(source, None).columns
