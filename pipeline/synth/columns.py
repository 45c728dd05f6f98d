"""Column helpers of the generator: local times to UTC, DST transitions, instants as text, chunked writers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

H = 3600  # seconds per hour


def to_utc_seconds(local_naive_s: np.ndarray, tz: str) -> np.ndarray:
    """Local wall-clock seconds since epoch (naive) -> UTC epoch seconds (earliest if ambiguous)."""
    s = pl.Series("t", np.asarray(local_naive_s).astype(np.int64))
    out = pl.from_epoch(s, "s").dt.replace_time_zone(tz, ambiguous="earliest", non_existent="null").dt.epoch("s")
    if out.null_count():
        raise ValueError("a generated local time falls in a DST gap")
    return out.to_numpy().astype(np.int64)


def transitions(tz: str, lo: int, hi: int) -> tuple[list[int], list[int]]:
    """UTC instants (hour grid) where the zone's offset goes up (spring) and down (fall) in [lo, hi)."""
    grid = np.arange(lo - lo % H, hi, H, dtype=np.int64)
    if grid.size < 2:
        return [], []
    u = pl.from_epoch(pl.Series(grid), "s").dt.replace_time_zone("UTC")
    loc = u.dt.convert_time_zone(tz).dt.replace_time_zone(None).dt.epoch("s").to_numpy()
    off = loc - grid
    d = np.diff(off)
    spring = grid[1:][d > 0].tolist()
    fall = grid[1:][d < 0].tolist()
    return spring, fall


def fmt_instants(t: np.ndarray, kind: np.ndarray, missing: np.ndarray | None, tz: str) -> pl.Series:
    """Write UTC seconds as text: kind 0 local naive, 1 local with offset, 2 UTC 'Z', 3 bare local date.

    A local naive time in the second pass of a fall-back hour would be read back as the earlier
    instant (DESIGN.md), so such rows are written with their offset instead."""
    df = pl.DataFrame({"t": t.astype(np.int64), "k": kind.astype(np.int8)})
    utc = pl.from_epoch(pl.col("t"), "s").dt.replace_time_zone("UTC")
    loc = utc.dt.convert_time_zone(tz)
    back = loc.dt.replace_time_zone(None).dt.replace_time_zone(tz, ambiguous="earliest", non_existent="null").dt.epoch("s")
    k = pl.when((pl.col("k") == 0) & (back != pl.col("t"))).then(1).otherwise(pl.col("k"))
    out = df.select(
        pl.when(k == 0)
        .then(loc.dt.strftime("%Y-%m-%d %H:%M:%S"))
        .when(k == 1)
        .then(loc.dt.strftime("%Y-%m-%dT%H:%M:%S%:z"))
        .when(k == 2)
        .then(utc.dt.strftime("%Y-%m-%dT%H:%M:%SZ"))
        .otherwise(loc.dt.strftime("%Y-%m-%d"))
        .alias("s")
    )["s"]
    if missing is not None and missing.any():
        out = out.scatter(np.flatnonzero(missing), None)
    return out


def null_where(series: pl.Series, mask: np.ndarray) -> pl.Series:
    if mask.any():
        return series.scatter(np.flatnonzero(mask), None)
    return series


def gather(table: list[str], idx: np.ndarray) -> pl.Series:
    return pl.Series([t or None for t in table], dtype=pl.String).gather(pl.Series(idx.astype(np.int64)))


def pick(rng, choices_weights, n):
    c, w = choices_weights
    w = np.asarray(w, dtype=float)
    return rng.choice(len(c), size=n, p=w / w.sum())


class Writer:
    """Chunked writer for csv or parquet (one file, written in row groups)."""

    def __init__(self, path: Path, fmt: str):
        self.path, self.fmt, self.first, self.pq = path, fmt, True, None
        self.fh = open(path, "wb") if fmt == "csv" else None  # noqa: SIM115 (closed in close())

    def write(self, df: pl.DataFrame):
        if self.fmt == "csv":
            df.write_csv(self.fh, include_header=self.first)
        else:
            import pyarrow.parquet as pq

            tbl = df.to_arrow()
            if self.pq is None:
                self.pq = pq.ParquetWriter(str(self.path), tbl.schema)
            self.pq.write_table(tbl)
        self.first = False

    def close(self):
        if self.fh:
            self.fh.close()
        if self.pq:
            self.pq.close()


CHUNK = 1_000_000
