"""The Q-SFT step with pi_beta's precomputed top-k support equals the step with a pi_beta forward, with and without
the smoothing correction (whose action mass is read from the whole vocabulary, before the top-k gather) and the
Monte Carlo lower bound."""

import copy
import dataclasses
import math

import pytest
import torch
from conftest import fit_behaviour

from pipeline.algorithm import step_loss
from pipeline.batches import pad_rows
from pipeline.config import ModelConfig, TrainConfig
from pipeline.models import TokenLogits, build_tokenizer, load_initial_model, save_checkpoint
from pipeline.support import PiBetaSupport
from pipeline.tokenize import TurnCodec, encode_episode


@pytest.mark.parametrize("options", [{}, {"smoothing_correction": True}, {"mc_lower_bound": True}])
def test_precomputed_support_gives_the_same_targets_and_loss(tmp_path, options):
    texts = ["Guess the word.\n", "crane", "crane: _ Y _ _ G\n", "slate", "slate: G G G G G\n", "abbey"] * 30
    mcfg = ModelConfig(n_layer=1, n_embd=32, n_head=2, max_length=64, vocab_size=300)
    tokenizer = build_tokenizer(mcfg, texts)
    codec = TurnCodec(tokenizer)
    rows = [encode_episode(codec, ["Guess the word.\n", "crane: _ Y _ _ G\n", "slate: G G G G G\n"],
                           ["crane", "slate"], [0.0, 0.8], terminated=t, max_length=64) for t in (True, False)]
    batch = {k: [r[k] for r in rows] for k in rows[0]}  # a numpy batch as Ray Data hands it over
    # pi_beta fit to the rows (a random one puts ~1/V < eps on every token: both supports would be empty)
    behaviour_model = fit_behaviour(load_initial_model(mcfg, tokenizer, seed=1), pad_rows(batch, tokenizer.pad_token_id))
    save_checkpoint(str(tmp_path), behaviour_model, tokenizer, {"stage": "bc"})
    batch = PiBetaSupport(str(tmp_path), k=100, support_eps=0.01)(batch)
    online, precomputed = pad_rows({k: v for k, v in batch.items() if not k.startswith(("pi_beta", "support"))},
                                   tokenizer.pad_token_id), pad_rows(batch, tokenizer.pad_token_id)
    assert "pi_beta_logp" in precomputed and "pi_beta_logp" not in online
    cfg = TrainConfig(stage="qsft", model=mcfg, support_eps=0.01, **options)
    # every next state has a non-empty support, and the top-k is a strict subset of the vocabulary
    assert bool((precomputed["pi_beta_logp"] > math.log(cfg.support_eps)).any(-1).all())
    assert precomputed["pi_beta_ids"].shape[-1] == 100 < behaviour_model.get_output_embeddings().out_features
    model = load_initial_model(mcfg, tokenizer, seed=2)
    policy, target = TokenLogits(model), TokenLogits(copy.deepcopy(model))
    behaviour = TokenLogits(behaviour_model)
    torch.manual_seed(0)
    loss_online, stats_online = step_loss(cfg, online, policy, target, behaviour)
    loss_pre, stats_pre = step_loss(cfg, precomputed, policy, target, None)
    assert loss_pre.item() == pytest.approx(loss_online.item(), rel=1e-5)
    assert stats_pre["target_mean"] == pytest.approx(stats_online["target_mean"], rel=1e-5)
    assert stats_pre["support_size"] == stats_online["support_size"]
    if cfg.mc_lower_bound:   # the rows' returns (.8 discounted) lie above the random target network's values
        _, plain = step_loss(dataclasses.replace(cfg, mc_lower_bound=False), precomputed, policy, target, None)
        assert stats_pre["target_raised_frac"] > 0.5 and stats_pre["target_mean"] > plain["target_mean"]
