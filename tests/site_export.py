"""The canonical deck input, exported the way a hospital's reporting database would write it.

EHR column names (Epic Clarity style), pipe-delimited Windows-1252 text with CRLF line
ends and non-ASCII characters (an en dash exists in Windows-1252 but not in Latin-1),
US timestamps with AM/PM and no leading zeros, EHR status words, file names that are not
the table names, an extra column; or the same as one Excel workbook with real date cells
and codes stored as numbers. Every instant stays the same instant (an offset timestamp is
written as New York wall-clock time), so the verdicts must not change.
"""

from __future__ import annotations

import csv
import datetime as dt
from pathlib import Path
from zoneinfo import ZoneInfo

SITE_TZ = ZoneInfo("America/New_York")
HEADERS = {
    "procedures": {
        "procedure_id": "PROC_LOG_ID",
        "patient_id": "PAT_MRN_ID",
        "performed_at": "PROC_START_TIME",
        "procedure_code": "PROC_CODE",
        "department": "DEPARTMENT_NAME",
        "procedure_name": "PROC_NAME",
        "patient_birth_date": "BIRTH_DATE",
        "patient_age": "AGE_AT_PROCEDURE",
    },
    "imaging_orders": {
        "order_id": "ORDER_PROC_ID",
        "patient_id": "PAT_MRN_ID",
        "ordered_at": "ORDERING_DTTM",
        "order_code": "PROC_CODE",
        "ordering_department": "DEPARTMENT_NAME",
        "order_name": "PROC_NAME",
        "status": "ORDER_STATUS",
        "indication_codes": "REASON_FOR_EXAM_CODES",
    },
    "diagnoses": {"patient_id": "PAT_MRN_ID", "diagnosis_code": "CURRENT_ICD10_LIST", "recorded_at": "CONTACT_DATE"},
}
FILES = {"procedures": "PROCEDURE_LOG.txt", "imaging_orders": "ORDER_PROC_EXPORT.txt", "diagnoses": "DIAGNOSES_EXPORT.txt"}
SHEETS = {"procedures": "Procedures", "imaging_orders": "Orders", "diagnoses": "Diagnoses"}
INSTANTS = {"performed_at", "ordered_at", "recorded_at"}
STATUS_WORDS = {
    "ordered": ("Sent", "Signed", "Pending"),
    "completed": ("Final", "Resulted"),
    "cancelled": ("Canceled", "Discontinued"),
}


def _instant(value: str) -> dt.datetime | dt.date | None:
    """A canonical timestamp as site wall-clock time (naive), or a bare date."""
    if not value:
        return None
    if len(value) == 10:
        return dt.date.fromisoformat(value)
    text = value.replace("Z", "+00:00")
    if len(text) > 19 and text[-5] in "+-" and text[-3] != ":":  # +0200 -> +02:00
        text = text[:-2] + ":" + text[-2:]
    moment = dt.datetime.fromisoformat(text)
    if moment.tzinfo is not None:
        moment = moment.astimezone(SITE_TZ).replace(tzinfo=None)
    return moment


def us_text(value: dt.datetime | dt.date | None) -> str:
    if value is None:
        return ""
    if not isinstance(value, dt.datetime):
        return f"{value.month}/{value.day}/{value.year}"
    hour = value.hour % 12 or 12
    return f"{value.month}/{value.day}/{value.year} {hour}:{value.minute:02d} {'AM' if value.hour < 12 else 'PM'}"


def _site_rows(canonical: Path, table: str) -> tuple[list[str], list[dict]]:
    """(site header, rows with site values: datetimes/dates as Python objects) of one canonical table."""
    with (canonical / f"{table}.csv").open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        columns = list(reader.fieldnames or [])
        rows = list(reader)
    names = HEADERS[table]
    header = [names[c] for c in columns] + ["PAT_ENC_CSN_ID"]
    out = []
    for i, row in enumerate(rows):
        site = {}
        for c in columns:
            value = row[c]
            if c in INSTANTS:
                value = _instant(value)
            elif c == "patient_birth_date" and len(value) == 10:  # (a partial one, 2007 or 2007-01, stays as written)
                value = dt.date.fromisoformat(value)
            elif c == "status" and value:
                words = STATUS_WORDS.get(value.lower(), (value.title(),))
                value = words[i % len(words)]
            elif c in ("order_name", "procedure_name") and value:
                value = f"{value} – réf. {i}"  # en dash: Windows-1252 0x96, not in Latin-1
            site[names[c]] = value
        site["PAT_ENC_CSN_ID"] = str(9_000_000 + i)
        out.append(site)
    return header, out


def export_text(canonical: Path, site: Path) -> Path:
    """Pipe-delimited Windows-1252 text with CRLF line ends, US timestamps, EHR names and words."""
    site.mkdir(parents=True, exist_ok=True)
    for table, name in FILES.items():
        header, rows = _site_rows(canonical, table)
        with (site / name).open("w", newline="", encoding="cp1252") as fh:
            writer = csv.DictWriter(fh, fieldnames=header, delimiter="|", lineterminator="\r\n")
            writer.writeheader()
            for row in rows:
                writer.writerow({k: us_text(v) if isinstance(v, dt.date) else v for k, v in row.items()})
    _copy_local_map(canonical, site)
    return site


def export_workbook(canonical: Path, site: Path) -> Path:
    """One workbook, a sheet per table: date cells for instants and dates, numbers for all-digit codes."""
    import xlsxwriter

    site.mkdir(parents=True, exist_ok=True)
    book = xlsxwriter.Workbook(str(site / "EXTRACT.xlsx"))
    stamp = book.add_format({"num_format": "m/d/yyyy h:mm AM/PM"})
    day = book.add_format({"num_format": "m/d/yyyy"})
    for table, sheet_name in SHEETS.items():
        header, rows = _site_rows(canonical, table)
        sheet = book.add_worksheet(sheet_name)
        sheet.write_row(0, 0, header)
        for r, row in enumerate(rows, start=1):
            for c, name in enumerate(header):
                value = row.get(name, "")
                if isinstance(value, dt.datetime):
                    sheet.write_datetime(r, c, value, stamp)
                elif isinstance(value, dt.date):
                    sheet.write_datetime(r, c, dt.datetime.combine(value, dt.time()), day)
                elif name == "PROC_CODE" and value.isdigit() and not value.startswith("0"):
                    sheet.write_number(r, c, int(value))  # Excel keeps such codes as numbers
                elif value not in ("", None):
                    sheet.write_string(r, c, value)
    book.close()
    _copy_local_map(canonical, site)
    return site


def _copy_local_map(canonical: Path, site: Path) -> None:
    local = canonical / "local_code_map.csv"
    if local.exists():
        (site / local.name).write_bytes(local.read_bytes())
