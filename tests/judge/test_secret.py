"""The judge's API key reaches the judge actors only through their node's environment.

A unique key is in the environment of the session Ray (set before it starts, as on a cluster node);
judge actors call a local fake OpenAI server that demands it. Then nothing the test can read holds the
key: the driver's runtime env, the actors' constructor parameters, every file under the Ray session dir
(logs included) and every artifact under output_dir. A job submitted to a multi-node cluster (its
metadata, logs and the dashboard's job API) is searched in tests/integration/test_cluster.py.
"""

from __future__ import annotations

import inspect
import json
import os
from pathlib import Path

import pytest

from rluf_ray.config import RlufConfig
from rluf_ray.judge.actors import JudgeWorker
from rluf_ray.judge.api import JudgeContext, judge
from rluf_ray.judge.scoring import score_requests
from tests.support.fake_openai import FakeOpenAI
from tests.support.secrets import files_holding

KEY_ENV = "RLUF_SECRET_TEST_KEY"  # set in conftest before the session Ray starts


@pytest.mark.ray
def test_the_key_reaches_the_server_and_nothing_else(ray_session, ray_temp_dir: Path, tmp_path: Path) -> None:
    key = os.environ[KEY_ENV]
    out = tmp_path / "out"
    with FakeOpenAI(api_key=key) as srv:
        cfg = RlufConfig.model_validate({
            "output_dir": str(out),
            "judge": {"provider": "openai", "base_url": srv.base_url, "api_key_env": KEY_ENV, "max_retries": 0,
                      "budget_name": f"budget-{tmp_path.name}"},
            "resources": {"judge_actors": 2},
        })  # fmt: skip
        data = [{"prompt_id": f"p{i}", "post": "a post", "reference": "ref", "answer": f"answer {i}"}
                for i in range(6)]  # fmt: skip
        ctx = JudgeContext("secret-test", cfg.output_dir, cfg.resources.judge_actors)
        results, _ = judge(cfg.judge, score_requests(data), ctx)
        counts = srv.counts()
    assert counts.get("ok") == 6 and not counts.get("unauthorized"), counts  # the actors did hold the key
    assert all(r.ok for r in results)
    assert "api_key" not in inspect.signature(JudgeWorker).parameters
    ctx = ray_session.get_runtime_context()
    assert key not in json.dumps(ctx.runtime_env, default=str)
    secret = key.encode()
    assert files_holding(out, secret) == []
    assert files_holding(ray_temp_dir, secret) == []  # every log and file of the Ray session
