"""The judge interface the stages call; the provider (``judge.provider``, ``rluf_ray.judge.registry``)
does the work.

* :func:`judge`: requests in, results out (each key judged once), with the run's report.
* :func:`dry_run`: what :func:`judge` would spend; calls nothing.
* :func:`score_answers`: the score task over answer rows, as SCORE_SCHEMA rows.
* :class:`JudgePlan` (:func:`judge_plan`): what a stage that judges keeps in its typed plan, the
  provider's result settings (:func:`result_settings`; the plan's key hashes them) and, operational,
  the judge section and the run's context that the calls above take.
* :data:`JUDGE_RESULT_KEYS`: every judge key that may change a judgement under some provider.

A request is one of the task kinds :data:`Task` (``score``, ``pairwise``, ``rubric``), built with
``rluf_ray.judge.requests`` (``score_request``, ``pairwise_request``, ``rubric_request``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

from rluf_ray.config.plan_keys import operational, plan_type
from rluf_ray.errors import RlufError
from rluf_ray.judge.registry import JudgeContext, result_keys, result_settings, select_provider
from rluf_ray.judge.requests import JudgeRequest, JudgeResult, Task, unique_requests
from rluf_ray.judge.scoring import score_requests, score_rows

if TYPE_CHECKING:
    from rluf_ray.config import JudgeConfig, RlufConfig

log = logging.getLogger("rluf.judge")

__all__ = [
    "JUDGE_RESULT_KEYS",
    "JudgeContext",
    "JudgePlan",
    "Judgement",
    "Task",
    "dry_run",
    "judge",
    "judge_plan",
    "warn_missing",
    "result_settings",
    "score_answers",
    "scores_table",
]

JUDGE_RESULT_KEYS: tuple[str, ...] = result_keys()
"""The judge keys that change a judgement under some provider (the rest change speed, limits or where
the cache lives); a stage's :class:`JudgePlan` hashes those of its provider."""


JudgeSetting = tuple[str, str | float | bool | None]
"""One judge setting a judgement depends on: (field, value)."""


@plan_type
class JudgePlan:
    """The judge of a stage's plan: the settings its judgements depend on under the configured provider
    (``settings``, hashed: ``("provider", name)`` and the provider's result fields), and what the
    calls of this module take (operational): the judge section (limits, retries, prices, the cache;
    its result fields are the settings above) and where the run happens."""

    settings: tuple[JudgeSetting, ...]
    section: JudgeConfig = operational()
    output_dir: str = operational()  # the cache's home unless judge.cache_path names one
    actors: int = operational()  # real-time judge actors (resources.judge_actors)
    shared_mount: bool = operational(default=False)  # shared_output_dir: the cache is worked on locally

    def context(self, run: str) -> JudgeContext:
        """The context of one judge run of this plan.

        Args:
            run: The run's name (the stage).

        Returns:
            The context the calls of this module take.
        """
        return JudgeContext(run, self.output_dir, self.actors, self.shared_mount)


def judge_plan(cfg: RlufConfig, tasks: Sequence[Task], section: JudgeConfig | None = None) -> JudgePlan:
    """The judge of a stage's plan, from the config.

    Args:
        cfg: The config (``output_dir``, ``shared_output_dir``, ``resources.judge_actors``).
        tasks: The task kinds the stage asks: the provider's rule versions of these are hashed too
            (:func:`result_settings`).
        section: The judge section the stage judges with; None for ``cfg.judge``.

    Returns:
        The judge's plan.
    """
    section = cfg.judge if section is None else section
    return JudgePlan(
        settings=tuple(result_settings(section, tasks).items()),
        section=section,
        output_dir=cfg.output_dir,
        actors=cfg.resources.judge_actors,
        shared_mount=cfg.shared_output_dir,
    )


class Judgement(NamedTuple):
    """The outcome of one judge run."""

    results: list[JudgeResult]
    """One result per unique request key, in the order of first appearance."""
    report: dict[str, Any]
    """The run's cost ledger (calls, cache hits, tokens, dollars, scored, missing by reason),
    ``provider`` and ``budget_exhausted``; the real-time pool adds its ``budget`` stats, the Batch API
    ``mode: batch``."""


