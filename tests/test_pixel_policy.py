"""Pixel tasks through the same machinery as text: the robot turn format, Bellman indexing across steps,
packed images, the PixelGPT checkpoint interface, the training losses, and the extracted policy."""

import copy
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from transformers import AutoModelForCausalLM

import envs
from envs.robot.codec import decode_image, encode_image
from pipeline.algorithm import step_loss, transitions
from pipeline.batches import observation_inputs, pad_rows
from pipeline.config import ModelConfig, TrainConfig
from pipeline.data import STEP_SCHEMA, Episode, episode_from_rows, episodes_to_table
from pipeline.models import (
    TokenLogits,
    build_action_tokenizer,
    load_initial_model,
    load_model,
    load_tokenizer,
    save_checkpoint,
)
from pipeline.pixel_model import PixelGPT
from pipeline.policy import LMPolicy, PolicySpec, Segment
from pipeline.tokenize import ActionCodec, attach_observations, encode_episode, make_codec
from pipeline.train import pixel_observation_space

TASK = envs.get_task("robot_pick")
RNG = np.random.default_rng(0)


def observation(step: int) -> dict:
    return {"image": RNG.integers(0, 256, (64, 64, 3), dtype=np.uint8),
            "proprio": np.array([0.5, 0.01 * step, 0.1, 0.08], np.float32)}


def stored(obs: dict) -> str:
    from pipeline.collect import observation_parts

    return observation_parts(obs)[0]


@pytest.fixture(scope="module")
def codec() -> ActionCodec:
    return make_codec(build_action_tokenizer(TASK.action_tokenizer), TASK)


@pytest.fixture(scope="module")
def space():
    return pixel_observation_space(TASK)


def episode(steps: int, success: bool) -> tuple[list[dict], list[str], list[float]]:
    observations = [observation(t) for t in range(steps + 1)]
    actions = [f"[{0.1 * t - 1:.2f}, 0.5, -1.0, {1.0 if t % 2 else -1.0}]" for t in range(steps)]
    rewards = [0.0] * (steps - 1) + [1.0 if success else 0.0]
    return observations, actions, rewards


def row_of(codec: ActionCodec, observations, actions, rewards, terminated: bool, max_length: int = 256) -> dict:
    """A training row as `pipeline.tokenize.tokenize_dataset` builds it (kept observations' PNGs beside it)."""
    texts = [stored(o) for o in observations]
    row = encode_episode(codec, texts, actions, rewards, terminated, max_length)
    attach_observations(codec, row, texts, [encode_image(o["image"]) for o in observations])
    return row


def batch_of(rows: list[dict], pad_id: int) -> dict:
    return pad_rows({key: [r[key] for r in rows] for key in rows[0]}, pad_id)


def test_robot_turn_format_by_hand(codec):
    observations, actions, rewards = episode(3, success=True)
    row = row_of(codec, observations, actions, rewards, terminated=True)
    obs, first = codec.observation_id, codec.first_bin_id
    bins = [TASK.action_tokenizer.encode([0.1 * t - 1, 0.5, -1.0, 1.0 if t % 2 else -1.0]) for t in range(3)]
    assert row["input_ids"].tolist() == [obs, *[first + b for b in bins[0]], obs, *[first + b for b in bins[1]],
                                         obs, *[first + b for b in bins[2]]]   # terminated: no final <|obs|>
    assert row["action_mask"].tolist() == [0, 1, 1, 1, 1] * 3
    assert row["rewards"].tolist() == [0.0] * 14 + [1.0]     # on the last token of the last action
    assert len(row["obs_images"]) == 3 and row["obs_proprio"].shape == (12,)
    np.testing.assert_allclose(codec.decode_action([first + b for b in bins[1]]),
                               TASK.action_tokenizer.decode(bins[1]))

    truncated = row_of(codec, observations, actions, [0.0] * 3, terminated=False)
    assert truncated["input_ids"].tolist()[-1] == obs and len(truncated["obs_images"]) == 4   # bootstrap from it


