"""The judge providers by name: ``judge.provider`` picks one, and nothing outside this package looks
at the name.

A provider answers a run's requests (``judge``), says what they would cost (``dry_run``), and names
the judge settings its judgements depend on (``result_fields``) and the versions of its own rules
(``rule_versions``): both go into the plans and hashes of the stages that judge with it. Each provider lives in its own module and is loaded on first use, so this module imports
nothing of the judge package at run time and the config can take its names from here without an
import cycle.

Adding a provider is one new module with a class that has the :class:`Provider` members, plus one
line in :data:`PROVIDERS`; ``judge.provider`` then accepts the name (:data:`ProviderName` is built
from this mapping).
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol

from rluf_ray.errors import RlufError

if TYPE_CHECKING:
    from typing import TypeAlias

    from rluf_ray.config import JudgeConfig
    from rluf_ray.judge.requests import JudgeRequest, JudgeResult

PROVIDERS: dict[str, str] = {
    "offline": "rluf_ray.judge.provider_offline:OfflineProvider",
    "openai": "rluf_ray.judge.provider_openai:OpenAIProvider",
    "batch": "rluf_ray.judge.provider_batch:BatchProvider",
}
"""Provider name -> ``module:class`` of its implementation (loaded on first use)."""

if TYPE_CHECKING:
    ProviderName: TypeAlias = str
else:  # the names above as a Literal, so the config validates judge.provider against this registry
    ProviderName = Literal[tuple(PROVIDERS)]


@dataclass(frozen=True)
class JudgeContext:
    """Where one judge run happens, besides the judge section.

    Attributes:
        run: The run's name (the stage): it labels progress lines and dry runs, keys the budget
            actor's per-run dollar cap and names the Batch API rounds kept for resume.
        output_dir: The run's output directory; the judge cache lives there unless
            ``judge.cache_path`` is set.
        actors: How many real-time judge actors to start (``resources.judge_actors``).
        shared_mount: ``output_dir`` is a mount every node shares (``shared_output_dir``): the
            driver works on a copy of the cache in its own scratch and copies it back, so SQLite
            never sits on the shared mount.
    """

    run: str
    output_dir: str
    actors: int = 2
    shared_mount: bool = False


class Provider(Protocol):
    """What a judge provider offers the judge interface (``rluf_ray.judge.api``)."""

    name: str
    """Its name in :data:`PROVIDERS`."""
    result_fields: tuple[str, ...]
    """The ``judge`` fields its judgements depend on (besides ``provider``): a stage's plan holds them."""
    rule_versions: Mapping[str, str]
    """Task -> the version of the provider's own rule for that task, for each task whose rule changed
    since the first (the offline judge's rubric); a stage that asks the task hashes it, so results of an
    older rule are not reused. Empty for a provider whose judgements come from a model."""
    batch_provider: str | None
    """The provider that judges its requests when a stage asks for the Batch API (None: no batch mode;
    the request is judged by this provider as usual)."""

    def judge(
        self, section: JudgeConfig, requests: Sequence[JudgeRequest], ctx: JudgeContext
    ) -> tuple[list[JudgeResult], dict[str, Any]]:
        """Judge requests.

        Args:
            section: The judge config section.
            requests: Requests with unique keys.
            ctx: The run's context.

        Returns:
            One result per request, in their order (a failure is ``value=None`` with its reason),
            and the run's report: the cost ledger's figures, ``provider`` and ``budget_exhausted``.
        """
        ...

    def dry_run(
        self, section: JudgeConfig, requests: Sequence[JudgeRequest], ctx: JudgeContext
    ) -> dict[str, Any]:
        """What judging the requests would cost; calls nothing, writes nothing.

        Args:
            section: The judge config section.
            requests: Requests with unique keys.
            ctx: The run's context (``ctx.run`` is the estimate's ``stage``).

        Returns:
            ``stage``, ``provider``, ``requests``, ``calls``, ``cached``, the token estimates and
            ``dollars`` (``rluf_ray.judge.cost.format_dry_run`` prints it).
        """
        ...


def provider_names() -> list[str]:
    """The registered provider names.

    Returns:
        The names in :data:`PROVIDERS`, in registry order.
    """
    return list(PROVIDERS)


@functools.cache
def get_provider(name: str) -> Provider:
    """The provider registered under ``name``.

    Args:
        name: A provider name (``judge.provider``).

    Returns:
        An instance of the provider's class.

    Raises:
        RlufError: ``name`` is not registered (the message lists the registered names).
    """
    if name not in PROVIDERS:
        raise RlufError(f"judge.provider: unknown provider {name!r} (valid: {', '.join(PROVIDERS)})")
    module, _, attr = PROVIDERS[name].partition(":")
    provider: Provider = getattr(importlib.import_module(module), attr)()
    return provider


def select_provider(name: str, use_batch_api: bool = False) -> Provider:
    """The provider that judges a stage's requests.

    Args:
        name: The configured provider (``judge.provider``).
        use_batch_api: The stage asks for the Batch API (``feedback.use_batch_api``,
            ``evaluation.use_batch_api``).

    Returns:
        The provider's batch provider when asked for one and it has one, else the provider itself.
    """
    provider = get_provider(name)
    if use_batch_api and provider.batch_provider is not None:
        return get_provider(provider.batch_provider)
    return provider


def result_settings(section: JudgeConfig, tasks: Iterable[str] = ()) -> dict[str, Any]:
    """The judge settings a judgement depends on under the configured provider.

    Args:
        section: The judge config section.
        tasks: The task kinds the stage asks (``score``, ``pairwise``, ``rubric``): the provider's rule
            version of each that has one is a setting too.

    Returns:
        ``{"provider": name, field: value, ...}`` for the provider's ``result_fields``, then
        ``"rule.<task>": version`` for each of ``tasks`` in the provider's ``rule_versions``.
    """
    provider = get_provider(section.provider)
    fields = {f: getattr(section, f) for f in provider.result_fields}
    rules = {f"rule.{t}": provider.rule_versions[t] for t in tasks if t in provider.rule_versions}
    return {"provider": provider.name, **fields, **rules}


def result_keys() -> tuple[str, ...]:
    """The judge config keys that may change a judgement under some provider.

    Returns:
        ``judge.provider`` and every provider's ``result_fields`` as dotted keys, each once.
    """
    fields = (f for name in PROVIDERS for f in get_provider(name).result_fields)
    return ("judge.provider", *dict.fromkeys(f"judge.{f}" for f in fields))
