#!/usr/bin/env bash
# Create .venv (Python 3.12, via uv) and install bayes_hlm with its test extras and JupyterLab
# (the notebooks: .venv/bin/jupyter lab notebooks/), then compile the sampler's Numba kernels
# once (python -m bayes_hlm.warmup, ~1 min) so that the first fit starts warm.
# Re-runs only when pyproject.toml (or the extras below) changed. Safe to call repeatedly.
set -euo pipefail
cd "$(dirname "$0")/.."

find_python312() {
  for cand in python3.12 "$(pyenv prefix 3.12.1 2>/dev/null)/bin/python3.12" \
              "$(pyenv prefix 3.12 2>/dev/null)/bin/python3.12" /usr/bin/python3.12; do
    if [ -n "$cand" ] && command -v "$cand" >/dev/null 2>&1 && \
       "$cand" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 12))' 2>/dev/null; then
      command -v "$cand"; return 0
    fi
  done
  return 1
}

EXTRAS="test,jax,dask,sparse,notebooks"
stamp=".venv/.bayes_hlm-stamp"
want="$( (cat pyproject.toml; echo "$EXTRAS") | sha256sum | cut -d' ' -f1)"
if [ -x .venv/bin/python ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
if ! command -v uv >/dev/null 2>&1; then
  python3 -m pip install --quiet --disable-pip-version-check uv >&2
fi
UV="$(command -v uv || echo "python3 -m uv")"
PY="$(find_python312)" || { echo "Python 3.12 not found (tried python3.12 and pyenv 3.12.1)" >&2; exit 1; }
[ -x .venv/bin/python ] || $UV venv --quiet --python "$PY" .venv >&2
# --compile-bytecode: uv, unlike pip, leaves .pyc files to the first import, and where
# PYTHONDONTWRITEBYTECODE is set (containers, CI) every process then recompiles PyMC, ArviZ and
# JAX from source: measured here 6.0 -> 3.6 s for `import bayes_hlm, pymc, arviz, nutpie`.
$UV pip install --quiet --compile-bytecode --python .venv/bin/python -e ".[$EXTRAS]" >&2
# the Numba kernels of a first fit, compiled into the cache now rather than during it
.venv/bin/python -m bayes_hlm.warmup >&2 || echo "warm-up failed: the first fit compiles instead" >&2
echo "$want" > "$stamp"
