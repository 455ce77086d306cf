"""Compile a fit's collapsed density in a child process while the fit goes on (#18 item 5).

On an empty compile cache (first use on a machine, an upgrade) most of a small first fit is
Numba compiling the density's entry point and its nutpie callback, one process doing it after
the other steps. Started as soon as the model's structure is known (:func:`start`), a child
process compiles them into Numba's on-disk cache while this process loads the samplers,
packs the statistics and compiles the group-effect draws (a second core at work); the fit
then waits for the child (:func:`join`) and loads the density from the cache it wrote.
A session's first fit starts its child earlier still (:func:`prestart`, before it loads its
libraries): the child compiles the kernels every model's density calls, then waits for
:func:`start` to name the entry point (or :func:`release` to let it go).

The density's kernels must not be compiled in the fit's own process as well: Numba's JIT binds
the loaded callback's copies of its callees (linkonce_odr) to copies already loaded there, which
were optimised apart — for the fast-math group term another rounding, so other draws than a warm
fit's (measured for ``(1 | g)``; a cold fit's draws equal a warm fit's, tested).

Nothing depends on the child: one that cannot start, fails, is killed, cannot write the cache
or runs past :data:`JOIN_TIMEOUT_S` is stopped and reaped, and the fit compiles in-process as
before (the cache is then still cold for it). Children are never left behind: :func:`join`
reaps its child, and one never joined (the fit failed or chose another engine) is stopped at
the interpreter's exit. ``BAYES_HLM_COMPILE_IN_PROCESS=1`` turns the child off.
"""

from __future__ import annotations

import atexit
import json
import os
import subprocess
import sys
from pathlib import Path

#: the longest a fit waits for its child before compiling in-process (the child's whole
#: compile takes ~10 CPU-seconds; far beyond that it is stuck)
JOIN_TIMEOUT_S = 300.0
#: set (to anything but "", "0") to compile in-process only; the child runs with it set,
#: so a child never starts children of its own
OFF_ENV = "BAYES_HLM_COMPILE_IN_PROCESS"

#: kernel name -> the child compiling it (until joined)
_CHILDREN: dict[str, subprocess.Popen] = {}
#: a child started before the fit knew its model (:func:`prestart`), waiting for :func:`start`
_WAITING: list[subprocess.Popen] = []
#: children let go without a kernel (:func:`release`): reaped at exit
_RELEASED: list[subprocess.Popen] = []


def enabled() -> bool:
    return os.environ.get(OFF_ENV, "").strip().lower() in ("", "0", "false", "no")


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _command(factory: tuple, then_wait: bool = False) -> list[str]:
    module, name, args = factory
    return [sys.executable, "-m", __name__, *(["--then-wait"] if then_wait else []),
            module, name, json.dumps(list(args))]


def _env() -> dict:
    """The child's environment: this process's, with the same Numba cache directory (also
    when it was set in code) and this copy of bayes_hlm first on the path."""
    import numba

    env = dict(os.environ, BAYES_HLM_QUIET="1")
    env[OFF_ENV] = "1"
    if numba.config.CACHE_DIR:
        env["NUMBA_CACHE_DIR"] = str(numba.config.CACHE_DIR)
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join([root] + [p for p in [env.get("PYTHONPATH")] if p])
    return env


def start(kernel, factory: tuple[str, str, tuple]) -> bool:
    """Start compiling ``kernel`` and its nutpie callbacks (:func:`.numba_nuts.callbacks`) in a
    child process, which gets the kernel from ``factory``: ``(module, function, args)``, e.g.
    ``("bayes_hlm.backends.numba_density", "kernel", ("single", 2))`` (JSON arguments). False
    when none started (turned off, one core, or no process could be started). At most one
    child per kernel."""
    name = kernel.py_func.__name__
    if name in _CHILDREN:
        return True
    if not enabled() or not sys.executable or _cores() < 2:  # one core: nothing to overlap
        return False
    while _WAITING:  # a child started ahead (prestart): it compiles this kernel next
        proc = _WAITING.pop()
        try:
            proc.stdin.write(json.dumps(list(factory)) + "\n")
            proc.stdin.close()
        except (OSError, ValueError):  # it died: start another
            _stop(proc)
            continue
        _CHILDREN[name] = proc
        return True
    proc = _spawn(_command(factory), stdin=subprocess.DEVNULL)
    if proc is None:
        return False
    _CHILDREN[name] = proc
    return True


