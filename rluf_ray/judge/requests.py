"""Judge requests, results, and templates parsed from a string and rendered (pure; the files under
``rluf_ray/prompts`` are read by ``rluf_ray.judge.templates``).

A template has optional ``#`` comment lines, then a ``=== system ===`` and a ``=== user ===``
section. ``{name}`` placeholders are filled from the request's fields; only names the task declares are
substituted, so braces inside posts or in JSON examples are left alone. The template's file stem
(``score_v1``) is its version and is part of every cache key.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

Task = Literal["score", "pairwise", "rubric"]
TASK_FIELDS: dict[str, tuple[str, ...]] = {
    "score": ("post", "reference", "answer"),
    "pairwise": ("instruction", "input", "output_1", "output_2"),
    "rubric": ("post", "reference", "answer"),
}
DEFAULT_TEMPLATES: dict[str, str] = {"score": "score_v2", "pairwise": "pairwise_v1", "rubric": "rubric_v2"}
"""The version a request without an explicit one is rendered with (the config's defaults, ``judge.templates``)."""
SHIPPED_TEMPLATES: dict[str, tuple[str, ...]] = {
    "score": ("score_v1", "score_v2"),
    "pairwise": ("pairwise_v1",),
    "rubric": ("rubric_v1", "rubric_v2"),
}
"""The packaged versions per task. ``*_v2`` follow the original's criteria and scales (score: completeness,
accuracy, conciseness, language quality, acceptable at 0.7; rubric: 0 to 10 in steps of 0.5, no
reference shown); ``*_v1`` are this project's first prompts, kept selectable."""

_SECTION = re.compile(r"^=== (system|user) ===[ \t]*$", re.MULTILINE)
_PLACEHOLDER = re.compile(r"\{([a-z_0-9]+)\}")
_VERSION = re.compile(r"[a-z0-9_]+")


@dataclass(frozen=True)
class JudgeRequest:
    """One judge question: the task, the caller's id for it, and the template fields.

    ``reference`` is used by the offline judge (the reference summary to compare with); the API judge
    sees only what the template renders.
    """

    task: Task
    key: str
    fields: dict[str, str]
    template: str | None = None

    @property
    def version(self) -> str:
        """The template version (file stem) this request is rendered with."""
        return self.template or DEFAULT_TEMPLATES[self.task]


@dataclass
class JudgeResult:
    """The outcome of one request: a parsed value, or None with the reason it is missing."""

    key: str
    value: Any = None
    error: str | None = None
    raw: str | None = None
    attempts: int = 0
    cached: bool = False
    prompt_tokens: int = 0
    completion_tokens: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class Template:
    """A parsed template file."""

    version: str
    system: str
    user: str


def check_version(version: str) -> str:
    """``version`` if it is a safe template name (lowercase letters, digits, ``_``), else ValueError.

    Args:
        version: A template version (a file stem such as ``score_v2``).

    Returns:
        ``version`` unchanged.

    Raises:
        ValueError: ``version`` has other characters (a path, a dot, upper case) or is empty.
    """
    if not _VERSION.fullmatch(version):
        raise ValueError(f"bad template version {version!r}")
    return version


def parse_template(text: str, version: str) -> Template:
    """Split a template's text into its system and user sections.

    Args:
        text: The template file's text: optional ``#`` comment lines, then ``=== system ===`` and
            ``=== user ===`` sections.
        version: The template's version (its file stem).

    Returns:
        The parsed template; each section's text without its leading and trailing newlines.

    Raises:
        ValueError: The text lacks one of the two sections, or ``version`` is not a safe name.
    """
    parts = _SECTION.split(text)
    # parts = [preamble, name, body, name, body]
    sections = {parts[i]: parts[i + 1].strip("\n") for i in range(1, len(parts) - 1, 2)}
    if set(sections) != {"system", "user"}:
        raise ValueError(f"template {version}: needs exactly a system and a user section")
    return Template(check_version(version), sections["system"], sections["user"])


def fill(text: str, fields: dict[str, str], allowed: tuple[str, ...]) -> str:
    """Replace ``{name}`` for each allowed name; a missing field is an error, other braces stay.

    Args:
        text: A template section.
        fields: The request's fields by name.
        allowed: The names the task declares (``TASK_FIELDS[task]``); other placeholders stay as they
            are.

    Returns:
        ``text`` with every allowed placeholder replaced by its field.

    Raises:
        KeyError: An allowed placeholder has no field.
    """

    def sub(m: re.Match[str]) -> str:
        name = m.group(1)
        if name not in allowed:
            return m.group(0)
        if name not in fields:
            raise KeyError(f"template field {name!r} missing")
        return str(fields[name])

    return _PLACEHOLDER.sub(sub, text)


def render(template: Template, request: JudgeRequest) -> list[dict[str, str]]:
    """The chat messages of a request rendered with ``template`` (which must be the request's version).

    Args:
        template: The parsed template of the request's version.
        request: The request whose fields fill the template.

    Returns:
        Two messages, ``system`` then ``user`` (``role``, ``content``).

    Raises:
        ValueError: ``template`` is another version than the request's.
        KeyError: A field the template uses is missing.
    """
    if template.version != request.version:
        raise ValueError(f"template {template.version} given for a {request.version} request")
    allowed = TASK_FIELDS[request.task]
    return [
        {"role": "system", "content": fill(template.system, request.fields, allowed)},
        {"role": "user", "content": fill(template.user, request.fields, allowed)},
    ]


def score_request(
    key: str, post: str, reference: str, answer: str, template: str | None = None
) -> JudgeRequest:
    """A request to score ``answer`` against the post and the reference, in [0, 1].

    Args:
        key: The caller's id of the request (e.g. ``rluf_ray.judge.keys.answer_key``).
        post: The source post that was summarised.
        reference: The reference summary.
        answer: The answer text shown to the judge.
        template: A version of the score task; None: the default (:data:`DEFAULT_TEMPLATES`).

    Returns:
        The ``score`` request.
    """
    return JudgeRequest("score", key, {"post": post, "reference": reference, "answer": answer}, template)


def pairwise_request(
    key: str,
    instruction: str,
    input_text: str,
    output_1: str,
    output_2: str,
    reference: str = "",
    template: str | None = None,
) -> JudgeRequest:
    """An AlpacaFarm-format pairwise request; ``reference`` only guides the offline judge.

    Args:
        key: The caller's id of the request (``pair_key`` or ``comparison_key`` of
            ``rluf_ray.judge.keys``).
        instruction: The task instruction (:func:`instruction_of` the prompt template).
        input_text: The instruction's input (the post); the request field ``input``.
        output_1: The answer shown first.
        output_2: The answer shown second.
        reference: The reference summary (empty: none; the offline judge then fails the request).
        template: A version of the pairwise task; None: the default.

    Returns:
        The ``pairwise`` request.
    """
    fields = {
        "instruction": instruction,
        "input": input_text,
        "output_1": output_1,
        "output_2": output_2,
        "reference": reference,
    }
    return JudgeRequest("pairwise", key, fields, template)


def instruction_of(template: str) -> str:
    """The instruction part of a prompt template (the text before ``{post}``) that heads a pairwise request.

    Args:
        template: The data's prompt template (``data.prompt_template``) with a ``{post}`` placeholder.

    Returns:
        The text before ``{post}``, stripped; ``"Summarize the following text."`` when it is empty.
    """
    head = template.split("{post}", 1)[0].strip()
    return head or "Summarize the following text."


def rubric_request(
    key: str, post: str, reference: str, answer: str, template: str | None = None
) -> JudgeRequest:
    """A request for the 4-axis rubric of ``answer`` (``rubric_v2`` does not show ``reference`` to an
    API judge; the offline judge always compares with it).

    Args:
        key: The caller's id of the request (``rubric_key`` or ``seeded_rubric_key`` of
            ``rluf_ray.judge.keys``).
        post: The source post.
        reference: The reference summary.
        answer: The prediction to grade.
        template: A version of the rubric task; None: the default.

    Returns:
        The ``rubric`` request.
    """
    return JudgeRequest("rubric", key, {"post": post, "reference": reference, "answer": answer}, template)


def unique_requests(reqs: Iterable[JudgeRequest]) -> list[JudgeRequest]:
    """The requests with duplicate keys dropped (the first of each key kept, in order).

    Args:
        reqs: Requests, possibly with repeated keys.

    Returns:
        The requests with unique keys, in their first order.
    """
    seen: set[str] = set()
    out = []
    for r in reqs:
        if r.key in seen:
            continue
        seen.add(r.key)
        out.append(r)
    return out