def test_bellman_indexing_across_robot_steps(codec):
    """Inside an action the next state is the next bin (discount 1); after the last bin it is the prefix
    ending at the next step's <|obs|> (discount gamma); a truncated episode bootstraps from the final
    <|obs|>, a terminated one does not."""
    observations, actions, rewards = episode(2, success=False)
    row = row_of(codec, observations, actions, rewards, terminated=False)
    batch = batch_of([row], 0)
    tr = transitions(batch["input_ids"], batch["action_mask"], batch["turn_end"], batch["rewards"], batch["lengths"],
                     batch["terminated"], gamma=0.9)
    # sequence: 0 obs | 1-4 action 0 | 5 obs | 6-9 action 1 | 10 obs
    assert tr.state_pos.tolist() == [0, 1, 2, 3, 5, 6, 7, 8]
    assert tr.next_state_pos.tolist() == [1, 2, 3, 5, 6, 7, 8, 10]
    assert tr.discount.tolist() == pytest.approx([1, 1, 1, 0.9, 1, 1, 1, 0.9])
    done = row_of(codec, observations, actions, [0.0, 1.0], terminated=True)
    tr = transitions(*(batch_of([done], 0)[k] for k in ("input_ids", "action_mask", "turn_end", "rewards", "lengths",
                                                         "terminated")), gamma=0.9)
    assert tr.discount.tolist()[-1] == 0.0 and tr.reward.tolist() == [0.0] * 7 + [1.0]


def test_padded_batch_packs_images_in_obs_token_order(codec):
    episodes = [episode(n, success=False) for n in (2, 4)]
    batch = batch_of([row_of(codec, *e, terminated=False) for e in episodes], codec.tokenizer.pad_token_id)
    expected = [o["image"] for observations, _, _ in episodes for o in observations]   # PNG is lossless
    assert int((batch["input_ids"] == codec.observation_id).sum()) == len(expected) == 3 + 5
    assert torch.equal(batch["images"], torch.from_numpy(np.stack(expected)))
    assert batch["proprio"].shape == (8, 4) and batch["proprio"][3, 1].item() == pytest.approx(0.0)


def test_images_and_actions_round_trip_through_parquet_bit_exactly(tmp_path):
    observations, actions, rewards = episode(3, success=True)
    ep = Episode(episode_id=7, task="robot_pick", observations=[stored(o) for o in observations], actions=actions,
                 rewards=rewards, terminated=True, truncated=False, images=[encode_image(o["image"]) for o in observations])
    pq.write_table(episodes_to_table([ep]), tmp_path / "part-00000.parquet")
    back = episode_from_rows(pq.read_table(tmp_path / "part-00000.parquet").to_pylist())

    assert all(np.array_equal(decode_image(png), o["image"]) for png, o in zip(back.images, observations))
    assert back.actions == actions and back.observations == ep.observations
    assert pa.Table.from_pylist(ep.to_rows(), schema=STEP_SCHEMA).num_rows == 4


def test_pixel_checkpoint_loads_through_the_auto_classes(codec, space, tmp_path):
    model = load_initial_model(ModelConfig(n_layer=1, n_embd=32, n_head=2), codec.tokenizer, seed=1,
                               observation_space=space)
    again = load_initial_model(ModelConfig(n_layer=1, n_embd=32, n_head=2), codec.tokenizer, seed=1,
                               observation_space=space)
    assert isinstance(model, PixelGPT) and model.config.vocab_size == len(codec.tokenizer) == 3 + TASK.action_tokenizer.num_bins
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))
    save_checkpoint(str(tmp_path), model, codec.tokenizer, {"stage": "bc"})
    loaded = AutoModelForCausalLM.from_pretrained(str(tmp_path))
    assert type(loaded) is PixelGPT and type(load_model(str(tmp_path))) is PixelGPT
    assert load_tokenizer(str(tmp_path)).convert_tokens_to_ids(TASK.action_tokenizer.vocabulary()) == \
        list(range(codec.first_bin_id, codec.first_bin_id + TASK.action_tokenizer.num_bins))

    batch = batch_of([row_of(codec, *episode(3, success=False), terminated=False)], 0)
    full = model.eval()(batch["input_ids"], images=batch["images"], proprio=batch["proprio"]).logits
    assert torch.allclose(loaded.eval()(batch["input_ids"], images=batch["images"], proprio=batch["proprio"]).logits,
                          full, atol=1e-6)
    rows, positions = torch.tensor([0, 0]), torch.tensor([4, 9])
    picked = TokenLogits(model)(batch["input_ids"], batch["attention_mask"], rows, positions, **observation_inputs(batch))
    assert torch.allclose(picked, full[0, [4, 9]], atol=1e-5)
    # Causal, and the image really is read at its <|obs|> position: changing step 1's image changes nothing before it.
    changed = batch["images"].clone()
    changed[1] = 255 - changed[1]
    other = model(batch["input_ids"], images=changed, proprio=batch["proprio"]).logits
    assert torch.allclose(other[0, :5], full[0, :5], atol=1e-6) and not torch.allclose(other[0, 5:], full[0, 5:])
    with pytest.raises(ValueError, match="<\\|obs\\|> tokens need as many images"):
        model(batch["input_ids"], images=batch["images"][:2], proprio=batch["proprio"][:2])


