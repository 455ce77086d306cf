"""Command line: ``bayes-hlm fit``, ``bayes-hlm reml`` and ``bayes-hlm glmer``.

CSVs are read as R's ``read.csv`` reads them (compressed ones too: gzip, bzip2, xz, zip, zstd,
recognised by their leading bytes or, as pandas infers it, the file name's ending): only ``NA``
and empty cells are
missing (not pandas' long list: a level named ``None``, ``null`` or ``N/A`` is a
level); ``--na-values`` names other missing-value strings (replacing ``NA``, as
R's ``na.strings``). Column types: grouping columns are always factors; other
numeric-looking columns are numeric unless named with ``--factor``; string
columns are factors with levels in R's order (``sort()`` in an en_US locale:
case-insensitive first) unless ``--levels COL=L1,L2,...`` (or a JSON list
``--levels 'COL=["a,b","c"]'`` for labels with commas) gives the order (first =
reference); a listed level absent from the data is an error. Every error ends in
one clear line on stderr and a non-zero exit code (2 for usage, 1 for data/model
problems).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from pathlib import Path

import pandas as pd

EXIT_USAGE = 2
EXIT_DATA = 1


class CliError(Exception):
    """A problem to report in one line, with an exit code."""

    def __init__(self, message: str, code: int = EXIT_DATA):
        super().__init__(message)
        self.code = code


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2, as argparse does but without the usage dump
        raise CliError(f"{self.prog}: {message} (see --help)", EXIT_USAGE)


def _parse_list(text: str, option: str) -> list[str]:
    """``a,b,c`` or a JSON list of strings ``["a,b","c"]`` (for labels containing commas)."""
    if text.lstrip().startswith("["):
        try:
            vals = json.loads(text)
        except json.JSONDecodeError as exc:
            raise CliError(f"{option}: {text!r} is not a valid JSON list ({exc.msg}); write e.g. "
                           '\'["a,b", "c"]\'', EXIT_USAGE) from None
        if not isinstance(vals, list) or not all(isinstance(v, str) for v in vals):
            raise CliError(f"{option}: the JSON list {text!r} must hold strings only, e.g. "
                           '["1", "2"]', EXIT_USAGE)
        return vals
    return [v.strip() for v in text.split(",")]


def _parse_levels(items: list[str]) -> dict[str, list[str]]:
    """``--levels COL=L1,L2,...`` or ``--levels 'COL=["a,b","c"]'`` -> {column: levels}."""
    out = {}
    for item in items or []:
        if "=" not in item or not item.split("=", 1)[1]:
            raise CliError(f"--levels expects COL=L1,L2,... (or COL=[\"L1\",\"L2\"]) but got "
                           f"{item!r}", EXIT_USAGE)
        col, levels = item.split("=", 1)
        col = col.strip()
        vals = _parse_list(levels, f"--levels {col}")
        dup = sorted({v for v in vals if vals.count(v) > 1})
        if dup:
            raise CliError(f"--levels for {col!r} lists {dup} more than once", EXIT_USAGE)
        if col in out:
            raise CliError(f"--levels given twice for column {col!r}", EXIT_USAGE)
        out[col] = vals
    return out


def _parse_na_values(items: list[str]) -> list[str] | None:
    """``--na-values`` (repeatable, comma-separated or a JSON list) -> strings, or None (R's NA)."""
    if not items:
        return None
    out: list[str] = []
    for item in items:
        out += [v for v in _parse_list(item, "--na-values") if v not in out]
    return out


#: compressed formats: (name, leading bytes, file endings); pandas' ``compression="infer"`` set
_COMPRESSED = (("gzip", b"\x1f\x8b", (".gz",)), ("bzip2", b"BZh", (".bz2",)),
               ("xz", b"\xfd7zXZ\x00", (".xz",)), ("zip", b"PK\x03\x04", (".zip",)),
               ("zstd", b"\x28\xb5\x2f\xfd", (".zst",)))


def _decompress(raw: bytes, path: str) -> bytes:
    """The file's bytes uncompressed when they are gzip / bzip2 / xz / zip / zstd (told by the
    leading bytes, so a misnamed file still reads; the name's ending only when they say
    nothing), else unchanged. A damaged archive is an error naming the file."""
    low = str(path).lower()
    kind = next((k for k, magic, _ in _COMPRESSED if raw.startswith(magic)), None)
    if kind is None:
        kind = next((k for k, _, ends in _COMPRESSED if low.endswith(ends)), None)
        if kind is None:
            return raw
    try:
        if kind == "gzip":
            import gzip
            return gzip.decompress(raw)
        if kind == "bzip2":
            import bz2
            return bz2.decompress(raw)
        if kind == "xz":
            import lzma
            return lzma.decompress(raw)
        if kind == "zip":
            import io
            import zipfile
            with zipfile.ZipFile(io.BytesIO(raw)) as zf:
                names = [n for n in zf.namelist() if not n.endswith("/")]
                if len(names) != 1:
                    raise CliError(f"cannot read {path!r}: a zip archive must hold exactly one "
                                   f"file, this one holds {len(names)} ({', '.join(names[:5])})")
                return zf.read(names[0])
        try:
            import zstandard
        except ImportError:
            raise CliError(f"cannot read {path!r}: it is zstd-compressed and the 'zstandard' "
                           "package is not installed (pip install zstandard, or decompress "
                           "the file first)") from None
        return zstandard.ZstdDecompressor().decompressobj().decompress(raw)
    except CliError:
        raise
    except Exception as exc:  # noqa: BLE001 - every codec's own error type
        raise CliError(f"cannot read {path!r} as a {kind}-compressed CSV: the archive is "
                       f"damaged or truncated ({type(exc).__name__}: {exc})") from None


def _decode(raw: bytes, path: str) -> str:
    """File bytes -> text: UTF-8 (BOM allowed), UTF-16 with BOM, else Windows-1252 with a warning."""
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return raw.decode("utf-16")
        except UnicodeDecodeError:
            pass
    sample = raw[:65536]
    binary = sum(b < 9 or 13 < b < 32 for b in sample if b != 27)
    if b"\x00" in sample or binary > max(2, len(sample) // 100):
        raise CliError(f"cannot read {path!r} as CSV: it looks like a binary file, not text "
                       "(export the data as a comma-separated text file)")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        warnings.warn(f"{path!r} is not valid UTF-8; read it as Windows-1252 (Latin-1)",
                      UserWarning, stacklevel=2)
        return raw.decode("cp1252", errors="replace")


def _sniff_sep(text: str) -> str:
    """',' unless the header has none and is split by ';' or a tab (European/TSV exports)."""
    header = text.split("\n", 1)[0]
    if "," in header:
        return ","
    for sep in (";", "\t"):
        if sep in header:
            return sep
    return ","


def _formula_columns(formula: str) -> tuple[set[str], set[str], set[str]]:
    """(columns used as variables, grouping columns, response columns) of a formula."""
    from .spec.build import expr_vars
    from .spec.formula import parse_formula

    parsed = parse_formula(formula)
    groups = {c for t in parsed.random for c in t.factor_columns}
    used = set(expr_vars(parsed.response)) | expr_vars(parsed.fixed_rhs)
    for t in parsed.random:
        used |= expr_vars(t.expr)
    return used - groups, groups, set(expr_vars(parsed.response))


_R_RESERVED = {"if", "else", "repeat", "while", "function", "for", "next", "break", "TRUE", "FALSE",
                "NULL", "Inf", "NaN", "NA", "NA_integer_", "NA_real_", "NA_character_", "in"}


def _make_name(name: str) -> str:
    """R's ``make.names``: invalid characters -> ``.``; ``X`` before a leading digit/``_``/``.digit``."""
    import re

    out = "".join(ch if ch.isalnum() or ch in "._" else "." for ch in name) or "X"
    if not (out[0].isalpha() or (out[0] == "." and not out[1:2].isdigit())):
        out = "X" + out
    return out + "." if out in _R_RESERVED else out


def _r_column_names(columns: list[str], wanted: set[str]) -> list[str]:
    """Column names as ``read.csv`` (``check.names = TRUE``) makes them, where the formula uses them.

    A header ``Plant Height`` is ``Plant.Height`` in R, and R users write that in the formula; a
    column is renamed only when the formula (or --factor/--levels) names its R form and not the
    header itself, so formulas written either way work.
    """
    seen: dict[str, int] = {}
    r_names = []
    for c in columns:  # make.unique: a repeat gets .1, .2, ...
        n = _make_name(c)
        k = seen.get(n, 0)
        seen[n] = k + 1
        r_names.append(n if k == 0 else f"{n}.{k}")
    return [r if r != c and r in wanted and c not in wanted and r not in columns else c
            for c, r in zip(columns, r_names)]


def read_table(path: str, formula: str, factors: list[str], levels: dict[str, list[str]],
               na_values: list[str] | None = None) -> pd.DataFrame:
    """Read a CSV (plain or compressed: gzip, bzip2, xz, zip, zstd) as R's ``read.csv`` does
    and apply the CLI's column-type rules.

    Missing cells are those equal (after trimming spaces) to ``na_values``
    (default ``["NA"]``, R's ``na.strings``) and empty cells; nothing else
    (``"None"``, ``"null"``, ``"N/A"`` are ordinary labels). Headers R would change
    (``Plant Height`` -> ``Plant.Height``, ``2019`` -> ``X2019``) may be written either way in the
    formula. A column used as a
    numeric variable whose cells are numbers except for some text is an error
    naming the column, the values and their rows (a typo in a numeric column must
    not silently turn it into a factor); ``--factor COL`` says it is meant to be
    a factor. ``levels`` gives a factor's level order; every listed level must
    occur in the column and every value in the column must be listed.
    """
    import io

    from .spec.build import looks_like_dates
    from .spec.collate import r_sorted
    from .spec.read_options import na_strings

    p = Path(path)
    if not p.is_file():
        raise CliError(f"data file {path!r} does not exist or is not a file")
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise CliError(f"cannot read {path!r}: {exc.strerror or exc}") from None
    if not raw.strip():
        raise CliError(f"data file {path!r} is empty")
    raw = _decompress(raw, path)
    if not raw.strip():
        raise CliError(f"data file {path!r} is empty (after decompressing it)")
    text = _decode(raw, path)
    try:
        # every cell as text; missing cells are decided below, after trimming, as R does
        df = pd.read_csv(io.StringIO(text), dtype=str, na_filter=False, sep=_sniff_sep(text),
                         skipinitialspace=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as exc:
        raise CliError(f"cannot read {path!r} as CSV: {str(exc).strip().splitlines()[0]}") from None
    if df.shape[1] == 0 or len(df) == 0:
        raise CliError(f"data file {path!r} has no data rows (only a header?)")
    dup = [c for c in df.columns if "." in str(c) and str(c).rsplit(".", 1)[0] in df.columns
           and str(c).rsplit(".", 1)[1].isdigit()]
    if dup:
        raise CliError(f"data file {path!r} has a repeated column name "
                       f"{str(dup[0]).rsplit('.', 1)[0]!r}; column names must be unique")
    df.columns = [str(c).strip() for c in df.columns]
    variables, group_cols, response = _formula_columns(formula)
    df.columns = _r_column_names(list(df.columns), variables | group_cols | response
                                 | set(factors) | set(levels))
    for col in list(factors) + list(levels):
        if col not in df.columns:
            raise CliError(f"column {col!r} named in --factor/--levels is not in {path!r} "
                           f"(columns: {', '.join(df.columns)})", EXIT_USAGE)
    missing_strings = na_strings(na_values)
    for col in df.columns:
        raw = df[col].str.strip()
        raw = raw.mask(raw.isin(missing_strings))
        as_num = pd.to_numeric(raw, errors="coerce")
        # R's type.convert reads "NaN" in a numeric column as the number NaN (then dropped
        # as missing by the model frame); in a text column it stays the label "NaN"
        nan_cell = raw.eq("NaN") & as_num.isna()
        numeric_like = bool((as_num.notna() | raw.isna() | nan_cell).all()) and as_num.notna().any()
        text = raw.notna() & as_num.isna() & ~nan_cell
        if (col in variables and col not in factors and col not in levels and col not in group_cols
                and as_num.notna().any() and text.any()):
            rows = [int(i) + 2 for i in text[text].index[:3]]  # file line numbers (header = 1)
            vals = sorted(set(raw[text]))[:3]
            if col in response:
                raise CliError(
                    f"response column {col!r} must be numeric but has {int(text.sum())} text "
                    f"value(s) {vals} (line(s) {rows}); fix them or leave missing cells empty or 'NA' "
                    "(or name your missing-value code with --na-values)"
                )
            raise CliError(
                f"column {col!r} is numeric except for {int(text.sum())} text value(s) {vals} "
                f"(line(s) {rows}); fix them, leave missing cells empty or 'NA' (or name your "
                f"missing-value code with --na-values), or pass --factor {col} to treat the "
                "column as a factor"
            )
        if col in levels:
            present = set(raw.dropna().unique())
            missing = r_sorted(present - set(levels[col]))
            if missing:
                raise CliError(f"--levels for {col!r} does not list value(s) {missing[:5]} found in the data")
            absent = [v for v in levels[col] if v not in present]
            if absent:
                hint = (" (it is read as missing: see --na-values)"
                        if any(v in missing_strings for v in absent) else "")
                raise CliError(f"--levels for {col!r} names level(s) {absent[:5]} that do not occur "
                               f"in column {col!r} of {path!r}{hint}; levels found: "
                               f"{r_sorted(present)[:10]}")
            df[col] = pd.Categorical(raw, categories=levels[col])
        elif (col in variables and col not in group_cols and col not in factors
              and not numeric_like and looks_like_dates(raw.dropna().unique())):
            # dates as text: left as text so build_spec applies the API's rule (one check,
            # one message, for DataFrames and CSV files alike); --factor makes it a factor
            df[col] = raw.astype(object)
        elif col in group_cols or col in factors or not numeric_like:
            vals = raw.dropna().unique()
            order = sorted(vals, key=lambda v: (float(v), v)) if numeric_like else r_sorted(vals)
            df[col] = pd.Categorical(raw, categories=order)
        else:
            df[col] = as_num
    return df


def _parse_control(items: list[str]):
    """``--control check_name=action`` (repeatable) -> :class:`Control` (lme4's lmerControl)."""
    from .spec.control import Control

    changes = {}
    for item in items or []:
        name, _, action = item.partition("=")
        if not action:
            raise CliError(f"--control expects CHECK=ACTION (e.g. check_nlev_gtr_1=warning), got {item!r}",
                           EXIT_USAGE)
        changes[name.strip()] = action.strip()
    try:
        ctl = Control().with_(**changes)
    except TypeError as exc:
        raise CliError(f"--control: {exc}", EXIT_USAGE) from None
    for name, action in changes.items():
        allowed = ("drop", "stop", "ignore") if name == "check_rank" else ("stop", "warning", "ignore")
        if action not in allowed:
            raise CliError(f"--control {name}: action must be one of {allowed}, not {action!r}", EXIT_USAGE)
    return ctl


def _check_writable(path: str | None) -> None:
    """Fail before any work when ``path`` cannot be written (tries a real temp file)."""
    import tempfile

    if path is None:
        return
    target = Path(path)
    if target.is_dir():
        raise CliError(f"cannot write output {path!r}: it is a directory")
    parent = target.resolve().parent
    if not parent.is_dir():
        raise CliError(f"cannot write output {path!r}: directory {str(parent)!r} does not exist")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".check", dir=parent)
        os.close(fd)
        os.unlink(tmp)
    except OSError as exc:
        raise CliError(f"cannot write output {path!r}: {exc.strerror or exc}") from None
    if target.exists() and not os.access(target, os.W_OK):
        raise CliError(f"cannot write output {path!r}: the file is read-only")


def _strict(obj):
    """NaN/inf -> null everywhere: strict JSON parsers reject bare ``NaN`` tokens."""
    import math

    if isinstance(obj, dict):
        return {k: _strict(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_strict(v) for v in obj]
    if hasattr(obj, "item") and getattr(obj, "ndim", 1) == 0:  # numpy scalars
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def _check_not_input(out: str | None, data: str | None) -> None:
    """``--out`` must never replace the data it was computed from."""
    if out is None or data is None:
        return
    try:
        same = Path(out).resolve() == Path(data).resolve() or (
            Path(out).exists() and Path(data).exists() and os.path.samefile(out, data))
    except OSError:
        same = False
    if same:
        raise CliError(f"--out {out!r} is the input data file; choose another output path "
                       "(the data would be overwritten)", EXIT_USAGE)


def _check_plots_dir(path: str | None) -> None:
    """Fail before sampling when the ``--plots`` directory cannot be created or written."""
    import tempfile

    if path is None:
        return
    target = Path(path)
    if target.exists() and not target.is_dir():
        raise CliError(f"cannot write plots to {path!r}: it exists and is not a directory")
    try:
        target.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".plots.", suffix=".check", dir=target)
        os.close(fd)
        os.unlink(tmp)
    except OSError as exc:
        raise CliError(f"cannot write plots to {path!r}: {exc.strerror or exc}") from None


def _rescue(result, out: dict | None, failure: str) -> None:
    """Writing failed after sampling: keep the fit somewhere that works and say where."""
    import tempfile
    import time

    stem = Path(tempfile.gettempdir()) / f"bayes-hlm-fit-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    saved = []
    try:
        result.save(f"{stem}.bhlm")
        saved.append(f"{stem}.bhlm")
    except Exception:  # noqa: BLE001 - the JSON below may still work
        pass
    if out is not None:
        try:
            Path(f"{stem}.json").write_text(json.dumps(_strict(out), indent=2, allow_nan=False,
                                                       default=float))
            saved.append(f"{stem}.json")
        except OSError:
            pass
    where = " and ".join(saved) if saved else "nowhere (the temporary directory is not writable either)"
    raise CliError(f"{failure}; the fit was saved to {where}")


def _write_json(obj: dict, path: str | None) -> None:
    """JSON to stdout, or atomically to ``path`` (temp file in the same folder + rename)."""
    text = json.dumps(_strict(obj), indent=2, allow_nan=False, default=float)
    if path is None:
        print(text)
        return
    from .results.atomic import atomic_path

    try:
        with atomic_path(path) as tmp:  # mode as a plain write: 0o666 & ~umask
            tmp.write_text(text)
    except OSError as exc:
        raise CliError(f"cannot write output {path!r}: {exc.strerror or exc}") from None


#: fit() argument -> the flag that sets it, so messages name what the user typed
FIT_FLAGS = {"method": "--method", "sampler": "--sampler", "chains": "--chains", "draws": "--draws",
             "tune": "--tune", "seed": "--seed", "target_accept": "--target-accept",
             "mass_matrix": "--mass-matrix", "engine": "--engine", "family": "--family",
             "link": "--link", "weights": "--weights"}


def _check_fit_flags(args) -> None:
    """The fit flags through the one validation of fit()'s arguments, before reading the data."""
    from .errors import BayesHLMError
    from .settings import validate_settings

    try:
        validate_settings(**{k: getattr(args, k) for k in FIT_FLAGS}, names=FIT_FLAGS)
    except BayesHLMError as exc:
        raise CliError(str(exc), EXIT_USAGE) from None


def _cmd_fit(args) -> int:
    from .progress import phase

    with phase("loading libraries (pandas, PyMC, ArviZ)"):  # seconds on a cold start
        from .fitting import fit
        from .results.export import fit_json

    _check_writable(args.out)
    _check_not_input(args.out, args.data)
    _check_plots_dir(args.plots)
    settings = dict(method=args.method, sampler=args.sampler, chains=args.chains, draws=args.draws,
                    tune=args.tune, seed=args.seed, target_accept=args.target_accept,
                    mass_matrix=args.mass_matrix, control=_parse_control(args.control))
    from .families import get_family

    family = get_family(args.family, args.link)  # checked by _check_fit_flags
    gaussian = family.name == "gaussian" and family.link.name == "identity"
    ref = None
    want_json = bool(args.json or args.out)
    if args.engine == "dask":
        if not gaussian:
            raise CliError("--engine dask fits Gaussian models only; drop --family/--link or "
                           "use --engine memory", EXIT_USAGE)
        if args.weights:
            raise CliError("--weights is not supported with --engine dask", EXIT_USAGE)
        if args.factor or args.levels or args.na_values:
            raise CliError("--factor/--levels/--na-values are not supported with --engine dask; "
                           "store the types in the Parquet/CSV files", EXIT_USAGE)
        # out of core: the REML reference needs the rows, so the "reml" key is left out
        result = fit(args.formula, args.data, engine="dask", scheduler=args.scheduler, **settings)
        out = fit_json(result) if want_json else None
    else:
        if args.scheduler:
            raise CliError("--scheduler needs --engine dask", EXIT_USAGE)
        df = read_table(args.data, args.formula, args.factor, _parse_levels(args.levels),
                        _parse_na_values(args.na_values))
        result = fit(args.formula, df, family=args.family, link=args.link, weights=args.weights,
                     **settings)
        out = fit_json(result) if want_json else None
        # the REML reference is a Gaussian LMM: no reference for other families (not a wrong one)
        if gaussian and (want_json or args.plots):
            ref = result.reml()
        if want_json and ref is not None:
            out["reml"] = ref.to_dict()
    try:  # outputs were checked before sampling; a late failure must not lose the fit
        if args.plots:
            from .reporters import write_plots

            write_plots(result, args.plots, reml_result=ref)
        if args.out:
            _write_json(out, args.out)
    except (OSError, CliError) as exc:
        _rescue(result, out, str(exc) if isinstance(exc, CliError)
                else f"cannot write outputs: {exc.strerror or exc}")
    if args.json:
        _write_json(out, None)
    else:  # people read a table; machines ask for --json or --out
        from .results.text_summary import format_summary

        print(format_summary(result, data_label=str(args.data)))
    return 0


def _cmd_reml(args) -> int:
    import time

    from .reml import reml

    _check_writable(args.out)
    _check_not_input(args.out, args.data)
    df = read_table(args.data, args.formula, args.factor, _parse_levels(args.levels),
                    _parse_na_values(args.na_values))
    t0 = time.perf_counter()  # wall_s: formula parsing to fitted result (no imports, no file read)
    res = reml(args.formula, df, method="ML" if args.ml else "REML", control=_parse_control(args.control))
    wall = time.perf_counter() - t0
    print(res.summary())
    if args.out:
        out = res.to_dict(names=args.names)
        out["wall_s"] = wall
        _write_json(out, args.out)
    return 0


def _cmd_glmer(args) -> int:
    import time

    from .glmer import glmer
    from .spec.control import Control

    _check_writable(args.out)
    _check_not_input(args.out, args.data)
    df = read_table(args.data, args.formula, args.factor,
                    _parse_levels(args.levels), _parse_na_values(args.na_values))
    if args.weights and args.weights not in df.columns:
        raise CliError(f"--weights {args.weights!r} is not a column of {args.data}", EXIT_USAGE)
    control = _parse_control(args.control)
    t0 = time.perf_counter()  # wall_s: formula parsing to fitted result (no imports, no file read)
    res = glmer(args.formula, df, family=args.family, link=args.link, nagq=args.nagq,
                weights=args.weights, control=control if isinstance(control, Control) else None)
    wall = time.perf_counter() - t0
    print(res.summary())
    if args.out:
        out = res.to_dict()
        out["wall_s"] = wall
        _write_json(out, args.out)
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="bayes-hlm", description="Bayesian hierarchical linear models (lme4 formulas)",
                epilog="CSV files are read as R's read.csv reads them: only 'NA' and empty cells are "
                       "missing ('None', 'null', 'N/A' are ordinary values; see --na-values); "
                       "string columns become factors with levels in R's en_US sort order.")
    sub = p.add_subparsers(dest="command", parser_class=_Parser)
    common = _Parser(add_help=False)
    common.add_argument("formula", help="lme4 formula, e.g. 'Reaction ~ Days + (Days | Subject)'")
    common.add_argument("data", help="CSV file, plain or compressed (.csv.gz, .bz2, .xz, .zip; with --engine dask also a Parquet file, directory or glob)")
    common.add_argument("--factor", action="append", default=[], metavar="COL",
                        help="treat this numeric-looking column as a factor (repeatable)")
    common.add_argument("--levels", action="append", default=[], metavar="COL=L1,L2,...",
                        help="factor level order, the first level is the reference (repeatable, "
                             "one per column); for labels with commas give a JSON list: "
                             "COL='[\"a,b\",\"c\"]'. Every level must occur in the data. "
                             "Default order: R's sort() (en_US: case-insensitive first)")
    common.add_argument("--na-values", action="append", default=[], metavar="S1,S2,...",
                        help="strings read as missing, replacing the default 'NA' (as R's "
                             "na.strings; repeatable, or a JSON list). Empty cells are always "
                             "missing; nothing else is (a level named 'None' or 'null' is data)")
    common.add_argument("--control", action="append", default=[], metavar="CHECK=ACTION",
                        help="relax an input check as lme4's lmerControl, e.g. check_nlev_gtr_1=warning")
    common.add_argument("--out", help="write the JSON result here (fit prints a summary table; "
                        "fit --json prints the JSON)")
    f = sub.add_parser("fit", parents=[common], help="sample the posterior")
    f.add_argument("--method", choices=["full", "marginal", "auto"], default="auto")
    f.add_argument("--sampler", choices=["auto", "numba", "jax", "pymc", "nutpie", "numpyro", "gibbs"], default=None)
    f.add_argument("--chains", type=int, default=4)
    f.add_argument("--draws", type=int, default=1000)
    f.add_argument("--tune", type=int, default=1000)
    f.add_argument("--seed", type=int, default=None)
    f.add_argument("--target-accept", type=float, default=0.8)
    f.add_argument("--mass-matrix", choices=["auto", "diag", "low_rank"], default="auto",
                   help="nutpie engines: diagonal or low-rank-corrected adaptation (auto: by size)")
    f.add_argument("--family", default="gaussian", metavar="FAMILY",
                   help="response family: gaussian (default), bernoulli, binomial, poisson, "
                        "negativebinomial, t, gamma. A two-level factor/string response is "
                        "coded as R does: the first level (see --levels) is the failure")
    f.add_argument("--link", default=None, metavar="LINK",
                   help="link function (default: the family's; e.g. probit/cloglog for "
                        "bernoulli/binomial, log for gamma)")
    f.add_argument("--weights", default=None, metavar="COL",
                   help="column of row weights: the trials of a binomial proportion response "
                        "(R's glm weights=), else frequency weights (not for gaussian)")
    f.add_argument("--json", action="store_true",
                   help="print the JSON result to stdout instead of the summary table")
    f.add_argument("--plots", metavar="DIR", help="write PNG plots and an HTML report here")
    f.add_argument("--engine", choices=["memory", "dask"], default="memory",
                   help="dask: sufficient statistics out of core (data never fully in memory)")
    f.add_argument("--scheduler", metavar="ADDRESS", default=None,
                   help="Dask scheduler address, or sync/threads/processes (with --engine dask)")
    f.set_defaults(func=_cmd_fit)
    r = sub.add_parser("reml", parents=[common], help="REML/ML point estimates (lme4)")
    r.add_argument("--ml", action="store_true", help="maximum likelihood instead of REML")
    r.add_argument("--names", choices=["bayes_hlm", "lme4"], default="bayes_hlm",
                   help="JSON parameter names: lme4's ('(Intercept)', groups 'Rat'/'Rat.1', "
                        "'Variety:Block' for (1|Block/Variety)) to compare with R")
    r.set_defaults(func=_cmd_reml)
    g = sub.add_parser("glmer", parents=[common],
                       help="maximum-likelihood GLMM (lme4's glmer: Laplace / adaptive GHQ)")
    g.add_argument("--family", required=True, metavar="FAMILY",
                   help="binomial (also 0/1 responses), poisson, gamma, negativebinomial")
    g.add_argument("--link", default=None, metavar="LINK",
                   help="link function (default: R's for the family; e.g. probit, cloglog)")
    g.add_argument("--nagq", type=int, default=1,
                   help="1: Laplace (default); 0: fixed effects inside PIRLS; >1: adaptive "
                        "Gauss-Hermite points per dimension (one grouping factor with at most 2 "
                        "effect columns, e.g. (1 + x | g))")
    g.add_argument("--weights", default=None, metavar="COL",
                   help="prior weights column (binomial proportions: the trials)")
    g.set_defaults(func=_cmd_glmer)
    return p


def _show_warning(message, category, filename, lineno, file=None, line=None):
    """Warnings as one line on stderr: ``warning: <message>``."""
    text = " ".join(str(message).split())
    print(f"warning: {text}", file=sys.stderr if file is None else file)


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code (also used by ``python -m bayes_hlm``)."""
    from .errors import BayesHLMError

    try:
        args = build_parser().parse_args(argv)
        if not getattr(args, "command", None):
            raise CliError("bayes-hlm: choose a command: fit, reml or glmer (see --help)", EXIT_USAGE)
        if args.command == "fit":
            _check_fit_flags(args)
        with warnings.catch_warnings():
            warnings.simplefilter("default")
            from .foreign_warnings import ignore_foreign

            ignore_foreign()  # other libraries' notices are not ours to print
            warnings.showwarning = _show_warning
            return args.func(args)
    except CliError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.code
    except (BayesHLMError, ValueError, KeyError, OSError) as exc:
        msg = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
        if isinstance(exc, OSError) and exc.filename:
            msg = f"{exc.strerror or exc}: {exc.filename!r}"
        print(f"error: {' '.join(msg.split()) or type(exc).__name__}", file=sys.stderr)
        return EXIT_DATA
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
