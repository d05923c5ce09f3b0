#!/usr/bin/env bash
# A second environment, .venv-tv, as most users have it: the pinned torch with the
# torchvision built for it (transformers then builds the combined processors of
# Qwen2-VL, Qwen2.5-VL and InternVL itself). Idempotent. Then:
#   .venv-tv/bin/python -m pytest tests/models/test_torchvision.py
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.venv-tv TORCHVISION=1 EXTRAS=${EXTRAS:-dev,onnx} bash scripts/setup.sh
