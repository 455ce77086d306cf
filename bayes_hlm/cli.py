"""Command line: ``bayes-hlm fit`` and ``bayes-hlm reml``.

CSV column types: grouping columns are always factors; other numeric-looking
columns are numeric unless named with ``--factor``; string columns are factors
with levels in sorted order unless ``--levels COL=L1,L2,...`` gives the order
(first = reference). Every error ends in one clear line on stderr and a
non-zero exit code (2 for usage, 1 for data/model problems).
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


def _parse_levels(items: list[str]) -> dict[str, list[str]]:
    out = {}
    for item in items or []:
        if "=" not in item or not item.split("=", 1)[1]:
            raise CliError(f"--levels expects COL=L1,L2,... but got {item!r}", EXIT_USAGE)
        col, levels = item.split("=", 1)
        out[col] = [v.strip() for v in levels.split(",")]
    return out


def read_table(path: str, formula: str, factors: list[str], levels: dict[str, list[str]]) -> pd.DataFrame:
    """Read a CSV and apply the CLI's column-type rules."""
    from .spec.formula import parse_formula

    p = Path(path)
    if not p.is_file():
        raise CliError(f"data file {path!r} does not exist or is not a file")
    try:
        df = pd.read_csv(p, dtype=str, keep_default_na=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise CliError(f"cannot read {path!r} as CSV: {str(exc).splitlines()[0]}") from None
    if df.shape[1] == 0 or len(df) == 0:
        raise CliError(f"data file {path!r} has no data rows")
    group_cols = {c for t in parse_formula(formula).random for c in t.factor_columns}
    for col in list(factors) + list(levels):
        if col not in df.columns:
            raise CliError(f"column {col!r} named in --factor/--levels is not in {path!r} "
                           f"(columns: {', '.join(df.columns)})", EXIT_USAGE)
    for col in df.columns:
        raw = df[col]
        as_num = pd.to_numeric(raw, errors="coerce")
        numeric_like = bool((as_num.notna() | raw.isna()).all()) and as_num.notna().any()
        if col in levels:
            present = set(raw.dropna().unique())
            missing = sorted(present - set(levels[col]))
            if missing:
                raise CliError(f"--levels for {col!r} does not list value(s) {missing[:5]} found in the data")
            df[col] = pd.Categorical(raw, categories=levels[col])
        elif col in group_cols or col in factors or not numeric_like:
            vals = raw.dropna().unique()
            order = sorted(vals, key=lambda v: (float(v), v)) if numeric_like else sorted(vals)
            df[col] = pd.Categorical(raw, categories=order)
        else:
            df[col] = as_num
    return df


def _check_writable(path: str | None) -> None:
    if path is None:
        return
    parent = Path(path).resolve().parent
    if not parent.is_dir() or not os.access(parent, os.W_OK):
        raise CliError(f"cannot write output {path!r}: directory {str(parent)!r} does not exist or "
                       "is not writable")


def _write_json(obj: dict, path: str | None) -> None:
    text = json.dumps(obj, indent=2, allow_nan=True, default=float)
    if path is None:
        print(text)
        return
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)


def _cmd_fit(args) -> int:
    from .fitting import fit
    from .results.export import fit_json

    _check_writable(args.out)
    df = read_table(args.data, args.formula, args.factor, _parse_levels(args.levels))
    result = fit(args.formula, df, method=args.method, sampler=args.sampler, chains=args.chains,
                 draws=args.draws, tune=args.tune, seed=args.seed, target_accept=args.target_accept)
    out = fit_json(result)
    try:
        from .reml import reml

        ref = reml(result.spec)
        out["reml"] = ref.to_dict()
    except ImportError:
        pass
    if args.plots:
        from .reporters import write_plots

        write_plots(result, args.plots)
    _write_json(out, args.out)
    return 0


def _cmd_reml(args) -> int:
    from .reml import reml

    _check_writable(args.out)
    df = read_table(args.data, args.formula, args.factor, _parse_levels(args.levels))
    res = reml(args.formula, df, method="ML" if args.ml else "REML")
    print(res.summary() if isinstance(res.summary(), str) else res.summary())
    if args.out:
        _write_json(res.to_dict(), args.out)
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="bayes-hlm", description="Bayesian hierarchical linear models (lme4 formulas)")
    sub = p.add_subparsers(dest="command", parser_class=_Parser)
    common = _Parser(add_help=False)
    common.add_argument("formula", help="lme4 formula, e.g. 'Reaction ~ Days + (Days | Subject)'")
    common.add_argument("data", help="CSV file")
    common.add_argument("--factor", action="append", default=[], metavar="COL",
                        help="treat this numeric-looking column as a factor (repeatable)")
    common.add_argument("--levels", action="append", default=[], metavar="COL=L1,L2,...",
                        help="factor level order; the first level is the reference")
    common.add_argument("--out", help="write JSON here (default: stdout for fit)")
    f = sub.add_parser("fit", parents=[common], help="sample the posterior")
    f.add_argument("--method", choices=["full", "marginal", "auto"], default="auto")
    f.add_argument("--sampler", choices=["pymc", "nutpie", "numpyro"], default=None)
    f.add_argument("--chains", type=int, default=4)
    f.add_argument("--draws", type=int, default=1000)
    f.add_argument("--tune", type=int, default=1000)
    f.add_argument("--seed", type=int, default=None)
    f.add_argument("--target-accept", type=float, default=0.8)
    f.add_argument("--plots", metavar="DIR", help="write PNG plots and an HTML report here")
    f.set_defaults(func=_cmd_fit)
    r = sub.add_parser("reml", parents=[common], help="REML/ML point estimates (lme4)")
    r.add_argument("--ml", action="store_true", help="maximum likelihood instead of REML")
    r.set_defaults(func=_cmd_reml)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code (also used by ``python -m bayes_hlm``)."""
    from .errors import BayesHLMError

    try:
        args = build_parser().parse_args(argv)
        if not getattr(args, "command", None):
            raise CliError("bayes-hlm: choose a command: fit or reml (see --help)", EXIT_USAGE)
        for name in ("chains", "draws"):
            if getattr(args, name, 1) is not None and getattr(args, name, 1) < 1:
                raise CliError(f"--{name} must be at least 1", EXIT_USAGE)
        with warnings.catch_warnings():
            warnings.simplefilter("default")
            return args.func(args)
    except CliError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.code
    except (BayesHLMError, ValueError, KeyError) as exc:
        msg = str(exc).strip("'\"")
        print(f"error: {msg}", file=sys.stderr)
        return EXIT_DATA
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
