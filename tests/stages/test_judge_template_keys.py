"""judge.templates.*: each stage that judges renders with the configured version, held in its plan."""

from __future__ import annotations

from rluf_ray.config import load, plan_key_data
from rluf_ray.judge.scoring import score_requests
from rluf_ray.stages import evaluate, feedback, generate


def test_defaults_are_the_originals_and_stages_hash_what_they_use() -> None:
    cfg = load(None)
    t = cfg.judge.templates
    assert (t.score, t.pairwise, t.rubric) == ("score_v2", "pairwise_v1", "rubric_v2")
    assert plan_key_data(generate.plan(cfg))["score_template"] == "score_v2"
    assert plan_key_data(feedback.plan(cfg))["pairwise_template"] == "pairwise_v1"
    e = plan_key_data(evaluate.plan(cfg))
    assert (e["rubric_template"], e["pairwise_template"]) == ("rubric_v2", "pairwise_v1")


def test_configured_versions_reach_the_requests() -> None:
    cfg = load(overrides=["judge.templates.score=score_v1", "judge.templates.rubric=rubric_v1"])
    assert generate.plan(cfg).score_template == "score_v1"
    row = {"prompt_id": "p", "post": "post", "reference": "ref", "answer": "a"}
    assert [r.version for r in score_requests([row], cfg.judge.templates.score)] == ["score_v1"]
    preds = evaluate.index_predictions(
        [{"model": m, "seed": s, "prompt_id": "p", "prompt": "q", "reference": "r", "prediction": f"x {m}"}
         for m, s in (("sft", None), ("cfa", 1))]
    )  # fmt: skip
    for c, rubric in ((cfg, "rubric_v1"), (load(None), "rubric_v2")):
        _, _, pairwise, rubrics = evaluate.evaluation_requests(evaluate.plan(c), preds, {})
        assert [r.version for r in rubrics] == [rubric, rubric]
        assert [r.version for r in pairwise] == ["pairwise_v1"]
