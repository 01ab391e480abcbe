#!/usr/bin/env bash
# Creates (or reuses) the Python test environment at .venv and installs the muonscope package with its test
# extras into it: `bash test/python/venv.sh`, then `.venv/bin/python -m pytest trainer/python/tests`.
#
# pip is pointed at the package index pip itself is configured with (`pip config list`), as the index rather
# than an extra one: where the default index (PyPI) cannot be reached, pip otherwise tries it first and its
# retries triple the install time. With nothing configured, pip's defaults apply.
set -euo pipefail
cd "$(dirname "$0")/../.."
PYTHON="${PYTHON:-python3}"
VENV="${MUONSCOPE_VENV:-.venv}"

if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi

# The configured indexes, in order: index-url first, then extra-index-url (space-separated lists).
config="$("$PYTHON" -m pip config list 2>/dev/null || true)"
urls=()
for key in index-url extra-index-url; do
  line="$(printf '%s\n' "$config" | grep -E "^[a-z:.]*\.?${key}=" | head -n 1 || true)"
  [ -n "$line" ] || continue
  value="${line#*=}"
  value="${value#\'}"
  value="${value%\'}"
  for u in $value; do urls+=("$u"); done
done
args=()
if [ "${#urls[@]}" -gt 0 ]; then
  args+=(--index-url "${urls[0]}")
  for u in "${urls[@]:1}"; do args+=(--extra-index-url "$u"); done
fi

"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "${args[@]}" -e "./trainer/python[test,integrations]"
"$VENV/bin/python" -c 'import torch, numpy, pytest, muonscope; print(f"python env ready: torch {torch.__version__}, numpy {numpy.__version__}, muonscope {muonscope.__version__}")'
