"""Parse lme4 formulas into a fixed part and random-effect terms.

This is pure string work: nothing here touches data. ``formulae`` (Bambi's
parser) cannot read ``||`` or ``/`` inside group terms, so random terms are
split off here and expanded the way lme4 expands them:

* ``(x || g)``     -> ``(1|g) + (0 + x|g)``: one block per *term*, as lme4 1.1's
  ``expandDoubleVerts`` does. The columns of one term stay correlated with one another, so
  ``(f || g)`` with a factor ``f`` is ``(1|g) + (0 + f|g)`` with a full covariance among the
  ``f`` columns (lme4's documented quirk: only numeric terms end up uncorrelated).
  ``x * z`` is split into its terms ``x``, ``z``, ``x:z`` first, as R's ``terms()`` does.
* ``diag(x | g)``  -> one term with a diagonal covariance: every model column uncorrelated
  (glmmTMB's ``diag()``; afex's ``expand_re = TRUE``). This is the fully uncorrelated model.
* ``(x | a/b)``    -> ``(x|a) + (x|a:b)`` (lme4 names the inner factor ``b:a``)
* ``(x | a:b)``    -> a single factor named ``a:b``
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import FormulaError
from .formula_safety import check_formula_text


@dataclass(frozen=True)
class RandomTerm:
    """One ``(expr | factor)`` term after expansion.

    ``expr`` is a formulae right-hand side (``"1 + Days"``, ``"0 + x"``);
    ``factor_columns`` are the data columns whose interaction defines the
    grouping factor; ``factor`` is its name (columns joined by ``:``).
    """

    expr: str
    factor_columns: tuple[str, ...]
    correlated: bool
    source: str
    nested: bool = False  # the inner factor of a nesting ``a/b`` (lme4 names it ``b:a``)

    @property
    def lme4_factor(self) -> str:
        """The grouping factor's name as lme4 prints it (``a/b`` gives ``b:a``)."""
        return ":".join(reversed(self.factor_columns)) if self.nested else self.factor

    @property
    def factor(self) -> str:
        return ":".join(self.factor_columns)


@dataclass(frozen=True)
class ParsedFormula:
    """An lme4 formula split into response, fixed right-hand side and random terms."""

    formula: str
    response: str
    fixed_rhs: str
    random: tuple[RandomTerm, ...]

    @property
    def fixed_formula(self) -> str:
        return f"{self.response} ~ {self.fixed_rhs}"


def _check_parentheses(text: str, formula: str) -> None:
    depth = 0
    for pos, ch in enumerate(text):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth < 0:
                raise FormulaError(
                    f"unbalanced parentheses in formula {formula!r}: ')' at position {pos} has no "
                    "matching '('"
                )
    if depth > 0:
        raise FormulaError(
            f"unbalanced parentheses in formula {formula!r}: {depth} '(' not closed"
        )


def _top_level_bar(inner: str) -> int | None:
    """Index of the first ``|`` at nesting depth 0 inside a parenthesised group."""
    depth = 0
    for i, ch in enumerate(inner):
        if ch in "([":
            depth += 1
        elif ch in ")]":
            depth -= 1
        elif ch == "|" and depth == 0:
            return i
    return None


#: covariance-structure wrappers written around a bar group: ``diag(x | g)`` (glmmTMB)
_STRUCTURES = ("diag",)


def _split_random_groups(rhs: str) -> tuple[str, list[tuple[str, str]]]:
    """Cut every ``( ... | ... )`` group out of ``rhs``; return the rest and the groups.

    Each group is ``(inner text, structure)``; structure is ``""`` or ``"diag"``.
    """
    groups: list[tuple[str, str]] = []
    out: list[str] = []
    i = 0
    while i < len(rhs):
        if rhs[i] == "(":
            depth, j = 0, i
            while j < len(rhs):
                depth += rhs[j] == "("
                depth -= rhs[j] == ")"
                if depth == 0:
                    break
                j += 1
            inner = rhs[i + 1 : j]
            # a bar group directly after a name is a call argument, e.g. f(a|b): not ours
            prev = rhs[:i].rstrip()
            is_call = bool(prev) and (prev[-1].isalnum() or prev[-1] in "_.")
            struct = next((w for w in _STRUCTURES if re.search(rf"(^|[^\w.]){w}$", prev)), "")
            if _top_level_bar(inner) is not None and (struct or not is_call):
                groups.append((inner, struct))
                if struct:  # drop the wrapper's name already copied to the output
                    del out[len(out) - (len(rhs[:i]) - len(prev)) - len(struct):]
                out.append(" ")
                i = j + 1
                continue
        out.append(rhs[i])
        i += 1
    return "".join(out), groups