def test_the_observation_encoder_standardises_proprio_and_keeps_its_fan_in_init(codec, space, tmp_path):
    """(proprio - mean) / std with the training data's statistics (a constant dimension, std 0, is left
    unscaled), saved with the checkpoint; the conv stem and projection keep PyTorch's fan-in init, not GPT-2's
    N(0, 0.02), under which three convolutions gave features ~1e-3 of the image and a model that could not see
    (benchmarks/LEARNING.md, robot)."""
    stats = {"mean": [0.5, 0.0, 0.1, 0.07], "std": [0.08, 0.1, 0.0, 0.02]}
    model = load_initial_model(ModelConfig(n_layer=1, n_embd=32, n_head=2), codec.tokenizer, 0, space, stats)
    encoder = model.backbone.encoder
    assert encoder.conv[0].weight.std() > 0.05 and encoder.project.weight.std() > 0.05   # N(0, 0.02) would be 0.02
    assert float(model.backbone.gpt.wte.weight.std()) == pytest.approx(0.02, rel=0.1)
    images = torch.from_numpy(RNG.integers(0, 256, (3, 64, 64, 3), dtype=np.uint8))
    proprio = torch.tensor([[0.5, 0.0, 0.1, 0.07], [0.58, 0.1, 0.3, 0.09], [0.42, -0.2, 0.1, 0.05]])
    unit = load_initial_model(ModelConfig(n_layer=1, n_embd=32, n_head=2), codec.tokenizer, 0, space)
    unit.backbone.encoder.load_state_dict({k: v for k, v in encoder.state_dict().items() if "proprio" not in k},
                                          strict=False)
    standardised = (proprio - torch.tensor(stats["mean"])) / torch.tensor([0.08, 0.1, 1.0, 0.02])
    with torch.no_grad():
        assert torch.allclose(encoder(images, proprio), unit.backbone.encoder(images, standardised), atol=1e-5)
    save_checkpoint(str(tmp_path), model, codec.tokenizer, {"stage": "bc"})
    loaded = load_model(str(tmp_path)).backbone.encoder
    assert torch.equal(loaded.proprio_mean, encoder.proprio_mean) and torch.equal(loaded.proprio_std, encoder.proprio_std)


def test_untrained_keypoints_follow_the_scene(codec, space):
    """Spatial softmax standardises each feature map first: on real camera views of different layouts the
    untrained encoder's keypoints differ by ~0.1 (raw activations gave ~4e-4 even after training: flat maps)."""
    import gymnasium

    from pipeline.pixel_model import spatial_softmax

    env = gymnasium.make(TASK.env_id)
    images = torch.from_numpy(np.stack([env.reset(seed=i, options={"split": "eval", "index": i})[0]["image"]
                                        for i in range(8)]))
    env.close()
    model = load_initial_model(ModelConfig(n_layer=1, n_embd=32, n_head=2), codec.tokenizer, 0, space)
    with torch.no_grad():
        features = model.backbone.encoder.conv(images.permute(0, 3, 1, 2).float() / 255.0)
        keypoints = spatial_softmax(features)
        assert torch.allclose(spatial_softmax(3.0 * features + 1.0), keypoints, atol=5e-3)  # scale-free
    assert keypoints.std(0).mean() > 0.02


def test_spatial_softmax_is_the_expected_coordinate_under_standardised_weights():
    """keypoint_c = sum_{y,x} softmax(t (f_c - mean f_c) / std f_c)(y, x) * (y, x), on a 2x3 map by hand."""
    from pipeline.pixel_model import spatial_softmax

    f = torch.tensor([[[[0.0, 1.0, 5.0], [2.0, 0.5, 0.0]]]], dtype=torch.float64) + 7.0  # an offset changes nothing
    flat = f.flatten()
    weights = torch.softmax(1.5 * (flat - flat.mean()) / (flat.std() + 1e-5), 0).view(2, 3)
    y = (weights.sum(1) * torch.tensor([-1.0, 1.0], dtype=torch.float64)).sum()
    x = (weights.sum(0) * torch.tensor([-1.0, 0.0, 1.0], dtype=torch.float64)).sum()
    assert torch.allclose(spatial_softmax(f, 1.5), torch.stack([y, x])[None], atol=1e-12)


