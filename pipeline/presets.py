"""Named sizes of a whole pipeline run, per task: plain override dictionaries for each stage.

    collect: episodes to collect (+ behaviour-policy parameters)
    train:   TrainConfig overrides shared by both stages ("model" names a MODEL_PRESETS entry)
    bc/qsft: stage-specific TrainConfig overrides
    eval:    EvalConfig overrides

`tiny` is the README demo and the end-to-end test size (minutes on 2 CPUs); `cpu` is a longer CPU run;
`gpu` is sized for a GPU cluster (see cluster.yaml).
"""

from __future__ import annotations

import copy
from typing import Any

_COMMON: dict[str, dict[str, Any]] = {
    "tiny": {
        "collect": {"episodes": 800},
        "train": {"model": "tiny", "batch_size": 16, "lr": 1e-3, "log_every": 10},
        "bc": {"epochs": 4},
        "qsft": {"epochs": 4},
        "eval": {"num_episodes": 100, "num_actors": 2, "beta": 4.0},
    },
    "cpu": {
        "collect": {"episodes": 5000},
        "train": {"model": "tiny", "batch_size": 32, "lr": 1e-3, "checkpoint_every": 200, "log_every": 20},
        "bc": {"epochs": 6},
        "qsft": {"epochs": 6},
        "eval": {"num_episodes": 200, "num_actors": 2, "beta": 4.0},
    },
    "gpu": {
        "collect": {"episodes": 20000},
        "train": {"model": "gpt2-medium", "batch_size": 32, "lr": 1e-4, "use_gpu": True, "bf16": True,
                  "num_workers": 4, "checkpoint_every": 500, "log_every": 50},
        "bc": {"epochs": 4},
        "qsft": {"epochs": 4},
        "eval": {"num_episodes": 500, "num_actors": 8, "cpus_per_actor": 1.0, "beta": 4.0},
    },
}

# Per-task adjustments on top of the common presets.
_TASK: dict[str, dict[str, dict[str, Any]]] = {
    "twenty_questions": {"tiny": {"train": {"model": "tiny"}, "eval": {"max_action_tokens": 32}}},
    # WebShop pages are long: a longer context, and a larger tokenizer so pages cost fewer tokens.
    "webshop": {"tiny": {"collect": {"episodes": 600}, "train": {"model.max_length": 768, "model.vocab_size": 1024}}},
    "alfworld": {"tiny": {"collect": {"episodes": 160}, "train": {"model.max_length": 512, "model.vocab_size": 1024},
                          "eval": {"num_episodes": 30, "envs_per_actor": 4}}},  # cpu: below, with the maze's settings
}

_ONE_WORKER = {"num_workers": 1, "cpus_per_worker": 2.0}  # on 2 cores, ~20% more samples/s than 2 DDP workers

# Wherever BC's temperature is chosen on validation, so is whether it samples over pi_beta's support {pi_beta >
# support_eps}, where Q-SFT's extraction always samples (ties: over the support, so that Q-SFT at beta = 0 is BC).
# Sampled over every action, BC scored 13.9 points below that on the demo's maze and 10 on place, held-out
# (benchmarks/LEARNING.md, session 27): comparisons made without it credited Q-SFT with a decoding.
_BC_SUPPORTS = {"sample_supports": (True, False)}

