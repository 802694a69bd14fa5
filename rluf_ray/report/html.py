"""``report/index.html``: the one page a person opens first after a run.

It gathers what the stages wrote (manifests, reports, part files, curves), draws the figures
(:mod:`rluf_ray.report.run_plots`), and writes PNGs and the page into ``report/`` through the
artifact store. Links are relative, so the folder can be copied anywhere. A section whose stage has
not run is left out.
"""

from __future__ import annotations

import html
import json
import logging
from collections.abc import Callable, Mapping
from typing import Any

from rluf_ray.report import run_plots
from rluf_ray.schema import CURVES_ARTIFACT
from rluf_ray.store.artifacts import ArtifactStore

log = logging.getLogger("rluf.report")

REPORT_DIR = "report"
INDEX = "index.html"
CONFIG_KEYS = (
    ("model", "base_model"),
    ("data", "source"),
    ("data", "calibration_size"),
    ("data", "test_size"),
    ("data", "eval_size"),
    ("generation", "engine"),
    ("generation", "sampling_num"),
    ("generation", "temperature"),
    ("judge", "provider"),
    ("judge", "model"),
    ("conformal", "protocol"),
    ("conformal", "quantile_bars"),
    ("dpo", "learning_rate"),
    ("dpo", "beta"),
    ("dpo", "reduction"),
)


def _json(store: ArtifactStore, stage_dir: str, name: str) -> Any:
    return store.read_json(stage_dir, name) if store.exists(stage_dir, name) else None


def _distinct(store: ArtifactStore, gen_dir: str) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for split in ("calibration", "test"):
        values = [
            len(a) for batch in store.iter_part_batches(gen_dir, split, ["answers"]) for a in batch["answers"]
        ]
        if values:
            out[split] = values
    return out


def _curves(store: ArtifactStore, train_dir: str) -> dict[str, list[dict[str, float]]]:
    out: dict[str, list[dict[str, float]]] = {}
    for name in sorted(store.list_files(train_dir)):
        if name == CURVES_ARTIFACT or name.endswith(f"/{CURVES_ARTIFACT}"):
            label = name.rsplit(f"/{CURVES_ARTIFACT}", 1)[0] if "/" in name else "dpo"
            out[label] = list(store.iter_jsonl(train_dir, name))
    return {k: v for k, v in out.items() if v}


def _rubric_rows(report: Mapping[str, Any]) -> list[list[str]]:
    """Rows (model, n, one cell per axis, overall) from either rubric layout the evaluate stage wrote."""
    rows = []
    if "rubric" in report:
        for model, m in report["rubric"].items():
            cells = [f"{v['mean']:.2f} [{v['ci_low']:.2f}, {v['ci_high']:.2f}]" for v in m["axes"].values()]
            o = m["overall"]
            rows.append(
                [
                    model,
                    str(m.get("n", "")),
                    *cells,
                    f"{o['mean']:.2f} [{o['ci_low']:.2f}, {o['ci_high']:.2f}]",
                ]
            )
        return rows
    for model, m in report.get("models", {}).items():
        rows.append([model, str(m["n"]), *(f"{v:.2f}" for v in m["axes"].values()), f"{m['overall']:.2f}"])
    return rows


def _axes(report: Mapping[str, Any]) -> list[str]:
    first: Mapping[str, Any] = next(iter(report.get("rubric", report.get("models", {})).values()), {})
    return list(first.get("axes", {}))


