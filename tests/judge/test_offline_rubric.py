"""The offline rubric's four measures separate: crafted answers with one defect each lower the axis
that defect belongs to and leave the others about where they were, on a hand-written post and on the
embedded demo's documents."""

from __future__ import annotations

import statistics

import pytest

from rluf_ray.data.demo import COUNTS, FILLERS, make_doc
from rluf_ray.judge.offline import OfflineJudge
from rluf_ray.judge.offline_rubric import content_tokens, is_wordlike, rubric_axes, stem
from rluf_ray.judge.parsing import RUBRIC_AXES
from rluf_ray.judge.requests import rubric_request

POST = (
    "The Riverside food bank opened a second branch in Millbrook on Saturday. Volunteers said 300 "
    "families signed up in the first week. Last year the original branch served 120 families. The "
    "mayor, Dana Ortiz, cut the ribbon and thanked the volunteers."
)
HEAD = "The Riverside food bank opened a second branch in Millbrook on Saturday"
REF = f"{HEAD}; 300 families signed up in its first week."
ANSWERS = {
    "faithful": (
        "Riverside's food bank opened a second branch in Millbrook on Saturday, and 300 families signed up "
        "in the first week."
    ),
    "wrong_number": f"{HEAD}; 120 families signed up in its first week.",  # 120: last year's, in the post
    "partial": "The Riverside food bank opened a second branch in Millbrook.",
    "padded": f"{REF} Critics argue that modern architecture rarely pleases anyone and coffee keeps rising.",
    "repetitive": f"{HEAD}; 300 families signed up, 300 families signed up, 300 families signed up.",
    "garbled": (
        "Th3 Riverside fo#d bank opened a secnd brnch in Millbrook on Saturday; 300 families sgnd up in its "
        "frst week."
    ),
    "truncated": f"{HEAD}; 300 families signed up in",
}


def _scores(answer: str, reference: str = REF, post: str = POST) -> dict[str, float]:
    return OfflineJudge().judge_one(rubric_request("k", post, reference, answer)).value


@pytest.fixture(scope="module")
def crafted() -> dict[str, dict[str, float]]:
    return {name: _scores(answer) for name, answer in ANSWERS.items()}


def test_a_faithful_full_answer_scores_high_on_every_axis(crafted):
    assert all(v >= 9.0 for v in crafted["faithful"].values()), crafted["faithful"]
    assert _scores(REF) == dict.fromkeys(RUBRIC_AXES, 10.0)  # the reference itself


def test_a_contradicted_number_costs_accuracy_not_completeness(crafted):
    full, wrong = crafted["faithful"], crafted["wrong_number"]
    assert wrong["accuracy"] <= full["accuracy"] - 3  # one of five key facts wrong, counted twice
    assert abs(wrong["completeness"] - full["completeness"]) <= 1.5
    assert wrong["expression"] == full["expression"]
    # an invented number (in neither the post nor the reference) is as wrong as a confused one
    invented = _scores(ANSWERS["wrong_number"].replace("120", "450"))
    assert invented["accuracy"] == wrong["accuracy"]


def test_a_partial_answer_costs_completeness_not_accuracy(crafted):
    part = crafted["partial"]
    assert part["completeness"] <= crafted["faithful"]["completeness"] - 3
    assert part["accuracy"] >= 9.0 and part["relevance"] >= 9.0


def test_off_post_padding_costs_relevance(crafted):
    pad = crafted["padded"]
    assert pad["relevance"] <= crafted["faithful"]["relevance"] - 3
    assert pad["accuracy"] >= 9.0 and pad["completeness"] >= 9.0
    # padding taken from the post itself is grounded
    assert _scores(REF + " The mayor cut the ribbon.")["relevance"] == 10.0


@pytest.mark.parametrize("name", ["repetitive", "garbled", "truncated"])
def test_repetition_garbage_and_a_cut_off_ending_cost_expression(crafted, name):
    bad, full = crafted[name], crafted["faithful"]
    assert bad["expression"] <= full["expression"] - 2.5, bad
    # expression is the axis this defect costs most
    drops = {axis: full[axis] - bad[axis] for axis in RUBRIC_AXES}
    assert max(drops, key=drops.get) == "expression", drops


def test_length_far_from_the_reference_costs_expression():
    assert (
        rubric_axes(POST, REF, POST)["expression"] < 1.0
    )  # the whole post: over twice the reference's words
    assert _scores("Riverside food bank.")["expression"] <= 5.0  # a sixth of them


