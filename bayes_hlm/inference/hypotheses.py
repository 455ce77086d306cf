"""Hypotheses and linear combinations of parameters, for any mixed-model result.

* :func:`hypothesis` - brms ``hypothesis()``: ``"sectorCatholic > 0"``,
  ``"Days - 2*Intercept = 0"``. On a posterior (:func:`posterior_hypothesis`):
  Estimate, Est.Error, CI, Evid.Ratio, Post.Prob; on a REML fit (:func:`wald_hypothesis`):
  Wald t-tests with Satterthwaite df (lmerTest ``contest``).
* :func:`lincom` - a linear combination of fixed effects given as weights.

The result objects own the estimation (``result._linear_estimates``: posterior draws or
Wald/Satterthwaite); this module owns the parsing and the table layout, written once.
"""

from __future__ import annotations

import ast
import operator
import re
from typing import Callable, Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import special as _sf  # not scipy.stats: its import costs seconds (CLI start-up)

from ..errors import BayesHLMError
from ._args import resolve_level
from .intervals import label_interval

__all__ = ["hypothesis", "posterior_hypothesis", "wald_hypothesis", "lincom", "expr_label",
           "linear_weights"]


def hypothesis(model, hypotheses: str | Sequence[str], alpha: float = 0.05, **kwargs) -> pd.DataFrame:
    """Test hypotheses about parameters (brms ``hypothesis()``) on any result.

    Same as ``model.hypothesis(hypotheses, alpha=alpha, ...)``; see
    :func:`posterior_hypothesis` (Bayesian fits) and :func:`wald_hypothesis` (REML fits).
    """
    return model.hypothesis(hypotheses, alpha=alpha, **kwargs)


# ------------------------------------------------------------------ parsing
_CMP = re.compile(r"(<=|>=|==|=|<|>)")
_SAFE = re.compile(r"^[\s\d.eE+\-*/()_p]*$")


def parse(hyp: str, names: Sequence[str]) -> tuple[str, str, list[str]]:
    """(python expression of lhs - rhs, comparator, used names)."""
    parts = _CMP.split(hyp)
    if len(parts) == 1:
        lhs, op, rhs = parts[0], "=", "0"
    elif len(parts) == 3:
        lhs, op, rhs = parts
    else:
        raise BayesHLMError(f"hypothesis {hyp!r} must contain exactly one of =, <, >")
    op = {"==": "=", "<=": "<", ">=": ">"}.get(op, op)
    expr = f"({lhs.strip()}) - ({rhs.strip() or '0'})"
    tokens = {}
    for k, name in enumerate(sorted(names, key=len, reverse=True)):
        pat = r"(?<![\w.:\[\]])" + re.escape(name) + r"(?![\w.:\[\]])"
        tok = f"_p{k}_"
        new = re.sub(pat, tok, expr)
        if new != expr:
            tokens[tok] = name
            expr = new
    expr = expr.replace("^", "**")
    if not _SAFE.match(expr):
        bad = re.sub(r"_p\d+_", "", expr)
        bad = re.sub(r"[\s\d.eE+\-*/()]", " ", bad).split()
        raise BayesHLMError(f"hypothesis {hyp!r} uses unknown name(s) {bad}; parameters: "
                            f"{', '.join(n for n in names if not n.startswith('b_'))}")
    _check_tree(_tree(expr, hyp), hyp)
    return expr, op, [tokens[t] for t in sorted(tokens)]


#: The arithmetic a hypothesis may use; powers only with a number exponent |p| <= MAX_POWER
#: (so "9^9^9^9 > 0" is refused at once instead of computing a huge integer).
_BINARY = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
           ast.Div: operator.truediv, ast.Pow: operator.pow}
_UNARY = {ast.UAdd: operator.pos, ast.USub: operator.neg}
MAX_POWER = 10


def _tree(expr: str, hyp: str) -> ast.expr:
    try:
        return ast.parse(expr, mode="eval").body
    except SyntaxError:
        raise BayesHLMError(f"hypothesis {hyp!r} is not an arithmetic expression of parameters "
                            "and numbers (+, -, *, /, ^ and parentheses)") from None


def _number(node: ast.expr) -> float | None:
    """The value of a (signed) number literal, else None."""
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        v = _number(node.operand)
        return None if v is None else _UNARY[type(node.op)](v)
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return float(node.value)
    return None