def judge(
    section: JudgeConfig, requests: Sequence[JudgeRequest], ctx: JudgeContext, use_batch_api: bool = False
) -> Judgement:
    """Judge every request once (duplicate keys are judged once).

    Args:
        section: The judge config section (its ``provider`` picks who judges).
        requests: Requests of any task kinds.
        ctx: The run's name, output directory and actor count.
        use_batch_api: Judge through the provider's Batch API mode where it has one (the stages
            pass ``feedback.use_batch_api`` / ``evaluation.use_batch_api``).

    Returns:
        The results (a failed request has ``value=None`` and its reason in ``error``, never a
        default value) and the run's report.
    """
    unique = unique_requests(requests)
    results, report = select_provider(section.provider, use_batch_api).judge(section, unique, ctx)
    warn_missing(ctx.run, len(unique), report)
    return Judgement(results, report)


def warn_missing(run: str, requests: int, report: Mapping[str, Any]) -> bool:
    """Log one console warning when judge calls were recorded missing (nothing when none were).

    Args:
        run: The run's name (the stage), e.g. ``feedback``.
        requests: How many unique requests were judged.
        report: The run's report (its ``missing`` count and ``missing_reasons`` by kind).

    Returns:
        Whether a warning was logged.
    """
    missing = int(report.get("missing") or 0)
    if missing <= 0:
        return False
    reasons = ", ".join(f"{k} {v}" for k, v in sorted((report.get("missing_reasons") or {}).items()))
    log.warning("judge %s: %d of %d calls recorded missing (%s); a rerun retries only those",
                run, missing, requests, reasons or "no reason recorded")  # fmt: skip
    return True


def dry_run(
    section: JudgeConfig, requests: Sequence[JudgeRequest], ctx: JudgeContext, use_batch_api: bool = False
) -> dict[str, Any]:
    """What :func:`judge` would spend on these requests; calls nothing and creates no cache file.

    Args:
        section: The judge config section.
        requests: The requests a run would judge.
        ctx: The run's context (``ctx.run`` names the stage in the estimate).
        use_batch_api: As for :func:`judge`.

    Returns:
        ``stage``, ``provider``, ``requests``, ``calls`` (cache hits excluded), ``cached``, estimated
        ``prompt_tokens``, at most ``completion_tokens`` and ``dollars`` (``format_dry_run`` prints it).
    """
    return select_provider(section.provider, use_batch_api).dry_run(section, unique_requests(requests), ctx)


def score_answers(
    section: JudgeConfig,
    rows: Iterable[Mapping[str, Any]],
    ctx: JudgeContext,
    raise_on_budget: bool = True,
    template: str | None = None,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Judge-score unique answers against their references (the score task).

    Args:
        section: The judge config section.
        rows: Rows with ``prompt_id``, ``post``, ``reference`` and ``answer``.
        ctx: The run's context.
        raise_on_budget: Raise when ``judge.max_dollars`` stops the run.
        template: The prompt version (None: the section's ``templates.score``); a stage passes the
            one its plan hashes.

    Returns:
        SCORE_SCHEMA rows (prompt_id, answer, score, error; a failed call is ``score=None`` with its
        reason, never 0), one per unique answer, and the run's report.

    Raises:
        RlufError: ``judge.max_dollars`` stopped the run and ``raise_on_budget`` is set; the finished
            calls are in the cache by then, so a rerun with a higher cap resumes at no cost.
    """
    reqs = unique_requests(score_requests(rows, section.templates.score if template is None else template))
    results, report = judge(section, reqs, ctx)
    out = score_rows(reqs, results)
    if report["budget_exhausted"] and raise_on_budget:
        raise RlufError(
            f"judge: judge.max_dollars={section.max_dollars} reached after ${report['dollars']:.4f}: "
            f"{report['scored']} of {len(out)} scored; finished calls are cached, raise the cap and rerun"
        )
    return out, report


def scores_table(rows: Sequence[Mapping[str, Any]]) -> Any:
    """SCORE_SCHEMA rows as a table.

    Args:
        rows: Rows from :func:`score_answers`.

    Returns:
        A ``pyarrow.Table`` with ``rluf_ray.schema.SCORE_SCHEMA``.
    """
    import pyarrow as pa

    from rluf_ray.schema import SCORE_SCHEMA

    return pa.Table.from_pylist([dict(r) for r in rows], schema=SCORE_SCHEMA)
