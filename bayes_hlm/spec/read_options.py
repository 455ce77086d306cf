"""Which CSV cells are missing: R's ``read.csv`` convention, shared by every CSV reader.

R's ``read.csv`` treats only the string ``NA`` (its ``na.strings`` default) as missing, plus
empty numeric cells; we treat empty cells as missing in every column. pandas' much longer
default list (``None``, ``NULL``, ``null``, ``NaN``, ``nan``, ``N/A``, ``n/a``, ``<NA>``,
``#N/A``, ...) would turn real factor levels such as ``"None"`` into missing data, so it is
switched off.
"""

from __future__ import annotations

#: Default strings read as missing (R's ``na.strings = "NA"``); empty cells are always missing.
R_NA_STRINGS: tuple[str, ...] = ("NA",)


def na_strings(na_values=None) -> list[str]:
    """Strings read as missing: ``na_values`` (default ``R_NA_STRINGS``) plus the empty cell."""
    vals = list(R_NA_STRINGS if na_values is None else na_values)
    return vals + ([""] if "" not in vals else [])


def read_csv_na_kwargs(na_values=None) -> dict:
    """``pandas.read_csv`` / ``dask.dataframe.read_csv`` keywords for :func:`na_strings`."""
    return {"keep_default_na": False, "na_values": na_strings(na_values)}
