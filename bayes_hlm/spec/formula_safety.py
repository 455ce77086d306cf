"""What a formula may contain: one allow-list, checked before anything is evaluated.

A formula is data (pasted from elsewhere, passed by a service, stored in a
result file), yet ``formulae`` evaluates the calls in it as Python. So every
side of a formula and every random-effect expression is checked here with
Python's ``ast`` *before* ``formulae`` sees it:

* names are column names (plain, dotted like ``Sepal.Length``, or backquoted);
* calls are only the pure numeric transformations of :data:`FUNCTIONS`
  (``log``, ``sqrt``, ``I()``, ``poly``, ``scale``, ``C()``, ...) and
  ``np.<name>`` for the numpy spellings of the same functions, with their
  known keyword arguments;
* no other attribute access, subscripts, lambdas, comprehensions, strings
  outside ``C()`` contrasts, or anything else: a :class:`FormulaError`
  names the offender and lists what is allowed.

As a second line of defence :func:`formula_namespace` is the *only*
namespace formulae evaluates with (see ``spec.build._eval_design``): no
module, no builtins, so a call that slipped past the check has nothing to
reach.

The same pass writes R's spellings in formulae's: ``^`` becomes ``**``
(inside ``I()`` a power, outside it R's interaction expansion ``(a+b)^2``,
which formulae reads the same way), ``TRUE``/``FALSE`` become
``True``/``False``, ``scale(x)`` becomes R's scale (sample SD, :class:`RScale`) and
``scale(x, scale = FALSE)`` becomes ``center(x)``.
"""

from __future__ import annotations

import ast
import re
import types

import numpy as np

from ..errors import FormulaError


def _log(x, base=None):
    """R's ``log(x, base)``: natural log, or log to ``base``."""
    x = np.log(x)
    return x if base is None else x / np.log(base)


class RScale:
    """R's ``scale(x)``: centre and divide by the *sample* SD (``n - 1``), as R does.

    formulae's own ``scale`` divides by the population SD, which would put every
    ``scale(x)`` coefficient off lme4's by ``sqrt(n / (n - 1))``. Stateful like
    formulae's: new data are scaled with the training mean and SD.
    """

    __stateful_transform__ = True

    def __init__(self):
        self.mean = self.sd = None

    def __call__(self, x):
        if self.mean is None:
            vals = np.asarray(x, dtype=float)
            self.mean, self.sd = float(np.mean(vals)), float(np.std(vals, ddof=1))
        return (x - self.mean) / self.sd


#: formulae sees R's ``scale(x)`` under this name (its own ``scale`` cannot be replaced);
#: term names print it back as ``scale(x)``.
R_SCALE = "Rscale"

#: Functions a formula may call (besides formulae's own, below): R's usual transformations.
FUNCTIONS: dict[str, object] = {
    "log": _log, "log2": np.log2, "log10": np.log10, "log1p": np.log1p, "exp": np.exp,
    "expm1": np.expm1, "sqrt": np.sqrt, "abs": np.abs, "sin": np.sin, "cos": np.cos,
    "tan": np.tan, "floor": np.floor, "ceiling": np.ceil, "round": np.round, R_SCALE: RScale,
}
#: ``np.<name>`` spellings allowed (same pure functions; no other numpy attribute).
NUMPY_FUNCTIONS = ("log", "log2", "log10", "log1p", "exp", "expm1", "sqrt", "abs", "absolute",
                   "sin", "cos", "tan", "floor", "ceil", "round", "square")
#: formulae's own transformations and the keyword arguments each accepts.
FORMULAE_FUNCTIONS: dict[str, tuple[str, ...]] = {
    "C": ("contrast", "levels"), "I": (), "scale": ("center", "scale"), "center": (),
    "standardize": (), "poly": ("degree", "raw"),
    "bs": ("df", "knots", "degree", "intercept", "lower_bound", "upper_bound"), "offset": (),
}
_KWARGS: dict[str, tuple[str, ...]] = {"log": ("base",), **FORMULAE_FUNCTIONS}
#: binomial responses (lme4's ``cbind(successes, failures)``, Bambi's ``p(successes, trials)``),
#: allowed only as the whole left-hand side.
RESPONSE_FUNCTIONS = ("cbind", "p")
#: contrast codings, callable only as the second argument of ``C()``.
CONTRASTS: dict[str, tuple[str, ...]] = {"Treatment": ("reference",), "Sum": ("omit",)}

_ALLOWED_TEXT = (
    "allowed in a formula: column names (backquote odd ones: `my col`), numbers, the formula "
    "operators + - * / : ^ %in% and parentheses, and the functions "
    + ", ".join(sorted(set(FUNCTIONS) - {R_SCALE}) + list(FORMULAE_FUNCTIONS))
    + " (np.<name> for " + ", ".join(NUMPY_FUNCTIONS) + "), arithmetic and comparisons inside "
    "I(), Treatment(...)/Sum(...) or levels=[...] inside C(), and cbind(s, f) or p(s, n) as a "
    "binomial response"
)

