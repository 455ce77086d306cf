"""Say what a long step is doing: one phase reporter for every stage of a fit.

A fit has steps that can run for seconds to minutes without a progress bar of their
own: compiling the collapsed density (once per machine), building the PyMC model,
drawing group effects after sampling, diagnostics over many effects, REML, plots,
LOO. :func:`phase` wraps such a step::

    with phase("drawing group effects"):
        ...

and writes to stderr, by mode:

``"live"`` (stderr is a terminal or a notebook)
    after ``delay`` seconds (at once with ``long=True``) the phase's line, its elapsed
    seconds ticking in place, then ``done in N s``;
``"lines"`` (a log file or pipe)
    the phase's line when it has run ``delay`` seconds (at once with ``long=True``)
    and a ``done in N s`` line at the end; nothing for a phase shorter than ``delay``;
``"off"``
    nothing: ``progressbar=False`` given to a fit (see :func:`reporting`) or the
    environment variable ``BAYES_HLM_QUIET=1``.

A fit sets the mode for the steps it runs with ``with reporting(progressbar):``
(``None``: by the terminal); outside a fit the mode follows the terminal.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import sys
import threading
import time
from collections.abc import Iterator

__all__ = ["DELAY_S", "interactive", "mode", "phase", "reporting"]

#: a phase shorter than this prints nothing (unless announced as long)
DELAY_S = 2.0
#: seconds between two updates of a live line
_TICK_S = 1.0

_MODE: contextvars.ContextVar[str | None] = contextvars.ContextVar("bayes_hlm_progress", default=None)
#: a phase inside a reported phase is silent: the outer line already says what is happening
_ACTIVE: contextvars.ContextVar[bool] = contextvars.ContextVar("bayes_hlm_phase", default=False)
#: back-to-back phases too short to print would add up to a silent stretch: a phase that
#: starts within _CHAIN_GAP_S of a silent one's end counts its delay from the start of that
#: chain (perf_counter times; a printed line starts a new chain)
_CHAIN_GAP_S = 1.0
_chain = {"start": float("-inf"), "end": float("-inf")}


def interactive() -> bool:
    """True in a terminal or a notebook (and not on CI): where a progress bar can be redrawn."""
    if os.environ.get("CI"):
        return False
    ipython = sys.modules.get("IPython")  # only when already imported: no import cost here
    if ipython is not None:
        try:
            if ipython.get_ipython() is not None:
                return True
        except Exception:  # an IPython without get_ipython: treat as a plain process
            pass
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # a closed or replaced stderr
        return False


def _quiet() -> bool:
    return os.environ.get("BAYES_HLM_QUIET", "").strip().lower() not in ("", "0", "false", "no")


def mode() -> str:
    """``"off"``, ``"live"`` or ``"lines"``: how :func:`phase` reports now."""
    if _quiet():
        return "off"
    m = _MODE.get()
    if m is not None:
        return m
    return "live" if interactive() else "lines"


@contextlib.contextmanager
def reporting(progressbar: bool | None) -> Iterator[None]:
    """Phases inside report per ``progressbar``: False silences them, True or None follow the
    terminal (``"live"`` there, ``"lines"`` in a log)."""
    m = "off" if progressbar is False else ("live" if interactive() else "lines")
    token = _MODE.set(m)
    try:
        yield
    finally:
        _MODE.reset(token)


def _fmt(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds >= 10 else f"{seconds:.1f} s"


class _Phase:
    """The state of one running phase: its line is shown by a timer thread or at the end."""

    def __init__(self, what: str, m: str, long: bool, delay: float):
        self.what, self.mode, self.long = what, m, long
        self.t0 = time.perf_counter()
        if self.t0 - _chain["end"] > _CHAIN_GAP_S:  # not right after a silent phase
            _chain["start"] = self.t0
        self.delay = max(0.0, delay - (self.t0 - _chain["start"]))
        self.shown = False
        self.current = ""
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.thread: threading.Thread | None = None

    def _write(self, text: str) -> None:
        try:
            sys.stderr.write(text)
            sys.stderr.flush()
        except (AttributeError, ValueError, OSError):  # stderr closed or replaced: stay quiet
            pass

    def _label(self) -> str:
        return f"{self.what} ({self.current})" if self.current else self.what

    def _show(self) -> None:
        with self.lock:
            if self.stop.is_set() and self.shown:
                return
            elapsed = time.perf_counter() - self.t0
            if self.mode == "live":
                self._write(f"\r{self._label()} … {_fmt(elapsed)}\033[K")
            elif not self.shown:
                self._write(f"{self._label()} …\n")
            self.shown = True

    def step(self, text: str) -> None:
        """Name the part of the phase now running (e.g. ``"3/11: group_lines"``); a log gets
        a line per step once the phase has been shown."""
        with self.lock:
            self.current = text
            if self.mode == "lines" and self.shown and not self.stop.is_set():
                self._write(f"{self._label()} …\n")

    def _run(self) -> None:
        if not self.long and self.stop.wait(self.delay):
            return
        self._show()
        while self.mode == "live" and not self.stop.wait(_TICK_S):
            self._show()

    def start(self) -> None:
        if self.long and self.mode == "lines":
            self._show()  # at once, in the caller's thread: the line precedes the phase's own output
            return
        self.thread = threading.Thread(target=self._run, name="bayes_hlm-progress", daemon=True)
        self.thread.start()

    def end(self, ok: bool) -> None:
        self.stop.set()
        if self.thread is not None:
            self.thread.join()
        now = time.perf_counter()
        elapsed = now - self.t0
        _chain["end"] = now
        if not self.shown and elapsed < self.delay:
            return
        _chain["start"] = now  # the "done" line below ends the silence
        status = f"done in {_fmt(elapsed)}" if ok else f"stopped after {_fmt(elapsed)}"
        with self.lock:
            if self.mode == "live":
                self._write(f"\r{self.what}: {status}\033[K\n")
            else:
                self._write(f"{self.what}: {status}\n")


class _Silent:
    """The handle of a phase that reports nothing."""

    def step(self, text: str) -> None:
        pass


_SILENT = _Silent()


@contextlib.contextmanager
def phase(what: str, *, long: bool = False, delay: float = DELAY_S) -> Iterator[_Phase | _Silent]:
    """Report the step ``what`` on stderr if it takes long (see the module docstring).

    A phase inside another (in the same thread) prints nothing: the outer line says
    what is happening. The handle it yields has ``step(text)`` to name the part running now
    (``with phase("drawing plots") as p: ... p.step("3/11: group_lines")``).

    Parameters
    ----------
    what : str
        What is happening, as the user should read it, e.g. ``"drawing group effects"``;
        say "once per machine" where that is true.
    long : bool
        Known in advance to be long (e.g. a cold compile cache): show the line at once.
    delay : float
        Seconds before an unannounced phase's line appears (and below which a finished
        phase prints nothing).
    """
    m = mode()
    if m == "off" or _ACTIVE.get():
        yield _SILENT
        return
    p = _Phase(what, m, long, delay)
    token = _ACTIVE.set(True)
    p.start()
    ok = False
    try:
        yield p
        ok = True
    finally:
        _ACTIVE.reset(token)
        p.end(ok)


def numba_cache_cold(*functions) -> bool:
    """True when a Numba function compiled with ``cache=True`` has no usable cache entry here
    (first use on this machine, after an upgrade, or with an empty ``NUMBA_CACHE_DIR``):
    its first call compiles. False when every function's cache index is present and
    matches its source, or when this cannot be told (Numba's cache layout is private)."""
    for f in functions:
        try:
            index = f._cache._cache_file._load_index()  # {} when absent or stale
        except Exception:  # not a cached dispatcher, or Numba's internals changed: don't claim
            continue
        if not index:
            return True
    return False
