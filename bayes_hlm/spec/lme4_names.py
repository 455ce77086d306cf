"""Column names as lme4 prints them (``sector[Catholic]`` -> ``sectorCatholic``)."""

import re

_LEVEL = re.compile(r"\[([^\]]*)\]")
_BASIS = re.compile(r"^((?:poly|bs)\(.*\))\[(\d+)\]$")
_KWARG = re.compile(r"(?<=\w)=(?!=)")
_BOOL = re.compile(r"\b(True|False)\b")


def _deparse(code: str) -> str:
    """formulae's spelling of calls as R deparses them: ``x ** 2`` -> ``x^2``,
    ``raw=True`` -> ``raw = TRUE``, ``a / 2`` -> ``a/2``; R's ``scale`` back to its name."""
    code = code.replace(" ** ", "^").replace(" / ", "/").replace("Rscale(", "scale(")
    code = _KWARG.sub(" = ", code)
    return _BOOL.sub(lambda m: m.group(1).upper(), code)


def lme4_name(label: str) -> str:
    """Translate a formulae column label into lme4's naming.

    formulae writes a dummy column of level ``L`` of factor ``f`` as ``f[L]``;
    R writes ``fL``. Interactions keep ``:`` as in R. Calls are printed as R
    deparses them (``I(x^2)``, not ``I(x ** 2)``; ``poly(x, degree = 2)``), and
    basis columns count from 1 (``poly(x, 2)1``, formulae's ``poly(x, 2)[0]``).
    Level labels are kept as they are.
    """
    label = str(label)
    m = _BASIS.match(label)
    if m:
        return f"{_deparse(m.group(1))}{int(m.group(2)) + 1}"
    out, pos = [], 0
    for lev in _LEVEL.finditer(label):
        out.append(_deparse(label[pos:lev.start()]))
        out.append(lev.group(1))
        pos = lev.end()
    out.append(_deparse(label[pos:]))
    return "".join(out)
