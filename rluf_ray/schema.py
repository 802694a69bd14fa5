"""Row contracts between stages: artifact names, column names and Arrow types.

A stage writes exactly these columns and a downstream stage reads only these, so each stage can be
rewritten without touching its neighbours. Answers are keyed by (prompt_id, answer) where
``answer`` is the *normalised* text (see ``rluf_ray.common.text.normalize_answer``).
"""

from __future__ import annotations

from typing import Literal

import pyarrow as pa

# --- prompts (every stage that reads data): rows of rluf_ray.data.splits.load_split ---------------
# prompt_id (stable id of the source document / post), post (the text to summarise), reference (the
# reference summary): three strings.

# --- generate: outputs/generation/{calibration,test}/*.parquet ------------------------------------
GENERATION_SPLITS: tuple[Literal["calibration", "test"], ...] = ("calibration", "test")
GENERATION_SCHEMA = pa.schema(
    [
        ("prompt_id", pa.string()),
        ("split", pa.string()),  # "calibration" or "test"
        ("prompt", pa.string()),  # the prompt as sent to the model (after truncation)
        ("reference", pa.string()),
        ("answers", pa.list_(pa.string())),  # unique normalised answers, most frequent first
        ("counts", pa.list_(pa.int64())),  # samples per answer; sums to num_samples
        ("texts", pa.list_(pa.string())),  # one raw text per normalised answer
        ("mean_logprobs", pa.list_(pa.float64())),  # mean token log-prob per answer (NaN if unknown)
        ("num_samples", pa.int64()),
        ("truncated", pa.bool_()),  # the post body was cut to fit the context
        ("first_sampled", pa.int32()),  # index in answers of the first sample's answer (cfa's top answer)
    ]
)

# --- generate: outputs/generation/scores.parquet (calibration split only) -------------------------
SCORES_ARTIFACT = "scores.parquet"
SCORE_SCHEMA = pa.schema(
    [
        ("prompt_id", pa.string()),
        ("answer", pa.string()),  # normalised answer
        ("score", pa.float64()),  # judge score in [0, 1]; null when the call failed (never 0)
        ("error", pa.string()),  # reason when score is null
    ]
)

# --- calibrate: outputs/calibration/prediction_sets.parquet ---------------------------------------
PREDICTION_SETS_ARTIFACT = "prediction_sets.parquet"
PREDICTION_SET_SCHEMA = pa.schema(
    [
        ("prompt_id", pa.string()),
        ("alpha", pa.float64()),
        ("answer", pa.string()),  # normalised answer in the set
        ("nonconformity", pa.float64()),
    ]
)

# --- feedback: outputs/feedback/pairs.jsonl --------------------------------------------------------
# prompt_id, prompt, chosen (raw text of the preferred answer), rejected, chosen_answer and
# rejected_answer (their normalised keys, for prediction-set lookups)
PAIRS_ARTIFACT = "pairs.jsonl"

# --- assign-weights: outputs/weights/weighted_pairs.jsonl (the original's released format + ids) --
WEIGHTED_PAIRS_ARTIFACT = "weighted_pairs.jsonl"
WEIGHTED_PAIR_COLUMNS = ("prompt", "chosen", "rejected", "weight")  # required of an external pairs file too

# --- sft: outputs/sft/{model/,curves.jsonl,sft_summary.json} ---------------------------------------
# --- train: outputs/training/<arm>/seed-<seed>/{model/,curves.jsonl,train_summary.json} -----------
# one training unit per (arm, seed) (arms: rluf_ray.arms.TRAIN_ARMS); outputs/training/train_summary.json
# lists every unit.
MODEL_DIR = "model"  # a trained model's save_pretrained folder (sft/ and every training unit)
CURVES_ARTIFACT = "curves.jsonl"  # its training curves, one JSON object per logged step, beside it
SFT_SUMMARY_ARTIFACT = "sft_summary.json"
TRAIN_SUMMARY_ARTIFACT = "train_summary.json"


def train_unit_dir(arm: str, seed: int) -> str:
    """A training unit's directory inside ``outputs/training``: ``<arm>/seed-<seed>``.

    Args:
        arm: The trained arm (one of ``rluf_ray.arms.TRAIN_ARMS``).
        seed: The unit's training seed.

    Returns:
        The relative directory ``<arm>/seed-<seed>``.
    """
    return f"{arm}/seed-{seed}"


# --- infer: outputs/inference/predictions.parquet (held-out eval split, one row per model x seed x prompt)
PREDICTIONS_ARTIFACT = "predictions.parquet"
PREDICTION_SCHEMA = pa.schema(
    [
        ("prompt_id", pa.string()),
        ("model", pa.string()),  # the arm (rluf_ray.arms): "sft", "cfa" (weighted DPO) or "dpo" (weights 1)
        ("seed", pa.int64()),  # the training seed of a DPO arm; null for sft (one model)
        ("prompt", pa.string()),
        ("reference", pa.string()),
        ("prediction", pa.string()),
    ]
)

# --- evaluate: outputs/evaluation/scores.parquet (the rubric of every model x seed x prompt) ----------
EVAL_SCORES_ARTIFACT = "scores.parquet"
EVAL_SCORE_SCHEMA = pa.schema(
    [
        ("prompt_id", pa.string()),
        ("model", pa.string()),
        ("seed", pa.int64()),  # the prediction's seed; null for sft
        ("accuracy", pa.float64()),  # each axis 0-10; null when the judge call failed
        ("relevance", pa.float64()),
        ("completeness", pa.float64()),
        ("expression", pa.float64()),
        ("error", pa.string()),
    ]
)

# --- evaluate: outputs/evaluation/comparisons.parquet (one row per pairwise comparison item) ----------
EVAL_COMPARISONS_ARTIFACT = "comparisons.parquet"
EVAL_COMPARISON_SCHEMA = pa.schema(
    [
        ("a", pa.string()),  # arm A (first in rluf_ray.arms.ARM_ORDER: cfa, dpo, sft)
        ("b", pa.string()),  # arm B
        ("seed", pa.int64()),  # the comparison's seed (of the trained arm); null when neither has one
        ("prompt_id", pa.string()),
        ("first", pa.string()),  # the arm shown to the judge as output_1
        ("outcome", pa.float64()),  # A's outcome: 1 win, 0.5 tie, 0 loss; null when the judge call failed
        ("error", pa.string()),  # reason when outcome is null
    ]
)
