"""Configs name the bad field; the turn format; BC and Q-SFT start from identical weights."""

import subprocess
import sys

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from pipeline.cli import _parse_sets
from pipeline.config import CollectConfig, ConfigError, ModelConfig, TrainConfig, apply_overrides
from pipeline.data import Episode, episodes_to_table
from pipeline.models import build_tokenizer, load_initial_model
from pipeline.run import run_pipeline, stage_configs
from pipeline.tokenize import TurnCodec, action_budget_warning, encode_episode
from pipeline.tokens import EOT


@pytest.mark.parametrize("overrides, field", [
    ({"lrr": "1e-3"}, "'lrr'"), ({"gamma": "1.5"}, "'gamma'"), ({"stage": "ppo"}, "'stage'"),
    ({"batch_size": "many"}, "'batch_size'"), ({"model.n_head": "3"}, "'n_embd'"), ({"model.depth": 2}, "'model.depth'"),
    ({"log_every": "0"}, "'log_every'"), ({"checkpoint_every": "-1"}, "'checkpoint_every'"),
])
def test_bad_config_values_name_the_field(overrides, field):
    with pytest.raises(ConfigError, match=field):
        apply_overrides(TrainConfig(), overrides)


def test_cli_rejects_a_bad_field_before_starting_anything():
    job = subprocess.run([sys.executable, "jobs/qsft_wordle.py", "--out", "/nonexistent/x", "--set", "qsft.betta=2"],
                         check=False, capture_output=True, text=True, timeout=120)
    assert job.returncode == 2 and "unknown config field 'betta'" in job.stderr


def test_collect_section_is_checked_like_the_others():
    cfg = apply_overrides(CollectConfig(), {"episodes": "10", "behaviour": '{"random_prob": 0.3}'})
    assert cfg.episodes == 10 and cfg.behaviour == {"random_prob": 0.3}
    for overrides, field in (({"episods": "10"}, "'episods'"), ({"episodes": "0"}, "'episodes'"),
                             ({"behaviour": "0.3"}, "'behaviour'")):
        with pytest.raises(ConfigError, match=field):
            apply_overrides(CollectConfig(), overrides)


@pytest.mark.parametrize("flag, message", [("collect.episods=10", "unknown config field 'episods'"),
                                           ("colect.episodes=10", "unknown override section 'colect'")])
def test_cli_rejects_a_collect_typo_before_starting_anything(flag, message):
    job = subprocess.run([sys.executable, "jobs/qsft_wordle.py", "--out", "/nonexistent/x", "--set", flag],
                         check=False, capture_output=True, text=True, timeout=120)
    assert job.returncode == 2 and message in job.stderr and "Traceback" not in job.stderr


def test_presets_build_valid_configs():
    collect, bc, qsft, evaluation = stage_configs("wordle", "gpu")
    assert bc.stage == "bc" and qsft.stage == "qsft" and qsft.use_gpu and bc.model.n_layer == 24
    assert collect.episodes == 20000 and evaluation.num_actors == 8
    collect = stage_configs("wordle", "tiny", _parse_sets(['collect.behaviour={"random_prob": 0.3}']))[0]
    assert collect.behaviour == {"random_prob": 0.3}


def test_run_pipeline_rejects_a_collect_typo_before_collecting(tmp_path, monkeypatch):
    """A program calling run_pipeline directly gets the same check as the command line."""
    from pipeline import collect

    def collection_started(*args, **kwargs):
        raise AssertionError("collection (and Ray) was started")

    monkeypatch.setattr(collect, "collect", collection_started)
    with pytest.raises(ConfigError, match="unknown config field 'episods' for CollectConfig"):
        run_pipeline("wordle", str(tmp_path), overrides={"collect": {"episods": 10}})


@pytest.fixture(scope="module")
def codec():
    texts = ["Guess the word.\n", "crane", "crane: _ Y _ _ G\n", "slate", "slate: G G G G G\n"] * 20
    return TurnCodec(build_tokenizer(ModelConfig(vocab_size=300), texts))


def test_encode_episode_marks_agent_tokens_and_puts_reward_on_eot(codec):
    row = encode_episode(codec, ["Guess the word.\n", "crane: _ Y _ _ G\n", "slate: G G G G G\n"],
                         ["crane", "slate"], [0.0, 0.83], terminated=True, max_length=200)
    ids, mask, rewards = row["input_ids"].tolist(), row["action_mask"].tolist(), row["rewards"].tolist()
    eot = codec.eot_id
    ends = [i for i, t in enumerate(ids) if t == eot]
    assert len(ends) == 2 and all(mask[i] == 1 for i in ends)
    assert rewards[ends[0]] == 0.0 and rewards[ends[1]] == pytest.approx(0.83) and sum(rewards) == pytest.approx(0.83)
    assert ids[-1] == eot            # terminated: the final observation is left out
    first_action = ids[mask.index(1): ends[0] + 1]
    assert codec.decode_action(first_action) == "crane"
    assert row["terminated"] and row["kept_turns"] == 2 and row["dropped_turns"] == 0