#: characters a formula may contain outside string literals and backquoted names
_PUNCT = set("_.+-*/:^(),=<>!'\"[]%~` \t\r\n")


def formula_namespace() -> dict[str, object]:
    """The only names formulae may resolve besides data columns (defence in depth)."""
    npns = types.SimpleNamespace(**{n: getattr(np, n) for n in NUMPY_FUNCTIONS})
    return {**FUNCTIONS, "np": npns}


def _error(what: str, text: str, formula: str) -> FormulaError:
    return FormulaError(f"{what} in formula {formula!r} (in {text.strip()!r}) is not allowed; "
                        f"{_ALLOWED_TEXT}")


_WORD = re.compile(r"[\w.]+")


def _scan(text: str, formula: str) -> tuple[str, str, list[int]]:
    """Return ``(normalised, probe, origin)``.

    ``normalised`` is ``text`` in formulae's spelling (``^`` -> ``**``, ``TRUE`` ->
    ``True``, whitespace -> spaces). ``probe`` is the same string, same length, made
    parseable by Python for the check: backquoted names become identifiers, ``:``
    becomes ``&`` and ``%in%`` becomes ``&``. ``origin[k]`` is the index in ``text`` of
    probe character ``k`` (for messages).
    """
    norm: list[str] = []
    probe: list[str] = []
    origin: list[int] = []

    def emit(at: int, n_text: str, p_text: str) -> None:
        norm.append(n_text)
        probe.append(p_text)
        origin.extend([at] * len(p_text))

    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch in "'\"`":
            # a quoted run ends at the next quote of ANY kind: formulae's scanner stops there
            # too, so both readers see the same token boundaries
            j = i + 1
            while j < n and text[j] not in "'\"`":
                j += 1
            if j >= n or text[j] != ch:
                raise FormulaError(f"unterminated or mixed quotes {text[i:j + 1]!r} in formula "
                                   f"{formula!r}; quote names with `...` and strings with '...'")
            body = text[i + 1:j]
            if ch == "`":
                if not body.strip():
                    raise FormulaError(f"empty backquoted name in formula {formula!r}")
                emit(i, text[i:j + 1], "_" + "q" * (j - i))  # an identifier of the same length
            else:
                if "\\" in body:
                    raise FormulaError(f"backslash in string {text[i:j + 1]!r} in formula "
                                       f"{formula!r} is not allowed")
                emit(i, text[i:j + 1], text[i:j + 1])
            i = j + 1
            continue
        if not (ch.isalnum() or ch in _PUNCT) or ch == "~":
            raise _error(f"character {ch!r}", text, formula)
        step = 1
        if ch == "^":
            emit(i, "**", "**")
        elif text.startswith("%in%", i):
            emit(i, "%in%", "&   ")
            step = 4
        elif ch == ":":
            emit(i, ":", "&")
        elif ch in "\t\r\n":
            emit(i, " ", " ")
        elif (ch.isalpha() or ch == "_") and (i == 0 or not (text[i - 1].isalnum()
                                                           or text[i - 1] in "_.")):
            word = _WORD.match(text, i).group(0)
            step = len(word)
            word = {"TRUE": "True", "FALSE": "False"}.get(word, word)
            emit(i, word, word)
        else:
            emit(i, ch, ch)
        i += step
    return "".join(norm), "".join(probe), origin


