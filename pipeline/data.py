"""Step-level trajectory datasets: the Parquet schema, its validation, and episode reassembly.

A dataset folder holds shards `part-*.parquet` (one row per environment step, plus one final row per
episode carrying the last observation, with `action` and `reward` null) and `dataset.json` (Minari-style
metadata, written last: a folder without it is incomplete). dataset.json lists the shards (`shards`: file
name and row count) and the episode and step counts; reading checks the folder against them, and its
`schema_version`, before any row is used. Validation names the file and row of any malformed record, so
nothing downstream is built on bad data.

Writers publish a local folder whole (`publishing`): they write into `<folder>.staging`, then rename it to
`<folder>`, holding the lock file `<folder>.lock` all the while (`folder_lock`), so readers never see a
half-written folder and a second writer is refused instead of deleting the first one's data. Training
stages hold their folder's lock the same way.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

SCHEMA_VERSION = 2  # 2: dataset.json lists the shards and their row counts
METADATA_FILE = "dataset.json"

STEP_SCHEMA = pa.schema([
    ("episode_id", pa.int64()),
    ("step", pa.int32()),
    ("task", pa.string()),
    ("observation", pa.string()),   # text newly observed before `action` (step 0: the task prompt)
    ("action", pa.string()),        # null on the final row
    ("reward", pa.float64()),       # raw reward of `action`; null on the final row
    ("terminated", pa.bool_()),     # episode-level flags, repeated on every row
    ("truncated", pa.bool_()),
    ("info", pa.string()),          # JSON object
    ("image", pa.binary()),         # PNG bytes for pixel tasks, else null
])


class DataError(ValueError):
    """A dataset file or row is malformed; the message names the file and the row."""


class FolderBusy(RuntimeError):
    """Another writer holds the folder's lock file; the message names the holder."""


@dataclass
class Episode:
    """One trajectory: T actions between T + 1 observations."""

    episode_id: int
    task: str
    observations: list[str]
    actions: list[str]
    rewards: list[float]
    terminated: bool
    truncated: bool
    infos: list[dict[str, Any]] = field(default_factory=list)
    images: list[bytes | None] | None = None

    @property
    def raw_return(self) -> float:
        return float(sum(self.rewards))

    def to_rows(self) -> list[dict[str, Any]]:
        """The episode as step rows in `STEP_SCHEMA` order (T action rows + the final row)."""
        n = len(self.actions)
        infos = self.infos or [{} for _ in range(n + 1)]
        images = self.images or [None] * (n + 1)
        return [
            {"episode_id": self.episode_id, "step": t, "task": self.task, "observation": self.observations[t],
             "action": self.actions[t] if t < n else None, "reward": float(self.rewards[t]) if t < n else None,
             "terminated": self.terminated, "truncated": self.truncated, "info": json.dumps(infos[t]),
             "image": images[t]}
            for t in range(n + 1)
        ]


def episodes_to_table(episodes: Iterable[Episode]) -> pa.Table:
    rows = [row for ep in episodes for row in ep.to_rows()]
    return pa.Table.from_pylist(rows, schema=STEP_SCHEMA)


def episode_from_rows(rows: list[dict[str, Any]], source: str = "<rows>") -> Episode:
    """Rebuild one episode from its step rows in any order, checking every invariant.

    Each row dict may carry `_file` and `_row` (where it was read from) for error messages.
    """
    rows = sorted(rows, key=lambda r: r["step"])

    def where(row: dict[str, Any]) -> str:
        return f"{row.get('_file', source)} row {row.get('_row', '?')} (episode {row['episode_id']}, step {row['step']})"

    steps = [r["step"] for r in rows]
    if steps != list(range(len(rows))):
        # name a row that is surely wrong: a step out of range, else the second of a repeated step
        bad = [r for r in rows if not 0 <= r["step"] < len(rows)] or \
              [r for i, r in enumerate(rows) if i and r["step"] == rows[i - 1]["step"]]
        raise DataError(f"{where(bad[0])}: steps must be 0..{len(rows) - 1} exactly once, got {steps}")
    last = rows[-1]
    for row in rows:
        final = row is last
        if not isinstance(row["observation"], str):
            raise DataError(f"{where(row)}: column 'observation' is null")
        if (row["action"] is None) != final or (row["reward"] is None) != final:
            raise DataError(f"{where(row)}: columns 'action'/'reward' must be set on every step but the final row")
        if row["reward"] is not None and row["reward"] != row["reward"]:
            raise DataError(f"{where(row)}: column 'reward' is NaN")
        if (row["terminated"], row["truncated"], row["task"]) != (last["terminated"], last["truncated"], last["task"]):
            raise DataError(f"{where(row)}: columns 'terminated'/'truncated'/'task' differ within the episode")
        try:
            info = json.loads(row["info"]) if row["info"] is not None else {}
        except json.JSONDecodeError as err:
            raise DataError(f"{where(row)}: column 'info' is not valid JSON ({err})") from None
        row["_info"] = info
    has_images = any(r.get("image") is not None for r in rows)
    return Episode(
        episode_id=int(last["episode_id"]),
        task=last["task"],
        observations=[r["observation"] for r in rows],
        actions=[r["action"] for r in rows[:-1]],
        rewards=[float(r["reward"]) for r in rows[:-1]],
        terminated=bool(last["terminated"]),
        truncated=bool(last["truncated"]),
        infos=[r["_info"] for r in rows],
        images=[r.get("image") for r in rows] if has_images else None,
    )


