"""An evaluation dashboard across pipeline runs: one static, self-contained HTML page.

Reads what `pipeline.run.run_pipeline` leaves in each run folder and touches nothing there:

    <run>/data/dataset.json                the behaviour dataset (task, size, return, success rate)
    <run>/eval/<policy>/records.parquet    per-episode records (any number of policies: bc, qsft, swept betas)
    <run>/{bc,qsft,report/*}/mlflow_run_id the MLflow runs of the stages (learning curves)
    <run>/mlflow.db                        the MLflow store (else --tracking-uri / MLFLOW_TRACKING_URI)

and writes `<out>/index.html` (plots inlined as PNG data URIs, so the one file can be mailed or archived)
plus the same plots as PNG files beside it. The page shows, across runs and tasks: scores and success rates
with 95% confidence intervals (`pipeline.evaluate.summarize`), success by task type where episodes have one,
training curves per stage, and the episode transcripts, filterable by run, policy and outcome.

    python jobs/dashboard.py runs/wordle runs/wordle-beta8 --out runs/dashboard [--serve 8000]
"""

from __future__ import annotations

import argparse
import base64
import html
import io
import json
import math
import os
import sys
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pipeline.data import METADATA_FILE, read_metadata
from pipeline.evaluate import summarize
from pipeline.plotting import pyplot
from pipeline.report import RECORDS_FILE, load_records
from pipeline.tracking import RUN_ID_FILE, tracking_uri_for

INDEX_FILE = "index.html"
# Training metrics plotted per step (in this order, where a stage logged them); see pipeline/train.py.
CURVE_METRICS = ("loss", "target_mean", "support_size", "grad_norm", "p_action_mean", "target_clipped_frac")


@dataclass
class RunData:
    """Everything the dashboard reads from one run folder."""

    path: str
    label: str
    dataset: dict[str, Any] | None = None
    evals: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # policy name -> records
    eval_configs: dict[str, dict[str, Any]] = field(default_factory=dict)
    curves: dict[str, dict[str, list[tuple[int, float]]]] = field(default_factory=dict)  # stage -> metric -> points
    notes: list[str] = field(default_factory=list)

    @property
    def tasks(self) -> list[str]:
        found = {r["task"] for records in self.evals.values() for r in records}
        if self.dataset and self.dataset.get("task"):
            found.add(self.dataset["task"])
        return sorted(found)


# ------------------------------------------------------------------------------------------- loading
def load_run(path: str, label: str | None = None, tracking_uri: str | None = None) -> RunData:
    """Read one run folder; raises FileNotFoundError if `path` holds nothing the pipeline writes."""
    path = os.path.abspath(path)
    if not os.path.isdir(path):
        raise FileNotFoundError(f"{path}: not a folder")
    run = RunData(path=path, label=label or os.path.basename(path.rstrip(os.sep)))
    if os.path.exists(os.path.join(path, "data", METADATA_FILE)):
        run.dataset = read_metadata(os.path.join(path, "data"))
    eval_root = os.path.join(path, "eval")
    for name in sorted(os.listdir(eval_root)) if os.path.isdir(eval_root) else []:
        folder = os.path.join(eval_root, name)
        if not os.path.exists(os.path.join(folder, RECORDS_FILE)):
            continue
        records = load_records(folder)
        if not records:
            run.notes.append(f"eval/{name}: no episodes")
            continue
        policy = records[0].get("policy") or name
        run.evals[policy] = records
        summary_file = os.path.join(folder, "summary.json")
        if os.path.exists(summary_file):
            with open(summary_file) as f:
                run.eval_configs[policy] = json.load(f).get("eval_config") or {}
    run.evals = dict(sorted(run.evals.items(), key=lambda kv: _policy_order(kv[0])))
    run.curves = _load_curves(path, tracking_uri, run.notes)
    if run.dataset is None and not run.evals and not run.curves:
        raise FileNotFoundError(f"{path}: no data/dataset.json, eval/*/{RECORDS_FILE} or MLflow runs: "
                                "not a run folder written by pipeline.run.run_pipeline")
    if not run.evals:
        run.notes.append("no evaluation records (eval/<policy>/records.parquet) yet")
    return run


def _policy_order(name: str) -> tuple:
    """bc first, then the others by name (so qsft(beta=...) sweeps sit together)."""
    return (name != "bc", name)