def _spawn(command: list[str], stdin) -> subprocess.Popen | None:
    try:
        # its own session: a terminal's Ctrl-C stops the fit, which stops the child (join);
        # where the scheduler shares CPU by session (Linux autogroup), it is a second worker
        return subprocess.Popen(command, env=_env(), stdin=stdin, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True,
                                text=stdin is subprocess.PIPE)
    except (OSError, ValueError):  # no executable, no fork: compile in-process
        return None


def prestart(first: tuple[str, str, tuple]) -> bool:
    """Start a child before the fit knows its model (a session's first fit, before it loads its
    libraries): it runs ``first`` (``(module, function, args)``: compiling the kernels every
    model's density calls) at once, then waits for :func:`start` to name the kernel to compile
    next (or for :func:`release`). False when none started (turned off, one core, a child
    already running or waiting)."""
    if _WAITING or _CHILDREN or not enabled() or not sys.executable or _cores() < 2:
        return False
    proc = _spawn(_command(first, then_wait=True), stdin=subprocess.PIPE)
    if proc is None:
        return False
    _WAITING.append(proc)
    return True


def release() -> None:
    """Let a waiting child (:func:`prestart`) go without a kernel: the fit needs none (another
    engine, a cached density). It finishes its first part (the cache keeps it) and exits."""
    while _WAITING:
        proc = _WAITING.pop()
        try:
            proc.stdin.close()
        except (OSError, ValueError):  # pragma: no cover - gone already
            pass
        _RELEASED.append(proc)


def pending() -> bool:
    """True while a child started by :func:`start` has not been joined."""
    return bool(_CHILDREN)


def join(kernel, timeout: float | None = None) -> bool | None:
    """Wait for the child compiling ``kernel`` and reap it: True when it finished its compile,
    False when it failed or ran past ``timeout`` (default :data:`JOIN_TIMEOUT_S`; then it is
    killed), None when no child compiles ``kernel``. Either way the caller then builds the
    callbacks itself (loaded from the cache the child wrote, or compiled here)."""
    proc = _CHILDREN.pop(kernel.py_func.__name__, None)
    if proc is None:
        return None
    try:
        rc = proc.wait(JOIN_TIMEOUT_S if timeout is None else timeout)
    except subprocess.TimeoutExpired:
        _stop(proc)
        return False
    except BaseException:  # interrupted while waiting: leave no child behind
        _stop(proc)
        raise
    _RELEASED[:] = [p for p in _RELEASED if p.poll() is None]  # reap those let go and done
    return rc == 0


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:  # pragma: no cover - a kill not delivered in 10 s
        pass


@atexit.register
def _stop_all() -> None:
    """Children never joined (the fit failed or took another engine), waiting or let go:
    stopped and reaped."""
    while _CHILDREN:
        _stop(_CHILDREN.popitem()[1])
    for waiting in (_WAITING, _RELEASED):
        while waiting:
            _stop(waiting.pop())


def main(argv: list[str] | None = None) -> int:
    """The child: compile (or load) the kernel ``module.function(*args)`` and its callbacks.
    With ``--then-wait`` first (:func:`prestart`): call ``module.function(*args)``, then read
    the kernel's ``[module, function, args]`` from stdin (none: exit)."""
    import importlib

    from .nuts_callbacks import callbacks

    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[0] == "--then-wait":
        module, name, args = argv[1:]
        getattr(importlib.import_module(module), name)(*json.loads(args))
        line = sys.stdin.readline()
        if not line.strip():
            return 0
        module, name, args = json.loads(line)
        args = json.dumps(list(args))
    else:
        module, name, args = argv
    callbacks(getattr(importlib.import_module(module), name)(*json.loads(args)))
    return 0


if __name__ == "__main__":
    code = main()
    # the cache is written: exit without the interpreter's teardown (~0.4 s of freeing
    # modules and LLVM's state, which the fit waiting in join() would wait for: #18 item 5)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