def _clean_fixed(rest: str) -> str:
    """Tidy the fixed part left after removing random groups (dangling ``+``)."""
    terms = [t.strip() for t in _split_top_level(rest, "+")]
    terms = [t for t in terms if t]
    return re.sub(r"\+\s*-", "- ", " + ".join(terms)).replace("-  ", "- ") if terms else "1"


def _split_top_level(text: str, sep: str) -> list[str]:
    parts, depth, cur = [], 0, []
    for ch in text:
        if ch in "([":
            depth += 1
        elif ch in ")]":
            depth -= 1
        if ch == sep and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    return parts


_NAME = re.compile(r"^[A-Za-z_.][A-Za-z0-9_.]*$|^`[^`]+`$")


def _parse_factor(text: str, source: str) -> list[tuple[str, ...]]:
    """Grouping factor text -> list of column tuples (``a/b`` gives ``a`` and ``a:b``)."""
    text = text.strip()
    if not text:
        raise FormulaError(
            f"random-effect term '({source})' has no grouping factor after '|': write e.g. "
            "'(1 | group)'"
        )
    nests = [p.strip() for p in text.split("/")]
    factors: list[tuple[str, ...]] = []
    prefix: tuple[str, ...] = ()
    for part in nests:
        cols = tuple(c.strip().strip("`") for c in part.split(":"))
        for c in cols:
            if not c or not _NAME.match(c):
                raise FormulaError(
                    f"grouping factor {part!r} in '({source})' is not a column name; grouping "
                    "factors must be columns, interactions 'a:b' or nestings 'a/b'"
                )
        prefix = prefix + cols
        factors.append(prefix)
    return factors


def _has_no_intercept(expr: str) -> bool:
    terms = [t.strip() for t in _split_top_level(expr, "+")]
    return any(t in ("0", "-1") or t.startswith("-1") for t in terms) or bool(
        re.search(r"(^|\s|\+)\s*-\s*1\b", expr)
    )


def _expr_terms(expr: str) -> list[str]:
    """Terms of a random-effect expression, intercept markers removed."""
    terms = []
    for t in _split_top_level(expr, "+"):
        t = re.sub(r"-\s*1\b", "", t).strip()
        if t and t not in ("0", "1"):
            terms.append(t)
    return terms


def _term_labels(terms: list[str]) -> list[str]:
    """R's ``attr(terms(~ ...), "term.labels")``: ``a*b`` -> ``a, b, a:b``; ordered by degree."""
    from itertools import combinations

    labels: list[tuple[str, ...]] = []
    for t in terms:
        parts = [p.strip() for p in _split_top_level(t, "*")]
        if len(parts) == 1:
            parts = [p.strip() for p in _split_top_level(t, ":")]
            combos = [tuple(parts)]
        else:  # a*b*c: every non-empty subset, as R expands it
            combos = [c for r in range(1, len(parts) + 1) for c in combinations(parts, r)]
        for c in combos:
            if not any(set(c) == set(seen) for seen in labels):
                labels.append(c)
    labels.sort(key=len)  # R lists main effects first, then interactions by order (stable)
    return [":".join(c) for c in labels]