# Robot episodes are short sequences (1 + 4 tokens a step, <= 201 tokens) over an 18-token vocabulary (15 bins per
# action dimension: the behaviour's noise, 0.3 of the action range, is then ~2 bins, and greedy bins land nearer its
# intended action than with 64; benchmarks/LEARNING.md, robot pick), but every step costs a rendered physics step to
# collect: fewer episodes, more epochs, all 300 held-out layouts (envs.robot.env). The support threshold sits above the
# label-smoothing floor (1 - y) / (|A| - 1) <= 1/14 of Q-SFT's loss: below it, max p_target / pi_beta over the support
# is > 1 for rare bins and the clipped targets all become 1 (BC again). Above it the plain ratio still climbs to ~0.96
# from the same mass. Pick's Q-SFT reads Q without it (smoothing_correction) and, since a success at the last of ~120
# action tokens does not propagate back in 1,200 steps, raises each target to the data's own return (mc_lower_bound);
# chosen on 200 validation layouts per task and seed (benchmarks/LEARNING.md, session 17): pick 59.0 / 62.0 (seeds 0 /
# 1) against the plain ratio's 54.5 / 63.0, but place 8.0 against 18.0, so place keeps the plain ratio. The correction
# alone equals BC. Greedy BC hovers over the cube in a quarter of its episodes (the behaviour descends within 1.2 cm of
# its noisy aim, so "stay" outweighs "descend" there); sampling at T=0.5 beat greedy and T=1 on 200 validation layouts
# for pick seed 0 (36.5 vs 27.5 / 24.0) and place (19.0 vs 10.5 / 6.0), not pick seed 1 (benchmarks/LEARNING.md, session
# 18). Pick chooses T on validation; place, whose 60 minutes hold no BC validation runs, decodes at its chosen T=0.5.
# Pick's BC was held by its training length: resumed from 1,200 steps (loss 1.613) to 1,600 (1.571) and 2,000 (1.531),
# one seed's BC rose from 30.0 to 48.5 and 56.0 on 200 validation layouts (session 20), so pick trains BC 2,000 steps
# (chosen from that validation study) and tries the three temperatures validation has chosen among (0, 0.25 and 0.5
# at three seeds; 0.75 and 1 never). 2,000 Q-SFT steps from the random init as well took the whole run to 67.4 minutes
# (training 60.5 of them; LEARNING.md, session 25), so pick's Q-SFT starts from the BC checkpoint and trains 1,000:
# adopted by a rule set before its run (validation 60.0 against 64.0, within the latter's 6.7). The whole run takes
# 51-54 minutes; started at BC, Q starts at its upper bound and the stage stays a longer BC (targets ~0.93, 56-59%
# clipped; held-out, three seeds pooled, +3.3 points over BC, p = 0.13): LEARNING.md, session 26.
_ROBOT_SUPPORT = {"support_eps": 0.1}   # Q-SFT's Bellman max and the extraction read the same support
_ROBOT_QSFT = {**_ROBOT_SUPPORT, "tau": 0.05}
_RETURN_TARGETS = {"smoothing_correction": True, "mc_lower_bound": True}


def _robot(bc_steps: int, qsft_steps: int, targets: dict[str, bool], temperatures: tuple[float, ...],
           qsft_init: str = "base") -> dict[str, dict[str, dict[str, Any]]]:
    """A robot task's presets; `cpu` trains BC for `bc_steps` and Q-SFT for `qsft_steps` on one worker, Q-SFT
    from `qsft_init` with the `targets` options for its Bellman targets, and decodes at the `temperatures` (chosen
    on validation)."""
    qsft = {**_ROBOT_QSFT, **targets}
    return {
        "tiny": {"collect": {"episodes": 200}, "bc": {"epochs": 40}, "qsft": {"epochs": 40, **qsft},
                 "eval": {"num_episodes": 100, "envs_per_actor": 10, **_ROBOT_SUPPORT}},
        "cpu": {"collect": {"episodes": 1000}, "train": {**_ONE_WORKER, "log_every": 50},
                "bc": {"epochs": 40, "max_steps": bc_steps},
                "qsft": {"epochs": 40, "max_steps": qsft_steps, "init_from": qsft_init, **qsft},
                "eval": {"num_episodes": 300, "num_validation_episodes": 200, "envs_per_actor": 10,
                         "temperatures": temperatures, "betas": (4.0, 16.0), **_ROBOT_SUPPORT, **_BC_SUPPORTS}},
        "gpu": {"collect": {"episodes": 10000}, "train": {"model": "small"}, "qsft": qsft,
                "eval": {"num_episodes": 300, **_ROBOT_SUPPORT}},
    }


