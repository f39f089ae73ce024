"""Command lines of the jobs in `jobs/` (each job script is a two-line call into here).

Every job runs as `python jobs/X.py ...` (embedded local Ray) and unchanged as
`ray job submit --working-dir . -- python jobs/X.py ...` (joins the cluster through RAY_ADDRESS).
Config fields are overridden with `--set section.field=value` (pipeline jobs) or `--field value` (train).
`main` is the installed `qsft` command: `qsft run TASK ...`, `qsft collect ...` etc. call the same functions.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Iterator
from typing import Any, NoReturn

from pipeline.config import ConfigError


def _error(parser: argparse.ArgumentParser, message: str) -> NoReturn:
    """Exit with status 2 and one line on stderr (argparse's `error` would print the usage too)."""
    parser.exit(2, f"{parser.prog}: error: {message}\n")


def _parse_sets(pairs: list[str]) -> dict[str, dict[str, Any]]:
    """["qsft.lr=1e-4", "eval.beta=8"] -> {"qsft": {"lr": "1e-4"}, "eval": {"beta": "8"}}."""
    out: dict[str, dict[str, Any]] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        section, dot, field = key.partition(".")
        if not sep or not dot:
            raise ConfigError(f"--set expects section.field=value, got {pair!r}")
        out.setdefault(section, {})[field] = value
    return out


def pipeline_main(family: str, argv: list[str] | None = None, tasks: tuple[str, ...] = ()) -> dict:
    """`jobs/qsft_<family>.py`: the whole staged pipeline of one task, or of each of `tasks` in turn
    (then `--task` picks some, outputs go to `<out>/<task>`, and the result is keyed by task)."""
    from pipeline.data import DataError, FolderBusy
    from pipeline.presets import PRESET_NAMES
    from pipeline.run import STAGES, run_pipeline, stage_configs
    from pipeline.runtime import init_ray

    parser = argparse.ArgumentParser(description=f"Q-SFT on {family}: collect -> BC -> Q-SFT -> evaluate -> report")
    parser.add_argument("--out", default=os.path.join("runs", family), help="output folder (stages hand off here)")
    if tasks:
        parser.add_argument("--task", action="append", choices=tasks, help=f"default: all of {', '.join(tasks)}")
    parser.add_argument("--preset", default="tiny", choices=PRESET_NAMES)
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                        help="override a config field, e.g. qsft.lr=1e-4, eval.beta=8, collect.episodes=2000")
    parser.add_argument("--force", action="append", default=[], choices=STAGES, help="redo a stage")
    parser.add_argument("--stages", default=",".join(STAGES), help="comma-separated stages to run")
    args = parser.parse_args(argv)
    chosen = tuple(args.task or tasks) if tasks else (family,)
    stages = tuple(s for s in args.stages.split(",") if s)
    unknown = [s for s in stages if s not in STAGES]
    if unknown:
        _error(parser, f"unknown stage(s) {', '.join(unknown)} in --stages; the stages are {', '.join(STAGES)}")
    try:  # fail on a bad section or field before anything starts
        overrides = _parse_sets(args.set)
        for task in chosen:
            stage_configs(task, args.preset, overrides)
    except ValueError as err:  # ConfigError, or an unknown section
        _error(parser, str(err))
    init_ray()
    try:
        results = {task: run_pipeline(task, os.path.join(args.out, task) if tasks else args.out, args.preset,
                                      overrides, force=tuple(args.force), stages=stages)
                   for task in chosen}
    except (DataError, FolderBusy) as err:  # a bad dataset, or another run writing the same folder
        _error(parser, str(err))
    return results if tasks else results[family]


def collect_main(argv: list[str] | None = None) -> dict:
    """`jobs/collect.py`: behaviour episodes -> sharded Parquet + dataset.json."""
    import envs
    from pipeline.collect import collect
    from pipeline.data import DataError, FolderBusy
    from pipeline.runtime import init_ray

    parser = argparse.ArgumentParser(description="collect behaviour-policy episodes into sharded Parquet")
    parser.add_argument("--task", required=True, choices=envs.TASK_NAMES)
    parser.add_argument("--episodes", type=int, required=True)
    parser.add_argument("--out", required=True, help="dataset folder (local path or s3://, gs://, ...)")
    parser.add_argument("--workers", type=int, default=0, help="parallel collection tasks (default: all CPUs)")
    parser.add_argument("--shards", type=int, default=0, help="Parquet shards (default: 4 per worker)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--validation-instances", type=int, default=0,
                        help="hold the training split's first N instances out of the data, for validation")
    parser.add_argument("--random-prob", type=float, default=None, help="behaviour: probability of a random move")
    parser.add_argument("--behaviour", default="{}", help="behaviour-policy parameters as JSON")
    args = parser.parse_args(argv)
    try:
        params = json.loads(args.behaviour)
    except json.JSONDecodeError as err:
        _error(parser, f"--behaviour: {args.behaviour!r} is not valid JSON ({err})")
    if not isinstance(params, dict):
        _error(parser, f"--behaviour: expected a JSON object of parameters, e.g. '{{\"random_prob\": 0.2}}', "
                       f"got {args.behaviour!r}")
    if args.random_prob is not None:
        params["random_prob"] = args.random_prob
    init_ray()
    try:
        meta = collect(args.task, args.episodes, args.out, seed=args.seed, workers=args.workers,
                       shards=args.shards, behaviour_params=params, validation_instances=args.validation_instances)
    except (DataError, FolderBusy) as err:  # another writer holds --out, or no shard was written
        _error(parser, str(err))
    ret = meta["return"]
    print(f"{meta['num_episodes']} episodes, {meta['num_steps']} steps in {meta['num_shards']} shards -> {args.out}")
    print(f"return mean {ret['mean']:.3f} (std {ret['std']:.3f}, min {ret['min']:.1f}, max {ret['max']:.1f}); "
          f"success {100 * meta['success_rate']:.1f}%; {meta['num_steps'] / meta['collection_seconds']:.0f} steps/s")
    return meta