def resolve(path: str) -> tuple[pafs.FileSystem, str]:
    """A pyarrow filesystem and path for a local folder or any URI pyarrow understands (s3://, gs://, ...)."""
    if "://" in path:
        return pafs.FileSystem.from_uri(path)
    return pafs.LocalFileSystem(), os.path.abspath(path)


def shard_files(path: str) -> list[str]:
    fs, root = resolve(path)
    infos = fs.get_file_info(pafs.FileSelector(root, recursive=False))
    files = sorted(i.path for i in infos if i.is_file and i.base_name.endswith(".parquet"))
    if not files:
        raise DataError(f"{path}: no Parquet shards found")
    return files


def read_metadata(path: str) -> dict[str, Any]:
    fs, root = resolve(path)
    try:
        with fs.open_input_stream(f"{root}/{METADATA_FILE}") as f:
            return json.loads(f.read())
    except FileNotFoundError:
        raise DataError(f"{path}: no {METADATA_FILE}; the dataset is missing or was not written completely") from None


def write_metadata(path: str, metadata: dict[str, Any]) -> None:
    fs, root = resolve(path)
    with fs.open_output_stream(f"{root}/{METADATA_FILE}") as f:
        f.write(json.dumps(metadata, indent=2, sort_keys=True).encode())


@contextmanager
def writer_lock(lock: str) -> Iterator[None]:
    """Hold the lock file `lock` while the block runs, or raise FolderBusy if another writer holds it.

    The lock is created with O_EXCL (atomic on a local disk and on NFSv3 or later) and holds {"pid",
    "host"} of its writer; it is removed when the block ends, whether it succeeds or fails. A lock whose
    writer is gone (its host is this one and its pid is not running) is stale and is reclaimed: deleted,
    then created again, once. Reclaiming is not atomic: two writers that find the same stale lock at the
    same instant could both take it. A lock from another host is never reclaimed, since its pid cannot be
    checked from here; nor is an empty or unreadable one (its writer may be creating it right now):
    delete those by hand once their writer is known to be gone.
    """
    for attempt in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            break
        except FileExistsError:
            holder = _lock_holder(lock)
            if attempt or not _is_stale(holder):
                raise FolderBusy(f"{lock}: another writer holds this lock ({holder}); wait for it to finish, or "
                                 f"delete the lock if that writer is gone") from None
            with suppress(FileNotFoundError):
                os.unlink(lock)
    with os.fdopen(fd, "w") as f:
        json.dump({"pid": os.getpid(), "host": socket.gethostname()}, f)
    try:
        yield
    finally:
        os.unlink(lock)


def folder_lock(folder: str) -> AbstractContextManager[None]:
    """`writer_lock` on `<folder>.lock`, beside the local folder `folder` (removing the folder keeps it)."""
    folder = os.path.abspath(folder)
    os.makedirs(os.path.dirname(folder), exist_ok=True)
    return writer_lock(f"{folder}.lock")


