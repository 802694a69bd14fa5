"""normalize_answer and fit_prompt, with hand-written expectations."""

from __future__ import annotations

import pytest

from rluf_ray.common.text import DEFAULT_TEMPLATE, fit_prompt, normalize_answer, render_prompt


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("The Cat sat on a mat.", "cat sat on mat"),
        ("  An   apple,\tthe\npear!  ", "apple pear"),
        ("Theory of an Anthem", "theory of anthem"),  # articles only as whole words
        ("Nora Quinn opened the bakery in Ashford on Monday; 40 people came.",
         "nora quinn opened bakery in ashford on monday 40 people came"),
        ("", ""),
    ],
)  # fmt: skip
def test_normalize_answer(raw: str, expected: str) -> None:
    assert normalize_answer(raw) == expected


def _words(text: str) -> int:
    return len(text.split())


def test_fit_prompt_keeps_short_prompts() -> None:
    fitted = fit_prompt("one two three", 50, _words)
    assert fitted.prompt == "Please summarize this text:\none two three\nSummary:"
    assert not fitted.truncated
    assert fitted.tokens == 8


def test_fit_prompt_cuts_the_post_body_only() -> None:
    post = " ".join(f"w{i}" for i in range(100))
    fitted = fit_prompt(post, 20, _words)
    assert fitted.truncated
    assert fitted.prompt.startswith("Please summarize this text:\nw0 w1 w2")
    assert fitted.prompt.endswith("\nSummary:")
    assert fitted.tokens == 20 == _words(fitted.prompt)  # 5 template words + 15 post words
    assert fitted.prompt == render_prompt(" ".join(f"w{i}" for i in range(15)), DEFAULT_TEMPLATE)


def test_fit_prompt_character_counter_and_custom_template() -> None:
    fitted = fit_prompt("abcdefghij", 12, len, template="<{post}>")
    assert fitted.prompt == "<abcdefghij>" and not fitted.truncated
    fitted = fit_prompt("abcdefghij", 8, len, template="<{post}>")
    assert fitted.prompt == "<abcdef>" and fitted.truncated and fitted.tokens == 8


def test_fit_prompt_template_too_long() -> None:
    with pytest.raises(ValueError, match="template alone"):
        fit_prompt("x", 2, _words)


def test_truncations_are_counted() -> None:
    posts = ["short", " ".join(["long"] * 50), "also short", " ".join(["long"] * 30)]
    results = [fit_prompt(p, 15, _words) for p in posts]
    assert sum(r.truncated for r in results) == 2