def train_main(argv: list[str] | None = None):
    """`jobs/train.py`: one training stage (bc, filtered_bc, qsft, ilql or spo) as its own Ray Train job."""
    from pipeline.data import DataError, FolderBusy, folder_lock, read_metadata
    from pipeline.presets import PRESET_NAMES
    from pipeline.run import stage_configs
    from pipeline.runtime import init_ray
    from pipeline.train import BASE_STAGE, FROM_BC, check_bc_checkpoint, method_config, run_stage

    parser = argparse.ArgumentParser(description="run one training stage; other --field value flags override "
                                                 "TrainConfig fields (e.g. --lr 1e-4 --model.n_layer 4)")
    parser.add_argument("--stage", required=True, choices=tuple(BASE_STAGE))
    parser.add_argument("--data", required=True, help="dataset folder written by jobs/collect.py")
    parser.add_argument("--out", required=True, help="stage folder; re-running resumes from its last checkpoint")
    parser.add_argument("--bc-checkpoint", help=f"the BC stage's checkpoint folder ({', '.join(FROM_BC)})")
    parser.add_argument("--preset", default="tiny", choices=PRESET_NAMES)
    args, rest = parser.parse_known_args(argv)
    overrides = _parse_flags(parser, rest)
    if args.stage in FROM_BC and not args.bc_checkpoint:
        _error(parser, f"--stage {args.stage} needs --bc-checkpoint, the BC stage's checkpoint folder "
                       "(<bc out>/checkpoint)")
    try:
        task = read_metadata(args.data)["task"]
    except DataError as err:
        _error(parser, f"--data: {err}")
    if args.stage in FROM_BC:
        try:
            check_bc_checkpoint(args.bc_checkpoint, task)
        except ValueError as err:
            _error(parser, f"--bc-checkpoint: {err}")
    try:
        _, bc_cfg, qsft_cfg, _ = stage_configs(task, args.preset, {BASE_STAGE[args.stage]: overrides})
        cfg = method_config(args.stage, bc_cfg, qsft_cfg)
    except ConfigError as err:
        _error(parser, str(err))
    try:
        with folder_lock(args.out):  # another run training into --out is refused, not interleaved
            init_ray()
            result = run_stage(cfg, args.data, args.out, task, bc_checkpoint=args.bc_checkpoint)
    except FolderBusy as err:
        _error(parser, f"--out: {err}")
    print(f"{args.stage} checkpoint: {result.checkpoint}")
    print(json.dumps({k: v for k, v in result.metrics.items() if isinstance(v, (int, float))}, indent=1))
    return result


def _parse_flags(parser: argparse.ArgumentParser, rest: list[str]) -> dict[str, str]:
    overrides: dict[str, str] = {}
    i = 0
    while i < len(rest):
        flag = rest[i]
        if not flag.startswith("--"):
            _error(parser, f"unexpected argument {flag!r}")
        if "=" in flag:
            key, value = flag[2:].split("=", 1)
            i += 1
        elif i + 1 < len(rest):
            key, value = flag[2:], rest[i + 1]
            i += 2
        else:
            _error(parser, f"flag {flag} needs a value")
        overrides[key.replace("-", "_")] = value
    return overrides


