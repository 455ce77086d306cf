"""Column names as lme4 prints them (``sector[Catholic]`` -> ``sectorCatholic``)."""

import re

_LEVEL = re.compile(r"\[([^\]]*)\]")


def lme4_name(label: str) -> str:
    """Translate a formulae column label into lme4's naming.

    formulae writes a dummy column of level ``L`` of factor ``f`` as ``f[L]``;
    R writes ``fL``. Interactions keep ``:`` as in R.
    """
    return _LEVEL.sub(lambda m: m.group(1), str(label))
