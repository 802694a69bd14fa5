"""Weighted preference pairs: read the released format (prompt, chosen, rejected, weight), fit prompts.

Rows of the original project's released JSONL (and of our ``weights`` stage) carry a rendered prompt
("Please summarize this text:\\n<post>\\nSummary:"). A prompt longer than the budget goes through
``rluf_ray.common.text.fit_prompt``: the post body is cut, the instruction and the closing cue survive,
and the cut is counted. A prompt that does not follow the template keeps its end (the answer cue)
and is counted as truncated too.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from rluf_ray.arms import TRAIN_ARMS
from rluf_ray.common.text import fit_prompt
from rluf_ray.errors import RlufError
from rluf_ray.schema import WEIGHTED_PAIR_COLUMNS
from rluf_ray.training.losses import validate_weights


@dataclass
class PairStats:
    """Counts for the stage manifest."""

    pairs: int = 0
    truncated_prompts: int = 0
    off_template_prompts: int = 0
    zero_weight: int = 0


def read_jsonl_pairs(path: str) -> list[dict[str, Any]]:
    """Read a local weighted pairs JSONL (one-line errors naming the line for bad rows).

    Args:
        path: The JSONL file: one object per line with ``prompt``, ``chosen``, ``rejected`` (strings)
            and ``weight`` (finite, >= 0); blank lines are skipped.

    Returns:
        The rows, with just those four keys and ``weight`` as a float.

    Raises:
        RlufError: If the file is missing or empty, or a row is bad (naming ``path:line``).
    """
    try:
        with open(path, encoding="utf-8") as f:
            return parse_jsonl_pairs(f, path)
    except FileNotFoundError:
        raise RlufError(f"weighted pairs file not found: {path}") from None


def parse_jsonl_pairs(lines: Iterable[str], where: str) -> list[dict[str, Any]]:
    """Parse the lines of a weighted pairs JSONL, wherever it was read from.

    Args:
        lines: The file's lines (blank ones are skipped).
        where: The file's name for errors (``where:line``).

    Returns:
        The rows, with just ``prompt``, ``chosen``, ``rejected`` and ``weight`` (a float).

    Raises:
        RlufError: No row, or a bad row (naming ``where:line``).
    """
    rows: list[dict[str, Any]] = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise RlufError(f"{where}:{n}: not valid JSON ({exc.msg})") from None
        rows.append(_check_row(row, f"{where}:{n}"))
    if not rows:
        raise RlufError(f"{where}: no weighted pairs")
    return rows


def _check_row(row: Any, where: str) -> dict[str, Any]:
    if not isinstance(row, dict):
        raise RlufError(f"{where}: expected a JSON object")
    missing = [k for k in WEIGHTED_PAIR_COLUMNS if k not in row]
    if missing:
        raise RlufError(f"{where}: missing {', '.join(missing)}")
    try:
        weight = float(row["weight"])
        validate_weights([weight])
    except (TypeError, ValueError) as exc:
        raise RlufError(f"{where}: bad weight {row['weight']!r} ({exc})") from None
    for k in ("prompt", "chosen", "rejected"):
        if not isinstance(row[k], str):
            raise RlufError(f"{where}: {k} must be a string")
    return {"prompt": row["prompt"], "chosen": row["chosen"], "rejected": row["rejected"], "weight": weight}


def split_template(template: str) -> tuple[str, str]:
    """Split the prompt template around ``{post}``.

    Args:
        template: The prompt template (``data.prompt_template``).

    Returns:
        The text before and after ``{post}`` (everything and ``""`` when it has no ``{post}``).
    """
    head, _, tail = template.partition("{post}")
    return head, tail


def fit_pair_prompts(
    rows: Iterable[Mapping[str, Any]],
    max_prompt_tokens: int,
    count_tokens: Callable[[str], int],
    template: str,
    cut_tokens_from_start: Callable[[str, int], str] | None = None,
) -> tuple[list[dict[str, Any]], PairStats]:
    """Fit every prompt into ``max_prompt_tokens`` with the project's truncation helper; count cuts.

    Args:
        rows: Weighted pairs (``prompt``, ``weight``, ...); they are not modified.
        max_prompt_tokens: The token budget of a prompt.
        count_tokens: Counts the tokens of a text (as the trainer will).
        template: The prompt template the prompts were rendered with; an over-long prompt that follows
            it has its post cut (:func:`rluf_ray.common.text.fit_prompt`).
        cut_tokens_from_start: ``(text, n)`` -> the end of ``text`` that fits ``n`` tokens, for
            over-long prompts that do not follow the template; None makes those an error.

    Returns:
        Copies of the rows with fitted prompts (in order), and the counts (pairs, truncated,
        off-template, zero-weight).

    Raises:
        RlufError: If an over-long prompt does not follow the template and ``cut_tokens_from_start``
            is None.
    """
    head, tail = split_template(template)
    out: list[dict[str, Any]] = []
    stats = PairStats()
    for row in rows:
        prompt = row["prompt"]
        if count_tokens(prompt) > max_prompt_tokens:
            stats.truncated_prompts += 1
            if prompt.startswith(head) and prompt.endswith(tail) and len(prompt) >= len(head) + len(tail):
                post = prompt[len(head) : len(prompt) - len(tail)]
                prompt = fit_prompt(post, max_prompt_tokens, count_tokens, template).prompt
            else:
                stats.off_template_prompts += 1
                if cut_tokens_from_start is None:
                    raise RlufError("an over-long prompt does not follow data.prompt_template")
                prompt = cut_tokens_from_start(prompt, max_prompt_tokens)
        stats.pairs += 1
        stats.zero_weight += float(row["weight"]) == 0.0
        out.append({**row, "prompt": prompt})
    return out, stats


def tokenizer_counters(tokenizer: Any) -> tuple[Callable[[str], int], Callable[[str, int], str]]:
    """Make (count_tokens, keep_end) for a HF tokenizer, counting special tokens as TRL does.

    ``keep_end(text, n)`` keeps the last tokens of ``text``, leaving room for the special tokens the
    count adds, to fit a budget of ``n``: the ``cut_tokens_from_start`` of :func:`fit_pair_prompts`.

    Args:
        tokenizer: A Hugging Face tokenizer (callable, with ``decode``).

    Returns:
        The two functions, ``count_tokens(text)`` and ``keep_end(text, n)``.
    """

    def count(text: str) -> int:
        return len(tokenizer(text)["input_ids"])

    def keep_end(text: str, n: int) -> str:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        specials = count("") or 0
        return tokenizer.decode(ids[-max(1, n - specials) :])

    return count, keep_end


def drop_zero_weight_pairs(pairs: Iterable[Mapping[str, Any]]) -> tuple[list[dict[str, Any]], int]:
    """The pairs without their zero-weight ones (order kept), and how many were dropped.

    The one place zero-weight pairs are dropped (``dpo.drop_zero_weight``): before :func:`arm_rows`
    makes each arm's rows, so both arms train on exactly the same pairs in the same order and take
    the same number of steps (the ``dpo`` arm's weights are all 1.0 after it: a filter there would
    find none).

    Args:
        pairs: Weighted pairs, each with a ``weight``.

    Returns:
        The pairs of non-zero weight, and the number of pairs dropped.
    """
    rows = list(pairs)
    kept = [dict(r) for r in rows if float(r["weight"]) != 0.0]
    return kept, len(rows) - len(kept)


def arm_rows(pairs: Iterable[Mapping[str, Any]], arm: str) -> list[dict[str, Any]]:
    """The rows one training arm sees, from the same fitted pairs (the input is not changed).

    ``cfa`` keeps the weights; ``dpo`` (plain DPO) sets every weight to 1.0. Zero-weight pairs are
    dropped before, for both arms alike (:func:`drop_zero_weight_pairs`).

    Args:
        pairs: The fitted weighted pairs every arm trains on.
        arm: One of ``rluf_ray.arms.TRAIN_ARMS``.

    Returns:
        Copies of the pairs, in order, with the arm's weights.
    """
    if arm not in TRAIN_ARMS:
        raise ValueError(f"unknown arm {arm!r}; expected one of {', '.join(TRAIN_ARMS)}")
    rows = [dict(r) for r in pairs]
    if arm == "dpo":
        for r in rows:
            r["weight"] = 1.0
    return rows
