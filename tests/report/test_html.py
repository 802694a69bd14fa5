"""The run report: every figure the page references exists as a PNG beside it, links are relative, and the
sentences state the figures computed from the artifacts."""

from __future__ import annotations

import json
from html import escape
from html.parser import HTMLParser
from pathlib import Path

import pyarrow as pa

from rluf_ray.config import load
from rluf_ray.report import html
from rluf_ray.schema import GENERATION_SCHEMA
from rluf_ray.store.artifacts import ArtifactStore

DIRS = {"sft": "sft", "generate": "generation", "calibrate": "calibration", "feedback": "feedback",
        "assign-weights": "weights", "train": "training", "infer": "inference", "evaluate": "evaluation"}  # fmt: skip


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.srcs: list[str] = []
        self.hrefs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "img" and a.get("src"):
            self.srcs.append(str(a["src"]))
        if a.get("href"):
            self.hrefs.append(str(a["href"]))


def _generation(store: ArtifactStore, split: str, distinct: list[int]) -> None:
    n = len(distinct)
    cols = {name: [] for name in GENERATION_SCHEMA.names}
    for i, k in enumerate(distinct):
        answers = [f"a{j}" for j in range(k)]
        cols["prompt_id"].append(f"{split}-{i}")
        cols["split"].append(split)
        cols["prompt"].append("p")
        cols["reference"].append("r")
        cols["answers"].append(answers)
        cols["counts"].append([1] * k)
        cols["texts"].append(answers)
        cols["mean_logprobs"].append([0.0] * k)
        cols["num_samples"].append(k)
        cols["truncated"].append(False)
        cols["first_sampled"].append(0)
    store.write_parquet(
        "generation", f"{split}/part-0.parquet", pa.Table.from_pydict(cols, schema=GENERATION_SCHEMA)
    )
    assert n


def _artifacts(root: Path) -> ArtifactStore:
    store = ArtifactStore(root)
    _generation(store, "calibration", [1, 4, 4, 9])
    _generation(store, "test", [2, 40])
    store.complete("generation", "h", {}, {"calibration": 4}, {"judge": {"calls": 30, "cache_hits": 5, "missing": 2,
                   "scored": 20, "dollars": 0.25}}, 12.5)  # fmt: skip
    store.complete("feedback", "h", {}, {"pairs": 9}, {"judge": {"calls": 10, "cache_hits": 0, "missing": 1,
                   "scored": 9, "dollars": 0.5}}, 3.0)  # fmt: skip
    store.write_json("calibration", "report.json", {"per_alpha": {
        "0.2": {"coverage_mean": 0.78, "set_size_mean": 3.5, "trivial": False},
        "0.5": {"coverage_mean": 0.51, "set_size_mean": 1.25, "trivial": True}}})  # fmt: skip
    store.write_json("weights", "summary.json", {"weight_histogram": {"0.0": 3, "0.65": 5, "0.8": 2},
                                                 "mean_weight": 0.485, "zero_weight_share": 0.3})  # fmt: skip
    for arm in ("cfa", "dpo"):
        rows = [{"step": s, "loss": 0.69 - 0.01 * s, "rewards/accuracies": 0.5} for s in (1, 2, 3)]
        store.write_jsonl("training", f"{arm}/seed-42/curves.jsonl", rows)
    store.write_json("evaluation", "report.json", {
        "win_rates": [{"a": "cfa", "b": "dpo", "win_rate": 0.55, "ci_low": 0.41, "ci_high": 0.69, "n": 30, "ties": 4},
                      {"a": "cfa", "b": "sft", "win_rate": 0.62, "ci_low": 0.51, "ci_high": 0.74, "n": 30, "ties": 2}],
        "rubric": {"sft": {"n": 30, "axes": {"accuracy": {"mean": 7.0, "ci_low": 6.5, "ci_high": 7.5}},
                           "overall": {"mean": 7.0, "ci_low": 6.5, "ci_high": 7.5}}},
        "judge": {"calls": 60, "cache_hits": 0, "missing": 0, "scored": 30, "dollars": 1.0}})  # fmt: skip
    return store


def test_report_page_references_only_pngs_that_exist(tmp_path: Path) -> None:
    store = _artifacts(tmp_path)
    page = Path(html.build(store, load(None), DIRS))
    assert page == tmp_path / "report" / "index.html"
    text = page.read_text()
    links = _Links()
    links.feed(text)
    expected = {"distinct_answers.png", "judge_calls.png", "coverage.png", "weights.png", "dpo_curves.png",
                "win_rates.png"}  # fmt: skip
    assert set(links.srcs) == expected
    for src in links.srcs + links.hrefs:
        assert "://" not in src and not src.startswith("/"), src  # relative: the folder can be copied
    for src in links.srcs:
        assert (page.parent / src).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", src
    # Sentences carry figures computed from the artifacts.
    assert "median prompt has 4 distinct answers" in text  # median of [1, 4, 4, 9, 2, 40]
    assert "50% of prompts have between 3 and 30" in text  # 4, 4, 9 of six
    assert (
        "62 judgements took 100 API calls (5 answered from the cache" in text and "for $1.7500; 3 are" in text
    )
    assert "alpha=0.5: coverage 0.51 against 0.50, 1.2 answers per set (trivial" in text
    assert "10 pairs, mean weight 0.485; 30% have weight 0" in text
    assert "cfa/seed-42 0.660" in text and "dpo/seed-42 0.660" in text
    assert "cfa vs dpo 0.55 [0.41, 0.69] over 30 prompts" in text
    assert "7.00 [6.50, 7.50]" in text  # the rubric table


def test_report_without_later_stages_still_writes_a_page(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    store.complete("sft", "h", {}, {"examples": 3}, {}, 1.0)
    page = Path(html.build(store, load(None), DIRS))
    links = _Links()
    links.feed(page.read_text())
    text = page.read_text()
    assert links.srcs == [] and "<td>sft</td><td>1.0</td><td>examples=3</td>" in text
    assert f"<td>data.source</td><td>{escape(json.dumps('demo'))}</td>" in text