def _load_curves(path: str, tracking_uri: str | None, notes: list[str]) -> dict[str, dict[str, list]]:
    """Per-step metric histories of the run's training stages, {stage name: {metric: [(step, value)]}}."""
    uri = tracking_uri_for(path, tracking_uri, create=False)
    if uri is None:
        notes.append("no MLflow store found (mlflow.db, --tracking-uri or MLFLOW_TRACKING_URI): no learning curves")
        return {}
    run_ids = []
    for stage in sorted(os.listdir(path)):
        id_file = os.path.join(path, stage, RUN_ID_FILE)
        if os.path.exists(id_file):
            with open(id_file) as f:
                run_ids.append(f.read().strip())
    import mlflow
    from mlflow.exceptions import MlflowException

    client = mlflow.MlflowClient(tracking_uri=uri)
    if run_ids:
        runs = []
        for run_id in run_ids:
            try:
                runs.append(client.get_run(run_id))
            except MlflowException:
                notes.append(f"MLflow run {run_id} (from {path}) is not in {uri}")
    elif uri.startswith("sqlite:///") and os.path.dirname(uri[len("sqlite:///"):]) == path:
        # The run folder's own store holds only this run's stages: take them all.
        experiments = [e.experiment_id for e in client.search_experiments()]
        runs = client.search_runs(experiments, max_results=1000) if experiments else []
    else:
        notes.append(f"no {RUN_ID_FILE} files in the stage folders: cannot tell this run's MLflow runs in {uri}")
        runs = []
    curves: dict[str, dict[str, list]] = {}
    for r in sorted(runs, key=lambda r: r.info.start_time or 0):
        metrics = {}
        for key in CURVE_METRICS:
            if key in r.data.metrics:
                history = client.get_metric_history(r.info.run_id, key)
                metrics[key] = sorted((int(m.step), float(m.value)) for m in history)
        if metrics:
            name = r.info.run_name or r.data.params.get("stage") or r.info.run_id
            curves[name if name not in curves else f"{name} ({r.info.run_id[:8]})"] = metrics
    return curves


# --------------------------------------------------------------------------------------------- plots
def _png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()




def plot_scores(task: str, rows: list[tuple[str, str, dict[str, float]]]) -> bytes:
    """Normalized score and success rate with 95% CIs, one bar per (run, policy) evaluated on `task`."""
    plt = pyplot()
    labels = [f"{run} · {policy}" for run, policy, _ in rows]
    colours, hatches = _styles([(run, policy) for run, policy, _ in rows])
    y = list(range(len(rows)))[::-1]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 1.2 + 0.45 * len(rows)), sharey=True)
    ax1.barh(y, [s["score"] for _, _, s in rows], xerr=[s["score_ci"] for _, _, s in rows], capsize=3,
             color=colours, hatch=hatches, edgecolor="white")
    ax1.axvline(50, color="k", ls="--", lw=0.8, label="dataset average")
    ax1.legend(fontsize=8, loc="lower right")
    ax1.set(title=f"{task}: normalized score (mean, 95% CI)", xlabel="score (0 worst, 50 dataset, 100 best)",
            xlim=(min(0, min(s["score"] - s["score_ci"] for _, _, s in rows)),
                  max(100, max(s["score"] + s["score_ci"] for _, _, s in rows))))
    rates = [100 * s["success_rate"] for _, _, s in rows]
    errors = [[100 * (s["success_rate"] - s["success_ci_low"]) for _, _, s in rows],
              [100 * (s["success_ci_high"] - s["success_rate"]) for _, _, s in rows]]
    ax2.barh(y, rates, xerr=errors, capsize=3, color=colours, hatch=hatches, edgecolor="white")
    ax2.set(title="success rate (Wilson 95% CI)", xlabel="%", xlim=(0, 100))
    ax1.set_yticks(y, labels)
    for ax in (ax1, ax2):
        ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    data = _png(fig)
    plt.close(fig)
    return data