# Place episodes are 40 steps (pick: 30), so a training step costs ~1.9x pick's (1.27 s vs 0.68 s for BC): 800
# steps per stage keep the whole place pipeline under 60 minutes on 2 cores.
_TASK["robot_pick"] = _TASK["robot_pick_state"] = _robot(2000, 1000, _RETURN_TARGETS, (0.0, 0.25, 0.5), qsft_init="bc")
_TASK["robot_place"] = _TASK["robot_place_state"] = _robot(800, 800, {}, (0.5,))


# Wordle: one token per character (a BPE with no merges: 256 bytes + <|pad|> + <|eot|>), so a guess's letters
# line up with their feedback letters; rotary positions; the 140-character prompt plus six turns fit in 320.
_TASK["wordle"] = {
    "cpu": {"collect": {"validation_instances": 100},  # validation's words are held out of the data, as in _text_recipe
            "train": {**_ONE_WORKER, "model.architecture": "llama", "model.vocab_size": 258, "model.max_length": 320},
            "bc": {"max_steps": 1000}, "qsft": {"max_steps": 800},
            "eval": {"num_episodes": 200, "num_validation_episodes": 100, "temperatures": (0.0, 1.0),
                     "betas": (4.0, 16.0), "ratio_forms": (False, True), **_BC_SUPPORTS}},
}

# Maze (the demo; the small maze below is the learning test). Whole episodes fit in 256 tokens. gamma = 0.9 makes a
# shortest-path move clearly worth more than a detour (envs/maze). Q-SFT's support is pi_beta > 0.1: with 0.01 the data's
# rare random moves (pi_beta ~ 0.05) entered the Bellman max, whose noisy ratios p_target / pi_beta then
# saturated the targets at 1 (see benchmarks/LEARNING.md); tau = 0.05 lets values propagate along ~20-move
# paths within a few hundred steps. The behaviour's most likely move is a poor policy, so the decoding
# temperature is chosen on validation instances (by BC's score), then Q-SFT's extraction. The maze lists its four
# moves, so every policy chooses among them (LMPolicy.rank), Q-SFT reading Q at each move's <|eot|>: there
# pi_beta ~ 1, so the ratio and paper forms coincide (one is tried), and the values of two moves differ by a few
# hundredths, hence betas up to 1024 (at temperature 1, beta 1024 is nearly greedy in Q).
_MAZE_QSFT = {"gamma": 0.9, "support_eps": 0.1, "tau": 0.05}
# The next-state value read at each move's last token (pipeline.candidates), where BC's pi_beta is ~1 and the
# ratio is precise (benchmarks/LEARNING.md, action-level backup).
_ACTION_BACKUP = {"backup": "action"}
_MAZE_EVAL = {"num_episodes": 100, "num_validation_episodes": 60, "support_eps": 0.1, "temperatures": (0.0, 1.0),
              "betas": (16.0, 64.0, 256.0, 1024.0), "ratio_forms": (True,), **_BC_SUPPORTS}


# The small maze (envs.maze.small): the default suite's learning test, a whole pipeline in minutes. Episodes are
# <= 16 moves (under 100 tokens), so a short context. gamma = 0.7 and tau = 0.1 were chosen by the maze Q probe on
# training-split states and by validation scores (benchmarks/LEARNING.md, small maze): with gamma 0.9 the wall
# penalty (10%) drowns in BC's misfit and the noisy max inflates the targets; 0.7 leaves the ratio calibrated.
# The split has 40 held-out (start, goal) pairs, so each is played 5 times (its own seed; policies sample at the
# chosen temperature): 200 episodes, and 200 validation episodes on the 40 training pairs.
_TASK["maze_small"] = {
    "tiny": {"collect": {"episodes": 1000},
             "train": {**_ONE_WORKER, "model.architecture": "llama", "model.max_length": 128, "batch_size": 32,
                       "log_every": 50},
             "bc": {"epochs": 20, "max_steps": 300},
             "qsft": {**_MAZE_QSFT, **_ACTION_BACKUP, "gamma": 0.7, "tau": 0.1, "epochs": 20, "max_steps": 300},
             "eval": {**_MAZE_EVAL, "num_episodes": 40, "num_validation_episodes": 40, "repeats": 5}},
}

