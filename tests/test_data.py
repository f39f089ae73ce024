"""Step datasets: Parquet round trip in any shard order, metadata, and errors that name file and row.

A folder is read only when it is the one its dataset.json describes (schema version, shards and their row
counts, episode and step counts); each mismatch is one DataError naming the file or folder."""

import json
import os
import random
import shutil

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.data import (
    METADATA_FILE,
    SCHEMA_VERSION,
    STEP_SCHEMA,
    DataError,
    Episode,
    check_dataset,
    episodes_to_table,
    load_episodes,
    read_episodes,
    read_metadata,
    shard_files,
    shard_list,
    write_metadata,
)


def make_episode(i: int, steps: int = 3, terminated: bool = True) -> Episode:
    return Episode(episode_id=i, task="wordle", observations=[f"obs {i}.{t}" for t in range(steps + 1)],
                   actions=[f"act {i}.{t}" for t in range(steps)], rewards=[-1.0] * (steps - 1) + [0.0],
                   terminated=terminated, truncated=not terminated,
                   infos=[{"t": t} for t in range(steps + 1)])


def write_shards(folder, episodes, shards=3, spread=True):
    """Shards and the dataset.json that describes them. `spread`: the steps of one episode end up in
    different shards, out of order; else each shard holds whole episodes (as `pipeline.collect` writes them),
    still out of order."""
    os.makedirs(folder, exist_ok=True)
    parts = [episodes_to_table(episodes[s::shards]).to_pylist() for s in range(shards)]
    if spread:
        rows = [row for part in parts for row in part]
        parts = [rows[s::shards] for s in range(shards)]
    for s, part in enumerate(parts):
        random.Random(s).shuffle(part)
        pq.write_table(pa.Table.from_pylist(part, schema=STEP_SCHEMA), f"{folder}/part-{s:05d}-0.parquet")
    write_metadata(str(folder), {"schema_version": SCHEMA_VERSION, "shards": shard_list(str(folder)),
                                 "num_episodes": len(episodes), "num_steps": sum(len(e.actions) for e in episodes)})


def test_round_trip_in_any_shard_order(tmp_path):
    episodes = [make_episode(i, steps=1 + i % 4, terminated=i % 3 > 0) for i in range(12)]
    write_shards(tmp_path / "d", episodes)
    back = load_episodes(str(tmp_path / "d"))
    assert [(e.episode_id, e.observations, e.actions, e.rewards, e.terminated, e.infos) for e in back] == \
           [(e.episode_id, e.observations, e.actions, e.rewards, e.terminated, e.infos) for e in episodes]


@pytest.mark.parametrize("spread", [True, False], ids=["steps spread over shards", "whole episodes per shard"])
def test_ray_dataset_reassembles_episodes(spread, tmp_path, ray_local):
    """Both ways of reading (a shuffle by episode_id, or one task per shard of whole episodes) give the
    same episodes."""
    episodes = [make_episode(i, steps=2 + i % 3) for i in range(9)]
    write_shards(tmp_path / "d", episodes, shards=4, spread=spread)
    assert check_dataset(str(tmp_path / "d")).whole_episodes is not spread
    records = sorted(read_episodes(str(tmp_path / "d")).take_all(), key=lambda r: r["episode_id"])
    assert [list(r["actions"]) for r in records] == [e.actions for e in episodes]
    assert [list(r["observations"]) for r in records] == [e.observations for e in episodes]
    assert [list(r["rewards"]) for r in records] == [e.rewards for e in episodes]
    assert [json.loads(r["infos"]) for r in records] == [e.infos for e in episodes]


def corrupt(folder, mutate):
    file = shard_files(str(folder))[1]
    rows = pq.read_table(file).to_pylist()
    mutate(rows)
    pq.write_table(pa.Table.from_pylist(rows, schema=STEP_SCHEMA), file)
    return file