def plot_task_types(task: str, types: list[str], columns: list[tuple[str, str, list[dict]]]) -> bytes:
    """Success rate per task type, one bar group per type, one bar per (run, policy)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(min(14, 3 + 0.9 * len(types) * max(1, len(columns)) ** 0.5), 3.8))
    width = 0.8 / max(1, len(columns))
    colours, hatches = _styles([(run, policy) for run, policy, _ in columns])
    for i, (run, policy, records) in enumerate(columns):
        rates = []
        for t in types:
            sel = [r["success"] for r in records if r.get("task_type") == t]
            rates.append(100 * sum(sel) / len(sel) if sel else math.nan)
        ax.bar([k + (i - (len(columns) - 1) / 2) * width for k in range(len(types))], rates, width,
               label=f"{run} · {policy}", color=colours[i], hatch=hatches[i], edgecolor="white")
    ax.set_xticks(range(len(types)), types, rotation=20, ha="right")
    ax.set(title=f"{task}: success rate by task type", ylabel="%", ylim=(0, 100))
    ax.legend(fontsize=8)
    fig.tight_layout()
    data = _png(fig)
    plt.close(fig)
    return data


def plot_curves(label: str, curves: dict[str, dict[str, list[tuple[int, float]]]]) -> bytes:
    """One panel per training metric, one line per stage (BC, Q-SFT, ...)."""
    plt = pyplot()
    metrics = [m for m in CURVE_METRICS if any(m in stage for stage in curves.values())]
    cols = min(3, len(metrics))
    rows = math.ceil(len(metrics) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.0 * rows), squeeze=False)
    for ax, metric in zip(axes.flat, metrics):
        for i, (stage, series) in enumerate(curves.items()):
            if metric in series:
                steps, values = zip(*series[metric])
                ax.plot(steps, values, marker="o" if len(steps) < 30 else None, ms=3, label=stage, color=f"C{i}")
        ax.set(title=metric, xlabel="step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    for ax in list(axes.flat)[len(metrics):]:
        ax.set_visible(False)
    fig.suptitle(f"{label}: training curves (MLflow)", fontsize=11)
    fig.tight_layout()
    data = _png(fig)
    plt.close(fig)
    return data


def _styles(columns: list[tuple[str, str]]) -> tuple[list[str], list[str]]:
    """A colour per policy (BC grey, the same policy the same colour in every run) and a hatch per run."""
    policies = sorted({p for _, p in columns if p != "bc"})
    runs = list(dict.fromkeys(r for r, _ in columns))
    colours = ["0.6" if p == "bc" else f"C{policies.index(p) % 10}" for _, p in columns]
    hatches = [("", "//", "..", "xx", "\\\\", "oo")[runs.index(r) % 6] for r, _ in columns]
    return colours, hatches


# ---------------------------------------------------------------------------------------------- page
def build_dashboard(run_dirs: list[str], out: str, tracking_uri: str | None = None,
                    max_transcripts: int = 100) -> str:
    """Write `<out>/index.html` (and the plots as PNG files) for `run_dirs`; returns the page's path."""
    runs = [load_run(p, label, tracking_uri) for p, label in zip(run_dirs, _labels(run_dirs))]
    os.makedirs(out, exist_ok=True)
    images: dict[str, bytes] = {}
    header = (f"<h1>Q-SFT evaluation dashboard</h1><p class=muted>{len(runs)} run(s); generated "
              f"{datetime.now():%Y-%m-%d %H:%M}. Scores are LMRL-Gym normalized (0 = worst, 50 = dataset "
              "average, 100 = best); intervals are 95% confidence intervals over held-out episodes.</p>")
    nav = ("<nav><a href='#results'>results</a> · <a href='#task-types'>task types</a> · "
           "<a href='#curves'>learning curves</a> · <a href='#transcripts'>transcripts</a></nav>")
    parts = [header, nav, _runs_section(runs), _results_section(runs, images), _task_type_section(runs, images),
             _curves_section(runs, images), _transcripts_section(runs, max_transcripts)]
    for name, data in images.items():
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)
    body = "\n".join(parts)
    for name, data in images.items():  # inline the plots: the page is one self-contained file
        body = body.replace(f'src="{name}"', f'src="data:image/png;base64,{base64.b64encode(data).decode()}"')
    page = os.path.join(out, INDEX_FILE)
    with open(page, "w") as f:
        f.write(f"<!doctype html><html lang=en><head><meta charset=utf-8>"
                f"<meta name=viewport content='width=device-width, initial-scale=1'>"
                f"<title>Q-SFT dashboard</title><style>{_STYLE}</style></head><body>{body}"
                f"<script>{_SCRIPT}</script></body></html>")
    return page