def _dotted(node: ast.AST) -> str | None:
    """``a.b.c`` -> ``"a.b.c"`` for a chain of plain names, else None."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    parts.append(node.id)
    return ".".join(reversed(parts))


_MAX_POWER = 64  # largest power of constants / interaction order accepted
_TERM_OPS = (ast.Add, ast.Sub, ast.Mult, ast.Div, ast.Pow, ast.BitAnd)
_VALUE_OPS = (ast.Add, ast.Sub, ast.Mult, ast.Div, ast.Pow, ast.Mod, ast.FloorDiv)


class _Checker:
    def __init__(self, text: str, formula: str):
        self.text, self.formula = text, formula

    def fail(self, what: str) -> FormulaError:
        return _error(what, self.text, self.formula)

    def name(self, node: ast.AST) -> None:
        name = _dotted(node)
        if name is None:
            raise self.fail(f"attribute access {ast.unparse(node)!r}")
        if any(p.startswith("__") for p in name.split(".")):
            raise self.fail(f"name {name!r}")

    def term(self, node: ast.AST) -> None:
        """Formula level: terms joined by formula operators."""
        if isinstance(node, ast.BinOp) and isinstance(node.op, _TERM_OPS):
            self.term(node.left)
            if isinstance(node.op, ast.Pow):
                r = node.right
                if not (isinstance(r, ast.Constant) and type(r.value) is int
                        and 1 <= r.value <= _MAX_POWER):
                    raise FormulaError(
                        f"'^' outside I() in formula {self.formula!r} means interaction expansion "
                        f"as in R ((a + b)^2 = a + b + a:b) and needs a whole power from 1 to "
                        f"{_MAX_POWER}; to raise a value to a power write I(x^2)")
                return
            self.term(node.right)
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            self.term(node.operand)
        elif isinstance(node, ast.Constant) and type(node.value) in (int, float):
            return
        elif isinstance(node, (ast.Name, ast.Attribute)):
            self.name(node)
        elif isinstance(node, ast.Call):
            self.call(node)
        else:
            raise self.fail(self.describe(node))

    def value(self, node: ast.AST) -> None:
        """Inside a call: arithmetic on columns, numbers and allowed calls."""
        if isinstance(node, ast.BinOp) and isinstance(node.op, _VALUE_OPS):
            self.value(node.left)
            self.value(node.right)
            if isinstance(node.op, ast.Pow) and not any(
                    isinstance(n, (ast.Name, ast.Attribute, ast.Call)) for n in ast.walk(node)):
                # constants only: Python would compute 9**9**9**9 exactly, forever
                e = node.right
                if not (isinstance(e, ast.Constant) and abs(e.value) <= _MAX_POWER
                        and isinstance(node.left, ast.Constant)):
                    raise self.fail(f"constant power {ast.unparse(node)!r} (exponent beyond "
                                    f"{_MAX_POWER})")
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            self.value(node.operand)
        elif isinstance(node, ast.Compare) and all(
                isinstance(o, (ast.Lt, ast.LtE, ast.Gt, ast.GtE, ast.Eq, ast.NotEq))
                for o in node.ops):
            for v in (node.left, *node.comparators):
                self.value(v)
        elif isinstance(node, ast.Constant) and type(node.value) in (int, float, bool):
            return
        elif isinstance(node, (ast.Name, ast.Attribute)):
            self.name(node)
        elif isinstance(node, ast.Call):
            self.call(node)
        else:
            raise self.fail(self.describe(node))

    def constant(self, node: ast.AST, *, lists: bool = False) -> None:
        """A literal: number, string, bool, None, or (if ``lists``) a list/tuple of them."""
        if isinstance(node, ast.Constant) and type(node.value) in (int, float, str, bool,
                                                                   type(None)):
            return
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub) \
                and isinstance(node.operand, ast.Constant) \
                and type(node.operand.value) in (int, float):
            return
        if lists and isinstance(node, (ast.List, ast.Tuple)):
            for e in node.elts:
                self.constant(e)
            return
        raise self.fail(self.describe(node))

    def call(self, node: ast.Call, *, contrast: bool = False) -> None:
        fname = _dotted(node.func)
        table = CONTRASTS if contrast else None
        if fname is None:
            raise self.fail(f"call of {ast.unparse(node.func)!r}")
        if contrast:
            if fname not in CONTRASTS:
                raise self.fail(f"contrast {fname!r} (use Treatment(...) or Sum(...))")
        elif fname.startswith("np."):
            if fname[3:] not in NUMPY_FUNCTIONS:
                raise self.fail(f"call {fname!r}")
        elif fname not in FUNCTIONS and fname not in FORMULAE_FUNCTIONS:
            raise FormulaError(
                f"unknown function {fname!r} in formula {self.formula!r}; {_ALLOWED_TEXT}")
        kw_ok = (table or _KWARGS).get(fname, ())
        for kw in node.keywords:
            if kw.arg is None or kw.arg not in kw_ok:
                shown = "**" if kw.arg is None else kw.arg
                raise self.fail(f"keyword argument {shown!r} of {fname}()"
                                + (f" (known: {', '.join(kw_ok)})" if kw_ok else ""))
            if fname == "C" and kw.arg == "contrast":
                self.contrast(kw.value)
            elif kw.arg in ("levels", "knots"):
                self.constant(kw.value, lists=True)
            else:
                self.constant(kw.value)
        if any(isinstance(a, ast.Starred) for a in node.args):
            raise self.fail(f"'*' unpacking in {fname}()")
        if contrast:
            for a in node.args:
                self.constant(a)
            return
        for k, a in enumerate(node.args):
            if fname == "C" and k == 1:
                self.contrast(a)
            elif fname == "C" and k == 2:
                self.constant(a, lists=True)
            elif k == 0 or fname in FUNCTIONS or fname.startswith("np.") or fname == "I":
                self.value(a)
            else:  # poly(x, 2), bs(x, 4): literal settings
                self.constant(a, lists=True)

    def contrast(self, node: ast.AST) -> None:
        if isinstance(node, ast.Call):
            self.call(node, contrast=True)
        elif isinstance(node, ast.Name) and node.id in CONTRASTS:
            return
        else:
            raise self.fail(f"contrast {ast.unparse(node)!r} (use Treatment(...) or Sum(...))")

    @staticmethod
    def describe(node: ast.AST) -> str:
        kinds = {ast.Subscript: "subscript", ast.Lambda: "lambda", ast.Constant: "literal",
                 ast.JoinedStr: "f-string", ast.IfExp: "if-expression",
                 ast.NamedExpr: "assignment", ast.Await: "await"}
        kind = next((v for k, v in kinds.items() if isinstance(node, k)), None)
        if kind is None:
            if isinstance(node, (ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)):
                kind = "comprehension"
            else:
                kind = f"expression ({type(node).__name__})"
        return f"{kind} {ast.unparse(node)!r}"


def _rewrite_scale(norm: str, probe: str, tree: ast.AST) -> str:
    """R's ``scale(x, center = , scale = )`` in formulae's terms (scale/center)."""
    pbytes = probe.encode()

    def at(off: int) -> int:  # ast offsets are UTF-8 byte offsets into the probe
        return len(pbytes[:off].decode())

    edits = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and _dotted(node.func) == "scale"):
            continue
        opts = {"center": True, "scale": True}
        for kw in node.keywords:
            if not isinstance(kw.value, ast.Constant) or type(kw.value.value) is not bool:
                raise FormulaError(f"scale(..., {kw.arg} = ...) takes TRUE or FALSE")
            opts[kw.arg] = kw.value.value
        if len(node.args) != 1:
            raise FormulaError("scale() takes one column or expression plus center=/scale=")
        if opts["center"] and opts["scale"]:
            name = R_SCALE
        elif opts["center"]:
            name = "center"
        elif opts["scale"]:
            raise FormulaError("scale(x, center = FALSE) (scaling without centring) is not "
                               "supported; use I(x / k) with a fixed k, or scale(x)")
        else:
            name = "I"
        # rewrite only the call's head and tail, so nested calls' edits never overlap
        first = node.args[0]
        edits.append((at(first.end_col_offset), at(node.end_col_offset), ")"))
        edits.append((at(node.col_offset), at(first.col_offset), f"{name}("))
    for a, b, new in sorted(edits, reverse=True):
        norm = norm[:a] + new + norm[b:]
    return norm


def check_formula_text(text: str, formula: str, *, response: bool = False) -> str:
    """Check one side of a formula (or one random-effect expression) against the allow-list.

    Parameters
    ----------
    text : str
        The response, the fixed right-hand side, or the part before ``|`` of a
        random-effect term.
    formula : str
        The whole formula (for messages).
    response : bool
        The response must refer to at least one column.

    Returns
    -------
    str
        ``text`` in formulae's spelling (``^`` -> ``**``, ``TRUE`` -> ``True``,
        R's ``scale(x, scale = FALSE)`` -> ``center(x)``).

    Raises
    ------
    FormulaError
        Naming the offending call, name or construct and listing what is allowed.
    """
    text = text.strip()
    norm, probe, origin = _scan(text, formula)
    if not probe.strip():
        raise FormulaError(f"empty term in formula {formula!r}")
    try:
        tree = ast.parse(probe, mode="eval")
    except (RecursionError, MemoryError):
        raise FormulaError(f"formula {formula!r} is nested too deeply or too long to read") \
            from None
    except ValueError:  # e.g. an integer literal of thousands of digits
        raise FormulaError(f"cannot read {text.strip()!r} in formula {formula!r}: a number "
                           "is too long") from None
    except SyntaxError as exc:
        k = (exc.offset or 0) - 1
        if 0 <= k < len(origin):
            at = origin[k]
            m = re.match(r"\w+|\S", text[at:])
            where = f"unexpected {m.group(0) if m else text[at]!r} at character {at + 1}"
        else:
            where = "it ends too early"
        raise FormulaError(f"cannot read {text!r} in formula {formula!r}: {where}") from None
    checker = _Checker(text, formula)
    body = tree.body
    try:
        if response and isinstance(body, ast.Call) and _dotted(body.func) in RESPONSE_FUNCTIONS:
            if body.keywords or len(body.args) != 2:
                raise checker.fail(f"{_dotted(body.func)}() with other than two arguments")
            for a in body.args:
                checker.value(a)
        else:
            checker.term(body)
    except RecursionError:
        raise FormulaError(f"formula {formula!r} is nested too deeply or too long to read") \
            from None
    if response and not any(isinstance(n, (ast.Name, ast.Attribute)) for n in ast.walk(tree)):
        raise FormulaError(f"the response {text.strip()!r} of formula {formula!r} is not a "
                           "column; write the response column (or a transformation of it) left "
                           "of '~'")
    return _rewrite_scale(norm, probe, tree) if "scale" in norm else norm
