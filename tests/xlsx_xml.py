"""Read back what a workbook says, from its XML (no spreadsheet library needed): cells, formats,
validations, print setup. Enough to test what xlsxwriter wrote, not a general reader."""

from __future__ import annotations

import re
import zipfile
from pathlib import Path
from xml.etree import ElementTree

NS = {"m": "http://schemas.openxmlformats.org/spreadsheetml/2006/main"}
_REF = re.compile(r"([A-Z]+)(\d+)")


def _col(letters: str) -> int:
    n = 0
    for ch in letters:
        n = n * 26 + ord(ch) - 64
    return n - 1


class Workbook:
    def __init__(self, path: Path):
        with zipfile.ZipFile(path) as z:
            self.files = {name: z.read(name) for name in z.namelist()}
        book = ElementTree.fromstring(self.files["xl/workbook.xml"])
        self.sheet_names = [s.get("name") for s in book.find("m:sheets", NS)]
        self.defined_names = {d.get("name"): d.text for d in book.iter(f"{{{NS['m']}}}definedName")}
        styles = ElementTree.fromstring(self.files["xl/styles.xml"])
        fmts = styles.find("m:numFmts", NS)
        num_formats = {int(f.get("numFmtId")): f.get("formatCode") for f in (fmts if fmts is not None else [])}
        xfs = list(styles.find("m:cellXfs", NS))
        self.cell_formats = [num_formats.get(int(x.get("numFmtId", 0)), "") for x in xfs]
        self.cell_aligns = [
            (x.find("m:alignment", NS).get("horizontal") if x.find("m:alignment", NS) is not None else None) for x in xfs
        ]
        shared = self.files.get("xl/sharedStrings.xml")
        self.shared_strings = (
            ["".join(t.text or "" for t in si.iter(f"{{{NS['m']}}}t")) for si in ElementTree.fromstring(shared)] if shared else []
        )

    def sheet(self, name: str) -> ElementTree.Element:
        return ElementTree.fromstring(self.files[f"xl/worksheets/sheet{self.sheet_names.index(name) + 1}.xml"])

    def xml(self, name: str) -> str:
        return self.files[f"xl/worksheets/sheet{self.sheet_names.index(name) + 1}.xml"].decode()

    def cells(self, name: str) -> dict[tuple[int, int], dict]:
        """(row, col) zero-based -> {"text": str | None, "number": float | None, "format": num format code, "align": its
        horizontal alignment or None}."""
        out = {}
        for c in self.sheet(name).iter(f"{{{NS['m']}}}c"):
            letters, row = _REF.match(c.get("r")).groups()
            text = "".join(t.text or "" for t in c.iter(f"{{{NS['m']}}}t")) if c.get("t") == "inlineStr" else None
            v = c.find("m:v", NS)
            if c.get("t") == "s":  # a shared string: its number in sharedStrings.xml
                text = self.shared_strings[int(v.text)]
            out[(int(row) - 1, _col(letters))] = {
                "text": text,
                "number": float(v.text) if v is not None and c.get("t") is None else None,
                "format": self.cell_formats[int(c.get("s", 0))],
                "align": self.cell_aligns[int(c.get("s", 0))],
            }
        return out

    def rows(self, name: str) -> list[dict]:
        """Data rows as dicts keyed by the header row's text."""
        cells = self.cells(name)
        width = max(c for _, c in cells) + 1
        header = [cells.get((0, j), {}).get("text") for j in range(width)]
        n = max(r for r, _ in cells)
        out = []
        for i in range(1, n + 1):
            row = {}
            for j, h in enumerate(header):
                cell = cells.get((i, j))
                row[h] = None if cell is None else (cell["text"] if cell["text"] is not None else cell["number"])
            out.append(row)
        return out