def _expand(inner: str, struct: str = "") -> list[RandomTerm]:
    bar = _top_level_bar(inner)
    assert bar is not None
    double = inner[bar + 1 : bar + 2] == "|"
    expr = inner[:bar].strip()
    factor_text = inner[bar + (2 if double else 1) :]
    source = inner.strip()
    if not expr:
        raise FormulaError(
            f"random-effect term '({source})' has nothing before '|': write '(1 | g)' for a "
            "random intercept"
        )
    if struct:
        source = f"{struct}({source})"
        if double:
            raise FormulaError(f"'{source}': write diag(x | g) with a single '|' (diag() already "
                               "makes every column uncorrelated)")
    factors = _parse_factor(factor_text, source)
    no_int = _has_no_intercept(expr)
    terms = _expr_terms(expr)
    if double:
        # lme4 1.1 (expandDoubleVerts): (1|g) + one (0 + term|g) per term label; the columns of
        # one term (a factor's dummies) keep a full covariance, so each block is "correlated"
        labels = _term_labels(terms)
        exprs = ([] if no_int else ["1"]) + [f"0 + {t}" for t in labels]
        blocks = [(e, True) for e in exprs]
    else:
        rhs = " + ".join(terms) if terms else ""
        if no_int:
            if not rhs:
                raise FormulaError(f"random-effect term '({source})' has no columns")
            e = f"0 + {rhs}"
        else:
            e = f"1 + {rhs}" if rhs else "1"
        blocks = [(e, struct != "diag")]
    return [
        RandomTerm(expr=e, factor_columns=f, correlated=corr, source=source, nested=i > 0)
        for i, f in enumerate(factors)
        for e, corr in blocks
    ]


def parse_formula(formula: str) -> ParsedFormula:
    """Split an lme4 formula into response, fixed part and expanded random terms.

    Parameters
    ----------
    formula : str
        e.g. ``"Reaction ~ Days + (Days | Subject)"``.

    Returns
    -------
    ParsedFormula

    Raises
    ------
    FormulaError
        For a missing ``~``, unbalanced parentheses, or malformed group terms.
    """
    if not isinstance(formula, str) or not formula.strip():
        raise FormulaError("formula must be a non-empty string such as 'y ~ x + (1 | g)'")
    _check_parentheses(formula, formula)
    if formula.count("~") != 1:
        raise FormulaError(
            f"formula {formula!r} must contain exactly one '~' separating response and predictors"
        )
    lhs, rhs = (s.strip() for s in formula.split("~"))
    if not lhs:
        raise FormulaError(f"formula {formula!r} has no response on the left of '~'")
    if not rhs:
        raise FormulaError(f"formula {formula!r} has nothing on the right of '~'")
    rest, groups = _split_random_groups(rhs)
    if "|" in rest:
        raise FormulaError(
            f"formula {formula!r}: a '|' outside a parenthesised group term; write random "
            "effects as '(expr | group)'"
        )
    # every piece formulae will evaluate passes the allow-list first (and comes back in
    # formulae's spelling: R's '^' -> '**'); grouping factors are checked as names below
    lhs = check_formula_text(lhs, formula, response=True)
    fixed = check_formula_text(_clean_fixed(rest), formula)
    random: list[RandomTerm] = []
    for g, struct in groups:
        bar = _top_level_bar(g)
        expr = g[:bar]
        if expr.strip():
            lead, trail = expr[:len(expr) - len(expr.lstrip())], expr[len(expr.rstrip()):]
            g = lead + check_formula_text(expr, formula) + trail + g[bar:]
        random.extend(_expand(g, struct))
    _check_duplicates(random, formula)
    return ParsedFormula(formula=formula, response=lhs, fixed_rhs=fixed, random=tuple(random))


def _check_duplicates(random: list[RandomTerm], formula: str) -> None:
    """The same columns for the same factor twice: two variances for one effect."""
    seen: dict[tuple, RandomTerm] = {}
    for t in random:
        key = (frozenset(_expr_terms(t.expr)), _has_no_intercept(t.expr), t.factor_columns)
        if key in seen:
            raise FormulaError(
                f"formula {formula!r} has the random-effect term ({seen[key].source}) twice"
                + (f" (also as ({t.source}))" if t.source != seen[key].source else "")
                + f" for {t.factor!r}: two variances for the same effect cannot be told apart; "
                "remove the duplicate")
        seen[key] = t
