"""What `order-audit inspect` prints and writes: the report as text or JSON, and a starter config.

The starter TOML holds the settings inspect is sure of as active lines and marks with
CHECK every place where a person must decide (commented out when the run must not act on
a guess). Beside it, `local_code_map.csv` lists the order codes no map knows, to fill in.
Existing files are never overwritten: both names are checked before anything is written.
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

from pipeline import formula_guard
from pipeline.config import Config
from pipeline.errors import ConfigError, printable
from pipeline.ingest import detect
from pipeline.ingest.code_systems import RADIOLOGY_CPT
from pipeline.ingest.contract import CONTRACT_BY_NAME
from pipeline.ingest.formats import TableFormat
from pipeline.ingest.inspector import TableReport
from pipeline.ingest.value_maps import toml_list, toml_string
from pipeline.models import reference
from pipeline.wording import counted

HOW = {
    "config": "as the config maps it",
    "name": "same name",
    "case": "same name, other case",
    "spelling": "same name, other spelling",
    "synonym": "EHR spelling (shipped synonyms)",
}
EXTRA_COLUMNS_SHOWN = 20  # the extra columns inspect names, the first ones; the others are counted
TEMPLATE_COLUMNS = (*reference.CODE_MAP_COLUMNS, "valid_from", "valid_to", "source")


def _pct(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "-"


# ----------------------------------------------------------------------------- report as data and text


def as_dict(reports: dict) -> dict:
    out = {}
    for table, r in reports.items():
        if isinstance(r, str):
            out[table] = {"file": None, "found_by": r}
            continue
        out[table] = {
            "file": r.file.label if r.file else None,
            "found_by": r.found_by,
            "rows": r.rows,
            "encoding": None if r.encoding is None else vars(r.encoding),
            "delimiter": r.delimiter,
            "delimiter_sure": r.delimiter_sure,
            "columns": [vars(m) for m in r.columns],
            "extra_columns": r.extra_columns,
            "formats": [
                {
                    "column": c.column,
                    "kind": c.kind,
                    "formats": c.guess.formats,
                    "examples": c.guess.examples,
                    "ambiguous_day_month": c.guess.ambiguous,
                    "excel_serials": c.guess.excel_serials,
                    "values": c.values,
                    "unread": c.unread,
                    "unread_examples": c.unread_examples,
                }
                for c in r.formats
            ],
            "values": r.values,
            "code_systems": r.code_systems,
            "unknown_codes": r.unknown_codes[:50],
            "problems": r.problems,
            "header_row": r.fmt.header_row,
            "code_with_description": r.code_cells,
            "decimal_marks": r.decimal_marks,
            "decimal_comma": r.fmt.decimal_comma,
        }
    return out


def needed_by(table: str) -> list[str]:
    """The audits that cannot run without the table."""
    from pipeline import audits

    return [a.id for a in audits.discover() if table in a.required_tables]


def as_text(reports: dict, input_dir: Path) -> str:
    lines = [f"order-audit inspect: {input_dir}"]
    for table, r in reports.items():
        lines.append("")
        if isinstance(r, str):
            needed = needed_by(table)
            lines.append(f"{table}: no file ({r}){'; needed by ' + ', '.join(needed) if needed else ' (optional table)'}")
            continue
        lines.append(f"{table}: {r.file.label} (found by {r.found_by}), {r.rows:,} rows")
        for p in r.problems:
            lines.append(f"  PROBLEM    {p}")
        if r.fmt.header_row is not None:
            where = "Excel row" if r.file.fmt == "xlsx" else "line"
            lines.append(f"  header     {where} {r.fmt.header_row}, below a title (header_row = {r.fmt.header_row})")
        if r.code_cells is not None:
            lines.append(f"  code cells {_code_cells_note(r.code_cells)} (code_with_description = true)")
        if r.fmt.decimal_comma:
            lines.append(f"  numbers    {_decimal_comma_note(r)} (decimal_comma = true)")
        if r.encoding is not None:
            mark = "" if r.encoding.sure else "   CHECK"
            example = f"; first non-ASCII: {r.encoding.example}" if r.encoding.example else ""
            lines.append(f"  encoding   {r.encoding.encoding} ({r.encoding.note}{example}){mark}")
        if r.delimiter is not None:
            shown = "\\t" if r.delimiter == "\t" else r.delimiter
            lines.append(f"  delimiter  '{shown}'{'' if r.delimiter_sure else '   CHECK'}")
        for i, m in enumerate(r.columns):
            head = "  columns    " if i == 0 else "             "
            if m.source:
                lines.append(f"{head}{m.column} <- {m.source} ({HOW[m.how]})")
            elif m.how == "ambiguous":
                lines.append(f"{head}{m.column}: CHECK, several columns fit: {', '.join(m.others)}")
            else:
                lines.append(f"{head}{m.column}: missing{' (REQUIRED)' if m.required else ' (optional)'}")
        if r.extra_columns:
            # an export's trailing delimiters make columns without a name: counted, not listed as ', , '
            named = [h for h in r.extra_columns if str(h).strip()]
            nameless = len(r.extra_columns) - len(named)
            also = f"{' and ' if named else ''}{counted(nameless, 'column')} without a name" if nameless else ""
            # the first names only: an export of 2,000 columns (or a huge line read as a header) printed them all
            shown = ", ".join(named[:EXTRA_COLUMNS_SHOWN])
            shown += f" ({len(named) - EXTRA_COLUMNS_SHOWN:,} more)" if len(named) > EXTRA_COLUMNS_SHOWN else ""
            lines.append(f"             kept as extra columns: {shown}{also}")
        for c in r.formats:
            forms = ", ".join(f"{f} (e.g. {c.guess.examples.get(f, '-')})" for f in c.guess.formats)
            forms = forms or ("no format found" if c.unread else "none needed")
            iso = f"; ISO 8601 reads {counted(c.guess.iso, 'distinct value')} of the sample" if c.guess.iso else ""
            lines.append(f"  {c.kind:10} {c.column}: {forms}{iso}; reads {c.values - c.unread:,} of {c.values:,}")
            if c.guess.ambiguous:
                month_first, day_first = c.guess.ambiguous, detect.turned(c.guess.ambiguous, c.guess.ambiguous)
                lines.append(
                    f"             CHECK day and month: no value settles which comes first; {', '.join(month_first)} (month "
                    f"first) and {', '.join(day_first)} (day first) read every value alike"
                )
            if c.unread:
                lines.append(f"             not read, e.g.: {', '.join(repr(v) for v in c.unread_examples)}")
            if c.guess.excel_serials:
                lines.append(f"             CHECK: {detect.EXCEL_SERIALS_FIX}")
            if c.guess.mixed_day_month:
                month_first, day_first = c.guess.mixed_day_month
                lines.append(
                    f"             CHECK day and month: written both ways ({month_first!r} is month first, "
                    f"{day_first!r} day first); {detect.MIXED_DAY_MONTH_FIX}"
                )
        for col, rows in r.values.items():
            for i, v in enumerate(rows):
                head = f"  {col:10} " if i == 0 else "             "
                reading = f"-> {v['reads_as']} ({v['by']})" if v["reads_as"] else "-> UNKNOWN: no map knows it (CHECK)"
                lines.append(f"{head}{v['value']!r}: {v['rows']:,} rows {reading}")
        lines += code_lines(r.table, r.code_systems, r.unknown_codes)
    return "\n".join(lines) + "\n"


def _code_cells_note(cells: dict) -> str:
    """How many cells of a code column hold a code and its description, and how the code is read from them."""
    example = f" (e.g. '{cells['example']}')" if cells["example"] else ""
    return (
        f"{cells['column']}: {cells['cells']:,} of {cells['of']:,} cells hold a code and its description{example}; "
        "the code is read as the first word"
    )


def _decimal_comma_note(r: TableReport) -> str:
    counts = ", ".join(f"{c} {m['comma']:,}" for c, m in r.decimal_marks.items() if m["comma"])
    return f"written with a decimal comma (45,5): {counts or 'no value seen'}; read as decimals"


def code_lines(table: str, systems: dict[str, int], unknown_codes: list[dict], told_by: str = "form") -> list[str]:
    """A table's code systems with their shares, then the order codes no map knows: those to map first (not
    evaluable until mapped), then the CPT codes outside the map in one line. told_by: how a code's system was told
    ("form": an extract's code by its form; "": an export's by its coding's system, named as it is)."""
    lines = []
    if systems:
        total = sum(systems.values())
        shares = ", ".join(f"{printable(k)} {_pct(n, total)}" for k, n in systems.items())
        lines.append(f"  codes      {shares} of {total:,}")
        if table == "procedures" and systems.get("CPT", 0) < total:
            held = counted(total - systems.get("CPT", 0), "procedure")
            lines.append(
                f"             CHECK: {held} not coded in CPT; the audits' value sets list procedures by CPT code, "
                "so these are no audit's index procedure (export the CPT code where the EHR has one)"
            )
    to_map = [u for u in unknown_codes if u["system"] != "CPT"]
    for i, u in enumerate(to_map[:20]):
        head = "  no map     " if i == 0 else "             "
        # as the extract holds them, escaped: a code holding a terminal escape or a line break printed it raw (a
        # forged line under the report, a retitled terminal)
        name = f" '{printable(u['name'])}'" if u["name"] else ""
        held_by, system = counted(u["orders"], "order"), printable(f"{u['system']} {told_by}".strip())
        lines.append(f"{head}{printable(u['code'])}{name}: {held_by} ({system}): not evaluable until mapped")
    if len(to_map) > 20:
        lines.append(f"             ... {len(to_map) - 20:,} more, all in local_code_map.csv with --write-config")
    cpt = [u for u in unknown_codes if u["system"] == "CPT"]
    if cpt:
        top = ", ".join(f"{u['code']} ({u['orders']:,})" for u in cpt[:5])
        lines.append(f"  other CPT  {counted(len(cpt), 'code')} no map lists, read as imaging outside this audit: {top}")
    # a five-digit code outside CPT's radiology section on an imaging order is most often the site's own exam code
    # written in digits (00412): read as CPT, its orders leave the audit without a word
    outside = [
        u
        for u in cpt
        if table == "imaging_orders" and u["code"].isdigit() and not RADIOLOGY_CPT[0] <= u["code"] <= RADIOLOGY_CPT[1]
    ]
    if outside:
        top = ", ".join(f"{u['code']} ({u['orders']:,})" for u in outside[:5])
        lines.append(
            f"             CHECK: outside CPT's radiology section ({RADIOLOGY_CPT[0]}-{RADIOLOGY_CPT[1]}): {top}. If they "
            "are the site's own exam codes, list them in local_code_map.csv (a code the map lists is read as the map says); "
            "else they are CPT codes of another section, such as vascular ultrasound (93xxx)"
        )
    return lines


def export_codes_dict(codes) -> dict:
    """A FHIR export's codes (``fhir.codes.ExportCodes``) as inspect's JSON gives them."""
    return {"code_systems": codes.systems, "unknown_codes": codes.unknown_codes[:50]}


def export_code_lines(codes) -> list[str]:
    """A FHIR export's codes as inspect's text gives them: per table, its systems, then the order codes to map."""
    lines = []
    for table, systems in codes.systems.items():
        unknown = codes.unknown_codes if table == "imaging_orders" else []
        lines += [f"{table} (the coding a run reads):", *code_lines(table, systems, unknown, told_by="")]
    return lines


# ----------------------------------------------------------------------------- starter config


def _format_lines(r: TableReport) -> list[str]:
    f, fmt, default = r.file, r.fmt, TableFormat()
    lines = []
    canonical = f.path.name in {f"{r.table}{s}" for s in (".csv", ".txt", ".tsv", ".parquet", ".xlsx")}
    if not canonical:
        lines.append(f"file = {toml_string(f.path.name)}   # found by {r.found_by}")
    if f.sheet is not None:
        lines.append(f"sheet = {toml_string(f.sheet)}")
    if fmt.header_row is not None:
        rows = "rows" if f.fmt == "xlsx" else "lines"
        lines.append(f"header_row = {fmt.header_row}   # the {rows} above the header hold a title")
    if r.delimiter is not None and r.delimiter != default.delimiter_for(f.path.suffix):
        lines.append(f"delimiter = {toml_string(r.delimiter)}{'' if r.delimiter_sure else '   # CHECK: the guess was close'}")
    if r.encoding is not None and not fmt.is_utf8:
        example = f"; {r.encoding.example}" if r.encoding.example else ""
        note = "" if r.encoding.sure else f"   # CHECK: {r.encoding.note}{example}"
        lines.append(f"encoding = {toml_string(fmt.encoding)}{note}")
    if fmt.quote_char != default.quote_char:
        lines.append(f"quote_char = {toml_string(fmt.quote_char)}")
    if fmt.code_with_description:
        cells = r.code_cells or {}
        lines.append(
            f"code_with_description = true   # {cells.get('cells', 0):,} of {cells.get('of', 0):,} {cells.get('column', 'code')} "
            "cells hold a code and its description; the code is read as the first word"
        )
    if fmt.decimal_comma:
        lines.append(f"decimal_comma = true   # {_decimal_comma_note(r)}")
    serials = [c.column for c in r.formats if c.guess.excel_serials]
    lines += [f"# CHECK: {column} holds no time a format reads. {detect.EXCEL_SERIALS_FIX}" for column in serials]
    mixed = [c.column for c in r.formats if c.guess.mixed_day_month]
    lines += [f"# CHECK: {column} writes day and month both ways: {detect.MIXED_DAY_MONTH_FIX}" for column in mixed]
    lists = (("timestamp", "timestamp_formats", fmt.timestamp_formats), ("date", "date_formats", fmt.date_formats))
    for kind, name, values in lists:
        if not values:
            continue
        cols = [c for c in r.formats if c.kind == kind]
        ambiguous = [a for c in cols for a in c.guess.ambiguous]
        read = ", ".join(f"{c.column} {c.values - c.unread:,} of {c.values:,}" for c in cols)
        setting = f"{name} = {toml_list(list(values))}"
        if any(c.guess.mixed_day_month for c in cols):
            # the column's values read either way are read wrong half the time: no active guess (the CHECK above)
            lines.append(f"# {setting}   # reads {read}, some of them perhaps wrongly; ISO 8601 is always read too")
            continue
        if not ambiguous:
            lines.append(f"{setting}   # reads {read}; ISO 8601 is always read too")
            continue
        # a wrong guess reads every such date wrongly and silently: both readings commented out, the run stops
        # ("set timestamp_formats") until a person keeps one
        day_first = f"{name} = {toml_list(detect.turned(list(values), ambiguous))}"
        doubt = ", ".join(c.column for c in cols if c.guess.ambiguous)
        lines += [
            f"# CHECK: no value of {doubt} settles which comes first, day or month; remove the # of the line that",
            "# fits the extract (until then a run reads none of these values)",
            f"# {setting}   # month first; reads {read}; ISO 8601 is always read too",
            f"# {day_first}   # day first",
        ]
    return lines


def _column_lines(r: TableReport) -> list[str]:
    lines = []
    for m in r.columns:
        if m.source and m.how in ("config", "spelling", "synonym"):
            lines.append(f"{m.column} = {toml_string(m.source)}   # {HOW[m.how]}")
        elif m.how == "ambiguous":
            lines.append(f"# {m.column} = {toml_string(m.others[0])}   # CHECK: several columns fit: {', '.join(m.others)}")
        elif m.how == "missing" and m.required:
            lines.append(f'# {m.column} = ""   # CHECK: REQUIRED and no column matched; name the extract\'s column')
        elif m.how == "missing":
            lines.append(f'# {m.column} = ""   # optional; no column matched')
    return lines


def _value_lines(r: TableReport, cfg: Config) -> list[tuple[str, list[str]]]:
    sections = []
    allowed = CONTRACT_BY_NAME[r.table].allowed_values
    for col, rows in r.values.items():
        lines = [
            f"{toml_string(k)} = {toml_string(v)}   # from the config"
            for k, v in cfg.values.get(r.table, {}).get(col, {}).items()
        ]
        unknown = [v for v in rows if not v["reads_as"]]
        lines += [
            f'# {toml_string(v["value"])} = "?"   # CHECK: {v["rows"]:,} rows; one of {", ".join(allowed[col])}' for v in unknown
        ]
        if lines:
            sections.append((f"[values.{r.table}.{col}]", lines))
    return sections


def render_toml(reports: dict, cfg: Config, template: Path | None) -> str:
    out = [
        # no folder named: a folder's path may hold a person's name, and the same extract elsewhere gives the same file
        "# order-audit starter config, written by `order-audit inspect` from the extract's files.",
        "# Active lines were read from the files; lines marked CHECK need a person's decision",
        "# (commented out where a wrong guess would change the audit). Every setting: examples/order-audit.toml.",
        "",
        f"site_timezone = {toml_string(cfg.site_timezone)}   # CHECK: the zone of times written without an offset",
    ]
    if template is not None:
        out += [
            f'# local_code_map = "{template.name}"   # CHECK: fill in study_type, modality, regions and contrast '
            "for the codes listed, then remove the #",
        ]
    for table, r in reports.items():
        if isinstance(r, str):
            needed = needed_by(table)
            out += ["", f"# {table}: no file found ({r})" + (f"; needed by {', '.join(needed)}" if needed else "")]
            continue
        sections = [(f"[formats.{table}]", _format_lines(r)), (f"[columns.{table}]", _column_lines(r))]
        sections += _value_lines(r, cfg)
        for title, lines in sections:
            if lines:
                out += ["", title, *lines]
    return "\n".join(out) + "\n"


def template_rows(unknown_codes: list[dict], local_map: Path | None) -> list[dict]:
    """The site map to fill: its current rows (if any), then every order code no map knows that is not CPT. A code
    carries its code_system when an export's coding named one (the run then reads that system's codings)."""
    rows = []
    if local_map is not None:
        with local_map.open(newline="", encoding="utf-8") as fh:
            rows += [{c: formula_guard.restore(r.get(c, "")) for c in TEMPLATE_COLUMNS} for r in csv.DictReader(fh)]
    for u in unknown_codes:
        if u["system"] == "CPT":  # an unmapped CPT code is imaging outside this audit (DESIGN.md)
            continue
        system = "LOINC" if u["system"] == "LOINC" else u.get("code_system") or "LOCAL"
        rows.append(
            {
                "code_system": system,
                "code": u["code"],
                "description": u["name"] or "",
                "valid_from": "2000-01-01",
                "source": f"order-audit inspect: {counted(u['orders'], 'order')}; fill study_type, modality, regions, contrast",
            }
            | {c: "" for c in ("study_type", "modality", "regions", "contrast")}
        )
    return rows


def _csv_text(rows: list[dict]) -> str:
    """The template as CSV, its text neutralised for spreadsheets (a person fills it in one): an order code or name
    of the extract written `=HYPERLINK(...)` would be a live formula there. The run reads it back restored
    (reference.read_code_map)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=TEMPLATE_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows({c: formula_guard.neutralise(v) for c, v in row.items()} for row in rows)
    return buf.getvalue()


def write(reports: dict, cfg: Config, config_path: Path, local_map: Path | None) -> list[Path]:
    """Write the starter config and, when codes need mapping, the code map template beside it.

    Refuses (ConfigError, nothing written) when either file exists."""
    orders = reports.get("imaging_orders")
    rows = template_rows(orders.unknown_codes if isinstance(orders, TableReport) else [], local_map)
    template = config_path.parent / reference.LOCAL_MAP_NAME if rows else None
    return _write_all(config_path, render_toml(reports, cfg, template), template, rows)


def render_export_toml(cfg: Config, template: Path | None) -> str:
    """A FHIR export's starter config: the export's tables need no column or format settings, so it holds the
    site time zone, the site code map to fill in, and where the [fhir] settings are described."""
    out = [
        "# order-audit starter config, written by `order-audit inspect` from a FHIR Bulk Data export.",
        "# Lines marked CHECK need a person's decision. Every setting: examples/order-audit.toml; where the",
        "# department, the code systems and the imaging categories come from ([fhir]): docs/FHIR.md.",
        "",
        'input_format = "fhir"',
        f"site_timezone = {toml_string(cfg.site_timezone)}   # CHECK: the zone the months are counted in",
    ]
    if template is not None:
        out.append(
            f'# local_code_map = "{template.name}"   # CHECK: fill in study_type, modality, regions and contrast '
            "for the codes listed, then remove the #"
        )
    return "\n".join(out) + "\n"


def write_export(unknown_codes: list[dict], cfg: Config, config_path: Path, local_map: Path | None) -> list[Path]:
    """`write` for a FHIR export: its starter config and, when order codes need mapping, the code map beside it."""
    rows = template_rows(unknown_codes, local_map)
    template = config_path.parent / reference.LOCAL_MAP_NAME if rows else None
    return _write_all(config_path, render_export_toml(cfg, template), template, rows)


def _write_all(config_path: Path, config_text: str, template: Path | None, rows: list[dict]) -> list[Path]:
    """The config, and the template when there is one: both or neither (an existing file of either name: nothing)."""
    targets = {config_path: config_text}
    if template is not None:
        targets[template] = _csv_text(rows)
    for path in targets:
        if path.exists() or path.is_symlink():
            raise ConfigError(f"{path} exists; nothing written (inspect never overwrites a file): choose another path")
    if not config_path.parent.is_dir():
        raise ConfigError(f"{config_path.parent}: folder not found; nothing written")
    written = []
    try:
        for path, text in targets.items():
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)  # never replaces a file made meanwhile
            with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
                fh.write(text)
            written.append(path)
    except BaseException as exc:
        for path in written:  # all or nothing: what this call created goes
            path.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise ConfigError(f"{exc.filename}: cannot write ({exc.strerror}); nothing written") from None
        raise
    return written
