"""The paper a report is printed on: A4 (the default) or US Letter, landscape, as ``[reporting] paper`` says.

One home for the page's geometry, so the PDF, the HTML's print sheet, the case list's column widths and the
workbook's print setup follow the same paper: a report laid out for A4 and printed on Letter was shrunk to 94%.
"""

from __future__ import annotations

from dataclasses import dataclass

# the PDF's margins (inches): room for Chromium's running header and page numbers; the HTML's @page matches them
MARGINS_IN = {"marginTop": 0.5, "marginBottom": 0.45, "marginLeft": 0.4, "marginRight": 0.4}
POINTS_PER_INCH = 72


@dataclass(frozen=True)
class Paper:
    name: str  # as [reporting] paper writes it
    css_size: str  # CSS @page size
    width_in: float  # landscape: the long side
    height_in: float
    xlsx_code: int  # the spreadsheet's paper number (ECMA-376 paperSize: 1 Letter, 9 A4)
    words: str  # as the README and a message say it

    def pdf_page(self) -> dict:
        """Chromium's Page.printToPDF size and margins (inches)."""
        return {"paperWidth": self.width_in, "paperHeight": self.height_in, **MARGINS_IN}

    @property
    def print_width_pt(self) -> float:
        """The printed width between the margins, in whole points (A4 784, Letter 734): what the case list's
        column widths are computed against."""
        return float(int((self.width_in - MARGINS_IN["marginLeft"] - MARGINS_IN["marginRight"]) * POINTS_PER_INCH))


PAPERS = {
    "a4": Paper("a4", "A4 landscape", 11.69, 8.27, 9, "A4 landscape"),
    "letter": Paper("letter", "letter landscape", 11.0, 8.5, 1, "US Letter landscape"),
}
DEFAULT = "a4"


def paper_of(run_info: dict) -> Paper:
    """The paper the run's configuration names (``run.json`` config.reporting.paper; A4 when it names none)."""
    return PAPERS[(run_info.get("config") or {}).get("reporting", {}).get("paper", DEFAULT)]
