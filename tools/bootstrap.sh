#!/usr/bin/env bash
# Install everything aiida-ilmlff needs on a fresh Debian machine. Idempotent.
#
# 1. System codes (CP2K, Quantum ESPRESSO) from Debian when missing.
# 2. A virtual environment in $VENV (default .venv) with the package, its extras and torch.
#
# Torch: where a CPU wheel of torch 2.13.0 lies on disk (/opt/wheels, or $TORCH_WHEEL), it is
# installed first with that exact pin so that pip never pulls a multi-GB CUDA build; elsewhere
# pip resolves torch freely.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}
EXTRAS=${EXTRAS:-mace,deepmd,tests,docs,dev}

need_apt=()
command -v cp2k.psmp >/dev/null 2>&1 || command -v cp2k >/dev/null 2>&1 || need_apt+=(cp2k)
command -v pw.x >/dev/null 2>&1 || need_apt+=(quantum-espresso)
command -v dot >/dev/null 2>&1 || need_apt+=(graphviz)  # `verdi node graph generate` renders with dot
if [ ${#need_apt[@]} -gt 0 ]; then
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    echo "bootstrap: installing system packages: ${need_apt[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

if [ ! -x "$VENV/bin/python" ]; then
    echo "bootstrap: creating $VENV"
    "$PYTHON" -m venv "$VENV"
    "$VENV/bin/pip" install -q -U pip wheel
fi
PIP="$VENV/bin/pip"

if ! "$VENV/bin/python" -c 'import torch' >/dev/null 2>&1; then
    wheel=${TORCH_WHEEL:-$(ls /opt/wheels/torch-2.13.0+cpu-*.whl 2>/dev/null | head -n1 || true)}
    if [ -n "$wheel" ]; then
        echo "bootstrap: installing torch 2.13.0 (CPU wheel on disk)"
        "$PIP" install -q "torch==2.13.0"
    fi
fi

echo "bootstrap: installing aiida-ilmlff[$EXTRAS]"
"$PIP" install -q -e ".[$EXTRAS]"
echo "bootstrap: done"
