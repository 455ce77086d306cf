"""Column names as lme4 prints them (``sector[Catholic]`` -> ``sectorCatholic``)."""

import re

_LEVEL = re.compile(r"\[([^\]]*)\]")
_BASIS = re.compile(r"^((?:poly|bs)\(.*\))\[(\d+)\]$")


def lme4_name(label: str) -> str:
    """Translate a formulae column label into lme4's naming.

    formulae writes a dummy column of level ``L`` of factor ``f`` as ``f[L]``;
    R writes ``fL``. Interactions keep ``:`` as in R. A power is printed as R
    deparses it (``I(x^2)``, not ``I(x ** 2)``), and basis columns count from 1
    (``poly(x, 2)1``, formulae's ``poly(x, 2)[0]``).
    """
    label = str(label).replace(" ** ", "^")
    m = _BASIS.match(label)
    if m:
        return f"{m.group(1)}{int(m.group(2)) + 1}"
    return _LEVEL.sub(lambda m: m.group(1), label)