@pytest.mark.parametrize("stage", ["bc", "qsft"])
def test_training_losses_run_on_pixel_batches(codec, space, stage):
    cfg = TrainConfig(stage=stage, model=ModelConfig(n_layer=1, n_embd=32, n_head=2))
    model = load_initial_model(cfg.model, codec.tokenizer, seed=0, observation_space=space)
    rows = [row_of(codec, *episode(n, success=n == 3), terminated=n == 3) for n in (3, 5)]
    batch = batch_of(rows, codec.tokenizer.pad_token_id)
    frozen = TokenLogits(copy.deepcopy(model).requires_grad_(False))
    loss, stats = step_loss(cfg, batch, TokenLogits(model), frozen, frozen)
    loss.backward()
    assert torch.isfinite(loss) and stats["tokens"] == 4 * (3 + 5)
    assert model.backbone.encoder.conv[0].weight.grad.abs().sum() > 0   # the pixels are learned from
    if stage == "qsft":
        assert 0.0 <= stats["target_mean"] <= 1.0 and stats["support_size"] >= 1


def test_q_sft_smooths_over_the_bin_tokens_only(codec, tmp_path):
    """The training stage's action vocabulary is the task's bins: label smoothing never feeds pad, <|eot|> or
    <|obs|>, which the policy never emits (`algorithm.qsft_token_losses`)."""
    from pipeline.train import action_vocabulary, smoothing_vocab_size

    codec.tokenizer.save_pretrained(str(tmp_path))
    vocab = action_vocabulary(TASK, str(tmp_path))
    assert vocab == list(codec.action_token_ids) and len(vocab) == TASK.action_tokenizer.num_bins
    assert not {codec.tokenizer.pad_token_id, codec.observation_id} & set(vocab)
    assert smoothing_vocab_size(str(tmp_path), vocab) == TASK.action_tokenizer.num_bins
    assert action_vocabulary(envs.get_task("wordle"), str(tmp_path)) is None


def test_extracted_pixel_policy_decodes_bins_with_cache_as_the_formula_says(codec, space, tmp_path):
    """Greedy decoding through the KV caches, left-padded next to a longer episode, picks at every action
    token the argmax of pi_beta * exp(beta * p_theta) restricted to bin tokens (full forwards by hand)."""
    paths = []
    for seed in (1, 2):
        path = tmp_path / f"m{seed}"
        model = load_initial_model(ModelConfig(n_layer=1, n_embd=32, n_head=2), codec.tokenizer, seed, space)
        save_checkpoint(str(path), model, codec.tokenizer, {"stage": "test"})
        paths.append(str(path))
    policy = LMPolicy(PolicySpec(checkpoint=paths[0], q=paths[1], beta=3.0), TASK)
    observations = [observation(t) for t in range(3)]
    short = policy.context([policy.segment(observations[0])])
    long = policy.context([policy.segment(observations[0]), policy.segment(observations[1], "[0.2, -0.3, 0.9, 1.0]"),
                           policy.segment(observations[2], "[-1.0, 1.0, 0.0, -1.0]")])
    assert len(long.ids) == 11 and len(long.observations) == 3
    actions = policy.generate([short, long])

    for context, action in zip([short, long], actions):
        ids = list(context.ids)
        images = torch.from_numpy(np.stack([o["image"] for o in context.observations]))
        proprio = torch.from_numpy(np.stack([o["proprio"] for o in context.observations]))
        chosen = []
        for _ in range(4):
            x = torch.tensor([ids])
            with torch.no_grad():
                pb = policy.lm(x, images=images, proprio=proprio).logits[0, -1].softmax(-1)
                pq_ = policy.q(x, images=images, proprio=proprio).logits[0, -1].softmax(-1)
            weights = pb * torch.exp(3.0 * pq_)
            weights[: codec.first_bin_id] = 0.0      # only bin tokens make an action
            chosen.append(int(weights.argmax()))
            ids.append(chosen[-1])
        assert isinstance(action, np.ndarray) and action.shape == (4,)
        np.testing.assert_allclose(action, codec.decode_action(chosen))
    assert Segment([1]).observations == ()


