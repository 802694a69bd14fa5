"""The judge against a real OpenAI-compatible server: vLLM serving SmolLM2-135M-Instruct on 127.0.0.1.

The three judge uses (calibration score, pairwise preference, rubric) go through the real client path
(templates rendered into the model's chat template by the server, ``response_format`` with each
task's JSON schema, re-asks); a reply that cannot be parsed is recorded missing with its reason; the
rate cap holds as counted by the server's own ``/metrics``. The server starts once per session
(about 140 s on 2 cores). Runs in the vLLM environment (``./dev test-vllm``); where vllm is not
installed the module is skipped with that reason.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator, Sequence

import pytest

vllm = pytest.importorskip("vllm", reason="vllm is not installed here: run scripts/setup_vllm_env.sh --test")

from rluf_ray.config import JudgeConfig  # noqa: E402
from rluf_ray.data.embedded import resolve_prebuilt  # noqa: E402
from rluf_ray.judge.client import ApiJudge  # noqa: E402
from rluf_ray.judge.keys import answer_key, pair_key, rubric_key  # noqa: E402
from rluf_ray.judge.rate_limit import LocalLimiter, SlidingWindowBudget  # noqa: E402
from rluf_ray.judge.requests import (  # noqa: E402
    JudgeRequest,
    JudgeResult,
    pairwise_request,
    rubric_request,
    score_request,
)
from rluf_ray.judge.vllm_server import VllmServer  # noqa: E402

pytestmark = [pytest.mark.vllm, pytest.mark.slow]

SUCCESS = "vllm:request_success_total"
ARRIVED = (SUCCESS, "vllm:num_requests_running", "vllm:num_requests_waiting")
POSTS = [
    (
        "The city council of Brenford voted on Tuesday to close the old library on Main Street next "
        "spring. The building needs repairs that would cost 2 million dollars, and a new library will "
        "open in the school district in March.",
        "Brenford's council voted to close the old Main Street library next spring; a new one opens in March.",
        ["The council voted to close the old library next spring.", "A new bakery opened in the city."],
    ),
    (
        "Heavy rain flooded three roads in the valley on Sunday night. No one was hurt, but the bridge "
        "to Lowmill stays closed until engineers inspect it on Wednesday.",
        "Rain flooded valley roads; the Lowmill bridge is closed until Wednesday's inspection.",
        ["Floods closed roads and the Lowmill bridge until an inspection.", "The weather was sunny."],
    ),
]


@pytest.fixture(scope="session")
def judge_server() -> Iterator[VllmServer]:
    model = resolve_prebuilt("embedded:smollm2-135m-instruct")
    with VllmServer(str(model)) as srv:
        yield srv


def make(srv: VllmServer, **kw) -> ApiJudge:
    opts = dict(
        base_url=srv.base_url,
        model=srv.served_name,
        requests_per_minute=600,
        tokens_per_minute=10**7,
        timeout_s=120,
        max_parse_retries=1,
        max_in_flight_per_actor=8,
        max_tokens=64,
    )
    opts.update(kw)
    cfg = JudgeConfig(**opts)
    budget = SlidingWindowBudget(
        cfg.requests_per_minute, cfg.tokens_per_minute, cfg.rate_window_s, cfg.rate_safety
    )
    return ApiJudge(cfg, LocalLimiter(budget), api_key="local")


def run(judge: ApiJudge, reqs: Sequence[JudgeRequest]) -> list[JudgeResult]:
    async def go() -> list[JudgeResult]:
        try:
            return await judge.judge_many(reqs)
        finally:
            await judge.aclose()

    return asyncio.run(go())


def three_uses() -> list[JudgeRequest]:
    reqs: list[JudgeRequest] = []
    for i, (post, ref, answers) in enumerate(POSTS):
        reqs += [score_request(answer_key(f"p{i}", a), post, ref, a) for a in answers]
        reqs.append(pairwise_request(pair_key(f"p{i}", 0, 1), "Summarize the text.", post, *answers))
        reqs.append(rubric_request(rubric_key("sft", f"p{i}"), post, ref, answers[0]))
    return reqs


def assert_value_or_reason(results: Sequence[JudgeResult], reqs: Sequence[JudgeRequest]) -> None:
    """Every result is a well-formed value of its task, or missing with a reason; never both."""
    for r, q in zip(results, reqs, strict=True):
        assert r.key == q.key
        if not r.ok:
            assert r.value is None and r.error and ":" in r.error, r
        elif q.task == "score":
            assert 0.0 <= r.value <= 1.0
        elif q.task == "pairwise":
            assert r.value in (1, 2)
        else:
            assert set(r.value) == {"accuracy", "relevance", "completeness", "expression"}
            assert all(0 <= v <= 10 and (2 * v).is_integer() for v in r.value.values())  # rubric_v2's grid


def test_three_judge_uses_with_json_schema(judge_server: VllmServer) -> None:
    reqs = three_uses()
    before = judge_server.metric(SUCCESS)
    judge = make(judge_server)
    results = run(judge, reqs)
    assert_value_or_reason(results, reqs)
    by_task = {
        t: [r for r, q in zip(results, reqs, strict=True) if q.task == t] for t in ("score", "pairwise")
    }
    # With the reply's schema enforced by the server, scores and preferences always parse.
    assert all(
        r.ok and r.raw and r.raw.lstrip().startswith("{") for r in by_task["score"] + by_task["pairwise"]
    )
    assert judge.ledger.calls == judge_server.metric(SUCCESS) - before  # every call reached the server once


def test_free_text_fallback_never_invents_a_value(judge_server: VllmServer) -> None:
    reqs = three_uses()
    results = run(make(judge_server, structured_output="none"), reqs)
    assert_value_or_reason(results, reqs)
    for r in results:
        if r.ok:
            assert r.raw and not r.raw.lstrip().startswith('{"score"')  # a free-text reply, no schema sent


def test_unparseable_reply_is_missing_with_its_reason(judge_server: VllmServer) -> None:
    reqs = three_uses()[:1]
    judge = make(judge_server, max_tokens=2)  # the JSON object is cut off after two tokens
    (res,) = run(judge, reqs)
    assert res.value is None and res.error is not None
    assert res.error.startswith("parse: reply is not JSON") and "after 2 replies" in res.error
    assert judge.ledger.to_dict()["missing"] == 1 and judge.ledger.calls == 2


def test_rate_cap_holds_as_counted_by_the_server(judge_server: VllmServer) -> None:
    cap, window = 4, 4.0  # 4 requests per 4 s window
    post, ref, answers = POSTS[0]
    reqs = [
        score_request(answer_key("r", f"{a} ({i})"), post, ref, f"{a} ({i})")
        for i in range(6)
        for a in answers
    ]
    seen: list[tuple[float, float]] = []
    stop = threading.Event()

    def poll() -> None:
        # Arrivals as the server counts them: finished + running + waiting requests, one scrape. (Finished
        # alone can bunch: a slow request ends right before quick ones, though they arrived paced.)
        while not stop.is_set():
            m = judge_server.metrics(ARRIVED)
            seen.append((time.monotonic(), sum(m.values())))
            time.sleep(0.1)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    time.sleep(0.3)
    t0 = time.monotonic()
    # The client paces slots 1.25 s apart (rate_safety 0.25).
    judge = make(judge_server, requests_per_minute=cap, rate_window_s=window, rate_safety=0.25, max_tokens=16)
    results = run(judge, reqs)
    elapsed = time.monotonic() - t0
    time.sleep(0.5)
    stop.set()
    poller.join()
    assert all(r.ok for r in results)
    counts = [c for _, c in seen]
    assert counts[-1] - counts[0] == len(reqs)  # the server counted every call once
    # No window of the cap's length holds more arrived requests than the cap.
    for i, (t, c) in enumerate(seen):
        later = [c2 for t2, c2 in seen[i:] if t2 < t + window]
        assert max(later) - c <= cap, (t, c, later)
    assert elapsed >= (len(reqs) / cap - 1) * window
