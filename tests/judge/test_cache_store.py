"""The driver's judge cache kept under output_dir: in place on disk, copied back and forth for S3
(moto on 127.0.0.1), and, through Ray judge actors, a rerun from a fresh node costs no call."""

from __future__ import annotations

import tempfile
import uuid
from pathlib import Path
from typing import Any

import pytest

from rluf_ray.config import RlufConfig
from rluf_ray.judge import api as judge_api
from rluf_ray.judge.cache_store import CACHE_NAME, DriverCache, cache_location, driver_cache
from rluf_ray.judge.scoring import score_requests
from rluf_ray.store.artifacts import ArtifactStore
from tests.support.fake_openai import FakeOpenAI

KEY_ENV = "RLUF_JUDGE_TEST_KEY"


def test_cache_location(tmp_path: Path) -> None:
    assert cache_location(None, str(tmp_path)) == str(tmp_path / CACHE_NAME)
    assert cache_location(None, "s3://b/run/") == f"s3://b/run/{CACHE_NAME}"
    assert cache_location("/x/c.sqlite", "s3://b/run") == "/x/c.sqlite"


@pytest.fixture
def bucket(s3_env) -> str:
    return s3_env.bucket(f"rluf-{uuid.uuid4().hex[:8]}")


@pytest.fixture
def fresh_scratch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Another node: a scratch dir with nothing in it."""
    scratch = tmp_path / f"scratch-{uuid.uuid4().hex[:6]}"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    return scratch


def test_remote_cache_survives_a_new_scratch(bucket: str, tmp_path: Path, monkeypatch) -> None:
    out = f"{bucket}/run"
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "node-a"))
    (tmp_path / "node-a").mkdir()
    with driver_cache(None, out) as held:
        held.put("k1", "m", "v1", '{"score": 0.5}', 10, 3)
    store = ArtifactStore(out)
    assert (store.fs.get_file_info(f"{store.root}/{CACHE_NAME}").size or 0) > 0  # written back to S3
    (tmp_path / "node-b").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "node-b"))
    with driver_cache(None, out) as held:
        hit = held.cache.get("k1")
        assert hit is not None and hit.reply == '{"score": 0.5}' and hit.prompt_tokens == 10


def test_remote_cache_is_written_back_while_in_use_and_on_failure(bucket: str, fresh_scratch: Path) -> None:
    out = f"{bucket}/run"
    held = DriverCache(cache_location(None, out), upload_every_s=0.0)  # every put is due
    held.put("k1", "m", "v1", "r1", 1, 1)
    assert len(DriverCache(cache_location(None, out)).cache) == 1  # already stored remotely
    with pytest.raises(RuntimeError), driver_cache(None, out) as h2:
        h2.put("k2", "m", "v1", "r2", 1, 1)
        raise RuntimeError("crash")
    assert DriverCache(cache_location(None, out)).cache.get("k2") is not None
    held.close()


def cfg_for(output_dir: str, base_url: str) -> RlufConfig:
    judge = {"provider": "openai", "base_url": base_url, "api_key_env": KEY_ENV, "timeout_s": 2.0,
             "budget_name": f"budget-{uuid.uuid4().hex[:6]}", "requests_per_minute": 100_000}  # fmt: skip
    return RlufConfig.model_validate(
        {"output_dir": output_dir, "judge": judge, "resources": {"judge_actors": 2}}
    )


def context(cfg: RlufConfig, run: str = "generate") -> judge_api.JudgeContext:
    return judge_api.JudgeContext(run, cfg.output_dir, cfg.resources.judge_actors)


def score_answers(cfg: RlufConfig, data: list[dict[str, str]]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    return judge_api.score_answers(cfg.judge, data, context(cfg))


def judge_batch(cfg: RlufConfig, reqs: list[Any]) -> judge_api.Judgement:
    return judge_api.judge(cfg.judge, reqs, context(cfg, "feedback"), use_batch_api=True)


def rows(n: int) -> list[dict[str, str]]:
    return [{"prompt_id": f"p{i // 4}", "post": f"post {i // 4}", "reference": "ref", "answer": f"a {i}"}
            for i in range(n)]  # fmt: skip


@pytest.mark.ray
def test_rerun_on_another_node_costs_no_call(
    ray_session, bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(KEY_ENV, "sk-ray-test")
    out = f"{bucket}/run"
    with FakeOpenAI() as srv:
        for node in ("a", "b", "c"):
            (tmp_path / node).mkdir()
        monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "a"))
        first, report1 = score_answers(cfg_for(out, srv.base_url), rows(12))
        calls1 = len(srv.times())
        monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "b"))  # the driver now on another node
        cfg = cfg_for(out, srv.base_url)
        assert judge_api.dry_run(cfg.judge, score_requests(rows(12)), context(cfg))["calls"] == 0
        again, report2 = score_answers(cfg, rows(12))
        calls2 = len(srv.times()) - calls1
        monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "c"))
        more, report3 = score_answers(cfg_for(out, srv.base_url), rows(16))  # 4 new answers
        calls3 = len(srv.times()) - calls1 - calls2
    assert calls1 == 12 and report1["scored"] == 12
    assert calls2 == 0 and report2["cache_hits"] == 12 and again == first
    assert calls3 == 4 and report3["cache_hits"] == 12 and more[:12] == first
    assert not list(Path(tmp_path / "a").glob("**/judge_cache.sqlite"))  # scratch copies only, by hash


def test_batch_run_resumes_its_batch_on_another_node(
    bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The id of a Batch API round in progress is kept in the cache under output_dir: a run that gave
    up waiting is resumed from another node's fresh scratch by polling that batch, not by a new one."""
    from rluf_ray.judge.requests import score_request

    monkeypatch.setenv(KEY_ENV, "sk-ray-test")
    rs = [score_request(f"k{i}", f"post {i}", "ref", f"answer {i}") for i in range(5)]
    out = f"{bucket}/run"
    with FakeOpenAI(batch_delay_s=1.0) as srv:

        def batch_cfg(timeout_s: float) -> RlufConfig:
            judge = {"provider": "openai", "base_url": srv.base_url, "api_key_env": KEY_ENV,
                     "batch_poll_s": 0.05, "batch_timeout_s": timeout_s}  # fmt: skip
            return RlufConfig.model_validate({"output_dir": out, "judge": judge})

        for node in ("a", "b", "c"):
            (tmp_path / node).mkdir()
        monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "a"))
        monkeypatch.setenv("HOME", str(tmp_path / "a"))  # nothing shared but the bucket
        first, _ = judge_batch(batch_cfg(0.2), rs)  # gives up waiting
        assert all((r.error or "").startswith("batch_timeout") for r in first) and srv.batch_creates == 1
        monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "b"))
        monkeypatch.setenv("HOME", str(tmp_path / "b"))  # nothing shared but the bucket
        second, _ = judge_batch(batch_cfg(60.0), rs)
        assert srv.batch_creates == 1 and all(r.ok for r in second)  # the same batch, polled again
        monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "c"))
        monkeypatch.setenv("HOME", str(tmp_path / "c"))  # nothing shared but the bucket
        third, report = judge_batch(batch_cfg(60.0), rs)
        assert srv.batch_creates == 1 and report["cache_hits"] == 5 and all(r.cached for r in third)