def _labels(paths: list[str]) -> list[str]:
    """Short unique names: the folder's name, with as many parent folders as it takes to tell them apart."""
    parts = [os.path.abspath(p).rstrip(os.sep).split(os.sep) for p in paths]
    depth = 1
    while depth < max(len(p) for p in parts):
        labels = ["/".join(p[-depth:]) for p in parts]
        if len(set(labels)) == len(labels):
            return labels
        depth += 1
    return ["/".join(p) for p in parts]


def _e(value: Any) -> str:
    return html.escape(str(value))


def _runs_section(runs: list[RunData]) -> str:
    rows = []
    for run in runs:
        d = run.dataset or {}
        ret = d.get("return", {})
        dataset = (f"{d.get('num_episodes', '?')} episodes, return {ret.get('mean', math.nan):.2f} "
                   f"± {ret.get('std', math.nan):.2f} (sd), success {100 * d.get('success_rate', math.nan):.1f}%"
                   if d else "-")
        behaviour = d.get("behaviour_policy", {}).get("params") if d else None
        notes = "".join(f"<div class=note>{_e(n)}</div>" for n in run.notes)
        rows.append(f"<tr><td><b>{_e(run.label)}</b><div class=muted>{_e(run.path)}</div>{notes}</td>"
                    f"<td>{_e(', '.join(run.tasks) or '-')}</td><td>{_e(dataset)}</td>"
                    f"<td>{_e(json.dumps(behaviour) if behaviour else '-')}</td>"
                    f"<td>{_e(', '.join(run.evals) or '-')}</td></tr>")
    return ("<h2 id=runs>Runs</h2><table class=runs><tr><th>run</th><th>task</th><th>behaviour dataset</th>"
            "<th>behaviour policy</th><th>evaluated policies</th></tr>" + "".join(rows) + "</table>")


def _by_task(runs: list[RunData]) -> dict[str, list[tuple[str, str, list[dict]]]]:
    """{task: [(run label, policy, that policy's records on the task)]}."""
    out: dict[str, list] = {}
    for run in runs:
        for policy, records in run.evals.items():
            for task in sorted({r["task"] for r in records}):
                out.setdefault(task, []).append((run.label, policy, [r for r in records if r["task"] == task]))
    return dict(sorted(out.items()))


def _results_section(runs: list[RunData], images: dict[str, bytes]) -> str:
    parts = ["<h2 id=results>Results on held-out instances</h2>"]
    by_task = _by_task(runs)
    if not by_task:
        return parts[0] + "<p>No evaluation records found.</p>"
    rows = []
    for task, columns in by_task.items():
        summaries = [(run, policy, summarize(records)) for run, policy, records in columns]
        scores = [s["score"] for _, _, s in summaries]
        for run, policy, s in summaries:  # highlight the best score when it is unique
            cls = " class=best" if scores.count(max(scores)) == 1 and s["score"] == max(scores) else ""
            rows.append(f"<tr{cls} data-task='{_e(task)}'><td>{_e(task)}</td><td>{_e(run)}</td><td>{_e(policy)}</td>"
                        f"<td class=num>{s['episodes']}</td>"
                        f"<td class=num>{s['raw_return']:.2f} ± {s['raw_return_ci']:.2f}</td>"
                        f"<td class=num>{s['score']:.1f} ± {s['score_ci']:.1f}</td>"
                        f"<td class=num>{100 * s['success_rate']:.1f}% [{100 * s['success_ci_low']:.0f}, "
                        f"{100 * s['success_ci_high']:.0f}]</td><td class=num>{s['steps']:.1f}</td></tr>")
        name = f"scores_{_slug(task)}.png"
        images[name] = plot_scores(task, summaries)
        parts.append(f'<img class=plot src="{name}" alt="{_e(task)}: scores and success rates">')
    table = ("<table id=results-table><tr><th>task</th><th>run</th><th>policy</th><th>episodes</th>"
             "<th>raw return</th><th>normalized score</th><th>success rate [95% CI]</th><th>steps</th></tr>"
             + "".join(rows) + "</table>")
    return parts[0] + table + "".join(parts[1:])


