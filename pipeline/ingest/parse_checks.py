"""File-level checks on what the parse read: a timestamp or date column of which nothing parsed.

Every row rejected for its timestamp is a format the config does not name, not a few bad
rows: the run stops with one line that says so, shows a value, and names the setting
(with the format that reads the values, when one of the usual ones does).
"""

from __future__ import annotations

from pipeline.config import Config
from pipeline.errors import InputFileError
from pipeline.ingest import detect, timestamps
from pipeline.ingest.contract import TableContract
from pipeline.ingest.inputs import InputFile
from pipeline.ingest.segments import Segment, file_line
from pipeline.ingest.value_maps import toml_list
from pipeline.sqltext import ident

SAMPLE = 500


def _suggestion(table: str, setting: str, guess: detect.FormatGuess) -> str:
    where = f"[formats.{table}]"
    if guess.formats and not guess.unread:
        listed = toml_list(guess.formats)
        if guess.ambiguous:  # no value settles it: the person chooses, the message does not guess
            day_first = toml_list(detect.turned(guess.formats, guess.ambiguous))
            listed += f" (month first) or {day_first} (day first: no value settles which)"
        return f"Set {setting} = {listed} under {where} in the config; order-audit inspect shows more"
    return (
        f"Set {setting} under {where} in the config to the extract's form (strftime codes, e.g. "
        f'"%m/%d/%Y %I:%M %p"); order-audit inspect --input DIR shows the forms it finds'
    )


def _shown(example: str | None) -> str:
    return "a value not shown (it may be a patient id)" if example is None else f"'{example}'"


def check_columns_parsed(
    con, src: str, f: InputFile, contract: TableContract, cfg: Config, segments: list[Segment] | None = None
) -> None:
    """Raise when a timestamp or date column has values and not one of them parsed.

    `con` holds the loader's `rejects` table: the typed file is read only for a column with
    unparseable values (none in a clean extract)."""
    for col in contract.instants + contract.dates:
        dates = col in contract.dates
        prefix = timestamps.UNPARSEABLE_DATE_PREFIX if dates else timestamps.UNPARSEABLE_PREFIX
        bad, line, example = con.execute(
            """SELECT count(*), min(source_line), arg_min(value, source_line) FROM rejects
            WHERE column_name = ? AND starts_with(reason, ?)""",
            [col, prefix],
        ).fetchall()[0]
        if not bad or con.execute(f"SELECT count({ident(col)}) FROM {src}").fetchall()[0][0]:
            continue
        sample = [
            r[0]
            for r in con.execute(
                f"SELECT DISTINCT value FROM rejects WHERE column_name = ? AND starts_with(reason, ?) AND value IS NOT NULL "
                f"LIMIT {SAMPLE}",
                [col, prefix],
            ).fetchall()
        ]
        setting = "date_formats" if dates else "timestamp_formats"
        kind = "date" if dates else "timestamp"
        guess = detect.guess_formats(sample, dates=dates)
        # no strftime format reads a day count: the advice to set one sent people nowhere (a workbook or a CSV)
        fix = detect.EXCEL_SERIALS_FIX if guess.excel_serials else _suggestion(contract.name, setting, guess)
        if guess.mixed_day_month:  # a format to set would read some values wrongly
            month_first, day_first = guess.mixed_day_month
            fix = (
                f"The column writes day and month both ways ('{month_first}' month first, '{day_first}' day first): "
                + detect.MIXED_DAY_MONTH_FIX
            )
        # a table read from several files (a FHIR export): its key's file and line ('line 10127' had been named of a
        # 1,022-line Condition file), and an export's element is set in the export, not by a CSV's [formats]
        label, at = f.label, file_line(line, segments) if segments else None
        if at is not None:
            label, line = at
            fix = "Each value is a date or dateTime FHIR R4 does not allow here, or a partial one (2025-01): export them whole"
        raise InputFileError(
            label,
            # the example is not shown when it is a patient id of the table (a column mapped wrongly, load.py)
            f"no {kind} in this column parsed ({bad} values, e.g. {_shown(example)} on line {line})",
            fix,
            column=col,
        )
