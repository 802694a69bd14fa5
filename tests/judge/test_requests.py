"""Judge templates as strings (pure): parsing, filling, rendering, request de-duplication."""

from __future__ import annotations

import pytest

from rluf_ray.judge.keys import answer_key
from rluf_ray.judge.requests import (
    DEFAULT_TEMPLATES,
    SHIPPED_TEMPLATES,
    Template,
    fill,
    pairwise_request,
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
    req = score_request(
        answer_key("p1", "a"), "post with {braces} and {answer}", "the ref", "my answer", "score_v1"
    )
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


V2_RUBRIC = """# rubric_v2: no reference
=== system ===
Rate.
=== user ===
Post: {post}
Cand: {answer}
{"accuracy": 7.5}
"""


def test_requests_carry_the_chosen_version_and_default_to_the_originals():
    assert score_request("k", "p", "r", "a").version == "score_v2"
    assert rubric_request("k", "p", "r", "a").version == "rubric_v2"
    assert score_request("k", "p", "r", "a", "score_v1").version == "score_v1"
    assert rubric_request("k", "p", "r", "a", "rubric_v1").version == "rubric_v1"
    assert pairwise_request("k", "i", "x", "o1", "o2", "ref", "pairwise_v1").version == "pairwise_v1"
    for task, default in DEFAULT_TEMPLATES.items():
        assert default in SHIPPED_TEMPLATES[task]


def test_rubric_v2_renders_without_the_reference():
    req = rubric_request("k", "the post", "SECRET REFERENCE", "the cand", "rubric_v2")
    msgs = render(parse_template(V2_RUBRIC, "rubric_v2"), req)
    assert msgs[1]["content"] == 'Post: the post\nCand: the cand\n{"accuracy": 7.5}'
    assert "SECRET" not in msgs[0]["content"] + msgs[1]["content"]
    with pytest.raises(ValueError, match="rubric_v2"):  # a v1 request is not rendered with a v2 template
        render(parse_template(V2_RUBRIC, "rubric_v2"), rubric_request("k", "p", "r", "a", "rubric_v1"))