def _text_recipe(episodes: int, steps: int, train: dict[str, Any], eval_: dict[str, Any],
                 qsft: dict[str, Any] | None = None, collect: dict[str, Any] | None = None
                 ) -> dict[str, dict[str, Any]]:
    """The maze's recipe as a text task's `cpu` preset: a rotary tiny model on one worker with both cores, BC and
    Q-SFT for the same number of steps (Q-SFT from scratch, `_MAZE_QSFT`), and the decoding temperature (greedy or
    sampled) and beta chosen on validation instances of the training split that the collection holds out of the
    data (its first `num_validation_episodes`): validated on instances the models trained on, Q-SFT's memorised
    values chose the maze's largest beta (benchmarks/LEARNING.md, session 28)."""
    held_back = {"validation_instances": eval_["num_validation_episodes"]}
    return {"collect": {"episodes": episodes, **held_back, **(collect or {})},
            "train": {**_ONE_WORKER, "model.architecture": "llama", "log_every": 25, **train},
            "bc": {"epochs": 20, "max_steps": steps},
            "qsft": {**_MAZE_QSFT, "epochs": 20, "max_steps": steps, **(qsft or {})},
            "eval": {"envs_per_actor": 8, "temperatures": (0.0, 1.0), "ratio_forms": (True,), **_BC_SUPPORTS, **eval_}}


# The standard maze: the text recipe with Q-SFT's action-level backup, each of the 100 held-out (start, goal) pairs
# played twice (200 episodes). `tiny` is the demo (`make demo`, under 10 minutes on 2 CPUs): 700 BC + 700 Q-SFT
# steps; `cpu` 1,000 + 1,000. Its settings are chosen on 20 of the 67 training pairs held out of the data: validated
# on pairs in the data, Q-SFT chose beta 1024 (78.7, against 69.1 at beta 16), whose values there are memorised,
# while on new pairs they are not (session 28). Each is played 30 times, and beta is the smallest within one
# standard error of the best: at 6 plays, three seeds chose betas whose validation scores were 0.3-0.5 apart
# (benchmarks/LEARNING.md, session 29).
_MAZE_VALIDATION = {"num_validation_episodes": 20, "validation_repeats": 30, "beta_rule": "one_se"}
_MAZE_RECIPE = {"train": {"batch_size": 32, "log_every": 50}, "qsft": _ACTION_BACKUP,
                "eval_": {**_MAZE_EVAL, "repeats": 2, **_MAZE_VALIDATION}}
_TASK["maze"] = {"tiny": _text_recipe(5000, 700, **_MAZE_RECIPE), "cpu": _text_recipe(5000, 1000, **_MAZE_RECIPE),
                 "gpu": {"collect": {"episodes": 20000,
                                     "validation_instances": _MAZE_VALIDATION["num_validation_episodes"]},
                         "train": {"model.architecture": "llama"}, "qsft": {**_MAZE_QSFT, **_ACTION_BACKUP},
                         "eval": {**_MAZE_EVAL, **_MAZE_VALIDATION}}}

# Commands that copy names or IDs from the page (an object "apple 1", a product "B0KPQRX6NK") get a small
# sequence probability from a model that has not learned to copy, however likely their first token: the
# "token" ranking rule (constrained decoding) is offered beside "sequence", chosen by BC's validation score.
_RANKINGS = {"rankings": ("sequence", "token")}