def _table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def build(store: ArtifactStore, cfg: Any, dirs: Mapping[str, str]) -> str:
    """Write ``report/index.html`` and its PNGs from the artifacts of the stages that ran.

    A figure that cannot be drawn is logged and left out; the rest of the page is still written.

    Args:
        store: The run's artifact store (read from, and written to under ``report/``).
        cfg: The run's validated config (a pydantic model: ``model_dump`` and ``generation.sampling_num``
            are used).
        dirs: Stage name (``generate``, ``calibrate``, ``assign-weights``, ``train``, ``evaluate``, ...)
            -> its directory in the store; a stage not named is left out of the page.

    Returns:
        The page's path in the store.
    """
    sections: list[str] = []

    def figure(name: str, title: str, make: Callable[[], tuple[bytes, str]]) -> None:
        try:
            png, sentence = make()
        except Exception as exc:  # a figure that cannot be drawn must not lose the rest of the page
            log.warning("report: %s not drawn (%s)", name, exc)
            return
        store.write_bytes(REPORT_DIR, name, png)
        sections.append(f'<h2>{html.escape(title)}</h2><figure><img src="{name}" alt="{html.escape(title)}">'
                        f"<figcaption>{html.escape(sentence)}</figcaption></figure>")  # fmt: skip

    dumped = cfg.model_dump(mode="json")
    config_rows = [[f"{s}.{k}", json.dumps(dumped[s][k])] for s, k in CONFIG_KEYS]
    times = []
    for stage, d in dirs.items():
        man = store.manifest(d)
        if man is not None:
            times.append(
                [stage, f"{man.wall_time_s:.1f}", ", ".join(f"{k}={v}" for k, v in man.rows.items())]
            )
    sections.append("<h2>Configuration</h2>" + _table(["key", "value"], config_rows))
    sections.append("<h2>Stages</h2>" + _table(["stage", "wall time (s)", "rows"], times))

    distinct = _distinct(store, dirs["generate"]) if "generate" in dirs else {}
    if distinct:
        n = int(cfg.generation.sampling_num)
        figure(
            "distinct_answers.png",
            "Distinct answers per prompt",
            lambda: run_plots.distinct_answers(distinct, n),
        )
    judge: dict[str, Any] = {}
    for stage in ("generate", "feedback", "evaluate"):
        if stage not in dirs:
            continue
        man = store.manifest(dirs[stage])
        report = _json(store, dirs[stage], "report.json") if stage == "evaluate" else None
        led = (report or {}).get("judge") or (man.metrics.get("judge") if man else None)
        if led:
            judge[stage] = led
    if judge:
        figure("judge_calls.png", "Judge calls and cost", lambda: run_plots.judge_calls(judge))
    cal = _json(store, dirs["calibrate"], "report.json") if "calibrate" in dirs else None
    if cal and cal.get("per_alpha"):
        figure(
            "coverage.png", "Coverage and set size per alpha", lambda: run_plots.coverage(cal["per_alpha"])
        )
    w = _json(store, dirs["assign-weights"], "summary.json") if "assign-weights" in dirs else None
    if w and w.get("weight_histogram"):
        figure("weights.png", "Pair weights", lambda: run_plots.weight_histogram(
            w["weight_histogram"], float(w["mean_weight"]), float(w["zero_weight_share"])))  # fmt: skip
    curves = _curves(store, dirs["train"]) if "train" in dirs else {}
    if curves:
        figure("dpo_curves.png", "DPO loss and reward accuracy", lambda: run_plots.dpo_curves(curves))
    ev = _json(store, dirs["evaluate"], "report.json") if "evaluate" in dirs else None
    if ev:
        rows = _rubric_rows(ev)
        if rows:
            sections.append("<h2>Rubric (0-10; 95% intervals where given)</h2>"
                            + _table(["model", "n", *_axes(ev), "overall"], rows))  # fmt: skip
        if ev.get("win_rates"):
            figure("win_rates.png", "Win rates", lambda: run_plots.win_rate_forest(ev["win_rates"]))
    page = (
        "<!doctype html><html><head><meta charset='utf-8'><title>rluf-ray run report</title>"
        "<style>body{font-family:sans-serif;max-width:960px;margin:2em auto}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}img{max-width:100%}"
        "figcaption{color:#333;margin-top:.3em}</style></head><body><h1>rluf-ray run report</h1>"
        + "\n".join(sections)
        + "</body></html>\n"
    )
    store.write_bytes(REPORT_DIR, INDEX, page.encode())
    return store.path(REPORT_DIR, INDEX)
