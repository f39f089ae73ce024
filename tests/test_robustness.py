"""Bad inputs fail early and plainly: crafted trainer state, bad arguments, a busy folder, bad data."""

import dataclasses
import functools
import json
import os

import pytest
import torch

from pipeline import train
from pipeline.collect import collect
from pipeline.config import ConfigError, ModelConfig, TrainConfig
from pipeline.models import (
    STAGE_FILE,
    TRAINER_STATE_FILE,
    build_tokenizer,
    load_initial_model,
    save_checkpoint,
)
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


def test_the_label_smoothing_floor_uses_the_width_of_the_logits(tmp_path, monkeypatch):
    """A pretrained embedding padded past the tokenizer (to a multiple of 128 here): the loss smooths over
    V = the logits' width, so the support_eps floor 1/(V-1) is that V's, not len(tokenizer)'s."""
    mcfg = ModelConfig(n_layer=1, n_embd=32, n_head=2, max_length=64, vocab_size=300)
    tokenizer = build_tokenizer(mcfg, ["crane", "crane: _ Y _ _ G\n", "slate: G G G G G\n"] * 30)
    model = load_initial_model(mcfg, tokenizer, seed=1)
    model.resize_token_embeddings(len(tokenizer), pad_to_multiple_of=128, mean_resizing=False)
    vocab = model.get_output_embeddings().out_features
    assert vocab > len(tokenizer)
    bc = str(tmp_path / "bc")
    save_checkpoint(bc, model, tokenizer, {"stage": "bc", "task": "wordle"})

    class FloorPassed(Exception):
        pass

    def floor_passed(*args, **kwargs):
        raise FloorPassed

    monkeypatch.setattr(train, "prepare_data", floor_passed)  # the next step after the check
    qsft = TrainConfig(stage="qsft", model=mcfg)
    with pytest.raises(FloorPassed):  # above 1/(|A|-1) with |A| = V, though at 1/(len(tokenizer)-1)
        train.run_stage(dataclasses.replace(qsft, support_eps=1 / (len(tokenizer) - 1)), "data",
                        str(tmp_path / "out"), "wordle", bc_checkpoint=bc)
    with pytest.raises(ConfigError, match=rf"1/\(\|A\|-1\) = {1 / (vocab - 1):.4f} .*\(\|A\| = {vocab} action tokens\)"):
        train.run_stage(dataclasses.replace(qsft, support_eps=1 / (vocab - 1)), "data", str(tmp_path / "out"),
                        "wordle", bc_checkpoint=bc)


def _one_line_error(main, argv: list[str], monkeypatch, capsys) -> str:
    """`main(argv)`'s stderr, once it is shown to be one line and exit status 2."""
    from pipeline import runtime

    monkeypatch.setattr(runtime, "init_ray", lambda: None)  # the errors come before any Ray work
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    stderr = capsys.readouterr().err
    assert exit_.value.code == 2 and stderr.count("\n") == 1, stderr
    return stderr


def test_collecting_into_a_held_folder_is_a_one_line_error(tmp_path, monkeypatch, capsys):
    from pipeline import cli

    out = tmp_path / "data"
    (tmp_path / "data.lock").write_text(json.dumps({"pid": 1, "host": "another-host"}))
    stderr = _one_line_error(cli.collect_main, ["--task", "wordle", "--episodes", "2", "--out", str(out),
                                                "--workers", "1"], monkeypatch, capsys)
    assert f"{out}.lock: another writer holds this lock" in stderr


def test_a_bad_dataset_in_the_pipeline_is_a_one_line_error(tmp_path, monkeypatch, capsys):
    from pipeline import cli

    os.makedirs(tmp_path / "data")
    (tmp_path / "data" / "dataset.json").write_text(json.dumps({"schema_version": 1}))
    stderr = _one_line_error(functools.partial(cli.pipeline_main, "wordle"),
                             ["--out", str(tmp_path), "--stages", "bc"], monkeypatch, capsys)
    assert "dataset.json: schema_version 1, but this code reads version" in stderr


@pytest.mark.parametrize("job", ["pipeline", "train"])
def test_training_into_a_held_stage_folder_is_a_one_line_error(job, tmp_path, monkeypatch, capsys):
    """Another run holds <out>/bc.lock: the BC stage is refused before it trains (pipeline job and train job)."""
    from pipeline import cli

    def trains(*args, **kwargs):
        raise AssertionError("trained into a folder another run holds")

    monkeypatch.setattr(train, "run_stage", trains)
    os.makedirs(tmp_path / "data")
    (tmp_path / "data" / "dataset.json").write_text(json.dumps({"task": "wordle"}))
    (tmp_path / "bc.lock").write_text(json.dumps({"pid": 1, "host": "another-host"}))
    main, argv = {"pipeline": (functools.partial(cli.pipeline_main, "wordle"), ["--out", str(tmp_path),
                                                                                 "--stages", "bc"]),
                  "train": (cli.train_main, ["--stage", "bc", "--data", str(tmp_path / "data"),
                                             "--out", str(tmp_path / "bc")])}[job]
    stderr = _one_line_error(main, argv, monkeypatch, capsys)
    assert f"{tmp_path}/bc.lock: another writer holds this lock" in stderr


@pytest.mark.parametrize("behaviour, message", [
    ("{random_prob: 0.2}", "--behaviour: '{random_prob: 0.2}' is not valid JSON"),
    ("0.2", "--behaviour: expected a JSON object of parameters"),
])
def test_bad_behaviour_json_is_a_one_line_error(behaviour, message, tmp_path, monkeypatch, capsys):
    from pipeline import cli

    stderr = _one_line_error(cli.collect_main, ["--task", "wordle", "--episodes", "2", "--out", str(tmp_path / "d"),
                                                "--behaviour", behaviour], monkeypatch, capsys)
    assert message in stderr, stderr


def test_a_sweep_trial_fits_its_train_workers_into_the_cluster(ray_local, capsys):
    """A preset sized for a stage alone (one worker with both cores) would leave a sweep trial's Train worker
    waiting forever beside the trial's own slots; the sweep gives it what is left, or refuses clearly."""
    from pipeline.sweep import _fit_workers

    alone = TrainConfig(num_workers=1, cpus_per_worker=2.0)
    assert _fit_workers(alone, held=0.75, concurrent=1).cpus_per_worker == 1.25   # the local Ray has 2 CPUs
    assert "get 1.25 CPUs" in capsys.readouterr().out
    small = TrainConfig(num_workers=2, cpus_per_worker=0.5)
    assert _fit_workers(small, held=0.75, concurrent=1) is small
    with pytest.raises(ConfigError, match="lower max_concurrent"):
        _fit_workers(alone, held=1.8, concurrent=2)
