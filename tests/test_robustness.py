"""Bad inputs fail early and plainly: crafted trainer state, bad training arguments."""

import json
import os

import pytest
import torch

from pipeline.collect import collect
from pipeline.models import STAGE_FILE, TRAINER_STATE_FILE
from pipeline.train import load_trainer_state


class _RunsCode:
    """Unpickling this object calls os.mkdir(path): a stand-in for arbitrary code."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return os.mkdir, (self.path,)


def test_a_crafted_trainer_state_is_refused_without_running_its_code(tmp_path):
    marker = str(tmp_path / "code_ran")
    torch.save({"step": 3, "optimizer": _RunsCode(marker)}, tmp_path / TRAINER_STATE_FILE)
    with pytest.raises(Exception, match="Weights only load failed"):
        load_trainer_state(str(tmp_path))
    assert not os.path.exists(marker)


@pytest.fixture(scope="module")
def train_inputs(tmp_path_factory, ray_local):
    """A real wordle dataset, and stage.json-only folders claiming another stage or another task."""
    root = tmp_path_factory.mktemp("inputs")
    collect("wordle", 4, str(root / "data"), progress=False)
    for name, info in (("qsft", {"stage": "qsft", "task": "wordle"}), ("maze_bc", {"stage": "bc", "task": "maze"})):
        os.makedirs(root / name)
        (root / name / STAGE_FILE).write_text(json.dumps(info))
    os.makedirs(root / "empty")
    return root


@pytest.mark.parametrize("args, message", [
    ([], "--stage qsft needs --bc-checkpoint"),
    (["--bc-checkpoint", "{root}/data"], "--bc-checkpoint: {root}/data is not a checkpoint folder"),
    (["--bc-checkpoint", "{root}/qsft"], "was written by the 'qsft' stage; expected a BC checkpoint"),
    (["--bc-checkpoint", "{root}/maze_bc"], "trained on task 'maze'; expected a checkpoint of 'wordle'"),
    (["--data", "{root}/empty", "--bc-checkpoint", "{root}/maze_bc"], "--data: {root}/empty: no dataset.json"),
])
def test_bad_training_arguments_are_one_line_errors_before_ray_starts(train_inputs, args, message, monkeypatch,
                                                                      capsys):
    from pipeline import cli, runtime

    def ray_started():
        raise AssertionError("Ray was started")

    monkeypatch.setattr(runtime, "init_ray", ray_started)
    root = str(train_inputs)
    with pytest.raises(SystemExit) as exit_:
        cli.train_main([a.format(root=root) for a in ["--stage", "qsft", "--data", "{root}/data", "--out",
                                                      "{root}/out", *args]])
    stderr = capsys.readouterr().err
    assert exit_.value.code == 2 and stderr.count("\n") == 1 and message.format(root=root) in stderr, stderr
