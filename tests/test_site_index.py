"""The site index (``pipeline.report.site_index``) on folders written by hand: what it says of each period."""

from __future__ import annotations

import json

from pipeline.report import site_index


def test_site_index_marks_a_provisional_period(tmp_path):
    """A period whose run.json says it is provisional is marked so, with the date it becomes final; a final one is not."""
    about = {"title": "CSF leak", "measures": []}
    audit = tmp_path / "csf_leak"
    for month, status in (("2026-05", "final"), ("2026-06", "provisional")):
        (audit / month).mkdir(parents=True)
        maturity = {"status": status, "final_from": "2026-09-13" if status == "provisional" else "2026-08-14"}
        info = {"run_id": f"r-{month}", "period": month, "audit": about, "status": {"period": month, "maturity": maturity}}
        (audit / month / "run.json").write_text(json.dumps(info))
    text = site_index.render_site_index(tmp_path).read_text(encoding="utf-8")
    june, may = text.index("2026-06/index.html"), text.index("2026-05/index.html")
    assert text.count('class="provisional"') == 1
    assert june < text.index('provisional until the data reaches <span class="date">2026-09-13</span>') < may
    assert "2026-08-14" not in text
    assert "Provisional: later data can still change" in text
