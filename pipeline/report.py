"""Evaluation results on disk: records (Parquet + JSON), a summary table, plots, and an HTML report."""

from __future__ import annotations

import html
import json
import os
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from envs import Task
from pipeline.evaluate import summarize
from pipeline.plotting import pyplot

RECORDS_FILE = "records.parquet"
SUMMARY_FILE = "summary.json"


def save_records(folder: str, records: list[dict[str, Any]], extra: dict[str, Any]) -> dict[str, Any]:
    """Write one policy's evaluation (records + summary) into `folder`; summary.json is written last."""
    os.makedirs(folder, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(records), os.path.join(folder, RECORDS_FILE))
    with open(os.path.join(folder, "records.json"), "w") as f:
        json.dump(records, f)
    summary = {**summarize(records), **extra}
    with open(os.path.join(folder, SUMMARY_FILE), "w") as f:
        json.dump(summary, f, indent=2)
    return summary


def load_records(folder: str) -> list[dict[str, Any]]:
    return pq.read_table(os.path.join(folder, RECORDS_FILE)).to_pylist()


def load_runs(folders) -> dict[str, list[dict[str, Any]]]:
    """{policy name: records} of the evaluation folders that hold a finished evaluation (summary.json), in order."""
    runs = {}
    for folder in folders:
        if os.path.exists(os.path.join(folder, SUMMARY_FILE)):
            with open(os.path.join(folder, SUMMARY_FILE)) as f:
                runs[json.load(f)["policy"]] = load_records(folder)
    return runs


def results_table(summaries: dict[str, dict[str, Any]]) -> str:
    """A Markdown table, one row per policy."""
    lines = ["| policy | episodes | raw return | normalized score | success rate | steps |",
             "|---|---:|---:|---:|---:|---:|"]
    for name, s in summaries.items():
        lines.append(f"| {name} | {s['episodes']} | {s['raw_return']:.2f} ± {s['raw_return_ci']:.2f} | "
                     f"{s['score']:.1f} ± {s['score_ci']:.1f} | {100 * s['success_rate']:.1f}% "
                     f"[{100 * s['success_ci_low']:.0f}, {100 * s['success_ci_high']:.0f}] | {s['steps']:.1f} |")
    return "\n".join(lines)


def write_report(folder: str, task: Task, runs: dict[str, list[dict[str, Any]]],
                 dataset: dict[str, Any] | None = None) -> str:
    """report.md, report.html and plots comparing policies; returns the HTML path."""
    plt = pyplot()

    os.makedirs(folder, exist_ok=True)
    summaries = {name: summarize(records) for name, records in runs.items()}
    table = results_table(summaries)

    fig, (ax1, ax2, ax3) = plt.subplots(1, 3, figsize=(15, 3.8), gridspec_kw={"width_ratios": [3, 2, 2]})
    returns = {name: [r["raw_return"] for r in records] for name, records in runs.items()}
    lo = min(min(v) for v in returns.values())
    hi = max(max(v) for v in returns.values())
    bins = _bins(lo, hi)
    for name, values in returns.items():
        ax1.hist(values, bins=bins, histtype="step", lw=1.6, label=name)  # outlines: several policies stay legible
    if dataset:
        ax1.axvline(dataset["return"]["mean"], color="k", ls="--", lw=1, label="dataset mean")
    ax1.set(title=f"{task.name}: return per held-out episode", xlabel="raw return", ylabel="episodes")
    ax1.legend(fontsize=8)
    names = list(summaries)
    colors = [f"C{i}" for i in range(len(names))]
    scores = [summaries[n]["score"] for n in names]
    ax2.bar(names, scores, yerr=[summaries[n]["score_ci"] for n in names], capsize=4, color=colors)
    ax2.axhline(50, color="k", ls="--", lw=1)  # the normalizer's dataset average
    ax2.set(title="normalized score (95% CI; 50 = data)", ylim=(min(0, *scores), max(100, *scores)))
    rates = [100 * summaries[n]["success_rate"] for n in names]
    errors = [[100 * (summaries[n]["success_rate"] - summaries[n]["success_ci_low"]) for n in names],
              [100 * (summaries[n]["success_ci_high"] - summaries[n]["success_rate"]) for n in names]]
    ax3.bar(names, rates, yerr=errors, capsize=4, color=colors)
    ax3.set(title="success rate (95% CI)", ylabel="%", ylim=(0, 100))
    for ax in (ax2, ax3):
        ax.tick_params(axis="x", labelrotation=20 if len(names) > 2 else 0, labelsize=8)
    fig.tight_layout()
    fig.savefig(os.path.join(folder, "returns.png"), dpi=110)
    plt.close(fig)

    by_type = _task_type_table(runs, (dataset or {}).get("success_rate_by_task_type", {}))
    md = [f"# {task.name}: evaluation on held-out instances", "", table, ""]
    if dataset:
        md += [(f"Dataset: {dataset['num_episodes']} episodes, mean return {dataset['return']['mean']:.2f}, "
               f"success {100 * dataset['success_rate']:.1f}%."), ""]
    if by_type:
        md += ["## Success rate by task type", "", by_type, ""]
    md += ["![returns](returns.png)", ""]
    if task.action_tokenizer is not None:  # pixel tasks: what the camera saw
        from pipeline.filmstrip import write_filmstrip

        write_filmstrip(folder, task, runs)
        md += ["## Episodes, replayed", "", "![filmstrip](filmstrip.png)", ""]
    with open(os.path.join(folder, "report.md"), "w") as f:
        f.write("\n".join(md))
    with open(os.path.join(folder, "summary.json"), "w") as f:
        json.dump(summaries, f, indent=2)
    page = os.path.join(folder, "report.html")
    with open(page, "w") as f:
        f.write(_html(task.name, md, runs))
    return page


