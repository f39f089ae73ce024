"""A stage is skipped only while its output exists and was made with the same config and from the upstream outputs
there now; an interrupted stage resumes only with the config and inputs it started with."""

import json
import os

import pytest

import pipeline.collect
import pipeline.select
import pipeline.tokenize
from pipeline import train
from pipeline.run import run_pipeline

SELECTION = {"temperature": 1.0, "beta": 1.0, "ratio_form": False, "validation_episodes": 2, "validation": []}


def new_output(marker: str) -> None:
    """Write a marker file whose content no earlier output had (as a new collection or checkpoint's has)."""
    os.makedirs(os.path.dirname(marker), exist_ok=True)
    with open(marker, "w") as f:
        json.dump({"made": os.urandom(8).hex()}, f)


@pytest.fixture
def ran(monkeypatch):
    """Stand-ins for the collect, training and select stages that write only their outputs' marker files;
    the list of the stages they ran, in order."""
    ran: list[str] = []

    def collect(task, episodes, out, **kwargs):
        ran.append("collect")
        new_output(os.path.join(out, "dataset.json"))
        return {"num_episodes": 1, "num_steps": 1, "return": {"mean": 0.0}, "success_rate": 0.0}

    def run_stage(cfg, data, out, task, **kwargs):
        ran.append(cfg.stage)
        assert not os.path.exists(os.path.join(out, "left_by_an_earlier_run")), "redone without starting over"
        new_output(os.path.join(out, train.FINAL_CHECKPOINT, "stage.json"))
        return train.StageResult(os.path.join(out, train.FINAL_CHECKPOINT), {"loss": 0.0}, 0)

    def select_settings(*args, **kwargs):
        ran.append("select")
        return SELECTION

    monkeypatch.setattr(pipeline.collect, "collect", collect)
    monkeypatch.setattr(train, "run_stage", run_stage)
    monkeypatch.setattr(pipeline.select, "select_settings", select_settings)
    monkeypatch.setattr(pipeline.tokenize, "action_budget_warning", lambda *args: None)  # no tokenizer in the markers
    return ran


def test_a_stage_made_from_changed_outputs_is_redone_not_skipped(tmp_path, ran):
    stages = ("collect", "bc", "qsft", "select")
    run_pipeline("wordle", str(tmp_path), stages=stages, progress=False)
    assert ran == list(stages)
    run_pipeline("wordle", str(tmp_path), stages=stages, progress=False)
    assert ran == list(stages)                                   # nothing changed: every stage skipped

    ran.clear()
    new_output(str(tmp_path / "data" / "dataset.json"))         # a new dataset (jobs/collect.py --out <out>/data)
    (tmp_path / "bc" / "left_by_an_earlier_run").write_text("")
    run_pipeline("wordle", str(tmp_path), stages=stages, progress=False)
    assert ran == ["bc", "qsft", "select"]                       # BC started over, and what was made from it

    ran.clear()
    new_output(str(tmp_path / "qsft" / train.FINAL_CHECKPOINT / "stage.json"))   # jobs/train.py --stage qsft
    run_pipeline("wordle", str(tmp_path), stages=stages, progress=False)
    assert ran == ["select"]


def test_a_stage_made_with_another_config_is_redone_with_what_follows(tmp_path, ran, capsys):
    stages = ("collect", "bc", "qsft", "select")
    run_pipeline("wordle", str(tmp_path), stages=stages, progress=False)

    ran.clear()
    runtime_only = {"eval": {"num_actors": 1, "envs_per_actor": 3}, "train": {"log_every": 1}}
    run_pipeline("wordle", str(tmp_path), overrides=runtime_only, stages=stages, progress=False)
    assert ran == []                                             # how a stage runs, not what it makes

    grid = {"eval": {"betas": [1.0, 2.0]}}
    run_pipeline("wordle", str(tmp_path), overrides=grid, stages=stages, progress=False)
    assert ran == ["select"]
    assert "[select] redone: config changed since" in capsys.readouterr().out

    ran.clear()
    held_out = {"eval": {"betas": [1.0, 2.0], "num_episodes": 7}}
    run_pipeline("wordle", str(tmp_path), overrides=held_out, stages=stages, progress=False)
    assert ran == []                                             # the selection is made on validation instances

    ran.clear()
    (tmp_path / "qsft" / "left_by_an_earlier_run").write_text("")
    run_pipeline("wordle", str(tmp_path), overrides={**grid, "qsft": {"gamma": 0.9}}, stages=stages, progress=False)
    assert ran == ["qsft", "select"]                             # Q-SFT started over, and the selection from it


def test_an_interrupted_stage_resumes_only_with_the_config_it_started_with(tmp_path, monkeypatch):
    def interrupted(cfg, data, out, task, **kwargs):
        os.makedirs(out, exist_ok=True)
        open(os.path.join(out, "left_by_an_earlier_run"), "w").close()     # a checkpoint to resume from
        raise KeyboardInterrupt

    found: list[list[str]] = []

    def finishing(cfg, data, out, task, **kwargs):
        found.append(os.listdir(out) if os.path.isdir(out) else [])
        new_output(os.path.join(out, train.FINAL_CHECKPOINT, "stage.json"))
        return train.StageResult(os.path.join(out, train.FINAL_CHECKPOINT), {"loss": 0.0}, 0)

    def run(stand_in, overrides=None):
        monkeypatch.setattr(train, "run_stage", stand_in)
        run_pipeline("wordle", str(tmp_path), overrides=overrides, stages=("collect", "bc"), progress=False)

    new_output(str(tmp_path / "data" / "dataset.json"))
    other = {"bc": {"lr": 5e-4}}
    with pytest.raises(KeyboardInterrupt):
        run(interrupted)
    run(finishing)
    assert "left_by_an_earlier_run" in found[-1]                # the same config: resumed
    with pytest.raises(KeyboardInterrupt):
        run(interrupted, other)
    run(finishing)
    assert "left_by_an_earlier_run" not in found[-1]            # started with another config: started over