def sweep_main(argv: list[str] | None = None):
    """`jobs/sweep.py`: Ray Tune over config fields of a stage (or of policy extraction)."""
    import envs
    from pipeline.presets import PRESET_NAMES
    from pipeline.runtime import init_ray
    from pipeline.sweep import parse_search, run_sweep
    from pipeline.train import BASE_STAGE

    parser = argparse.ArgumentParser(description="sweep config fields with Ray Tune; the task's pipeline must "
                                                 "have run in --run first (its data and checkpoints are reused)")
    parser.add_argument("--task", required=True, choices=envs.TASK_NAMES)
    parser.add_argument("--run", help="the task's pipeline folder (default runs/<task>)")
    parser.add_argument("--stage", default="qsft", choices=tuple(BASE_STAGE))
    parser.add_argument("--search", action="append", required=True, metavar="FIELD=VALUES",
                        help="beta=[1,4,16] | lr=loguniform(1e-5,1e-3) | tau=uniform(0.001,0.01) | x=choice([..])")
    parser.add_argument("--num-samples", type=int, default=1, help="samples per grid point")
    parser.add_argument("--preset", default="tiny", choices=PRESET_NAMES)
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE")
    parser.add_argument("--max-concurrent", type=int, default=1)
    parser.add_argument("--scheduler", default="asha", choices=("asha", "fifo"),
                        help="asha stops weak training trials early (on the training loss); fifo runs all")
    args = parser.parse_args(argv)
    try:
        search = dict(parse_search(s) for s in args.search)
        overrides = _parse_sets(args.set)
        init_ray()
        return run_sweep(args.task, args.run or os.path.join("runs", args.task), args.stage, search,
                         args.num_samples, args.preset, overrides, args.max_concurrent, args.scheduler)
    except ConfigError as err:
        _error(parser, str(err))


def dashboard_main(argv: list[str] | None = None) -> str:
    """`jobs/dashboard.py`: a static HTML page over run folders.
    `pipeline.dashboard.main`, imported when called (it loads matplotlib and MLflow)."""
    from pipeline.dashboard import main as dashboard

    return dashboard(argv)


# Tasks that one job script runs together (`jobs/qsft_robot.py`); `--task` then picks some of them.
TASK_GROUPS = {"robot": ("robot_pick", "robot_place")}


def run_main(argv: list[str]) -> dict:
    """`qsft run TASK ...`: the whole pipeline of a task (or a group), as `jobs/qsft_<TASK>.py` runs it."""
    import envs

    _help(argv)
    targets = (*envs.TASK_NAMES, *TASK_GROUPS)
    if not argv or argv[0] not in targets:
        what = f"unknown task {argv[0]!r}" if argv else "expected a task"
        _fail("qsft run", f"{what}; the tasks are {', '.join(targets)}")
    task, rest = argv[0], argv[1:]
    with _named(f"qsft run {task}"):
        return pipeline_main(task, rest, tasks=TASK_GROUPS.get(task, ()))


# `qsft COMMAND ...` -> the entry function the job script calls; each parses the rest of the command line itself.
COMMANDS = {"run": run_main, "collect": collect_main, "train": train_main, "sweep": sweep_main,
            "dashboard": dashboard_main}


def main(argv: list[str] | None = None) -> None:
    """The `qsft` console command (pyproject's [project.scripts]): `qsft COMMAND ...` calls COMMANDS[COMMAND].
    Returns None, so the script exits 0 on success (its wrapper passes the return value to sys.exit)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    _help(argv)
    if not argv or argv[0] not in COMMANDS:
        what = f"unknown command {argv[0]!r}" if argv else "expected a command"
        _fail("qsft", f"{what}; the commands are {', '.join(COMMANDS)} (`qsft --help` says more)")
    command, rest = argv[0], argv[1:]
    with _named(f"qsft {command}"):
        COMMANDS[command](rest)


def _help(argv: list[str]) -> None:
    """`qsft --help` or `qsft run --help`: print the usage and exit 0 (`qsft run TASK --help` lists the flags)."""
    if argv[:1] in (["-h"], ["--help"]):
        print(_usage())
        sys.exit(0)


def _usage() -> str:
    """`qsft --help`: the commands (from their entry functions' docstrings) and the task names."""
    import envs

    lines = ["usage: qsft COMMAND [ARGS ...]   (`qsft COMMAND --help` lists a command's flags)", "", "commands:"]
    for name, entry in COMMANDS.items():
        summary = entry.__doc__.split("\n")[0].split(": ", 1)[-1]
        lines.append(f"  {name + (' TASK' if entry is run_main else ''):<11} {summary}")
    groups = [f"{group} ({' and '.join(tasks)})" for group, tasks in TASK_GROUPS.items()]
    lines += ["", f"tasks: {', '.join((*envs.TASK_NAMES, *groups))}",
              "e.g. `qsft run maze_small --preset tiny` is `python jobs/qsft_maze_small.py --preset tiny`"]
    return "\n".join(lines)


def _fail(prog: str, message: str) -> NoReturn:
    """Exit with status 2 and one line on stderr, as `_error` does for a parser."""
    sys.stderr.write(f"{prog}: error: {message}\n")
    sys.exit(2)


@contextlib.contextmanager
def _named(prog: str) -> Iterator[None]:
    """Name the parsers built inside after `prog` (argparse takes its default name from sys.argv[0]), so their
    usage and errors read `qsft run wordle: ...` instead of `qsft: ...`."""
    saved = sys.argv[:1]
    sys.argv[:1] = [prog]
    try:
        yield
    finally:
        sys.argv[:1] = saved
