"""Judge template files: every packaged template loads and uses its fields; rendering from files."""

from __future__ import annotations

import pytest

from rluf_ray.judge.requests import (
    DEFAULT_TEMPLATES,
    SHIPPED_TEMPLATES,
    TASK_FIELDS,
    pairwise_request,
    rubric_request,
    score_request,
)
from rluf_ray.judge.templates import load_template, render_request

HIDDEN = {"rubric_v2": {"reference"}}  # the original's evaluation does not show the reference


@pytest.mark.parametrize("task,version", [(t, v) for t, vs in sorted(SHIPPED_TEMPLATES.items()) for v in vs])
def test_packaged_templates_load_and_use_every_field(task, version):
    tpl = load_template(version)
    assert tpl.version == version
    assert tpl.system and tpl.user
    for name in TASK_FIELDS[task]:
        shown = "{" + name + "}" in tpl.user + tpl.system
        assert shown == (name not in HIDDEN.get(version, set())), (version, name)


def test_default_templates_are_shipped():
    assert all(DEFAULT_TEMPLATES[t] in vs for t, vs in SHIPPED_TEMPLATES.items())
    assert set(DEFAULT_TEMPLATES) == set(SHIPPED_TEMPLATES)


def test_score_v2_states_the_original_criteria_and_threshold():
    user = render_request(score_request("k", "the post", "the ref", "cand", "score_v2"))[1]["content"]
    for word in ("completeness", "accuracy", "conciseness", "language quality", "0.7", "Score:"):
        assert word in user
    assert "the post" in user and "the ref" in user and "cand" in user


def test_rubric_v2_hides_the_reference_and_asks_for_half_points():
    user = render_request(rubric_request("k", "the post", "SECRET REF", "cand", "rubric_v2"))[1]["content"]
    assert "SECRET REF" not in user and "the post" in user and "cand" in user
    assert "steps of 0.5" in user and '"accuracy"' in user  # the fake server keys on the JSON example
    v1 = render_request(rubric_request("k", "the post", "SECRET REF", "cand", "rubric_v1"))[1]["content"]
    assert "SECRET REF" in v1  # today's prompt stays available


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
    r = render_request(rubric_request("k", "post", "ref", "cand", "rubric_v1"))[1]["content"]
    assert '{"accuracy": 7' in r  # the JSON example survives rendering
    assert "cand" in r


def test_templates_from_another_directory_and_bad_versions(tmp_path):
    (tmp_path / "score_v1.txt").write_text("=== system ===\nS\n=== user ===\nA={answer}\n", encoding="utf-8")
    msgs = render_request(score_request("k", "p", "r", "xyz", "score_v1"), str(tmp_path))
    assert msgs[1] == {"role": "user", "content": "A=xyz"}
    with pytest.raises(ValueError):
        load_template("../etc/passwd")
    with pytest.raises(FileNotFoundError):
        load_template("score_v404")