def _bins(lo: float, hi: float) -> list[float]:
    if hi - lo <= 30 and float(lo).is_integer() and float(hi).is_integer():
        return [x - 0.5 for x in range(int(lo), int(hi) + 2)]
    return list(__import__("numpy").linspace(lo, hi + 1e-9, 21))


def _task_type_table(runs: dict[str, list[dict[str, Any]]], dataset_rates: dict[str, float]) -> str:
    """Success per task type of each policy, after the dataset's (collection) rate where dataset.json has one."""
    types = sorted({r["task_type"] for records in runs.values() for r in records if r.get("task_type")})
    if not types:
        return ""
    first = ["dataset"] if dataset_rates else []
    lines = ["| task type | " + " | ".join(first + list(runs)) + " |", "|---|" + "---:|" * (len(first) + len(runs))]
    for t in types:
        cells = [f"{100 * dataset_rates[t]:.0f}%" if t in dataset_rates else "-"] if first else []
        for records in runs.values():
            sel = [r["success"] for r in records if r["task_type"] == t]
            cells.append(f"{100 * sum(sel) / len(sel):.0f}% ({len(sel)})" if sel else "-")
        lines.append(f"| {t} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _html(task: str, md: list[str], runs: dict[str, list[dict[str, Any]]]) -> str:
    """A self-contained page: the Markdown tables as HTML, the plot, and a few transcripts per policy."""
    body, table = [], []
    for line in md + [""]:
        if line.startswith("|"):
            if not line.startswith("|---"):
                cells = "".join(f"<td>{html.escape(c.strip())}</td>" for c in line.strip("|").split("|"))
                table.append(f"<tr>{cells}</tr>")
            continue
        if table:
            body.append("<table>" + "".join(table) + "</table>")
            table = []
        if line.startswith("## "):
            body.append(f"<h2>{html.escape(line[3:])}</h2>")
        elif line.startswith("# "):
            body.append(f"<h1>{html.escape(line[2:])}</h1>")
        elif line.startswith("!["):
            alt, src = line[2:-1].split("](")
            body.append(f'<img src="{html.escape(src)}" alt="{html.escape(alt)}" style="max-width:100%">')
        elif line:
            body.append(f"<p>{html.escape(line)}</p>")
    text = "\n".join(body)
    for name, records in runs.items():
        text += f"<h2>Transcripts: {html.escape(name)}</h2>"
        for r in records[:5]:
            turns = json.loads(r["transcript"])
            lines = "".join(f"<div class=obs>{html.escape(t['observation'])}</div>"
                            + (f"<div class=act>&gt; {html.escape(t['action'])}</div>" if "action" in t else "")
                            for t in turns)
            text += (f"<details><summary>episode {r['episode']}: return {r['raw_return']:.2f}, "
                     f"{'success' if r['success'] else 'failure'}</summary>{lines}</details>")
    style = ("body{font-family:sans-serif;max-width:1000px;margin:2em auto}table{border-collapse:collapse}"
             "td{border:1px solid #ccc;padding:4px 8px}.obs{white-space:pre-wrap;color:#333}"
             ".act{color:#0a5;font-family:monospace}")
    return f"<!doctype html><html><head><meta charset=utf-8><title>{html.escape(task)}</title><style>{style}</style></head><body>{text}</body></html>"
