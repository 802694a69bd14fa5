"""Text helpers shared by every stage: answer normalisation and prompt fitting (truncation)."""

from __future__ import annotations

import re
import string
from collections.abc import Callable
from dataclasses import dataclass

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = str.maketrans("", "", string.punctuation)

DEFAULT_TEMPLATE = "Please summarize this text:\n{post}\nSummary:"


def normalize_answer(text: str) -> str:
    """Normalize an answer: lowercase, strip punctuation and the articles a/an/the, collapse whitespace.

    This is the normalisation of the original implementation.

    Args:
        text: The raw answer.

    Returns:
        The normalised answer (single spaces, no leading or trailing space).
    """
    text = text.lower().translate(_PUNCT)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


@dataclass(frozen=True)
class FittedPrompt:
    """A prompt that fits the token budget, and whether its post body was cut."""

    prompt: str
    truncated: bool
    tokens: int


def render_prompt(post: str, template: str = DEFAULT_TEMPLATE) -> str:
    """Fill the template with the post.

    Args:
        post: The post body, inserted as is.
        template: The prompt template; every ``{post}`` in it is replaced (no other ``str.format``
            fields are interpreted).

    Returns:
        The rendered prompt.
    """
    return template.replace("{post}", post)


def fit_prompt(
    post: str,
    max_tokens: int,
    count_tokens: Callable[[str], int],
    template: str = DEFAULT_TEMPLATE,
) -> FittedPrompt:
    """Render ``template`` with ``post``, cutting the end of the post until it fits ``max_tokens``.

    The instruction and the closing answer cue (e.g. "\\nSummary:") always survive: only the post
    body is shortened, at a word boundary where possible. This is the one truncation helper that
    every stage uses, so truncations are counted the same way everywhere.

    Args:
        post: The post body.
        max_tokens: The token budget of the whole rendered prompt.
        count_tokens: Counts the tokens of a text (the tokenizer of the model that gets the prompt).
        template: The prompt template, with ``{post}`` where the post goes.

    Returns:
        The fitted prompt, whether the post was cut, and its token count.

    Raises:
        ValueError: If the template without any post already exceeds ``max_tokens``.
    """
    full = render_prompt(post, template)
    n = count_tokens(full)
    if n <= max_tokens:
        return FittedPrompt(full, False, n)
    empty = count_tokens(render_prompt("", template))
    if empty > max_tokens:
        raise ValueError(f"the prompt template alone needs {empty} tokens, more than the budget {max_tokens}")
    # Binary search on the number of characters of the post that we keep.
    lo, hi = 0, len(post)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if count_tokens(render_prompt(_cut(post, mid), template)) <= max_tokens:
            lo = mid
        else:
            hi = mid - 1
    kept = _cut(post, lo)
    prompt = render_prompt(kept, template)
    return FittedPrompt(prompt, True, count_tokens(prompt))


def _cut(post: str, n_chars: int) -> str:
    """The first ``n_chars`` of the post, backed off to a word boundary when one is near."""
    head = post[:n_chars]
    if n_chars < len(post) and not post[n_chars].isspace():
        space = head.rfind(" ")
        if space > n_chars * 0.8:
            head = head[:space]
    return head.rstrip()
