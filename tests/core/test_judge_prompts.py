"""Judge templates: every packaged template loads, renders all fields, leaves other braces alone."""

from __future__ import annotations

import pytest

from rluf_ray.core.judge_prompts import (
    DEFAULT_TEMPLATES,
    TASK_FIELDS,
    fill,
    load_template,
    pairwise_request,
    render,
    rubric_request,
    score_request,
)


@pytest.mark.parametrize("task", sorted(DEFAULT_TEMPLATES))
def test_packaged_templates_load_and_use_every_field(task):
    tpl = load_template(DEFAULT_TEMPLATES[task])
    assert tpl.version == DEFAULT_TEMPLATES[task]
    assert tpl.system and tpl.user
    for name in TASK_FIELDS[task]:
        assert "{" + name + "}" in tpl.user


def test_score_render_fills_fields_and_keeps_foreign_braces():
    req = score_request("p1\x1fa", "post with {braces} and {answer}", "the ref", "my answer")
    msgs = render(req)
    assert [m["role"] for m in msgs] == ["system", "user"]
    user = msgs[1]["content"]
    # The post's literal "{answer}" is text of the post: substitution is one pass, not recursive.
    assert "post with {braces} and {answer}" in user
    assert "the ref" in user and "my answer" in user
    assert "Score:" in user
    assert req.version == "score_v1"


def test_pairwise_and_rubric_render():
    p = render(pairwise_request("k", "Summarize.", "some post", "one", "two", reference="ref"))[1]["content"]
    assert "## Response 1\none" in p and "## Response 2\ntwo" in p and "Preferred: 1" in p
    r = render(rubric_request("k", "post", "ref", "cand"))[1]["content"]
    assert '{"accuracy": 7' in r  # the JSON example survives rendering
    assert "cand" in r


def test_missing_field_is_an_error_and_bad_version_rejected():
    with pytest.raises(KeyError):
        fill("x {post} {answer}", {"post": "p"}, ("post", "answer"))
    with pytest.raises(ValueError):
        load_template("../etc/passwd")
