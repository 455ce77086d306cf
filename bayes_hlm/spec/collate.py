"""R's default order of string factor levels: ``sort()`` in an en_US locale.

R sorts strings with ICU's collator when it is available (R on macOS and Windows, and most
Linux builds), and for English that is the CLDR root collation. A sort key reproduces it for
the labels met in data without a new dependency:

1. **Primary** - characters compared ignoring case and accents; punctuation and spaces are
   *not* ignored but sort before digits, digits before letters (``"_a" < "-1" < "1" < "a"``);
   digits compare one at a time (``"10" < "9"``, as R's ``sort()``).
2. **Secondary** - accents: ``"resume" < "résumé"``.
3. **Tertiary** - case, lowercase first, left to right: ``"a" < "A"``, ``"aB" < "Ab"``.

So ``"chilled" < "Nonchilled"`` (Python's ``sorted`` puts upper case first). The key is
pinned against R 4.2 / ICU by ``tests/r/make_fidelity_fixtures.R``. Non-Latin scripts sort
after Latin letters by code point (ICU orders scripts similarly; exact order within them is
not reproduced).
"""

from __future__ import annotations

import unicodedata
from typing import Iterable

#: ASCII spaces, punctuation, symbols and digits in ICU root order (from R's ``sort()``).
_ASCII_ORDER = " _-,;:!?.'\"()[]{}@*/\\&#%`^+<=>|~$0123456789"
_RANK = {ch: i for i, ch in enumerate(_ASCII_ORDER)}
_OTHER_SYMBOL = len(_ASCII_ORDER) - 10  # non-ASCII symbols: after ASCII ones, before digits
_LETTER = 1 << 21  # letters after every symbol and digit


def _primary(ch: str) -> tuple[int, ...]:
    """Primary weight(s) of one base character (``ß`` has two: ``ss``)."""
    if ch in _RANK:
        return (_RANK[ch],)
    if ch.isdigit():
        return (_RANK[str(unicodedata.digit(ch, 0))],)
    if ch.isalpha():
        return tuple(_LETTER + ord(c) for c in ch.casefold())
    if unicodedata.category(ch).startswith("C"):
        return ()  # control / format characters are ignorable
    return (_OTHER_SYMBOL, ord(ch))


def r_sort_key(label: str) -> tuple:
    """Sort key that orders strings as R's ``sort()`` does in an en_US (ICU) locale."""
    primary: list[int] = []
    secondary: list[tuple[int, ...]] = []
    tertiary: list[int] = []
    for ch in unicodedata.normalize("NFD", str(label)):
        if unicodedata.combining(ch):
            if secondary:
                secondary[-1] = secondary[-1] + (ord(ch),)
            continue
        weights = _primary(ch)
        primary.extend(weights)
        secondary.extend(() for _ in weights)
        tertiary.extend(int(ch.isupper()) for _ in weights)
    return (tuple(primary), tuple(secondary), tuple(tertiary), str(label))


def r_sorted(values: Iterable) -> list:
    """``values`` in R's order: strings by :func:`r_sort_key`, anything else as Python sorts it.

    A mixture of strings and other types is ordered by each value's string form.
    """
    values = list(values)
    if all(isinstance(v, str) for v in values):
        return sorted(values, key=r_sort_key)
    try:
        return sorted(values)
    except TypeError:
        return sorted(values, key=lambda v: r_sort_key(str(v)))
