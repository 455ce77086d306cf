"""Formula parsing: every lme4 form, expansions, and syntax errors."""

import pytest

from bayes_hlm.errors import FormulaError
from bayes_hlm.spec.formula import parse_formula


def terms(f):
    return [(t.expr, t.factor, t.correlated) for t in parse_formula(f).random]


def test_random_intercept():
    p = parse_formula("y ~ x + (1 | g)")
    assert p.response == "y" and p.fixed_rhs == "x"
    assert terms("y ~ x + (1 | g)") == [("1", "g", True)]


def test_correlated_slope():
    assert terms("y ~ x + (x | g)") == [("1 + x", "g", True)]


def test_uncorrelated_expansion():
    # lme4 1.1: (x || g) is exactly (1 | g) + (0 + x | g); each block is an ordinary term, whose
    # columns (one for numeric x, the dummies of a factor) share a full covariance (issue 19).
    # A one-column block is uncorrelated whatever the flag (see test_double_bar_design_*).
    assert terms("y ~ x + (x || g)") == [("1", "g", True), ("0 + x", "g", True)]
    assert terms("y ~ (x + z || g)") == [("1", "g", True), ("0 + x", "g", True), ("0 + z", "g", True)]


def test_no_intercept_slope():
    assert terms("y ~ x + (0 + x | g)") == [("0 + x", "g", True)]
    assert terms("y ~ x + (x - 1 | g)") == [("0 + x", "g", True)]


def test_nesting_and_interaction_factor():
    assert terms("y ~ 1 + (1 | a/b)") == [("1", "a", True), ("1", "a:b", True)]
    assert terms("y ~ (1 | a:b)") == [("1", "a:b", True)]
    assert terms("y ~ (x | a/b/c)")[2] == ("1 + x", "a:b:c", True)


def test_crossed_and_fixed_part_kept():
    p = parse_formula("y ~ a * b + log(x) + (1|g) + (1|h) - 1")
    assert [t.factor for t in p.random] == ["g", "h"]
    assert p.fixed_rhs == "a * b + log(x) - 1"


def test_only_random_gives_intercept():
    assert parse_formula("y ~ (1|g)").fixed_rhs == "1"


@pytest.mark.parametrize("bad, fragment", [
    ("y ~ x + (1 | g", "unbalanced"),
    ("y ~ x + 1 | g)", "unbalanced"),
    ("y ~ x + (x | )", "no grouping factor"),
    ("y ~ x + ( | g)", "nothing before"),
    ("y x + (1|g)", "exactly one '~'"),
    ("~ x", "no response"),
    ("y ~ ", "nothing on the right"),
    ("y ~ x | g", "outside a parenthesised"),
    ("y ~ (1 | g + h)", "not a column name"),
    ("", "non-empty"),
])
def test_syntax_errors(bad, fragment):
    with pytest.raises(FormulaError, match=fragment):
        parse_formula(bad)
