"""Fixtures for the training tests: one tiny embedded Llama per test session."""

from __future__ import annotations

from pathlib import Path

import pytest

TEXTS = [
    "Please summarize this text:\nThe cat sat on the mat and slept all day long.\nSummary: a cat slept",
    "Please summarize this text:\nMy landlord raised the rent twice this year.\nSummary: rent went up",
    "Please summarize this text:\nI trained for a marathon but lost stamina.\nSummary: running got hard",
] * 20


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 1-layer, 128-wide Llama (head_dim 64) with a byte-level BPE tokenizer, saved in HF format."""
    from rluf_ray.data.tiny_model import build_embedded

    out = tmp_path_factory.mktemp("tiny-model")
    return build_embedded(
        TEXTS, out, vocab_size=320, hidden_size=128, layers=1, heads=2, max_positions=512, seed=0
    )
