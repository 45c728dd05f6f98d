"""Several files read as one table: a row's key is its file's base plus its line number.

The loader keys rows by ``source_line``; a table made from several files (a FHIR Bulk
Data export writes ``ServiceRequest.000.ndjson``, ``.001``, ...) numbers their lines one
after another. A reject must still name the file and the line a person finds in it, so
each file's key range is kept as a segment and these SQL expressions map a key back.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.sqltext import literal


@dataclass(frozen=True)
class Segment:
    label: str  # the file as rejects name it
    first_key: int  # the key of its line 1
    last_key: int


def _case(key: str, segments: list[Segment], value) -> str:
    whens = " ".join(f"WHEN {key} BETWEEN {s.first_key} AND {s.last_key} THEN {value(s)}" for s in segments)
    return f"(CASE {whens} END)"


def file_sql(key: str, segments: list[Segment], default: str) -> str:
    """The file a key comes from (`default`, a SQL expression, without segments)."""
    return _case(key, segments, lambda s: literal(s.label)) if segments else default


def line_sql(key: str, segments: list[Segment]) -> str:
    """The line number within its file."""
    return f"({key} - {_case(key, segments, lambda s: s.first_key - 1)})" if segments else key


def where_sql(key: str, segments: list[Segment]) -> str:
    """Text naming the place: 'line 12', or 'ServiceRequest.001.ndjson line 12' across files."""
    if not segments:
        return f"'line ' || {key}"
    return f"{_case(key, segments, lambda s: literal(s.label.rsplit('/', 1)[-1] + ' line '))} || {line_sql(key, segments)}"
