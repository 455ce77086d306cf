#!/usr/bin/env bash
# Create .venv (Python 3.12, via uv) and install bayes_hlm with its test extras.
# Re-runs the install only when pyproject.toml changed. Safe to call repeatedly.
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

stamp=".venv/.bayes_hlm-stamp"
want="$(sha256sum pyproject.toml | cut -d' ' -f1)"
if [ -x .venv/bin/python ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
if ! command -v uv >/dev/null 2>&1; then
  python3 -m pip install --quiet --disable-pip-version-check uv >&2
fi
UV="$(command -v uv || echo "python3 -m uv")"
PY="$(find_python312)" || { echo "Python 3.12 not found (tried python3.12 and pyenv 3.12.1)" >&2; exit 1; }
[ -x .venv/bin/python ] || $UV venv --quiet --python "$PY" .venv >&2
$UV pip install --quiet --python .venv/bin/python -e ".[test,jax,dask,sparse]" >&2
echo "$want" > "$stamp"
