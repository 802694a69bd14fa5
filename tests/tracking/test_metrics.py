"""The flattening of stage summaries into tracker metrics (no tracker involved)."""

from __future__ import annotations

from rluf_ray.tracking.metrics import config_params, curve_metrics, flatten, metric_name, stage_metrics


def test_metric_name_keeps_safe_characters() -> None:
    assert metric_name("calibrate", "alpha_0.2", "coverage mean") == "calibrate/alpha_0.2/coverage mean"
    assert metric_name("a", "b{c}", "") == "a/b_c_"


def test_flatten_keeps_numbers_and_booleans_only() -> None:
    data = {"n": 3, "ok": True, "name": "x", "none": None, "nan": float("nan"), "list": [1, 2],
            "nested": {"share": 0.25, "deeper": {"k": 1}}}  # fmt: skip
    assert flatten(data, "s") == {"s/n": 3.0, "s/ok": 1.0, "s/nested/share": 0.25, "s/nested/deeper/k": 1.0}


def test_calibrate_and_weights_metrics() -> None:
    cal = {"alpha_0.2": {"coverage_mean": 0.85, "set_size_mean": 3.5, "threshold": 0.4, "trivial": False}}
    out = stage_metrics("calibrate", cal)
    assert out["calibrate/alpha_0.2/coverage_mean"] == 0.85
    assert out["calibrate/alpha_0.2/set_size_mean"] == 3.5
    assert out["calibrate/alpha_0.2/trivial"] == 0.0
    weights = {"pairs": 10, "weight_histogram": {"0.0": 6, "1.2": 4}, "zero_weight_share": 0.6,
               "effective_lr_scale": {"mean": 0.48}, "level_warnings": ["x"]}  # fmt: skip
    out = stage_metrics("assign-weights", weights)
    assert out["assign-weights/weight_histogram/0.0"] == 6.0
    assert out["assign-weights/weight_histogram/1.2"] == 4.0
    assert out["assign-weights/zero_weight_share"] == 0.6
    assert out["assign-weights/effective_lr_scale/mean"] == 0.48


def test_train_units_and_win_rates_are_expanded() -> None:
    train = {"pairs": 8, "units": [{"arm": "cfa", "seed": 42, "train_loss": 0.69, "global_step": 2,
                                     "dir": "cfa/seed-42"}]}  # fmt: skip
    out = stage_metrics("train", train)
    assert out == {
        "train/pairs": 8.0,
        "train/cfa/seed-42/train_loss": 0.69,
        "train/cfa/seed-42/global_step": 2.0,
    }
    ev = {"win_rates": [{"a": "cfa", "b": "dpo", "win_rate": 0.6, "ci_low": 0.4, "ci_high": 0.8, "n": 30}],
          "dropped_prompts": 1, "rubric_overall": {"sft": 5.5}}  # fmt: skip
    out = stage_metrics("evaluate", ev)
    assert out["evaluate/win_rate/cfa_vs_dpo"] == 0.6
    assert out["evaluate/win_rate/cfa_vs_dpo/ci_low"] == 0.4
    assert out["evaluate/win_rate/cfa_vs_dpo/ci_high"] == 0.8
    assert out["evaluate/win_rate/cfa_vs_dpo/n"] == 30.0
    assert out["evaluate/rubric_overall/sft"] == 5.5 and out["evaluate/dropped_prompts"] == 1.0


def test_curve_metrics_per_step() -> None:
    rows = [
        {"step": 1, "epoch": 0.5, "loss": 0.69, "rewards/accuracies": 0.5},
        {"loss": 1.0},
        {"step": 2, "loss": 0.6},
    ]
    assert curve_metrics("train/cfa/seed-42/curve", rows) == [
        ("train/cfa/seed-42/curve/loss", 0.69, 1),
        ("train/cfa/seed-42/curve/rewards/accuracies", 0.5, 1),
        ("train/cfa/seed-42/curve/loss", 0.6, 2),
    ]


def test_config_params_are_strings() -> None:
    params = config_params({"judge": {"api_key_env": "OPENAI_API_KEY", "max_dollars": None},
                            "conformal": {"quantile_bars": [0.2, 0.5]}, "data": {"prompt_template": "x" * 900}})  # fmt: skip
    assert params["judge.api_key_env"] == "OPENAI_API_KEY"
    assert params["judge.max_dollars"] == "null"
    assert params["conformal.quantile_bars"] == "[0.2, 0.5]"
    assert len(params["data.prompt_template"]) == 500