# ALFWorld: every policy chooses among the admissible commands (Q-SFT reading Q at each command's <|eot|>).
# Episodes are up to 30 turns of ~30 tokens after a ~70-token prompt (the 1024-token BPE): 1024 tokens hold 75% of
# the data's episodes whole, and the successful ones (shorter) nearly all. Only 30 held-out games: each is played 7
# times (210 episodes); validation plays the first 8 training games 7 times each. Q-SFT backs up over each next
# state's admissible commands and raises its targets to the data's returns (WebShop's recipe): with the token-level
# backup its targets never rose from the sparse success reward (mean 0.036 after 400 steps, benchmarks/LEARNING.md).
# The extraction's support is pi_beta > 0.01: BC spreads its probability over ~30 commands, so at 0.1 the planner's
# object command, which Q ranked first at 66% of training-split states, was outside the support at 62% of them
# (benchmarks/alfworld_q_probe.py); on validation Q-SFT scored 21.4 at 0.01 against 0.0 at 0.1.
_TASK["alfworld"]["cpu"] = _text_recipe(
    600, 400, train={"model.max_length": 1024, "model.vocab_size": 1024, "batch_size": 16},
    qsft={**_ACTION_BACKUP, **_RETURN_TARGETS},
    eval_={"num_episodes": 30, "repeats": 7, "num_validation_episodes": 8, "support_eps": 0.01,
           "betas": (8.0, 32.0, 128.0), **_RANKINGS})

# WebShop: episodes are ~5 turns of ~130 tokens (the 2048-token BPE): 1024 tokens hold 78% of them whole, and a
# cut row bootstraps from its last kept page. 100 held-out instructions, each played twice; validation plays 40
# training instructions twice. The search query is generated, every click is ranked, and Q-SFT's backup reads each
# page's clickables at their last token (the action-level backup; a search page keeps the token-level value).
# The model has a pointer head (pipeline.pointer_model): the query copies the instruction's words, which the plain
# tiny model had learned for 5% of them after 500 steps (benchmarks/LEARNING.md). Clicks are ranked by the "token"
# rule (the "sequence" rule scored 0-1 on validation in both runs that tried it), and a sampled query (T=1) now and
# then derails an episode with an invalid action, so whether the query is generated greedily is chosen on validation.
# The data's queries are up to 37 tokens (4% over 24), and a query cut before its "]" is an invalid action: 48.
# Q-SFT's targets are raised to the data's returns, as on robot pick: validation 41.2 against the plain ratio's 39.9
# (80 episodes each, the same data and BC; benchmarks/LEARNING.md, session 18), within noise but by the rule set first.
_TASK["webshop"]["cpu"] = _text_recipe(
    2000, 500, train={"model.architecture": "llama_pointer", "model.max_length": 1024, "model.vocab_size": 2048,
                      "batch_size": 16}, qsft={**_ACTION_BACKUP, **_RETURN_TARGETS},
    eval_={"num_episodes": 100, "repeats": 2, "num_validation_episodes": 40, "support_eps": 0.1, "betas": (4.0, 16.0),
           "ranking": "token", "greedy_texts": (False, True), "max_action_tokens": 48})

# Twenty Questions: generated questions (the task lists no admissible actions, so Q-SFT keeps the token-level
# backup). A game is <= 20 turns of ~10 tokens after a 24-token prompt (the 1024-token BPE), so whole episodes fit
# in 256 tokens. 100 held-out objects, each played twice; validation plays 40 training instances twice.
_TASK["twenty_questions"]["cpu"] = _text_recipe(
    5000, 800, train={"model.max_length": 256, "model.vocab_size": 1024, "batch_size": 32, "log_every": 50},
    eval_={"num_episodes": 100, "repeats": 2, "num_validation_episodes": 40, "max_action_tokens": 32,
           "betas": (4.0, 16.0)})

PRESET_NAMES = tuple(_COMMON)


def preset(task: str, name: str) -> dict[str, dict[str, Any]]:
    if name not in _COMMON:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(_COMMON)}")
    merged = copy.deepcopy(_COMMON[name])
    for section, values in _TASK.get(task, {}).get(name, {}).items():
        merged.setdefault(section, {}).update(values)
    return merged
