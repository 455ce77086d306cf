"""One self-contained HTML report per fit (plots embedded as base64 PNG), and ``write_plots``."""

from __future__ import annotations

import base64
import contextlib
import datetime as _dt
import html
import io
import os
import platform
import sys
import warnings
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import matplotlib.pyplot as plt
import numpy as np

from ..progress import phase
from ..results.diagnostics import marginal_available, warn_on
from ._util import (factor_terms, family_link, link_scale_label, reference, reference_label, response_label,
                    slope_column, values)

if TYPE_CHECKING:
    from ..results.bayes_result import BayesResult

PROB = 0.95  # the one interval of the report: tables, plots and captions
DPI = 90  # the one resolution of the report's and write_plots' PNGs
SOFTWARE = ("bayes_hlm", "numpy", "scipy", "pandas", "xarray", "matplotlib", "numba", "nutpie", "pymc",
            "arviz")

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
.note {font-size: 12px; color: #555}
"""


PPC_CAPTIONS = {"dens_overlay": "density of y over the densities of 50 replicated data sets",
                "rootogram": "hanging rootogram: observed count frequencies hanging from the expected",
                "calibration": "binned observed proportion vs predicted probability, with the "
                               "posterior predictive interval of each bin"}


def plot_specs(result: "BayesResult", reml_result=None) -> list[tuple[str, str, Callable]]:
    """(name, caption, function returning a Figure/Axes) of every plot that applies to ``result``."""
    from . import caterpillar, diagnostic_plots, distributions, forest, group_lines, shrinkage

    p = PROB
    generalized = link_scale_label(result) is not None
    ref_name = reference_label(result)
    specs = [("forest", f"Posterior mean and {p:.0%} HDI (blue) vs {ref_name} estimate ± 1.96 SE (red)",
              lambda: forest.plot_forest(result, reml_result, prob=p))]
    if result.factors:
        f = result.factors[0]
        terms = factor_terms(result, f)
        specs += [("caterpillar", f"Group effects of {f} ({p:.0%} HDI), sorted, with {ref_name} conditional modes",
                   lambda: caterpillar.plot_caterpillar(result, reml_result, f, prob=p)),
                  ("shrinkage", f"Shrinkage of {terms[0]} by {f}: no pooling → partial pooling ({p:.0%} HDI)",
                   lambda: shrinkage.plot_shrinkage(result, reml_result, f, prob=p))]
        if len(terms) >= 2:
            specs.append(("shrinkage_2d", f"{terms[0]} vs {terms[1]} by {f}: pull towards the population",
                          lambda: shrinkage.plot_shrinkage_2d(result, reml_result, f)))
        x = slope_column(result, f) if not generalized else None
        if generalized:
            specs += _conditional_specs(result, p)
        if x is not None:
            specs += [("group_lines", f"Per-{f} fits: no, complete and partial pooling ({p:.0%} interval)",
                       lambda: group_lines.plot_group_lines(result, x, f, prob=p)),
                      ("spaghetti", f"Posterior draws of the per-{f} lines",
                       lambda: group_lines.plot_spaghetti(result, x, f))]
        specs.append(("variance", f"ICC and R² posteriors ({p:.0%} HDI shaded); {ref_name}/performance values in red",
                      lambda: distributions.plot_variance_distributions(result, reml_result, prob=p)))
    ppc_kind = diagnostic_plots.default_ppc_kind(result)
    specs += [("ppc", f"Posterior predictive check ({ppc_kind}): {PPC_CAPTIONS.get(ppc_kind, '')}".rstrip(": "),
               lambda: diagnostic_plots.plot_ppc(result)),
              ("trace", "Trace plots (population-level parameters)", lambda: diagnostic_plots.plot_trace(result)),
              ("rank", "Rank plots (population-level parameters)", lambda: diagnostic_plots.plot_rank(result))]
    ss = result.tree["sample_stats"] if "sample_stats" in result.tree.children else None
    if ss is not None and "energy" in ss:
        specs.append(("energy", "Energy plot (BFMI)", lambda: diagnostic_plots.plot_energy(result)))
    return specs


def _conditional_specs(result: "BayesResult", prob: float) -> list[tuple[str, str, Callable]]:
    """Generalized fits: the conditional effect of the first fixed-effect predictor (a data
    column) on the response scale - probability or expected count - split by the second."""
    from .conditional_effects import plot_conditional_effects

    import pandas as pd

    data = result.spec.data
    fixed: list[str] = []  # data columns behind the fixed effects, in formula order
    for n in map(str, result.design.fixed_names):
        for c in data.columns:
            is_factor = isinstance(data[c].dtype, pd.CategoricalDtype)
            if c not in fixed and (n == c or (is_factor and n.startswith(c))):
                fixed.append(c)
    if not fixed:
        return []
    effect, by = fixed[0], (fixed[1] if len(fixed) > 1 else None)
    return [("conditional_effects",
             f"Conditional effect of {effect}{f' by {by}' if by else ''} on {response_label(result)} "
             f"(response scale, group effects at 0, {prob:.0%} HDI)",
             lambda: plot_conditional_effects(result, effect, by, prob=prob))]


def _figure(obj):
    return obj.figure if hasattr(obj, "figure") and not hasattr(obj, "savefig") else obj


@contextlib.contextmanager
def _no_lazy_jax():
    """Hide a not-yet-loaded lazy ``jax`` module from matplotlib while drawing.

    ``arviz_base`` registers ``jax`` lazily; matplotlib's unit handling probes
    ``sys.modules["jax"].Array`` for every value it plots, which then imports all of JAX
    (2-15 s) inside the first plot. Nothing here uses JAX, so the entry is hidden for the
    duration and restored after.
    """
    mod = sys.modules.get("jax")
    lazy = mod is not None and type(mod).__name__ == "_LazyModule"
    if lazy:
        sys.modules["jax"] = None
    try:
        yield
    finally:
        if lazy and sys.modules.get("jax") is None:
            sys.modules["jax"] = mod


def render_plots(result: "BayesResult", reml_result=None, dpi: int = DPI) -> dict[str, tuple[str, bytes | str]]:
    """name -> (caption, PNG bytes), or (caption, error text) for a plot that failed."""
    with _no_lazy_jax():
        return _render(result, reml_result, dpi)


def _render(result, reml_result, dpi):
    out = {}
    specs = plot_specs(result, reml_result)
    with phase(f"drawing {len(specs)} plots") as progress:
        for i, (name, caption, fn) in enumerate(specs, 1):
            progress.step(f"{i}/{len(specs)}: {name}")
            out[name] = _render_one(fn, caption, dpi)
    return out


def _render_one(fn, caption: str, dpi: int) -> tuple[str, bytes | str]:
    """(caption, PNG bytes) of one plot, or (caption, error text) when it fails."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fig = _figure(fn())
            buf = io.BytesIO()
            fig.savefig(buf, format="png", dpi=dpi)
            plt.close(fig)
        return caption, buf.getvalue()
    except Exception as exc:  # one broken plot must not sink the report
        return caption, f"{type(exc).__name__}: {exc}"
    finally:
        plt.close("all")


def _frame_html(df, digits=3) -> str:
    return df.to_html(classes="plain", float_format=lambda v: f"{v:.{digits}g}" if abs(v) < 1e-3 and v
                      else f"{v:.{digits}f}", na_rep="", border=0)


def diagnostics_messages(result: "BayesResult", reml_vals=None) -> list[str]:
    """Plain-language warnings: divergences, R-hat, ESS, tree depth, BFMI, singular REML fit."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        msgs = list(warn_on(result.diagnostics(), result.info.method, marginal_available(result)))
    if reml_vals is not None and reml_vals.singular:
        msgs.append("The REML fit is singular: a variance is estimated at zero or a correlation at ±1 "
                    "(lme4 isSingular). The posterior is still well defined, but that component is "
                    "weakly identified by the data; consider simplifying the random-effect structure.")
    return msgs


# sampler-level diagnostics: key of result.diagnostics() -> (label, format)
_DIAG_ROWS = {
    "divergences": ("Divergent transitions", "{:.0f}"),
    "max_r_hat": ("Max R-hat (population-level)", "{:.3f}"),
    "max_r_hat_all": ("Max R-hat (incl. group effects)", "{:.3f}"),
    "min_ess_bulk": ("Min bulk ESS", "{:.0f}"),
    "min_ess_tail": ("Min tail ESS", "{:.0f}"),
    "treedepth_saturated": ("Transitions at max tree depth", "{:.0f}"),
    "treedepth_cap": ("Tree depth capped by the engine (by design: a whitened near-Gaussian posterior)", "{:.0f}"),
    "bfmi_min": ("Min E-BFMI", "{:.2f}"),
    "effects_diagnostics": ("Group effects checked", None),
}


def _fmt_value(v) -> str:
    if isinstance(v, dict):
        return "; ".join(f"{html.escape(str(k))}: {html.escape(str(x))}" for k, x in v.items())
    if isinstance(v, (bool, np.bool_)):
        return "yes" if v else "no"
    if isinstance(v, (int, np.integer)):
        return f"{int(v)}"
    if isinstance(v, (float, np.floating)):
        if not np.isfinite(v):
            return "NA"
        return f"{v:.0f}" if abs(v) >= 100 else f"{v:.3g}"
    return html.escape(str(v))


def diagnostics_table(result: "BayesResult") -> str:
    """Sampler-level diagnostics as a two-column HTML table with readable labels."""
    rows = []
    for k, v in result.diagnostics().items():
        label, fmt = _DIAG_ROWS.get(k, (k.replace("_", " ").capitalize(), None))
        try:
            text = fmt.format(v) if fmt and np.isfinite(v) else _fmt_value(v)
        except (TypeError, ValueError):
            text = _fmt_value(v)
        rows.append(f"<tr><th>{html.escape(label)}</th><td>{text}</td></tr>")
    return "<table class='plain'>" + "".join(rows) + "</table>"


def parameter_table(result: "BayesResult", prob: float = PROB) -> str:
    """Per population-level parameter: mean, SD, ``prob`` HDI, R-hat, bulk and tail ESS, MCSE."""
    summ = result.summary(level=prob)
    cols = {"mean": "Estimate", "sd": "Est.Error", "hdi_low": f"l-{prob:.0%} HDI", "hdi_high": f"u-{prob:.0%} HDI",
            "r_hat": "R-hat", "ess_bulk": "Bulk ESS", "ess_tail": "Tail ESS", "mcse_mean": "MCSE"}
    frame = summ[[c for c in cols if c in summ.columns]].rename(columns=cols)
    frame.index.name = frame.columns.name = None
    fmt = {c: (lambda v: "NA" if not np.isfinite(v) else f"{v:.0f}") for c in ("Bulk ESS", "Tail ESS")}
    fmt["R-hat"] = lambda v: "NA" if not np.isfinite(v) else f"{v:.3f}"
    return frame.to_html(classes="plain", border=0, formatters=fmt, na_rep="NA",
                         float_format=lambda v: _num(v))


def _num(v: float, digits: int = 3) -> str:
    """Significant digits a reader can use: 3 decimals for ordinary magnitudes, more for tiny ones."""
    if not np.isfinite(v):
        return "NA"
    if v != 0 and (abs(v) < 1e-3 or abs(v) >= 1e6):
        return f"{v:.{digits}g}"
    return f"{v:.{digits}f}" if abs(v) < 100 else f"{v:.1f}"


def compare_table(frame, singular: bool) -> str:
    """``compare_reml`` as HTML; REML values on the boundary of a singular fit get no "diff".

    A singular REML fit puts an SD at 0 or a correlation at ±1 (lme4 then reports no usable
    value); the posterior cannot sit on that boundary, so "posterior mean minus REML in
    posterior SDs" there measures the boundary, not a disagreement, and is left blank with a note.
    """
    f = frame.copy()
    at_bound = np.zeros(len(f), bool)
    if singular:
        kind, reml = f["kind"].to_numpy(), f["reml"].to_numpy(float)
        with np.errstate(invalid="ignore"):
            at_bound = (((kind == "sd") & ~(reml > 1e-8 * np.nanmax(np.abs(f["mean"]))))
                        | ((kind == "corr") & ~(np.abs(reml) < 1 - 1e-6)))
    diff = [("at boundary*" if b else _num(v, 2)) for v, b in zip(f["diff_in_post_sd"].to_numpy(float), at_bound)]
    f["diff_in_post_sd"] = [d if d != "NA" else "" for d in diff]
    f = f.rename(columns={"diff_in_post_sd": "diff (posterior SDs)", "reml_se": "REML SE", "reml": "REML",
                          "hdi_low": "HDI low", "hdi_high": "HDI high"})
    f.index.name = f.columns.name = None
    out = f.to_html(classes="plain", border=0, na_rep="", float_format=_num)
    if at_bound.any():
        out += ("<p class='note'>* The REML fit is singular and this value is on the boundary of its "
                "space (SD 0 or correlation ±1, reported as NA by lme4); the posterior cannot sit "
                "there, so no difference is shown.</p>")
    return out


def software_versions() -> dict[str, str]:
    """Python and the installed versions of the packages behind the fit and the report."""
    out = {"python": platform.python_version()}
    for name in SOFTWARE:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def build_report(result: "BayesResult", reml_result=None, plots: dict | None = None) -> str:
    """The report as one HTML string (see :func:`write_report`)."""
    from ..results.compare_reml import compare_reml
    from .tab_model import tab_model

    ref = reference(result, reml_result)
    vals = values(ref)
    plots = plots if plots is not None else render_plots(result, ref)
    info = result.info
    family, link = family_link(result)
    scale = link_scale_label(result)
    scale_note = (f" Coefficients, group effects and shrinkage are on the link scale: {scale}; "
                  f"ICC and R² (marginal/conditional) on the latent scale; conditional effects and "
                  f"posterior predictive checks on the response scale." if scale else "")
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>bayes_hlm report</title>"
             f"<style>{CSS}</style></head><body>",
             f"<h1>{html.escape(result.formula)}</h1>",
             f"<p>Family <code>{html.escape(family)}</code>, link <code>{html.escape(link)}</code>. "
             f"{result.nobs()} observations; groups: "
             + ", ".join(f"{html.escape(k)} ({v})" for k, v in result.ngrps().items())
             + f". Method <code>{info.method}</code>, sampler <code>{info.sampler}</code>, "
             f"{info.chains} chains × {info.draws} draws (tune {info.tune}), seed {info.seed}, "
             f"{info.wall_s:.1f} s. Generated {_dt.datetime.now():%Y-%m-%d %H:%M}. "
             f"Intervals are {PROB:.0%} highest-density intervals throughout.{html.escape(scale_note)}</p>"]
    parts.append("<h2>Diagnostics</h2>")
    msgs = diagnostics_messages(result, vals)
    parts += [f"<div class='warn'>{html.escape(m)}</div>" for m in msgs] or \
        ["<div class='ok'>No sampler problems detected (divergences, R-hat, ESS, tree depth, BFMI).</div>"]
    parts.append(diagnostics_table(result))
    parts.append(f"<h3>Population-level parameters ({PROB:.0%} HDI, R-hat, bulk and tail ESS)</h3>")
    parts.append(parameter_table(result, PROB))
    parts.append(f"<h2>Bayesian vs {reference_label(result)}</h2>")
    parts.append(tab_model(result, ref, prob=PROB).html)
    if vals is not None:
        parts.append(f"<h3>Posterior ({PROB:.0%} HDI) vs {reference_label(result)}, every parameter</h3>")
        parts.append(compare_table(compare_reml(result, ref, PROB), bool(vals.singular)))
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
    parts.append("<h2>Software</h2><table class='plain'>" + "".join(
        f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in software_versions().items())
        + "</table>")
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


def write_plots(result: "BayesResult", directory, reml_result=None, dpi: int = DPI) -> dict[str, Path]:
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
