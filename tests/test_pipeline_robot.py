"""The robot pipeline end to end on local Ray, from pixels: collect (PNG images in Parquet) -> BC job ->
Q-SFT job (pi_beta's support precomputed over image batches) -> evaluation actors -> report.

Tiny on purpose (a few episodes and optimizer steps); the checks are the hand-offs and the artefacts.
"""

import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from envs.robot import pick
from envs.robot.codec import decode_image
from pipeline.data import shard_files
from pipeline.models import load_model, read_stage_info
from pipeline.pixel_model import PixelGPT
from pipeline.run import run_pipeline

OVERRIDES = {
    "collect": {"episodes": 8},
    "train": {"batch_size": 2, "max_steps": 2, "log_every": 1, "warmup_steps": 1},
    "eval": {"num_episodes": 2, "envs_per_actor": 2, "num_actors": 1},   # one actor: one start-up, not two
}


@pytest.mark.slow   # 94-101 s: the default suite's end-to-end pipeline is the maze's (tests/test_cluster_submit.py)
def test_robot_pick_pipeline_from_pixels(tmp_path, ray_local):
    out = tmp_path / "robot_pick"
    summaries = run_pipeline("robot_pick", str(out), "tiny", OVERRIDES, progress=False)

    table = pq.read_table(shard_files(str(out / "data"))[0])
    image = decode_image(table.column("image")[0].as_py())
    assert image.shape == (64, 64, 3) and image.dtype == np.uint8 and image.std() > 0
    assert len(json.loads(table.column("action")[0].as_py())) == 4

    proprio = np.array([json.loads(o)["proprio"] for shard in shard_files(str(out / "data"))
                        for o in pq.read_table(shard, columns=["observation"]).column("observation").to_pylist()])
    for stage in ("bc", "qsft"):
        checkpoint = out / stage / "checkpoint"
        model = load_model(str(checkpoint))
        assert isinstance(model, PixelGPT)
        assert read_stage_info(str(checkpoint))["stage"] == stage
        # the encoder standardises proprio with the training rows' statistics (every step of these short episodes)
        np.testing.assert_allclose(model.backbone.encoder.proprio_mean.numpy(), proprio.mean(0), atol=2e-3)
        np.testing.assert_allclose(model.config.proprio_std, proprio.std(0), atol=2e-3)
    metrics = read_stage_info(str(out / "qsft" / "checkpoint"))["metrics"]
    assert 0.0 <= metrics["target_mean"] <= 1.0
    assert 1 <= metrics["support_size"] <= pick.TASK.action_tokenizer.num_bins

    assert set(summaries) == {"bc", "qsft(beta=4)"}
    records = json.loads((out / "eval" / "qsft" / "records.json").read_text())
    assert [r["episode"] for r in records] == list(range(2))
    for record in records:
        transcript = json.loads(record["transcript"])
        assert len(transcript) == record["steps"] + 1 and 1 <= record["steps"] <= 30
        action = json.loads(transcript[0]["action"])
        assert len(action) == 4 and all(-1.0 <= a <= 1.0 for a in action)   # bin centres, not text
    assert (out / "report" / "report.html").exists() and (out / "report" / "filmstrip.png").stat().st_size > 5000
    assert "filmstrip.png" in (out / "report" / "report.html").read_text()