def test_replayed_evaluation_episode_redraws_the_same_frames():
    """A record's rounded bin-centre actions replay the episode exactly (the report's filmstrip)."""
    import gymnasium

    from pipeline.collect import action_text
    from pipeline.filmstrip import replay_frames

    tokens = TASK.action_tokenizer
    env = gymnasium.make(TASK.env_id)
    obs, _ = env.reset(seed=11, options={"split": "eval", "index": 3})
    frames, transcript, total = [obs["image"]], [], 0.0
    for t in range(6):
        action = tokens.decode(RNG.integers(0, tokens.num_bins, 4))
        obs, reward, *_ = env.step(action)
        transcript.append({"action": action_text(action)})
        frames.append(obs["image"])
        total += reward
    env.close()
    record = {"seed": 11, "episode": 3, "steps": 6, "raw_return": total,
              "transcript": json.dumps(transcript + [{}])}
    replayed = replay_frames(TASK, record)
    assert len(replayed) == 7 and all(np.array_equal(a, b) for a, b in zip(replayed, frames))
    with pytest.raises(RuntimeError, match="does not match"):
        replay_frames(TASK, {**record, "steps": 5})


def test_pixel_policy_inputs_never_include_the_privileged_object_positions(codec, space, tmp_path, monkeypatch):
    """The scripted behaviour reads the objects' positions from `info`; a learned robot policy must see only the
    camera image and the gripper's own state:
    1. the observation is {"image", "proprio"}, proprio = gripper xyz and finger opening;
    2. a collected episode stores exactly that (the PNG, and proprio as the only text), and its training row
       carries that proprio beside its images (the infos are read only for text tasks' admissible actions);
    3. an evaluated policy plays the same actions when the environment's `info` lies about every object."""
    import gymnasium

    from envs.robot.env import RobotEnv
    from pipeline.collect import play_episode
    from pipeline.evaluate import play_chunk

    env = gymnasium.make(TASK.env_id)
    observation_, info = env.reset(seed=3, options={"split": "eval", "index": 0})
    scene = env.unwrapped._scene
    assert set(observation_) == {"image", "proprio"} and observation_["proprio"].shape == (4,)
    np.testing.assert_allclose(observation_["proprio"], [*scene.gripper_position(), scene.gripper_opening()], atol=1e-6)
    privileged = [info["target_pos"], *info["distractor_pos"]]
    assert not any(np.allclose(observation_["proprio"][:3], p, atol=1e-3) for p in privileged)

    recorded = play_episode(env, TASK.make_behaviour(**TASK.default_behaviour_params), seed=3,
                            options={"split": "train", "index": 5}, episode_id=0, task=TASK.name)
    env.close()
    assert all(set(json.loads(text)) == {"proprio"} for text in recorded.observations)
    assert "target_pos" in recorded.infos[0]   # stored for analysis, never a model input

    row = encode_episode(codec, recorded.observations, recorded.actions,
                         TASK.unit_rewards(recorded.rewards, recorded.terminated), recorded.terminated, 256)
    attach_observations(codec, row, recorded.observations, recorded.images)
    kept = len(row["obs_images"])   # one per <|obs|> token
    decoded = np.stack([decode_image(png) for png in recorded.images[:kept]])
    assert kept > 1 and np.array_equal(row["obs_images"], decoded)
    proprio = np.stack([json.loads(text)["proprio"] for text in recorded.observations[:kept]])
    np.testing.assert_allclose(row["obs_proprio"].reshape(-1, 4), proprio, atol=1e-6)

    model = load_initial_model(ModelConfig(n_layer=1, n_embd=32, n_head=2), codec.tokenizer, 0, space)
    save_checkpoint(str(tmp_path), model, codec.tokenizer, {"stage": "bc"})
    policy = LMPolicy(PolicySpec(checkpoint=str(tmp_path)), TASK)
    honest = play_chunk(TASK, policy, [0, 1], seed=0)
    real_info = RobotEnv._info

    def lying_info(self, success):
        info = real_info(self, success)
        info["target_pos"] = [9.0, 9.0, 9.0]
        info["distractor_pos"] = [[-9.0, -9.0, 9.0] for _ in info["distractor_pos"]]
        info.pop("marker_pos", None)
        return info

    monkeypatch.setattr(RobotEnv, "_info", lying_info)
    lied_to = play_chunk(TASK, policy, [0, 1], seed=0)
    assert [r["transcript"] for r in lied_to] == [r["transcript"] for r in honest]
    assert honest[0]["steps"] > 1