def _check_tree(node: ast.expr, hyp: str) -> None:
    """Refuse anything but names, numbers, + - * / and small constant powers."""
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        if isinstance(node.op, ast.Pow):
            p = _number(node.right)
            if p is None or abs(p) > MAX_POWER:
                raise BayesHLMError(f"hypothesis {hyp!r}: a power's exponent must be a number "
                                    f"between -{MAX_POWER} and {MAX_POWER}")
        _check_tree(node.left, hyp)
        _check_tree(node.right, hyp)
    elif isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        _check_tree(node.operand, hyp)
    elif not (isinstance(node, ast.Name) or _number(node) is not None):
        raise BayesHLMError(f"hypothesis {hyp!r} may use only parameters, numbers, "
                            "+, -, *, /, ^ and parentheses")


def _eval_tree(node: ast.expr, ns: Mapping[str, np.ndarray]):
    if isinstance(node, ast.BinOp):
        return _BINARY[type(node.op)](_eval_tree(node.left, ns), _eval_tree(node.right, ns))
    if isinstance(node, ast.UnaryOp):
        return _UNARY[type(node.op)](_eval_tree(node.operand, ns))
    if isinstance(node, ast.Name):
        return ns[node.id]
    return np.float64(node.value)  # float arithmetic: overflow gives inf, never a huge int


def evaluate(expr: str, values: Mapping[str, np.ndarray], names: Sequence[str]) -> np.ndarray:
    """``expr`` (from :func:`parse`: checked) evaluated on ``values``; no ``eval``."""
    order = sorted(names, key=len, reverse=True)
    ns = {f"_p{k}_": np.asarray(values[n], dtype=float) for k, n in enumerate(order) if n in values}
    tree = _tree(expr, expr)
    _check_tree(tree, expr)
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        return np.asarray(_eval_tree(tree, ns), dtype=float)


def expr_label(h: str) -> str:
    parts = _CMP.split(h)
    if len(parts) != 3:
        return h.strip()
    lhs, rhs = parts[0].strip(), parts[2].strip()
    return f"({lhs})" if rhs in ("0", "") else f"({lhs}) - ({rhs})"


def _density_at_zero(d: np.ndarray) -> float:
    d = np.asarray(d, dtype=float)
    if d.std() == 0:
        return np.inf if np.all(d == 0) else 0.0
    from scipy.stats import gaussian_kde  # only here: scipy.stats costs seconds to import

    return float(gaussian_kde(d)(0.0)[0])


def _as_list(hypotheses) -> list[str]:
    return [hypotheses] if isinstance(hypotheses, str) else list(hypotheses)


# --------------------------------------------------------------- posterior
def posterior_hypothesis(hypotheses: str | Sequence[str], post: Mapping[str, np.ndarray],
                         prior_fn: Callable[[int], Mapping[str, np.ndarray]], alpha: float = 0.05,
                         robust: bool = False) -> pd.DataFrame:
    """brms ``hypothesis()`` from flat posterior draws of named parameters.

    Each hypothesis compares two expressions with ``=``, ``<`` or ``>``; the
    difference ``lhs - rhs`` is evaluated per draw. ``post`` maps names to draws;
    ``prior_fn(n)`` gives ``n`` prior draws of the same names (only for ``=``).

    Returns brms' columns: ``Estimate`` (mean, median with ``robust``), ``Est.Error``,
    ``CI.Lower``/``CI.Upper`` (equal-tailed ``1 - alpha``; one-sided for ``<``/``>``,
    as brms), ``Evid.Ratio`` (``P(h) / P(not h)`` for one-sided hypotheses;
    Savage-Dickey density ratio posterior/prior at the point for ``=``, the prior
    density from prior draws), ``Post.Prob`` and ``Star`` (``*`` when the CI excludes
    the hypothesised value).
    """
    keys = list(post)
    size = len(next(iter(post.values())))
    prior = None
    rows = []
    for h in _as_list(hypotheses):
        expr, op, _ = parse(h, keys)
        d = np.broadcast_to(evaluate(expr, post, keys), (size,))
        est = float(np.median(d) if robust else d.mean())
        err = float(d.std(ddof=1))
        if op == "=":
            lo, hi = np.quantile(d, [alpha / 2, 1 - alpha / 2])
            if prior is None:
                prior = prior_fn(max(4000, d.size))
            n_prior = len(next(iter(prior.values())))
            pd_ = np.broadcast_to(evaluate(expr, prior, keys), (n_prior,))
            er = _density_at_zero(d) / _density_at_zero(pd_)
            pp = er / (1 + er) if np.isfinite(er) else np.nan
            star = "*" if (lo > 0 or hi < 0) else ""
        elif op == ">":
            lo, hi = np.quantile(d, alpha), np.inf
            pp = float((d > 0).mean())
            er = pp / (1 - pp) if pp < 1 else np.inf
            star = "*" if lo > 0 else ""
        else:
            lo, hi = -np.inf, np.quantile(d, 1 - alpha)
            pp = float((d < 0).mean())
            er = pp / (1 - pp) if pp < 1 else np.inf
            star = "*" if hi < 0 else ""
        rows.append({"Hypothesis": f"{expr_label(h)} {op} 0", "Estimate": est, "Est.Error": err,
                     "CI.Lower": float(lo), "CI.Upper": float(hi), "Evid.Ratio": float(er),
                     "Post.Prob": float(pp), "Star": star})
    return label_interval(pd.DataFrame(rows), 1 - alpha, "eti")


