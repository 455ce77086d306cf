"""One self-contained HTML report per fit (plots embedded as base64 PNG), and ``write_plots``."""

from __future__ import annotations

import base64
import datetime as _dt
import html
import io
import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import matplotlib.pyplot as plt

from ..results.diagnostics import warn_on
from ._util import factor_terms, reference, slope_column, values

if TYPE_CHECKING:
    from ..results.bayes_result import BayesResult

CSS = """
body {font-family: sans-serif; max-width: 1100px; margin: 2em auto; color: #222}
h1 {font-size: 1.5em} h2 {font-size: 1.2em; border-bottom: 1px solid #ccc; margin-top: 1.6em}
code {background: #f3f3f3; padding: 1px 4px}
.warn {background: #fff4e5; border-left: 4px solid #f0a020; padding: 6px 10px; margin: 4px 0}
.ok {background: #eaf7ea; border-left: 4px solid #3a3; padding: 6px 10px}
table.plain {border-collapse: collapse; font-size: 13px} table.plain td, table.plain th {padding: 2px 8px;
 border-bottom: 1px solid #eee; text-align: right} table.plain th {text-align: left}
figure {margin: 1em 0} figcaption {font-size: 12px; color: #555}
img {max-width: 100%}
"""


def plot_specs(result: "BayesResult", reml_result=None) -> list[tuple[str, str, Callable]]:
    """(name, caption, function returning a Figure/Axes) of every plot that applies to ``result``."""
    from . import caterpillar, checks, distributions, forest, group_lines, shrinkage

    specs = [("forest", "Posterior intervals (blue) vs REML estimate ± 1.96 SE (red)",
              lambda: forest.plot_forest(result, reml_result))]
    if result.factors:
        f = result.factors[0]
        terms = factor_terms(result, f)
        specs += [("caterpillar", f"Group effects of {f}, sorted, with REML conditional modes",
                   lambda: caterpillar.plot_caterpillar(result, reml_result, f)),
                  ("shrinkage", f"Shrinkage of {terms[0]} by {f}: no pooling → partial pooling",
                   lambda: shrinkage.plot_shrinkage(result, reml_result, f))]
        if len(terms) >= 2:
            specs.append(("shrinkage_2d", f"{terms[0]} vs {terms[1]} by {f}: pull towards the population",
                          lambda: shrinkage.plot_shrinkage_2d(result, reml_result, f)))
        x = slope_column(result, f)
        if x is not None:
            specs += [("group_lines", f"Per-{f} fits: no, complete and partial pooling",
                       lambda: group_lines.plot_group_lines(result, x, f)),
                      ("spaghetti", f"Posterior draws of the per-{f} lines",
                       lambda: group_lines.plot_spaghetti(result, x, f))]
        specs.append(("variance", "ICC and R² posteriors; REML/performance values in red",
                      lambda: distributions.plot_variance_distributions(result, reml_result)))
    specs += [("ppc", "Posterior predictive check", lambda: checks.plot_ppc(result)),
              ("trace", "Trace plots (population-level parameters)", lambda: checks.plot_trace(result)),
              ("rank", "Rank plots", lambda: checks.plot_rank(result))]
    ss = result.tree["sample_stats"] if "sample_stats" in result.tree.children else None
    if ss is not None and "energy" in ss:
        specs.append(("energy", "Energy plot (BFMI)", lambda: checks.plot_energy(result)))
    return specs


def _figure(obj):
    return obj.figure if hasattr(obj, "figure") and not hasattr(obj, "savefig") else obj


def render_plots(result: "BayesResult", reml_result=None, dpi: int = 96) -> dict[str, tuple[str, bytes | str]]:
    """name -> (caption, PNG bytes), or (caption, error text) for a plot that failed."""
    out = {}
    for name, caption, fn in plot_specs(result, reml_result):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fig = _figure(fn())
                buf = io.BytesIO()
                fig.savefig(buf, format="png", dpi=dpi)
                plt.close(fig)
            out[name] = (caption, buf.getvalue())
        except Exception as exc:  # one broken plot must not sink the report
            out[name] = (caption, f"{type(exc).__name__}: {exc}")
        finally:
            plt.close("all")
    return out


def _frame_html(df, digits=3) -> str:
    return df.to_html(classes="plain", float_format=lambda v: f"{v:.{digits}g}" if abs(v) < 1e-3 and v
                      else f"{v:.{digits}f}", na_rep="", border=0)


