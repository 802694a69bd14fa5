"""Zero-weight pairs are dropped in one place: the train stage drops them once, before each arm's rows
are made (``rluf_ray.training.pairs.drop_zero_weight_pairs``); the trainer filters nothing more, and
the summaries still report the count. Ray Train is stubbed: what matters is what each unit's loop gets."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from rluf_ray.config import load
from rluf_ray.pipeline import run_stage, stage_fingerprint
from rluf_ray.stages.registry import get
from rluf_ray.store.artifacts import ArtifactStore

WEIGHTS = [0.0, 0.5, 0.0, 0.8, 0.65]


def _train(tmp_path: Path, model_dir: Path, monkeypatch: pytest.MonkeyPatch, *overrides: str):
    import ray

    from rluf_ray.runtime import bootstrap
    from rluf_ray.training import ray_train

    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(
        "".join(
            json.dumps({"prompt": f"Please summarize this text:\npost {i}\nSummary:", "chosen": f" c{i}",
                        "rejected": f" r{i}", "weight": w}) + "\n"
            for i, w in enumerate(WEIGHTS)
        )
    )  # fmt: skip
    cfg = load(
        None,
        [f"output_dir={tmp_path / 'out'}", f"dpo.pairs_path={pairs}", "dpo.reduction=normalized", *overrides],
    )
    store = ArtifactStore(cfg.output_dir)
    shutil.copytree(model_dir, store.local_path("sft", "model"))
    store.complete("sft", stage_fingerprint(cfg, get("sft")), {})  # stands in for `rluf sft`
    loops: dict[str, dict[str, Any]] = {}

    def fit_and_export(loop, loop_config, plan, store, stage, prefix, what, report=None):
        loops[prefix.rstrip("/")] = loop_config
        return {"train_loss": 0.5, "global_step": 1, "resumed": False}

    monkeypatch.setattr(ray_train, "fit_and_export", fit_and_export)
    monkeypatch.setattr(bootstrap, "ensure_ray", lambda *a, **k: None)
    monkeypatch.setattr(ray, "put", lambda value: value)
    man = run_stage(cfg, store, "train")
    summary = json.loads((tmp_path / "out" / "training" / "train_summary.json").read_text())
    return man, summary, loops


def test_zero_weight_pairs_are_dropped_once_for_both_arms(tiny_model_dir, tmp_path, monkeypatch):
    man, summary, loops = _train(tmp_path, tiny_model_dir, monkeypatch)
    cfa, dpo = loops["cfa/seed-42"], loops["dpo/seed-42"]
    assert [r["weight"] for r in cfa["pairs"]] == [0.5, 0.8, 0.65]
    assert [r["weight"] for r in dpo["pairs"]] == [1.0, 1.0, 1.0]
    assert [r["chosen"] for r in cfa["pairs"]] == [r["chosen"] for r in dpo["pairs"]] == [" c1", " c3", " c4"]
    for loop in (cfa, dpo):  # the trainer is asked for no filter of its own
        assert not any("zero" in k for k in loop["trainer_args"])
    assert summary["zero_weight_pairs"] == 2 and summary["dropped_zero_weight"] == 2
    assert [u["trained_pairs"] for u in summary["units"]] == [3, 3]
    assert all(u["dropped_zero_weight"] == 2 for u in summary["units"])
    assert man is not None and man.rows == {"pairs": 5, "trained_pairs": 3, "units": 2}


def test_without_the_drop_every_pair_trains(tiny_model_dir, tmp_path, monkeypatch):
    man, summary, loops = _train(tmp_path, tiny_model_dir, monkeypatch, "dpo.drop_zero_weight=false")
    assert [r["weight"] for r in loops["cfa/seed-42"]["pairs"]] == WEIGHTS
    assert [r["weight"] for r in loops["dpo/seed-42"]["pairs"]] == [1.0] * 5
    assert summary["zero_weight_pairs"] == 2 and summary["dropped_zero_weight"] == 0
    assert man is not None and man.rows["trained_pairs"] == 5
