"""The `qsft` console command: one dispatch table onto the job scripts' entry functions, plain errors, --help."""

import glob
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest

import envs
from pipeline import cli, runtime

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QSFT = os.path.join(os.path.dirname(sys.executable), "qsft")


@pytest.fixture
def calls(monkeypatch):
    """Every entry function replaced by a recorder: the calls as (entry, args, kwargs), and sys.argv[0] then."""
    seen = []

    def recorder(name):
        def entry(*args, **kwargs):
            seen.append((name, args, kwargs, sys.argv[0]))
        return entry

    monkeypatch.setattr(cli, "pipeline_main", recorder("pipeline_main"))
    for command in ("collect", "train", "sweep"):
        monkeypatch.setitem(cli.COMMANDS, command, recorder(f"{command}_main"))
    monkeypatch.setitem(sys.modules, "pipeline.dashboard", types.SimpleNamespace(main=recorder("dashboard.main")))
    monkeypatch.setattr(runtime, "init_ray", lambda *a, **k: pytest.fail("Ray started"))
    return seen


def _exit_code(argv: list[str]) -> int:
    with pytest.raises(SystemExit) as exit_:
        cli.main(argv)
    return exit_.value.code


@pytest.mark.parametrize("argv, call", [
    (["run", "wordle", "--preset", "cpu", "--set", "qsft.lr=1e-4"],
     ("pipeline_main", ("wordle", ["--preset", "cpu", "--set", "qsft.lr=1e-4"]), {"tasks": ()}, "qsft run wordle")),
    (["run", "robot_pick", "--out", "runs/p"],
     ("pipeline_main", ("robot_pick", ["--out", "runs/p"]), {"tasks": ()}, "qsft run robot_pick")),
    (["run", "robot", "--task", "robot_place"],
     ("pipeline_main", ("robot", ["--task", "robot_place"]), {"tasks": ("robot_pick", "robot_place")},
      "qsft run robot")),
    (["collect", "--task", "maze", "--episodes", "5"],
     ("collect_main", (["--task", "maze", "--episodes", "5"],), {}, "qsft collect")),
    (["train", "--stage", "bc", "--lr", "1e-4"], ("train_main", (["--stage", "bc", "--lr", "1e-4"],), {}, "qsft train")),
    (["sweep", "--task", "maze"], ("sweep_main", (["--task", "maze"],), {}, "qsft sweep")),
    (["dashboard", "runs/a", "--out", "d"], ("dashboard.main", (["runs/a", "--out", "d"],), {}, "qsft dashboard")),
])
def test_each_command_passes_the_rest_of_the_line_to_its_entry_function(argv, call, calls):
    """The entry function gets the task and the remaining argv untouched; its parser is named `qsft COMMAND`."""
    saved = sys.argv[0]
    assert cli.main(argv) is None  # the script's wrapper exits with main()'s return value: 0
    assert calls == [call]
    assert sys.argv[0] == saved


def test_the_table_holds_the_functions_the_job_scripts_call():
    """Every jobs/*.py has its `qsft` command: the same entry function, or `qsft run <family>`."""
    for path in glob.glob(os.path.join(ROOT, "jobs", "*.py")):
        name, source = os.path.basename(path)[:-3], Path(path).read_text()
        if name.startswith("qsft_"):
            assert "pipeline_main(" in source and name[len("qsft_"):] in (*envs.TASK_NAMES, *cli.TASK_GROUPS)
        elif name == "dashboard":
            assert "from pipeline.dashboard import main" in source and name in cli.COMMANDS
        else:
            assert f"from pipeline.cli import {cli.COMMANDS[name].__name__}" in source, name
    robot = Path(ROOT, "jobs", "qsft_robot.py").read_text()
    assert 'pipeline_main("robot", tasks=("robot_pick", "robot_place"))' in robot  # as TASK_GROUPS says


@pytest.mark.parametrize("argv, message", [
    ([], "qsft: error: expected a command; the commands are run, collect, train, sweep, dashboard"),
    (["frob"], "qsft: error: unknown command 'frob'; the commands are run, collect, train, sweep, dashboard"),
    (["run"], "qsft run: error: expected a task; the tasks are maze, maze_small, wordle,"),
    (["run", "wordel", "--preset", "tiny"], "qsft run: error: unknown task 'wordel'; the tasks are maze, "),
])
def test_an_unknown_command_or_task_is_a_one_line_error(argv, message, calls, capsys):
    assert _exit_code(argv) == 2
    stderr = capsys.readouterr().err
    assert stderr.startswith(message) and stderr.count("\n") == 1, stderr
    if argv[:1] == ["run"]:
        assert stderr.rstrip().endswith(", ".join((*envs.TASK_NAMES, "robot")))
    assert calls == []


def test_the_pipeline_parser_errors_name_the_command(monkeypatch, capsys):
    """The real pipeline_main: a bad stage is a one-line error from `qsft run wordle`, before Ray starts."""
    monkeypatch.setattr(runtime, "init_ray", lambda *a, **k: pytest.fail("Ray started"))
    assert _exit_code(["run", "wordle", "--stages", "collect,evaluat"]) == 2
    stderr = capsys.readouterr().err
    assert stderr.startswith("qsft run wordle: error: unknown stage(s) evaluat in --stages") and \
        stderr.count("\n") == 1, stderr


@pytest.mark.parametrize("argv", [["--help"], ["-h"], ["run", "--help"]])
def test_help_lists_the_commands_and_the_tasks(argv, capsys):
    assert _exit_code(argv) == 0
    out = capsys.readouterr().out
    assert "\n  run TASK    the whole pipeline of a task" in out
    assert "\n  collect     behaviour episodes -> sharded Parquet + dataset.json.\n" in out
    for command in ("train", "sweep", "dashboard"):
        assert f"\n  {command} " in out
    assert f"tasks: {', '.join(envs.TASK_NAMES)}, robot (robot_pick and robot_place)" in out


def test_the_installed_script(tmp_path):
    """`pip install` put `qsft` beside the interpreter; it answers --help (and a bad command) without Ray."""
    env = {**os.environ, "RAY_ADDRESS": "127.0.0.1:1"}  # any attempt to reach Ray would fail loudly

    def qsft(*args):
        return subprocess.run([QSFT, *args], capture_output=True, text=True, timeout=60, cwd=tmp_path, env=env,
                              check=False)

    ok, bad = qsft("--help"), qsft("frob")
    assert ok.returncode == 0 and "commands:" in ok.stdout and "maze_small" in ok.stdout, ok.stderr
    assert bad.returncode == 2 and bad.stderr.startswith("qsft: error: unknown command 'frob'"), bad.stderr