def _task_type_section(runs: list[RunData], images: dict[str, bytes]) -> str:
    parts = ["<h2 id=task-types>By task type</h2>"]
    for task, columns in _by_task(runs).items():
        types = sorted({r["task_type"] for _, _, records in columns for r in records if r.get("task_type")})
        if not types:
            continue
        head = "".join(f"<th>{_e(run)} · {_e(policy)}</th>" for run, policy, _ in columns)
        rows = []
        for t in types:
            cells = []
            for _, _, records in columns:
                sel = [r for r in records if r.get("task_type") == t]
                cells.append(f"<td class=num>{100 * sum(r['success'] for r in sel) / len(sel):.0f}% "
                             f"<span class=muted>(score {sum(r['score'] for r in sel) / len(sel):.1f}, n={len(sel)})"
                             "</span></td>" if sel else "<td class=num>-</td>")
            rows.append(f"<tr><td>{_e(t)}</td>{''.join(cells)}</tr>")
        name = f"task_types_{_slug(task)}.png"
        images[name] = plot_task_types(task, types, columns)
        parts.append(f"<h3>{_e(task)}</h3><table class=task-types><tr><th>task type: success rate</th>{head}</tr>"
                     + "".join(rows) + f'</table><img class=plot src="{name}" alt="{_e(task)} by task type">')
    if len(parts) == 1:
        parts.append("<p class=muted>No episode has a task type (tasks such as Wordle have a single kind).</p>")
    return "".join(parts)


def _curves_section(runs: list[RunData], images: dict[str, bytes]) -> str:
    parts = ["<h2 id=curves>Learning curves</h2>"]
    for run in runs:
        if not run.curves:
            parts.append(f"<p class=muted>{_e(run.label)}: no training metrics found.</p>")
            continue
        name = f"curves_{_slug(run.label)}.png"
        images[name] = plot_curves(run.label, run.curves)
        last = "".join(f"<li>{_e(stage)}: " + ", ".join(f"{m} {series[-1][1]:.4g} (step {series[-1][0]})"
                                                       for m, series in metrics.items()) + "</li>"
                       for stage, metrics in run.curves.items())
        parts.append(f"<h3>{_e(run.label)}</h3>"
                     f'<img class=plot src="{name}" alt="{_e(run.label)}: training curves"><ul class=muted>{last}</ul>')
    return "".join(parts)


def _transcripts_section(runs: list[RunData], max_transcripts: int) -> str:
    episodes, skipped = [], 0
    for run in runs:
        for policy, records in run.evals.items():
            skipped += max(0, len(records) - max_transcripts)
            for r in records[:max_transcripts]:
                episodes.append(_episode_html(run.label, policy, r))
    if not episodes:
        return "<h2 id=transcripts>Transcripts</h2><p>No episodes.</p>"

    def options(name: str, values: list[str]) -> str:
        return (f"<label>{name} <select id=filter-{name}><option value=''>all</option>"
                + "".join(f"<option value='{_e(v)}'>{_e(v)}</option>" for v in values) + "</select></label>")

    tasks = sorted({t for run in runs for t in run.tasks})
    policies = sorted({p for run in runs for p in run.evals}, key=_policy_order)
    controls = (options("run", [run.label for run in runs if run.evals]) + options("task", tasks)
                + options("policy", policies) + options("outcome", ["success", "failure"])
                + "<span class=muted>showing <b id=shown>?</b> episodes</span>")
    note = (f"<p class=muted>{skipped} more episodes are not shown (first {max_transcripts} per run and policy; "
            "raise --max-transcripts).</p>" if skipped else "")
    return (f"<h2 id=transcripts>Transcripts</h2><div class=filters>{controls}</div>{note}"
            f"<div id=episodes>{''.join(episodes)}</div>")


def _episode_html(run: str, policy: str, r: dict[str, Any]) -> str:
    try:
        turns = json.loads(r.get("transcript") or "[]")
    except json.JSONDecodeError:
        turns = [{"observation": str(r.get("transcript"))}]
    body = []
    for i, turn in enumerate(turns):
        body.append(f"<div class=obs>{_e(turn.get('observation', ''))}</div>")
        if "action" in turn:
            reward = turn.get("reward")
            body.append(f"<div class=act><span class=turn>{i + 1}</span> &gt; {_e(turn['action']) or '<i>(empty)</i>'}"
                        + (f" <span class=reward>reward {reward:g}</span>" if isinstance(reward, (int, float)) else "")
                        + "</div>")
    outcome = "success" if r["success"] else "failure"
    task_type = f" · {_e(r['task_type'])}" if r.get("task_type") else ""
    return (f"<details class='episode {outcome}' data-run='{_e(run)}' data-task='{_e(r['task'])}' "
            f"data-policy='{_e(policy)}' data-outcome='{outcome}'>"
            f"<summary><span class=badge>{outcome}</span> {_e(run)} · {_e(policy)} · {_e(r['task'])} episode "
            f"{r['episode']}{task_type} · return {r['raw_return']:.2f} · score {r['score']:.1f} · {r['steps']} steps"
            f"</summary><div class=transcript><div class=muted>instance {_e(r.get('instance'))}, seed {r.get('seed')}</div>"
            f"{''.join(body)}</div></details>")


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in text).strip("_") or "x"