@pytest.mark.parametrize("mutate, message", [
    (lambda rows: rows[2].update(observation=None), "column 'observation' is null"),
    (lambda rows: rows[1].update(info="{not json"), "column 'info' is not valid JSON"),
    (lambda rows: rows[0].update(episode_id=None), "column 'episode_id' is null"),
    (lambda rows: rows[3].update(step=99), "steps must be"),
])
def test_malformed_rows_name_file_and_row(tmp_path, mutate, message):
    write_shards(tmp_path / "d", [make_episode(i) for i in range(6)])
    file = corrupt(tmp_path / "d", mutate)
    with pytest.raises(DataError, match=message) as err:
        load_episodes(str(tmp_path / "d"))
    assert os.path.basename(file) in str(err.value) and " row " in str(err.value)


def test_malformed_shard_schema_and_garbage_file(tmp_path):
    write_shards(tmp_path / "d", [make_episode(i) for i in range(4)])
    file = shard_files(str(tmp_path / "d"))[0]
    pq.write_table(pq.read_table(file).drop_columns(["reward"]), file)
    with pytest.raises(DataError, match="missing column 'reward'"):
        load_episodes(str(tmp_path / "d"))
    with open(file, "wb") as f:
        f.write(b"not parquet at all")
    with pytest.raises(DataError, match="not a readable Parquet file") as err:
        load_episodes(str(tmp_path / "d"))
    assert "part-00000" in str(err.value)


def test_missing_dataset(tmp_path):
    with pytest.raises(DataError, match=f"no {METADATA_FILE}"):
        load_episodes(str(tmp_path))
    shutil.rmtree(tmp_path)


def edit_metadata(folder, **changes):
    meta = read_metadata(str(folder))
    meta.update(changes)
    write_metadata(str(folder), meta)


def test_metadata_claiming_more_episodes_than_the_shards_hold_is_refused(tmp_path, ray_local):
    """The probe's case: dataset.json said 5,000 episodes, the Parquet held 200 (here 6); the Ray path
    (training) and the in-memory path both refuse, before any row is used."""
    write_shards(tmp_path / "d", [make_episode(i) for i in range(6)])
    edit_metadata(tmp_path / "d", num_episodes=5000)
    message = "the shards hold 6 episodes and 18 steps, but dataset.json says 5000 episodes and 18 steps"
    with pytest.raises(DataError, match=message):
        read_episodes(str(tmp_path / "d"))
    with pytest.raises(DataError, match=message):
        load_episodes(str(tmp_path / "d"))


def test_a_deleted_shard_is_named(tmp_path):
    write_shards(tmp_path / "d", [make_episode(i) for i in range(6)])
    os.remove(shard_files(str(tmp_path / "d"))[1])
    with pytest.raises(DataError, match=r"shard part-00001-0.parquet is listed in dataset.json but missing"):
        load_episodes(str(tmp_path / "d"))


def test_a_shard_with_other_rows_or_an_unlisted_shard_is_named(tmp_path):
    write_shards(tmp_path / "d", [make_episode(i) for i in range(6)])
    file = shard_files(str(tmp_path / "d"))[2]
    pq.write_table(pq.read_table(file).slice(0, 3), file)
    with pytest.raises(DataError, match=r"part-00002-0.parquet: 3 rows, but dataset.json lists 8"):
        load_episodes(str(tmp_path / "d"))
    write_shards(tmp_path / "d", [make_episode(i) for i in range(6)])
    shutil.copy(file, tmp_path / "d" / "part-00009-0.parquet")
    with pytest.raises(DataError, match="shard part-00009-0.parquet is not listed in dataset.json"):
        load_episodes(str(tmp_path / "d"))


@pytest.mark.parametrize("version", [None, 1, SCHEMA_VERSION + 1])
def test_another_schema_version_is_refused(tmp_path, version):
    write_shards(tmp_path / "d", [make_episode(i) for i in range(3)])
    edit_metadata(tmp_path / "d", schema_version=version)
    with pytest.raises(DataError, match=f"dataset.json: schema_version {version!r}, but this code reads version "
                                        f"{SCHEMA_VERSION}"):
        load_episodes(str(tmp_path / "d"))
