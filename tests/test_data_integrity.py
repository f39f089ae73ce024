"""Writers publish a dataset folder whole: one writer at a time (a lock file), staging then an atomic rename.

The probe's case: two `jobs/collect.py` runs into one `--out` both reported success, and the last to finish
silently deleted the other's data. Now the second is refused while the first holds `<out>.lock`.
"""

import json
import os
import socket
import subprocess
import sys
from datetime import datetime, timedelta, timezone

import gymnasium
import numpy as np
import pytest

import envs
from pipeline import tracking
from pipeline.collect import collect, describe_space
from pipeline.data import FolderBusy, load_episodes, publishing, read_metadata, shard_list, writer_lock


def dead_pid() -> int:
    """The pid of a process of this host that has exited."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def write_lock(lock, pid: int, host: str) -> None:
    with open(lock, "w") as f:
        json.dump({"pid": pid, "host": host}, f)


def read_lock(lock) -> dict:
    with open(lock) as f:
        return json.load(f)


def test_collect_records_its_shards_and_leaves_no_lock_or_staging(tmp_path, ray_local):
    out = str(tmp_path / "data")
    meta = collect("wordle", 6, out, workers=2, shards=3, progress=False)
    assert meta["shards"] == shard_list(out) and len(meta["shards"]) == meta["num_shards"] == 3
    assert sum(s["rows"] for s in meta["shards"]) == meta["num_rows"] == meta["num_steps"] + 6
    assert len(load_episodes(out)) == 6
    assert sorted(os.listdir(tmp_path)) == ["data"]


def test_dataset_json_describes_the_spaces_normalizer_code_and_creation(tmp_path, ray_local):
    out, task = str(tmp_path / "data"), envs.get_task("wordle")
    meta = collect("wordle", 2, out, workers=1, progress=False)
    assert read_metadata(out) == meta
    assert meta["observation_space"]["type"] == meta["action_space"]["type"] == "Text"
    assert meta["action_space"]["max_length"] == 64 and "a" in meta["action_space"]["charset"]
    normalizer = meta["score_normalizer"]
    assert (normalizer["worst"], normalizer["average"], normalizer["best"]) == (
        task.normalizer.worst, task.normalizer.average, task.normalizer.best)
    assert meta["unit_rewards"].endswith(task.unit_rewards.__qualname__)
    assert meta["code_version"] == tracking.code_version() != "unknown"   # the tests run in a git checkout
    assert timedelta(0) <= datetime.now(timezone.utc) - datetime.fromisoformat(meta["created"]) < timedelta(hours=1)


def test_a_pixel_space_is_described_without_its_pixels():
    space = gymnasium.spaces.Dict({"image": gymnasium.spaces.Box(0, 255, (64, 64, 3), np.uint8),
                                   "proprio": gymnasium.spaces.Box(np.array([-2.0, 0.0], np.float32),
                                                                   np.array([2.0, 0.05], np.float32))})
    assert json.loads(json.dumps(describe_space(space))) == {"type": "Dict", "spaces": {
        "image": {"type": "Box", "shape": [64, 64, 3], "dtype": "uint8", "low": 0.0, "high": 255.0},
        "proprio": {"type": "Box", "shape": [2], "dtype": "float32", "low": [-2.0, 0.0], "high": [2.0, 0.05]}}}


def test_a_second_collection_into_a_held_folder_is_refused_and_keeps_the_first_ones_data(tmp_path, ray_local):
    out = str(tmp_path / "data")
    first = collect("wordle", 4, out, workers=1, progress=False)
    busy = rf"data.lock: another writer holds this lock .*'pid': {os.getpid()}"
    # a writer (this process: alive) holds the folder
    with writer_lock(f"{out}.lock"), pytest.raises(FolderBusy, match=busy):
        collect("wordle", 6, out, workers=1, seed=1, progress=False)
    assert read_metadata(out) == first and len(load_episodes(out)) == 4
    assert sorted(os.listdir(tmp_path)) == ["data"]


def test_a_collection_that_fails_while_writing_leaves_the_previous_dataset(tmp_path, ray_local, monkeypatch):
    """Before, the earlier dataset was lost: writing the new shards in place had deleted it, dataset.json
    included, before writing the new dataset.json failed."""
    out = str(tmp_path / "data")
    first = collect("wordle", 4, out, workers=1, progress=False)

    def disk_full(*args):
        raise OSError("disk full")

    monkeypatch.setattr("pipeline.collect.write_metadata", disk_full)
    with pytest.raises(OSError, match="disk full"):
        collect("wordle", 6, out, workers=1, seed=1, progress=False)
    assert read_metadata(out) == first and len(load_episodes(out)) == 4
    assert sorted(os.listdir(tmp_path)) == ["data"]


def test_publishing_replaces_the_folder_only_when_the_block_succeeds(tmp_path):
    out = str(tmp_path / "d")
    def write(folder: str, name: str) -> None:
        os.makedirs(folder)
        open(os.path.join(folder, name), "w").close()

    with publishing(out) as folder:
        assert folder == f"{out}.staging" and os.path.exists(f"{out}.lock") and not os.path.exists(out)
        write(folder, "a")
    assert os.listdir(out) == ["a"]
    with pytest.raises(RuntimeError, match="boom"), publishing(out) as folder:
        write(folder, "b")
        raise RuntimeError("boom")
    assert os.listdir(out) == ["a"] and sorted(os.listdir(tmp_path)) == ["d"]
    with publishing(out) as folder:
        write(folder, "c")
    assert os.listdir(out) == ["c"] and sorted(os.listdir(tmp_path)) == ["d"]


def test_a_stale_lock_of_a_dead_local_process_is_reclaimed_but_no_other(tmp_path):
    lock = str(tmp_path / "d.lock")
    write_lock(lock, dead_pid(), socket.gethostname())
    with writer_lock(lock):
        assert read_lock(lock) == {"pid": os.getpid(), "host": socket.gethostname()}
    assert not os.path.exists(lock)
    for pid, host in ((os.getppid(), socket.gethostname()), (dead_pid(), "another-host")):
        write_lock(lock, pid, host)  # alive here, or on a host whose pids cannot be checked from here
        with pytest.raises(FolderBusy, match=f"'host': '{host}'"), writer_lock(lock):
            pass
        assert read_lock(lock)["pid"] == pid
    open(lock, "w").close()  # empty: its writer may be filling it in right now
    with pytest.raises(FolderBusy), writer_lock(lock):
        pass


def test_a_collection_holding_back_validation_instances_never_plays_them(tmp_path, ray_local):
    """`validation_instances`: the training split's first N instances are never drawn, so validation (which plays
    instances 0..N-1) measures the policies on instances outside their data."""
    out = str(tmp_path / "data")
    meta = collect("maze_small", 60, out, workers=1, validation_instances=30, progress=False)
    played = {episode.infos[0]["instance"] for episode in load_episodes(out)}
    assert meta["validation_instances"] == 30 and played == set(range(30, 40))   # maze_small has 40 training pairs
