"""Sharded indexing under torchrun: each rank writes its rows to a Parquet shard, rank 0 commits them."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from audiovec.apps.index.writer import IndexWriter

COMMIT_ROWS = 8192  # a batch of files is committed early once its finished files hold this many rows


class ShardWriter:
    """This rank's rows, appended file by file to ``DIR/.shards/rank-R-of-W.parquet`` (under a temporary
    name until :meth:`close`), so a sharded run holds one file's rows at a time, not its whole share."""

    def __init__(self, db_dir: Path, rank: int, world: int, schema: Any) -> None:
        self.dir, self.rank, self.world, self.schema = db_dir / ".shards", rank, world, schema
        self.dir.mkdir(exist_ok=True)
        self._tmp = self.path_of(rank).with_suffix(".tmp")
        self._writer: Any = None

    def path_of(self, rank: int) -> Path:
        return self.dir / f"rank-{rank:05d}-of-{self.world:05d}.parquet"

    def write(self, rows: Any) -> None:
        import pyarrow.parquet as pq

        if self._writer is None:
            self._writer = pq.ParquetWriter(self._tmp, self.schema)
        self._writer.write_table(rows)

    def close(self) -> None:
        import pyarrow.parquet as pq

        if self._writer is None:  # no rows: an empty shard still tells rank 0 this rank is done
            pq.write_table(self.schema.empty_table(), self._tmp)
        else:
            self._writer.close()
        os.replace(self._tmp, self.path_of(self.rank))


def plan_sharded(writer: IndexWriter, files, rank: int, world: int) -> list[tuple[str, str]]:
    """Rank 0 plans (which files need embedding); every rank gets its ``[rank::world]`` share."""
    import torch.distributed as dist

    report = writer.report
    plan: list[Any] = [None]
    if rank == 0:
        plan[0] = (writer.plan(files), report.skipped, report.failed)
    if dist.is_available() and dist.is_initialized():
        dist.broadcast_object_list(plan, src=0)
    todo, skipped, failed = plan[0]
    if rank != 0:
        report.skipped, report.failed = list(skipped), dict(failed)
    return todo[rank::world]


def merge_shards(writer: IndexWriter, shard: ShardWriter) -> None:
    """Each rank has written its rows to a shard file; rank 0 commits them after a barrier, streamed
    shard by shard into one ``add`` (one atomic commit)."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    import torch.distributed as dist

    shard.close()
    report = writer.report
    gathered: list[Any] = [None] * shard.world
    if dist.is_available() and dist.is_initialized():
        dist.all_gather_object(gathered, (report.failed, shard.rank))
        dist.barrier()
    if shard.rank == 0:
        for failed, _ in filter(None, gathered):
            report.failed.update(failed)
        files = [shard.path_of(r) for r in range(shard.world)]
        n_rows = sum(pq.ParquetFile(f).metadata.num_rows for f in files)
        keys = pa.concat_tables([pq.read_table(f, columns=["path", "hash"]) for f in files]).to_pydict()
        done = list(dict.fromkeys(zip(keys["path"], keys["hash"])))

        def batches():
            for f in files:
                yield from pq.ParquetFile(f).iter_batches(batch_size=COMMIT_ROWS)

        writer.write(pa.RecordBatchReader.from_batches(shard.schema, batches()), n_rows, done)
        for f in files:
            f.unlink(missing_ok=True)
    if dist.is_available() and dist.is_initialized():
        dist.barrier()  # every rank returns only once the table holds all rows