_STYLE = """
body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;max-width:1200px;margin:1.5em auto;padding:0 1em;color:#222}
h1{margin-bottom:.2em}h2{margin-top:1.6em;border-bottom:1px solid #ddd;padding-bottom:.2em}
nav a{color:#06c}.muted{color:#777;font-size:12px}.note{color:#a60;font-size:12px}
table{border-collapse:collapse;margin:.6em 0}th,td{border:1px solid #ddd;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f5f5f5}td.num{text-align:right;white-space:nowrap}tr.best td{background:#eef8ee}
img.plot{display:block;max-width:100%;margin:.8em 0;border:1px solid #eee}
.filters{display:flex;gap:1em;flex-wrap:wrap;align-items:center;margin:.6em 0;padding:.5em;background:#f7f7f7}
details.episode{border:1px solid #ddd;border-left:4px solid #c33;margin:4px 0;padding:2px 8px}
details.episode.success{border-left-color:#2a2}summary{cursor:pointer}
.badge{display:inline-block;min-width:4.5em;font-size:11px;text-transform:uppercase;color:#c33}
.success .badge{color:#2a2}.transcript{padding:.4em 0}
.obs{white-space:pre-wrap;color:#333;margin:2px 0}.act{font-family:ui-monospace,monospace;color:#05a;margin:2px 0 6px}
.turn{color:#999}.reward{color:#999;font-size:11px}
"""

_SCRIPT = """
function applyFilters(){
  const want = {};
  for (const k of ['run','task','policy','outcome']) want[k] = document.getElementById('filter-' + k).value;
  let shown = 0;
  for (const d of document.querySelectorAll('details.episode')) {
    const ok = Object.keys(want).every(k => !want[k] || d.dataset[k] === want[k]);
    d.hidden = !ok; if (ok) shown++;
  }
  document.getElementById('shown').textContent = shown;
}
for (const s of document.querySelectorAll('.filters select')) s.addEventListener('change', applyFilters);
if (document.getElementById('shown')) applyFilters();
"""


# ------------------------------------------------------------------------------------------------ CLI
def serve(folder: str, port: int) -> None:
    """Serve `folder` on http://127.0.0.1:PORT until interrupted (loopback only)."""
    import functools
    import http.server

    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=folder)
    with http.server.ThreadingHTTPServer(("127.0.0.1", port), handler) as server:
        print(f"serving http://127.0.0.1:{server.server_address[1]}/{INDEX_FILE} (Ctrl-C stops)")
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description="Evaluation dashboard (static HTML) over pipeline run folders: "
                                                 "scores with CIs, task-type breakdowns, learning curves, transcripts")
    parser.add_argument("runs", nargs="+", metavar="RUN_DIR", help="output folders of pipeline runs (--out of a job)")
    parser.add_argument("--out", required=True, help="folder for index.html and the plots")
    parser.add_argument("--tracking-uri", default=None,
                        help="MLflow store of the runs (default: <RUN_DIR>/mlflow.db, else MLFLOW_TRACKING_URI)")
    parser.add_argument("--max-transcripts", type=int, default=100, help="episodes shown per run and policy")
    parser.add_argument("--serve", type=int, default=None, metavar="PORT",
                        help="then serve the page on http://127.0.0.1:PORT")
    args = parser.parse_args(argv)
    try:
        page = build_dashboard(args.runs, args.out, args.tracking_uri, args.max_transcripts)
    except FileNotFoundError as err:
        parser.exit(2, f"error: {err}\n")
    print(f"dashboard: {page}")
    if args.serve is not None:
        serve(os.path.dirname(page), args.serve)
    return page


if __name__ == "__main__":
    main(sys.argv[1:])
