"""``rluf bench judge``: the original serial judge loop vs the rate-limited async judge on Ray.

Both run against loopback OpenAI-compatible servers (``rluf_ray.bench.loopback_endpoint``) with the same
latency and the same cap. The baseline is the original approach: one request at a time with a 0.3 s
pause after each. Ours is ``rluf_ray.judge.api.judge`` with 2 async judge actors drawing from one cluster-wide
budget. Each server records the arrival of every request; the cap is checked over every sliding
window (60 s in the full run), counting every request that reached the server (429s included).

The two run side by side (the baseline in a thread), each for ``--minutes``. The last line of output
is a JSON object.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import tempfile
import threading
import time
from typing import Any

KEY_ENV = "RLUF_BENCH_JUDGE_KEY"


def _parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="rluf bench judge", description=__doc__)
    p.add_argument("--minutes", type=float, default=3.0, help="duration of each side (default 3)")
    p.add_argument("--window", type=float, default=60.0, help="sliding window of the cap, seconds")
    p.add_argument("--cap", type=int, default=600, help="requests allowed per window")
    p.add_argument("--latency", type=float, default=0.2, help="server latency per request, seconds")
    p.add_argument("--actors", type=int, default=2, help="async judge actors (ours)")
    p.add_argument("--pause", type=float, default=0.3, help="baseline pause after each call, seconds")
    p.add_argument("--safety", type=float, default=0.02, help="judge.rate_safety (share of the window)")
    p.add_argument(
        "--smoke", action="store_true", help="tiny run for CI: 0.1 min, 2 s window, cap 20 (same rate)"
    )
    args = p.parse_args(argv)
    if args.smoke:
        # A 2 s window leaves little room for scheduling jitter on a busy box: keep a wider margin.
        args.minutes, args.window, args.cap, args.safety = 0.1, 2.0, 20, 0.1
    return args


def _baseline(base_url: str, seconds: float, pause: float, stop: threading.Event, template: str) -> int:
    """The original loop: one synchronous call at a time, then a fixed pause."""
    from openai import OpenAI

    from rluf_ray.judge.requests import score_request
    from rluf_ray.judge.templates import render_request

    client = OpenAI(api_key="bench", base_url=base_url, max_retries=2, timeout=30)
    end = time.monotonic() + seconds
    i = 0
    while time.monotonic() < end and not stop.is_set():
        msgs: Any = render_request(score_request(str(i), f"post {i}", "reference", f"answer {i}", template))
        try:
            client.chat.completions.create(model="gpt-4o", messages=msgs, temperature=0.0, max_tokens=256)
        except Exception:
            pass
        i += 1
        time.sleep(pause)
    client.close()
    return i


def _rate_per_min(times: list[float]) -> float:
    if len(times) < 2:
        return 0.0
    return (len(times) - 1) / (times[-1] - times[0]) * 60.0


def main(argv: list[str] | None = None) -> int:
    """Run both sides side by side against their loopback servers; the last printed line is JSON.

    Args:
        argv: Command-line arguments after ``rluf bench judge`` (``--minutes``, ``--cap``, ``--smoke``,
            ...); ``None`` means none (all defaults), not ``sys.argv``.

    Returns:
        The exit status, 0.
    """
    args = _parse(list(argv or []))
    from rluf_ray.bench.loopback_endpoint import LoopbackEndpoint, over_cap_windows, window_counts
    from rluf_ray.config import RlufConfig
    from rluf_ray.judge.api import JudgeContext, judge
    from rluf_ray.judge.scoring import score_requests
    from rluf_ray.runtime.bootstrap import ensure_ray

    for noisy in ("httpx", "httpx2", "openai"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    seconds = args.minutes * 60.0
    per_min = args.cap * 60.0 / args.window
    os.environ[KEY_ENV] = "bench-key-not-secret"
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    ensure_ray()
    n_items = int(per_min * args.minutes)
    rows = [
        {"prompt_id": f"p{i // 10}", "post": f"post {i // 10}", "reference": "ref", "answer": f"answer {i}"}
        for i in range(n_items)
    ]
    out_dir = tempfile.mkdtemp(prefix="rluf-bench-judge-")
    cfg = RlufConfig.model_validate(
        {
            "output_dir": out_dir,
            "judge": {
                "provider": "openai",
                "base_url": "http://127.0.0.1:1/v1",
                "api_key_env": KEY_ENV,
                "requests_per_minute": args.cap,
                "tokens_per_minute": 10**9,
                "rate_window_s": args.window,
                "rate_safety": args.safety,
                "cache_path": os.path.join(out_dir, "cache.sqlite"),
                "budget_name": f"bench-judge-{os.getpid()}",
            },
            "resources": {"judge_actors": args.actors},
        }
    )
    print(f"machine: {os.cpu_count()} cpus, {platform.platform()}, python {platform.python_version()}")
    print(
        f"servers: latency {args.latency}s, cap {args.cap} per {args.window:g}s window; "
        f"{args.minutes} min per side, run side by side"
    )
    with (
        LoopbackEndpoint(latency_s=args.latency, rpm_cap=args.cap, window_s=args.window) as base_srv,
        LoopbackEndpoint(latency_s=args.latency, rpm_cap=args.cap, window_s=args.window) as our_srv,
    ):
        cfg.judge.base_url = our_srv.base_url
        stop = threading.Event()
        box: dict[str, Any] = {}
        th = threading.Thread(
            target=lambda: box.update(
                n=_baseline(base_srv.base_url, seconds, args.pause, stop, cfg.judge.templates.score)
            ),
            daemon=True,
        )
        th.start()
        t0 = time.monotonic()
        jctx = JudgeContext("bench", cfg.output_dir, cfg.resources.judge_actors)
        results, report = judge(cfg.judge, score_requests(rows, cfg.judge.templates.score), jctx)
        ours_wall = time.monotonic() - t0
        th.join()
        base_ok = base_srv.times(["ok"])
        ours_all = our_srv.times()
        ours_ok = our_srv.times(["ok"])
        capped = our_srv.counts().get("capped", 0)
    baseline_cpm = _rate_per_min(base_ok)
    ours_cpm = _rate_per_min(ours_ok)
    counts = window_counts(ours_all, args.window)
    full_windows = [c for c, t in zip(counts, ours_all, strict=True) if t + args.window <= ours_all[-1]]
    summary = {
        "baseline_calls_per_min": round(baseline_cpm, 2),
        "ours_calls_per_min": round(ours_cpm, 2),
        "cap_per_min": round(per_min, 2),
        "cap_share": round(ours_cpm / per_min, 4),
        "over_cap_windows": over_cap_windows(ours_all, args.window, args.cap),
        "max_window_count": max(counts) if counts else 0,
        "min_full_window_count": min(full_windows) if full_windows else None,
        "windows_checked": len(counts),
        "ratio": round(ours_cpm / baseline_cpm, 3) if baseline_cpm else None,
        "server_429": capped,
        "ours_scored": report["scored"],
        "ours_missing": report["missing"],
        "ours_wall_s": round(ours_wall, 1),
        "baseline_calls": len(base_ok),
        "ours_calls": len(ours_ok),
        "window_s": args.window,
        "cap": args.cap,
        "latency_s": args.latency,
        "actors": args.actors,
        "minutes": args.minutes,
        "cpus": os.cpu_count(),
    }
    print(
        f"baseline {baseline_cpm:.1f} calls/min, ours {ours_cpm:.1f} calls/min "
        f"({summary['cap_share']:.1%} of the cap), over-cap windows {summary['over_cap_windows']}"
    )
    sys.stdout.flush()
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