def test_each_defect_lowers_its_own_axis_most(crafted):
    target = {"wrong_number": "accuracy", "partial": "completeness", "padded": "relevance"}
    for name, axis in target.items():
        drops = {a: crafted["faithful"][a] - crafted[name][a] for a in RUBRIC_AXES}
        assert max(drops, key=drops.get) == axis, (name, drops)


def test_names_in_the_post_are_no_contradiction_and_case_does_not_matter():
    # an extra name the post mentions is a true detail, not a wrong one
    assert _scores(REF[:-1] + ", said Dana Ortiz.")["accuracy"] == 10.0
    lower = REF.lower()
    assert _scores(lower)["accuracy"] == 10.0 and _scores(lower)["completeness"] == 10.0


def test_empty_answer_scores_zero():
    assert _scores("") == dict.fromkeys(RUBRIC_AXES, 0.0)


def test_tokens_stems_and_words():
    assert [t.stem for t in content_tokens("Nora's team opened 2 bakeries")] == [
        "nora",
        "team",
        "open",
        "2",
        "bakeri",
    ]
    assert [t.kind for t in content_tokens("On Monday 40 came")] == ["name", "number", "word"]
    assert stem("opening") == stem("opened") == stem("open")
    assert stem("visitors") == stem("visitor") and stem("races") == stem("race")
    assert stem("planned") == stem("plan") and stem("boxes") == stem("box")
    assert (
        is_wordlike("Monday;") and is_wordlike("(40)") and is_wordlike("self-made") and is_wordlike("Zürich")
    )
    assert not is_wordlike("Th3") and not is_wordlike("fo#d") and not is_wordlike("brnch")
    assert not is_wordlike("Quinnnn")


# --- the embedded demo's documents -------------------------------------------------------------------


def _demo_answers(index: int) -> tuple[str, str, dict[str, str]]:
    """A demo document's post, reference and one answer per defect, built from its fact slots."""
    d = make_doc(0, "eval", index)
    other = next(c for c in COUNTS if str(c) not in d.post and c != d.count)
    filler = next(f for f in FILLERS if f not in d.post)
    head = f"{d.name} {d.action} in {d.town} on {d.day}"
    answers = {
        "faithful": d.reference,
        "wrong_count": f"{head}; {other} people came.",
        "vague": f"{head}; a crowd came.",
        "partial": f"{d.name} {d.action} in {d.town}.",
        "padded": f"{d.reference} {filler} Everyone agreed it beat watching television indoors.",
        "repetitive": f"{head}; {d.count} people came, {d.count} people came, {d.count} people came.",
        "truncated": f"{head}; {d.count}",
    }
    return d.post, d.reference, answers


@pytest.fixture(scope="module")
def demo() -> dict[str, list[dict[str, float]]]:
    out: dict[str, list[dict[str, float]]] = {}
    for i in range(16):  # four of each difficulty level
        post, ref, answers = _demo_answers(i)
        for name, answer in answers.items():
            out.setdefault(name, []).append(_scores(answer, ref, post))
    return out


def _means(rows: list[dict[str, float]]) -> dict[str, float]:
    return {a: statistics.fmean(r[a] for r in rows) for a in RUBRIC_AXES}


def test_demo_axes_differ_and_spread(demo):
    rows = [r for variant in demo.values() for r in variant]
    vectors = {a: [r[a] for r in rows] for a in RUBRIC_AXES}
    for axis, vec in vectors.items():
        assert statistics.pstdev(vec) >= 0.8, (axis, statistics.pstdev(vec))
    for i, a in enumerate(RUBRIC_AXES):
        for b in RUBRIC_AXES[i + 1 :]:
            assert vectors[a] != vectors[b]
            assert abs(statistics.correlation(vectors[a], vectors[b])) < 0.8, (a, b)


def test_demo_defects_lower_their_own_axis(demo):
    means = {name: _means(rows) for name, rows in demo.items()}
    assert all(v == 10.0 for v in means["faithful"].values())
    lowest = {name: min(m, key=m.get) for name, m in means.items() if name != "faithful"}
    assert lowest == {
        "wrong_count": "accuracy",
        "vague": "completeness",
        "partial": "completeness",
        "padded": "relevance",
        "repetitive": "expression",
        "truncated": "expression",
    }, means
    assert means["vague"]["accuracy"] == 10.0  # vague is missing, not wrong
    assert means["wrong_count"]["accuracy"] < means["vague"]["accuracy"] - 2


def test_rubric_axes_are_fractions():
    axes = rubric_axes(ANSWERS["padded"], REF, POST)
    assert set(axes) == set(RUBRIC_AXES) and all(0.0 <= v <= 1.0 for v in axes.values())
