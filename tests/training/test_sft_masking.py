"""SFT batches as TRL builds them: prompt tokens masked (-100), EOS appended after every summary."""

from __future__ import annotations

import pytest
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import SFTConfig

from rluf_ray.common.text import DEFAULT_TEMPLATE
from rluf_ray.errors import RlufError
from rluf_ray.training.sft import build_sft_rows, sft_trainer

ROWS = [
    {
        "prompt_id": "a",
        "post": "The cat sat on the mat and slept all day long. " * 8,
        "reference": "a cat slept",
    },
    {"prompt_id": "b", "post": "My landlord raised the rent twice.", "reference": "rent went up twice"},
]


def test_prompt_tokens_masked_and_eos_appended(tiny_model_dir, tmp_path):
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    rows, truncated = build_sft_rows(ROWS, tok, max_length=64, template=DEFAULT_TEMPLATE)
    assert truncated == 1  # the long post was cut to fit, and counted
    assert rows[0]["prompt"].endswith("\nSummary:") and rows[0]["completion"] == " a cat slept"
    args = SFTConfig(
        output_dir=str(tmp_path), use_cpu=True, per_device_train_batch_size=2, report_to="none",
        max_length=64, completion_only_loss=True, dataset_num_proc=None,
    )  # fmt: skip
    trainer = sft_trainer(AutoModelForCausalLM.from_pretrained(tiny_model_dir), tok, rows, args)
    batch = next(iter(trainer.get_train_dataloader()))
    ids, labels, attn = batch["input_ids"], batch["labels"], batch["attention_mask"]
    seen = set()
    for i in range(ids.shape[0]):
        n = int(attn[i].sum())
        text = tok.decode(ids[i, :n])
        row = next(
            r for r in rows if text.startswith(tok.bos_token + r["prompt"]) or text.startswith(r["prompt"])
        )
        seen.add(row["completion"])
        n_prompt = len(tok(row["prompt"])["input_ids"])
        assert (labels[i, :n_prompt] == -100).all(), "prompt tokens must carry no loss"
        assert (labels[i, n_prompt:n] == ids[i, n_prompt:n]).all(), "summary tokens carry the loss"
        assert int(ids[i, n - 1]) == tok.eos_token_id and int(labels[i, n - 1]) == tok.eos_token_id
        assert (labels[i, n:] == -100).all()
        assert tok.decode(ids[i, n_prompt : n - 1]) == row["completion"]
    assert seen == {r["completion"] for r in rows}


def test_reference_longer_than_budget_is_a_clear_error(tiny_model_dir):
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    with pytest.raises(RlufError, match="reference alone"):
        build_sft_rows(
            [{"prompt_id": "x", "post": "p", "reference": "word " * 100}], tok, 32, DEFAULT_TEMPLATE
        )


def test_completion_only_loss_is_required(tiny_model_dir, tmp_path):
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    args = SFTConfig(output_dir=str(tmp_path), use_cpu=True, report_to="none", completion_only_loss=False)
    with pytest.raises(ValueError, match="completion_only_loss"):
        sft_trainer(None, tok, [{"prompt": "p", "completion": " c"}], args)