def diagnostics_messages(result: "BayesResult", reml_vals=None) -> list[str]:
    """Plain-language warnings: divergences, R-hat, ESS, tree depth, BFMI, singular REML fit."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        msgs = list(warn_on(result.diagnostics(), result.info.method))
    if reml_vals is not None and reml_vals.singular:
        msgs.append("The REML fit is singular: a variance is estimated at zero or a correlation at ±1 "
                    "(lme4 isSingular). The posterior is still well defined, but that component is "
                    "weakly identified by the data; consider simplifying the random-effect structure.")
    return msgs


def build_report(result: "BayesResult", reml_result=None, plots: dict | None = None) -> str:
    """The report as one HTML string (see :func:`write_report`)."""
    from ..results.compare_reml import compare_reml
    from .compare import tab_model

    ref = reference(result, reml_result)
    vals = values(ref)
    plots = plots if plots is not None else render_plots(result, ref)
    info = result.info
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>bayes_hlm report</title>"
             f"<style>{CSS}</style></head><body>",
             f"<h1>{html.escape(result.formula)}</h1>",
             f"<p>{result.nobs()} observations; groups: "
             + ", ".join(f"{html.escape(k)} ({v})" for k, v in result.ngrps().items())
             + f". Method <code>{info.method}</code>, sampler <code>{info.sampler}</code>, "
             f"{info.chains} chains × {info.draws} draws (tune {info.tune}), seed {info.seed}, "
             f"{info.wall_s:.1f} s. Generated {_dt.datetime.now():%Y-%m-%d %H:%M}.</p>"]
    parts.append("<h2>Diagnostics</h2>")
    msgs = diagnostics_messages(result, vals)
    parts += [f"<div class='warn'>{html.escape(m)}</div>" for m in msgs] or \
        ["<div class='ok'>No sampler problems detected (divergences, R-hat, ESS, tree depth, BFMI).</div>"]
    diag = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in result.diagnostics().items()}
    parts.append("<table class='plain'>" + "".join(f"<tr><th>{html.escape(k)}</th><td>{v}</td></tr>"
                                                   for k, v in diag.items()) + "</table>")
    parts.append("<h2>Bayesian vs REML</h2>")
    parts.append(tab_model(result, ref).html)
    if vals is not None:
        parts.append("<h3>Posterior vs REML, every parameter</h3>")
        parts.append(_frame_html(compare_reml(result, ref)))
    else:
        parts.append(f"<p><b>Note:</b> {html.escape(ref.note)}</p>")
    parts.append("<h2>Priors</h2>")
    try:
        parts.append(result.prior_summary().to_html(classes="plain", border=0))
    except Exception as exc:
        parts.append(f"<p>{html.escape(str(exc))}</p>")
    parts.append("<h2>Plots</h2>")
    for name, (caption, png) in plots.items():
        if isinstance(png, bytes):
            b64 = base64.b64encode(png).decode("ascii")
            parts.append(f"<figure id='{name}'><img alt='{name}' src='data:image/png;base64,{b64}'>"
                         f"<figcaption>{html.escape(caption)}</figcaption></figure>")
        else:
            parts.append(f"<p><b>{html.escape(name)}</b>: not drawn ({html.escape(png)})</p>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(result: "BayesResult", path, reml_result=None) -> Path:
    """Write one self-contained HTML report of ``result``.

    Contents: formula and fit settings, diagnostics with plain-language warnings
    (divergences, R-hat, ESS, tree depth, BFMI, singular REML fit), the sjPlot-style
    Bayesian-vs-REML table, every parameter vs REML, priors, and the plots as
    embedded PNGs.

    Parameters
    ----------
    result : BayesResult
    path : str or Path
        Output ``.html`` file (parent directories are created).
    reml_result : RemlResult, optional
        Fitted on ``result.spec`` when omitted; the report notes it if unavailable.

    Returns
    -------
    Path
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = build_report(result, reml_result)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path


def write_plots(result: "BayesResult", directory, reml_result=None, dpi: int = 110) -> dict[str, Path]:
    """Write every applicable plot as ``<name>.png`` and the HTML report as ``report.html``.

    Used by the CLI's ``--plots DIR``. Returns name -> path of the files written
    (plots that failed are listed in the report instead).
    """
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    ref = reference(result, reml_result)
    plots = render_plots(result, ref, dpi=dpi)
    written = {}
    for name, (_, png) in plots.items():
        if isinstance(png, bytes):
            p = d / f"{name}.png"
            p.write_bytes(png)
            written[name] = p
    report = d / "report.html"
    report.write_text(build_report(result, ref, plots), encoding="utf-8")
    written["report"] = report
    return written
