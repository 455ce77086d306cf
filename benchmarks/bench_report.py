"""Time the HTML report (``BayesResult.report``), before and after, in one run.

Fits sleepstudy once (``Reaction ~ Days + (Days | Subject)``, 4 x 1000 draws; the fit is not
timed and is cached in ``$BENCH_SCRATCH``), then runs each version of ``bayes_hlm`` in its own
Python process on that saved fit: the working tree ("after") and a git revision ("before",
default ``d2bd140``, main before issue 18's report work), exported with ``git archive``.

Each process imports bayes_hlm and matplotlib and fits the REML reference before the clock
starts (``BayesResult.report`` reuses it), then times

* ``report``: the first ``result.report(path)`` of the process (what a user waits for after a
  fit: plots, tables, first-use imports such as ArviZ's lazy JAX);
* each plot of the report, drawn and saved as PNG again (warm).

Prints a table and writes ``benchmarks/results/report.json``::

    python benchmarks/bench_report.py [--before REV] [--case sleepstudy|hsb82|penicillin]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SCRATCH = Path(os.environ.get("BENCH_SCRATCH", "/tmp/perf"))
CASES = {"sleepstudy": ("sleepstudy", "Reaction ~ Days + (Days | Subject)"),
         "hsb82": ("hsb82", "mAch ~ cses + meanses + sector + (cses | school)"),
         "penicillin": ("penicillin", "diameter ~ 1 + (1 | plate) + (1 | sample)")}


def worker(path: str, out_html: str) -> dict:
    """Runs inside the timed process (the version under test is first on sys.path)."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    import bayes_hlm
    from bayes_hlm.reporters import report_html
    from bayes_hlm.results.bayes_result import BayesResult

    m = BayesResult.load(path)
    ref = m.reml()  # cached on the result: report() reuses it
    t = time.perf_counter()
    c = time.process_time()
    m.report(out_html)
    res = {"bayes_hlm": bayes_hlm.__file__, "report_s": time.perf_counter() - t,
           "report_cpu_s": time.process_time() - c, "plots": {}}
    dpi = getattr(report_html, "DPI", 96)
    for name, _, fn in report_html.plot_specs(m, ref):
        t = time.perf_counter()
        fig = report_html._figure(fn())
        fig.savefig(io.BytesIO(), format="png", dpi=dpi)
        plt.close("all")
        res["plots"][name] = time.perf_counter() - t
    return res


def _fit(case: str) -> Path:
    SCRATCH.mkdir(parents=True, exist_ok=True)
    path = SCRATCH / f"report_{case}.nc"
    if not path.exists():
        sys.path.insert(0, str(ROOT))
        import bayes_hlm as bh

        data, formula = CASES[case]
        m = bh.fit(formula, bh.datasets.load(data), chains=4, draws=1000, tune=1000, seed=2024,
                   progressbar=False)
        m.save(path)
    return path


def _export(rev: str, dest: Path) -> Path:
    """``bayes_hlm`` of git revision ``rev`` under ``dest`` (via ``git archive``)."""
    tar = dest / "src.tar"
    subprocess.run(["git", "-C", str(ROOT), "archive", "-o", str(tar), rev, "bayes_hlm"], check=True)
    with tarfile.open(tar) as tf:
        tf.extractall(dest, filter="data")
    return dest


def _run(src: Path, fit: Path, out_html: Path) -> dict:
    env = dict(os.environ, PYTHONPATH=str(src))
    code = (f"import sys, json; sys.path.insert(0, {str(HERE)!r}); from bench_report import worker; "
            f"print('RESULT' + json.dumps(worker({str(fit)!r}, {str(out_html)!r})))")
    p = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=str(src))
    line = [s for s in p.stdout.splitlines() if s.startswith("RESULT")]
    if p.returncode or not line:
        raise RuntimeError(f"worker failed for {src}:\n{p.stderr[-3000:]}")
    return json.loads(line[-1][len("RESULT"):])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--before", default="d2bd140", help="git revision timed as 'before' ('' to skip)")
    ap.add_argument("--case", default="sleepstudy", choices=list(CASES))
    ap.add_argument("--json", default=str(HERE / "results" / "report.json"))
    args = ap.parse_args(argv)
    fit = _fit(args.case)
    runs = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if args.before:
            runs["before"] = _run(_export(args.before, tmp), fit, tmp / "before.html")
        runs["after"] = _run(ROOT, fit, tmp / "after.html")
    names = list(dict.fromkeys(n for r in runs.values() for n in r["plots"]))
    cols = list(runs)
    print(f"HTML report of {CASES[args.case][1]} ({args.case}), seconds; "
          f"load {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"{'':24s}" + "".join(f"{c:>10s}" for c in cols))
    for key, label in (("report_s", "report() wall, first"), ("report_cpu_s", "report() CPU")):
        print(f"{label:24s}" + "".join(f"{runs[c][key]:10.2f}" for c in cols))
    for n in names:
        print(f"  plot {n:19s}" + "".join(f"{runs[c]['plots'].get(n, float('nan')):10.2f}" for c in cols))
    out = {"case": args.case, "formula": CASES[args.case][1], "before_rev": args.before or None,
           "loadavg": os.getloadavg()[0], "cpus": os.cpu_count(), "target_report_s": 5.0, "runs": runs}
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(out, indent=2))
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