def test_shared_mount_cache_is_worked_on_in_driver_scratch(tmp_path: Path, fresh_scratch: Path) -> None:
    """shared_output_dir: the SQLite file (and its -wal/-shm) never sits on the mount while in use;
    the mount holds a whole copy after each write-back, which a driver on another node reads."""
    mount = tmp_path / "mount" / "run"
    with driver_cache(None, str(mount), shared_mount=True) as held:
        held.put("k1", "m", "v1", '{"score": 0.5}', 10, 3)
        assert not list((tmp_path / "mount").glob("**/*.sqlite*"))  # nothing on the mount while open
        assert list(fresh_scratch.glob("**/*.sqlite"))  # the live file is in driver scratch
    assert sorted(p.name for p in mount.iterdir()) == [CACHE_NAME]  # no -wal, -shm or .part left
    for p in fresh_scratch.glob("**/*.sqlite*"):
        p.unlink()  # another node: empty scratch
    with driver_cache(None, str(mount), shared_mount=True) as held:
        hit = held.cache.get("k1")
        assert hit is not None and hit.reply == '{"score": 0.5}'


def test_shared_mount_keeps_a_cache_path_outside_it_in_place(tmp_path: Path, fresh_scratch: Path) -> None:
    own = tmp_path / "local" / "cache.sqlite"  # judge.cache_path on the driver's own disk
    with driver_cache(str(own), str(tmp_path / "mount"), shared_mount=True) as held:
        held.put("k1", "m", "v1", "r", 1, 1)
        assert own.exists()  # used in place: it is not on the mount
    assert not list(fresh_scratch.glob("**/*.sqlite"))


def test_stages_hand_the_judge_the_shared_mount() -> None:
    from rluf_ray.config import load
    from rluf_ray.stages import evaluate, feedback, generate

    for shared in (False, True):
        cfg = load(None, [f"shared_output_dir={str(shared).lower()}"])
        for stage in (generate, feedback, evaluate):
            assert stage.plan(cfg).judge.context("x").shared_mount is shared  # type: ignore[attr-defined]
