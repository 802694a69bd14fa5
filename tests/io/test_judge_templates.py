"""Judge template files: every packaged template loads and uses its fields; rendering from files."""

from __future__ import annotations

import pytest

from rluf_ray.core.judge_prompts import (
    DEFAULT_TEMPLATES,
    TASK_FIELDS,
    pairwise_request,
    rubric_request,
    score_request,
)
from rluf_ray.io.judge_templates import load_template, render_request


@pytest.mark.parametrize("task", sorted(DEFAULT_TEMPLATES))
def test_packaged_templates_load_and_use_every_field(task):
    tpl = load_template(DEFAULT_TEMPLATES[task])
    assert tpl.version == DEFAULT_TEMPLATES[task]
    assert tpl.system and tpl.user
    for name in TASK_FIELDS[task]:
        assert "{" + name + "}" in tpl.user


def test_score_render_fills_fields_and_keeps_foreign_braces():
    req = score_request("p1\x1fa", "post with {braces} and {answer}", "the ref", "my answer")
    msgs = render_request(req)
    assert [m["role"] for m in msgs] == ["system", "user"]
    user = msgs[1]["content"]
    assert "post with {braces} and {answer}" in user
    assert "the ref" in user and "my answer" in user
    assert "Score:" in user


def test_pairwise_and_rubric_render():
    pw = pairwise_request("k", "Summarize.", "some post", "one", "two", reference="ref")
    p = render_request(pw)[1]["content"]
    assert "## Response 1\none" in p and "## Response 2\ntwo" in p and "Preferred: 1" in p
    r = render_request(rubric_request("k", "post", "ref", "cand"))[1]["content"]
    assert '{"accuracy": 7' in r  # the JSON example survives rendering
    assert "cand" in r


def test_templates_from_another_directory_and_bad_versions(tmp_path):
    (tmp_path / "score_v1.txt").write_text("=== system ===\nS\n=== user ===\nA={answer}\n", encoding="utf-8")
    msgs = render_request(score_request("k", "p", "r", "xyz"), str(tmp_path))
    assert msgs[1] == {"role": "user", "content": "A=xyz"}
    with pytest.raises(ValueError):
        load_template("../etc/passwd")
    with pytest.raises(FileNotFoundError):
        load_template("score_v404")
