"""Backends: the engines that sample a model (module docstrings say which does what)."""

from .._numba_cache import install as _install_numba_cache

_install_numba_cache()  # before any kernel is defined: stamps cover every compiled file