def test_long_episodes_keep_whole_turns_and_stop_bootstrapping_as_truncated(codec):
    obs = ["Guess the word.\n"] + ["crane: _ Y _ _ G\n"] * 6
    full = encode_episode(codec, obs, ["crane"] * 6, [0.0] * 6, terminated=True, max_length=1000)
    cut = encode_episode(codec, obs, ["crane"] * 6, [0.0] * 6, terminated=True, max_length=full["length"] - 1)
    assert cut["kept_turns"] == 5 and cut["dropped_turns"] == 1
    assert not cut["terminated"]   # the true end was dropped: bootstrap from the last kept observation
    assert cut["action_mask"][-1] == 0   # ... which is in the sequence
    tiny = encode_episode(codec, obs, ["crane"] * 6, [0.0] * 6, terminated=True, max_length=3)
    assert tiny["length"] == 0


def test_bc_and_qsft_start_from_identical_weights(codec):
    cfg = ModelConfig(n_layer=1, n_embd=32, n_head=2, max_length=64)
    a, b = load_initial_model(cfg, codec.tokenizer, seed=3), load_initial_model(cfg, codec.tokenizer, seed=3)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert a.get_input_embeddings().num_embeddings == len(codec.tokenizer)
    assert codec.tokenizer.convert_tokens_to_ids(EOT) == codec.eot_id and isinstance(np.int64(1), np.integer)


def test_selection_grids_parse_from_the_command_line_and_name_bad_values():
    from pipeline.config import EvalConfig

    cfg = apply_overrides(EvalConfig(), {"betas": "[1, 4.5]", "ratio_forms": "[false, true]", "temperatures": [0, 1]})
    assert cfg.betas == (1.0, 4.5) and cfg.ratio_forms == (False, True) and cfg.temperatures == (0.0, 1.0)
    with pytest.raises(ConfigError, match=r"'betas\[1\]'"):
        apply_overrides(EvalConfig(), {"betas": '[1, "x"]'})
    with pytest.raises(ConfigError, match="'temperatures'"):
        apply_overrides(EvalConfig(), {"temperatures": "[-1]"})


def test_cli_rejects_an_unknown_stage_before_starting_anything():
    job = subprocess.run([sys.executable, "jobs/qsft_maze.py", "--out", "/nonexistent/x", "--stages", "collect,evaluat"],
                         check=False, capture_output=True, text=True, timeout=120)
    assert job.returncode == 2 and "unknown stage(s) evaluat" in job.stderr


def test_wordle_cpu_preset_tokenizes_one_token_per_character():
    """256 bytes + <|pad|> + <|eot|> leave the BPE no merges: a guess's 5 letters are 5 tokens, aligned with
    the 5 feedback symbols of the observation that follows."""
    _, bc, _, _ = stage_configs("wordle", "cpu")
    tokenizer = build_tokenizer(bc.model, ["crane: _ Y _ _ G\n", "slate", "Guess the word.\n"] * 50)
    assert len(tokenizer.tokenize("crane")) == 5 and len(tokenizer.tokenize("crane: _ Y _ _ G\n")) == 17
    assert bc.model.architecture == "llama" and bc.model.max_length >= 278   # 140-char prompt + 6 x (6 + 17)


def test_a_generation_cap_below_the_data_s_actions_is_named(codec, tmp_path):
    """An action longer than eval.max_action_tokens would be generated cut short: the warning counts them."""
    actions = ["crane", "crane slate crane slate"]
    longest = max(len(codec.tokenizer.encode(a, add_special_tokens=False)) for a in actions)
    episode = Episode(episode_id=0, task="wordle", observations=["Guess the word.\n"] * 3, actions=actions,
                      rewards=[-1.0, 0.0], terminated=True, truncated=False)
    (tmp_path / "data").mkdir()
    pq.write_table(episodes_to_table([episode]), tmp_path / "data" / "part-00000.parquet")
    codec.tokenizer.save_pretrained(tmp_path / "tokenizer")
    data, tokenizer = str(tmp_path / "data"), str(tmp_path / "tokenizer")
    assert action_budget_warning(data, tokenizer, longest) is None
    warning = action_budget_warning(data, tokenizer, longest - 1)
    assert warning.startswith(f"eval.max_action_tokens={longest - 1} is shorter than 1 of the data's 2 actions")
    assert warning.endswith(f"set it to at least {longest}")
