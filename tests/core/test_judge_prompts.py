"""Judge templates as strings (pure): parsing, filling, rendering, request de-duplication."""

from __future__ import annotations

import pytest

from rluf_ray.core.judge_keys import answer_key
from rluf_ray.core.judge_prompts import (
    Template,
    fill,
    parse_template,
    render,
    rubric_request,
    score_request,
    unique_requests,
)

TEXT = """# score_v9: a comment line, and a brace {post} in the comment is not part of any section
=== system ===
You grade.
=== user ===
Post: {post}
Ref: {reference}
Cand: {answer}
Score:
"""


def test_parse_template_splits_sections_and_drops_the_preamble():
    tpl = parse_template(TEXT, "score_v9")
    assert tpl == Template("score_v9", "You grade.", "Post: {post}\nRef: {reference}\nCand: {answer}\nScore:")


@pytest.mark.parametrize(
    "text",
    ["=== system ===\nonly a system\n", "no sections at all", "=== user ===\nu\n=== user ===\nv\n"],
)
def test_parse_template_needs_exactly_system_and_user(text):
    with pytest.raises(ValueError, match="system and a user"):
        parse_template(text, "score_v9")


def test_parse_template_rejects_an_unsafe_version():
    with pytest.raises(ValueError, match="bad template version"):
        parse_template(TEXT, "../etc/passwd")


def test_render_fills_fields_and_keeps_foreign_braces():
    req = score_request(answer_key("p1", "a"), "post with {braces} and {answer}", "the ref", "my answer")
    tpl = parse_template(TEXT, "score_v1")  # the request's version
    msgs = render(tpl, req)
    assert msgs == [
        {"role": "system", "content": "You grade."},
        # The post's literal "{answer}" is text of the post: substitution is one pass, not recursive.
        {
            "role": "user",
            "content": "Post: post with {braces} and {answer}\nRef: the ref\nCand: my answer\nScore:",
        },
    ]
    assert req.version == "score_v1"


def test_render_refuses_a_template_of_another_version():
    req = rubric_request("k", "post", "ref", "cand")
    with pytest.raises(ValueError, match="score_v9"):
        render(parse_template(TEXT, "score_v9"), req)


def test_missing_field_is_an_error():
    with pytest.raises(KeyError):
        fill("x {post} {answer}", {"post": "p"}, ("post", "answer"))
    assert fill("x {post} {other}", {"post": "p"}, ("post",)) == "x p {other}"


def test_unique_requests_keeps_the_first_of_each_key_in_order():
    a1, b, a2 = (
        score_request("a", "p", "r", "1"),
        score_request("b", "p", "r", "2"),
        score_request("a", "p", "r", "3"),
    )
    assert unique_requests([a1, b, a2]) == [a1, b]