def _lock_holder(lock: str) -> dict[str, Any]:
    try:
        with open(lock) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def _is_stale(holder: dict[str, Any]) -> bool:
    """The lock's writer ran on this host and its pid is no longer running."""
    if holder.get("host") != socket.gethostname() or not isinstance(holder.get("pid"), int):
        return False
    try:
        os.kill(holder["pid"], 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # running, as another user
        pass
    return False


@contextmanager
def publishing(path: str) -> Iterator[str]:
    """Yield the folder to write a dataset into (the block creates it); when the block succeeds, it becomes
    `path` in one step.

    A local `path` is written as `<path>.staging` under the lock `<path>.lock` (`folder_lock`), then
    renamed to `path` (an existing dataset there is renamed aside first and deleted after); a failed
    block leaves `path` as it was. Object stores (s3://, gs://, ...) have neither an exclusive create nor
    a directory rename: there the folder is written in place (dataset.json last) and concurrent writers
    are not detected.
    """
    if "://" in path:
        yield path
        return
    path = os.path.abspath(path)
    staging, replaced = f"{path}.staging", f"{path}.replaced"
    with folder_lock(path):
        for leftover in (staging, replaced):  # a dead writer's, whose lock was just reclaimed
            shutil.rmtree(leftover, ignore_errors=True)
        try:
            yield staging
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        if os.path.exists(path):
            os.rename(path, replaced)
        os.rename(staging, path)
        shutil.rmtree(replaced, ignore_errors=True)


def read_shard(file: str, filesystem: pafs.FileSystem, columns: list[str]) -> pa.Table:
    """Some columns of one shard, after checking its schema against `STEP_SCHEMA`."""
    try:
        with filesystem.open_input_file(file) as f:
            parquet = pq.ParquetFile(f)
            schema = parquet.schema_arrow
            for name in STEP_SCHEMA.names:
                if name not in schema.names:
                    raise DataError(f"{file}: missing column {name!r}")
                expected, actual = STEP_SCHEMA.field(name).type, schema.field(name).type
                if actual != expected and not (actual == pa.null()):
                    raise DataError(f"{file}: column {name!r} has type {actual}, expected {expected}")
            return parquet.read(columns=columns)
    except (pa.ArrowInvalid, OSError) as err:
        raise DataError(f"{file}: not a readable Parquet file ({err})") from None


def shard_list(path: str) -> list[dict[str, Any]]:
    """dataset.json's `shards`: [{"file": name, "rows": row count}] of the folder's shards, from their footers."""
    fs, _ = resolve(path)
    shards = []
    for file in shard_files(path):
        with fs.open_input_file(file) as f:
            shards.append({"file": os.path.basename(file), "rows": pq.ParquetFile(f).metadata.num_rows})
    return shards


class Shards(NamedTuple):
    files: list[str]
    whole_episodes: bool  # every episode's steps are in one shard (as `collect` writes them)


def check_dataset(path: str) -> Shards:
    """The shard files of a dataset folder, once they are shown to be the ones dataset.json describes.

    Checks, in order: dataset.json's `schema_version` is SCHEMA_VERSION; the shards on disk are exactly
    those listed in `shards`, each with its listed row count; they hold `num_episodes` distinct episodes
    and `num_steps` = rows - episodes steps (each episode has one final row). Reads the footers and the
    `episode_id` column only. Raises DataError naming the file or folder and the mismatch.
    """
    meta, where = read_metadata(path), f"{path}/{METADATA_FILE}"
    if meta.get("schema_version") != SCHEMA_VERSION:
        raise DataError(f"{where}: schema_version {meta.get('schema_version')!r}, but this code reads version "
                        f"{SCHEMA_VERSION}; collect the dataset again")
    fs, _ = resolve(path)
    listed = {shard["file"]: shard["rows"] for shard in meta["shards"]}
    files = {os.path.basename(f): f for f in shard_files(path)}
    missing, unlisted = sorted(listed.keys() - files.keys()), sorted(files.keys() - listed.keys())
    if missing:
        raise DataError(f"{path}: shard {missing[0]} is listed in {METADATA_FILE} but missing "
                        f"({len(missing)} of {len(listed)} shards missing)")
    if unlisted:
        raise DataError(f"{path}: shard {unlisted[0]} is not listed in {METADATA_FILE} "
                        f"({len(unlisted)} unlisted shards)")
    ids, per_shard = [], 0
    for name, file in sorted(files.items()):
        column = read_shard(file, fs, ["episode_id"])["episode_id"]
        if len(column) != listed[name]:
            raise DataError(f"{file}: {len(column)} rows, but {METADATA_FILE} lists {listed[name]}")
        ids.extend(column.chunks)
        per_shard += pc.count_distinct(column).as_py()
    episodes = pc.count_distinct(pa.chunked_array(ids, pa.int64())).as_py()
    steps = sum(listed.values()) - episodes
    if (episodes, steps) != (meta["num_episodes"], meta["num_steps"]):
        raise DataError(f"{path}: the shards hold {episodes} episodes and {steps} steps, but {METADATA_FILE} "
                        f"says {meta['num_episodes']} episodes and {meta['num_steps']} steps")
    return Shards(sorted(files.values()), whole_episodes=per_shard == episodes)


def read_shard_rows(file: str, filesystem: pafs.FileSystem) -> list[dict[str, Any]]:
    """Read one shard, check its schema, and tag every row with its file and row number."""
    rows = read_shard(file, filesystem, STEP_SCHEMA.names).to_pylist()
    for i, row in enumerate(rows):
        for name in ("episode_id", "step", "task", "terminated", "truncated"):
            if row[name] is None:
                raise DataError(f"{file} row {i}: column {name!r} is null")
        row["_file"], row["_row"] = file, i
    return rows


def load_episodes(path: str) -> list[Episode]:
    """Read and validate a whole dataset folder into episodes (in memory; for small data and tests).

    Shard order does not matter: rows are grouped by `episode_id`. Large datasets go through
    `pipeline.tokenize`, which does the same grouping with Ray Data.
    """
    fs, _ = resolve(path)
    return group_episodes(row for file in check_dataset(path).files for row in read_shard_rows(file, fs))


def group_episodes(rows: Iterable[dict[str, Any]], source: str = "<rows>") -> list[Episode]:
    """Step rows of any number of episodes, in any order, as validated episodes by `episode_id`."""
    by_episode: dict[int, list[dict[str, Any]]] = {}
    for row in rows:
        by_episode.setdefault(row["episode_id"], []).append(row)
    return [episode_from_rows(group, source) for _, group in sorted(by_episode.items())]


def column_sum(dataset, column: str) -> float:
    """The sum of a numeric column of a materialized Ray Dataset, one small task per block where the block
    is. (`Dataset.sum` plans an aggregation, which costs seconds of start-up for a handful of blocks.)"""
    import ray

    @ray.remote(num_cpus=0.1)
    def block_sum(block: pa.Table) -> float:
        return pc.sum(block.column(column)).as_py() or 0

    return sum(ray.get([block_sum.remote(ref) for ref in dataset.to_arrow_refs()]))


def episode_record(ep: Episode) -> dict[str, Any]:
    """An episode as one Ray Data row (lists in columns, infos as one JSON string)."""
    return {"episode_id": ep.episode_id, "task": ep.task, "observations": ep.observations,
            "actions": ep.actions, "rewards": ep.rewards, "terminated": ep.terminated, "truncated": ep.truncated,
            "infos": json.dumps(ep.infos), "images": ep.images}


def read_episodes(path: str):
    """A Ray Dataset with one validated episode per row (see `episode_record`), from any shard order.

    The folder is checked against its dataset.json first (`check_dataset`), then every shard is read and
    checked in parallel (file and row named on error), and steps are grouped by `episode_id`, so the
    result does not depend on how steps were sharded. Shards that hold whole episodes (as `collect` writes
    them) are grouped each in its own task; only steps of one episode spread over shards need a shuffle.
    """
    import ray
    import ray.data

    fs, _ = resolve(path)
    files, whole_episodes = check_dataset(path)
    shards = ray.data.from_items([{"file": f} for f in files])
    if whole_episodes:
        return shards.flat_map(lambda item: [episode_record(ep) for ep in
                                             group_episodes(read_shard_rows(item["file"], fs), path)])

    def read(item: dict[str, Any]) -> list[dict[str, Any]]:
        return read_shard_rows(item["file"], fs)

    def assemble(group: pa.Table) -> pa.Table:
        record = episode_record(episode_from_rows(group.to_pylist(), source=path))
        return pa.Table.from_pylist([record])

    steps = shards.flat_map(read)
    partitions = max(1, min(len(files), 2 * int(ray.cluster_resources().get("CPU", 1))))
    return steps.groupby("episode_id", num_partitions=partitions).map_groups(assemble, batch_format="pyarrow")
