"""The hf engine on the embedded tiny model."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from rluf_ray.data.demo import corpus_texts
from rluf_ray.data.tiny_model import build_embedded
from rluf_ray.engines.base import SamplingSpec
from rluf_ray.engines.hf import HFEngine, HfOptions, _mean_token_logprobs
from rluf_ray.engines.registry import make_engine
from rluf_ray.errors import RlufError


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_embedded(corpus_texts(1, 60), tmp_path_factory.mktemp("m") / "model", max_positions=256)


@pytest.fixture(scope="module")
def engine(tiny_model: Path) -> HFEngine:
    return HFEngine(str(tiny_model), HfOptions(threads=1))


def test_n_samples_per_prompt_in_one_generate_call(engine: HFEngine, monkeypatch: pytest.MonkeyPatch) -> None:
    calls, prefills = [], []
    real_generate, real_forward = engine.model.generate, engine.model.forward

    def counting_generate(*args, **kwargs):
        calls.append(kwargs["input_ids"].shape)
        return real_generate(*args, **kwargs)

    def counting_forward(*args, **kwargs):
        if not calls:  # before generate: the shared prefill
            prefills.append(kwargs["input_ids"].shape)
        return real_forward(*args, **kwargs)

    monkeypatch.setattr(engine.model, "generate", counting_generate)
    monkeypatch.setattr(engine.model, "forward", counting_forward)
    prompts = ["Please summarize this text:\nNora ran.\nSummary:", "short", "a third prompt here"]
    out = engine.generate(prompts, SamplingSpec(n=4, temperature=0.35, max_new_tokens=5), seed=3)
    assert len(calls) == 1 and calls[0][0] == 3 * 4  # one call: 3 prompts x 4 samples
    assert len(prefills) == 1 and prefills[0][0] == 3  # each prompt encoded once, not 4 times
    assert [len(c.texts) for c in out] == [4, 4, 4]
    assert all(len(c.mean_logprobs) == 4 for c in out)
    assert all(lp < 0 and math.isfinite(lp) for c in out for lp in c.mean_logprobs)
    again = engine.generate(prompts, SamplingSpec(n=4, temperature=0.35, max_new_tokens=5), seed=3)
    assert [c.texts for c in again] == [c.texts for c in out]  # seeded


def test_shared_prefill_equals_num_return_sequences(tiny_model: Path) -> None:
    """The shared-prefill path samples exactly what plain num_return_sequences=N samples."""
    shared = HFEngine(str(tiny_model), HfOptions(threads=1, share_prefill=True))
    plain = HFEngine(str(tiny_model), HfOptions(threads=1, share_prefill=False))
    prompts = [
        "Please summarize this text:\nIvan Adler led the river cleanup.\nSummary:",
        "hi",
    ]  # unequal: padding
    spec = SamplingSpec(n=5, temperature=0.7, max_new_tokens=6)
    a, b = shared.generate(prompts, spec, seed=11), plain.generate(prompts, spec, seed=11)
    assert [c.texts for c in a] == [c.texts for c in b]
    for ca, cb in zip(a, b, strict=True):
        assert ca.mean_logprobs == pytest.approx(cb.mean_logprobs, abs=1e-4)


def test_greedy_repeats_one_sample(engine: HFEngine) -> None:
    (c,) = engine.generate(["hello"], SamplingSpec(n=3, temperature=0.0, max_new_tokens=4))
    assert len(set(c.texts)) == 1 and len(c.texts) == 3
    assert len(set(c.mean_logprobs)) == 1


def test_mean_logprob_matches_a_teacher_forced_forward(engine: HFEngine) -> None:
    """The sampled tokens' mean log-prob equals the model's own log-prob of them (temperature aside)."""
    tok, model = engine.tokenizer, engine.model
    enc = tok(["Please summarize this text:\nabc\nSummary:"], return_tensors="pt")
    torch.manual_seed(0)
    out = model.generate(**enc, do_sample=True, temperature=0.7, max_new_tokens=6, min_new_tokens=6,
                         return_dict_in_generate=True, output_logits=True, pad_token_id=tok.pad_token_id)  # fmt: skip
    width = enc["input_ids"].shape[1]
    gen = out.sequences[:, width:]
    (mean,) = _mean_token_logprobs(out.logits, gen, eos_id=None)
    with torch.no_grad():
        logits = model(out.sequences).logits[0, width - 1 : -1]
    expected = torch.log_softmax(logits, -1).gather(1, gen[0][:, None]).mean().item()
    assert mean == pytest.approx(expected, abs=1e-4)


def test_mean_logprob_stops_at_eos_hand_computed() -> None:
    # vocab 3, eos = 2; row 0: tokens [0, 2, 1] -> counts tokens 0 and the eos; row 1: [1, 1, 1].
    step = torch.log(torch.tensor([[0.5, 0.25, 0.25], [0.5, 0.25, 0.25]]))
    gen = torch.tensor([[0, 2, 1], [1, 1, 1]])
    r0, r1 = _mean_token_logprobs([step, step, step], gen, eos_id=2)
    assert r0 == pytest.approx((math.log(0.5) + math.log(0.25)) / 2)
    assert r1 == pytest.approx(math.log(0.25))


def test_bad_inputs(tmp_path: Path, tiny_model: Path) -> None:
    with pytest.raises(RlufError, match="model not found"):
        HFEngine(str(tmp_path / "nope"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(RlufError, match="no config.json"):
        make_engine("hf", str(tmp_path / "empty"))
    with pytest.raises(RlufError, match="sampling_num must be >= 1"):
        SamplingSpec(n=0, temperature=0.3)
    with pytest.raises(RlufError, match="unknown engine"):
        make_engine("tgi", str(tiny_model))


def test_prompt_over_the_context_is_an_error(engine: HFEngine) -> None:
    long = " ".join(["word"] * 400)
    with pytest.raises(RlufError, match="exceeds the context"):
        engine.generate([long], SamplingSpec(n=1, temperature=0.3, max_new_tokens=4))


def test_hf_close_drops_the_model_and_is_idempotent(tiny_model: Path) -> None:
    eng = HFEngine(str(tiny_model), HfOptions(threads=1))
    eng.close()
    assert eng.model is None
    eng.close()  # a second close (e.g. from the pool's __del__ after an explicit close) is harmless