# -------------------------------------------------------------------- Wald
def linear_weights(expr: str, names: list[str]) -> tuple[np.ndarray, float]:
    """(L, c) with ``expr(beta) = L @ beta + c``; raises if not linear in the fixed effects."""
    p = len(names)
    keys = {n: ("b_" + n) for n in names}

    def f(beta):
        vals = {n: beta[j] for j, n in enumerate(names)}
        vals.update({keys[n]: beta[j] for j, n in enumerate(names)})
        return float(evaluate(expr, vals, list(vals)))

    c = f(np.zeros(p))
    L = np.array([f(np.eye(p)[j]) - c for j in range(p)])
    z = np.random.default_rng(1).normal(size=p)
    if not np.isclose(f(z), L @ z + c, rtol=1e-8, atol=1e-8):
        raise BayesHLMError("REML hypotheses must be linear in the fixed effects")
    return L, c


def wald_hypothesis(model, hypotheses: str | Sequence[str], alpha: float = 0.05) -> pd.DataFrame:
    """Wald t-tests of linear hypotheses on the fixed effects (lmerTest ``contest``).

    Same syntax as :func:`posterior_hypothesis` (fixed effects only). One-sided hypotheses
    (``<``, ``>``) give one-sided p-values and intervals; ``p.value`` tests
    ``H0: lhs = rhs`` for ``=``. Uses ``model._linear_estimates`` (Satterthwaite df on REML).
    """
    names = list(model.design.fixed_names)
    keys = names + [f"b_{n}" for n in names]
    rows = []
    for h in _as_list(hypotheses):
        expr, op, used = parse(h, keys)
        if any(u not in keys for u in used):
            raise BayesHLMError("REML hypotheses can use fixed effects only")
        L, c = linear_weights(expr, names)
        w = model._linear_estimates(L[None, :], 1 - alpha).iloc[0]
        est = float(w["estimate"] + c)
        se, df = float(w["std.error"]), float(w["df"])
        t = est / se
        if op == "=":
            q = _sf.stdtrit(df, 1 - alpha / 2)
            lo, hi, p = est - q * se, est + q * se, 2 * _sf.stdtr(df, -abs(t))
        elif op == ">":  # H1: h > 0
            lo, hi, p = est - _sf.stdtrit(df, 1 - alpha) * se, np.inf, _sf.stdtr(df, -t)
        else:
            lo, hi, p = -np.inf, est + _sf.stdtrit(df, 1 - alpha) * se, _sf.stdtr(df, t)
        rows.append({"Hypothesis": f"{expr_label(h)} {op} 0", "estimate": est, "std.error": se,
                     "df": df, "statistic": t, "p.value": float(p), "conf.low": float(lo),
                     "conf.high": float(hi)})
    return label_interval(pd.DataFrame(rows), 1 - alpha, "t")


# ---------------------------------------------------------------- lincom
def lincom(model, weights: dict[str, float] | Sequence[float], level: float | None = None,
           kind: str = "hdi", prob: float | None = None) -> pd.DataFrame:
    """A linear combination ``sum_j w_j beta_j`` of the fixed effects (``multcomp::glht`` /
    ``lincom``): posterior summary (``kind`` HDI or ETI), or Wald/Satterthwaite on a REML fit.

    ``level`` defaults to 0.95 (``prob`` is its deprecated spelling).
    """
    level = resolve_level(level, prob, "lincom")
    names = list(model.design.fixed_names)
    if isinstance(weights, dict):
        unknown = [k for k in weights if k not in names]
        if unknown:
            raise BayesHLMError(f"unknown fixed effect(s) {unknown}; fixed effects: {names}")
        L = np.array([float(weights.get(n, 0.0)) for n in names])
        label = " + ".join(f"{w:g}*{k}" for k, w in weights.items())
    else:
        L = np.asarray(weights, dtype=float)
        if L.shape != (len(names),):
            raise BayesHLMError(f"weights need one value per fixed effect ({len(names)})")
        label = " + ".join(f"{w:g}*{n}" for w, n in zip(L, names) if w != 0)
    out = model._linear_estimates(L[None, :], level, kind)
    out.insert(0, "term", [label])
    return out
