"""The shared metrics feed: metrics.csv / metrics.parquet / metrics.json (docs/METRICS_FEED.md).

From the internal metrics frame (``measure.build_metrics``: every monthly cell, nothing withheld)
it adds quarterly and rolling 12-month cells per group (sums of the monthly numerators and
denominators), applies the feed's small-cell rule (``pipeline.report.disclosure``: no count of 1 to
``[feed] min_cell_count`` - 1 is released, directly or by subtraction) and says per row whether
its period is final or still provisional (``pipeline.maturity``), and whether it starts before the audit's look-back
lies within the data (``look_back``: the audit's ``report/verified_from.sql``, read by the renderer).
"""

from __future__ import annotations

import datetime
import json
from pathlib import Path

import numpy as np
import polars as pl

from pipeline import formula_guard
from pipeline.config import Feed
from pipeline.logs import event
from pipeline.maturity import Maturity
from pipeline.months import index as month_index
from pipeline.months import is_month
from pipeline.months import label as month_label
from pipeline.report import disclosure, relations, whole_feed
from pipeline.report.measure import METRICS_SCHEMA, with_rates
from pipeline.wording import counted

# major.minor, and a third number for a correction of the rows' values under the same meaning (docs/METRICS_FEED.md,
# Columns); tests/test_cli_synthetic.py pins a generated extract's feeds to it
SCHEMA_VERSION = "3.3"
ROUND_DIGITS = 6  # rates and intervals: enough for any dashboard, no floating-point noise

FEED_SCHEMA: dict[str, pl.DataType] = {
    "schema_version": pl.String(),
    "audit_id": pl.String(),  # 2.0: the audit the row measures (one audit per feed file); 3.0: fewer provider rows
    **{c: t for c, t in METRICS_SCHEMA.items() if c != "direction"},  # 1.0: period ... ci_high
    "suppressed": pl.Boolean(),
    "direction": pl.String(),
    # 1.1
    "period_type": pl.String(),
    "period_start": pl.String(),
    "period_end": pl.String(),
    "status": pl.String(),
    "data_through": pl.Date(),
    # 3.1: the other end of the data, for an audit that looks back before its units (low back pain: 180 days)
    "look_back": pl.String(),
    "verified_from": pl.Date(),
}
LOOK_BACK = ("complete", "before_data")  # the values of look_back
KEYS = ["period", "level", "group_key", "measure_id"]


def methods_text(min_cell_count: int) -> str:
    """The feed's disclosure rule in one paragraph, for the report's methods (context key ``feed_disclosure``): the
    report's own rule (every figure shown) first, then the feed's (``disclosure_text``)."""
    return (
        "This report is an internal document: it shows every rate with its numerator, denominator and "
        "interval, and marks the ones resting on few cases. " + disclosure_text(min_cell_count)
    )


def disclosure_text(min_cell_count: int) -> str:
    """The feed's small-cell rule in one paragraph (``metrics.json``'s ``disclosure``; the report's methods end on it)."""
    k = min_cell_count
    shared = "The metrics feed (metrics.csv / .parquet) is shared "
    if k <= 1:  # nothing to withhold: "no count from 1 to 0" read as a rule that was on
        return shared + (
            f"beyond the committee, and its small-cell rule is off (setting [feed] min_cell_count = {k}): every count is "
            "released, small ones too. Set it to 11 (the CMS cell-size rule) before the feed is shared."
        )
    small = "no count of 1" if k == 2 else f"no count from 1 to {k - 1}"
    return shared + (
        f"beyond the committee, so it follows a small-cell rule (setting [feed] min_cell_count = {k}): {small} is "
        "released, neither "
        "directly nor by subtraction. A withheld cell loses its numerator, rate and interval (its denominator "
        f"too when that is itself below {k}); where a withheld cell could be recovered from a total (the hospital "
        "minus the other departments or providers, a quarter or 12 months minus the other months) or from the other "
        "counts of its period and group, another is withheld as well. Because cases are often rare, the feed also carries "
        "quarterly and rolling 12-month rates per department and provider, which usually reach a releasable size. "
        # the rule weighs one feed: two runs withhold different cells of the same periods (docs/METRICS_FEED.md,
        # "Two feeds side by side": 198 counts two consecutive monthly CSF-leak feeds of the demo give away)
        "The rule weighs this feed alone: each month's feed replaces the last, and feeds of two runs kept side by side "
        "can give a withheld count away by difference, so an archive of feeds is not shared."
    )


def data_through(run_info: dict) -> datetime.date | None:
    """The site-local date the loaded data reaches (``pipeline.maturity``), the same on every row."""
    maturity = Maturity.from_dict(run_info.get("maturity"))
    return maturity.local_date(maturity.data_through) if maturity else None


def min_cell_count(run_info: dict) -> int:
    return int(run_info.get("config", {}).get("feed", {}).get("min_cell_count", Feed().min_cell_count))


# ----------------------------------------------------------------------------- periods


def period_windows(months: list[str], run_period: str) -> dict[str, tuple[str, list[str]]]:
    """Every period of the feed: label -> (period type, calendar months it sums).

    Months from the first month with data to the run's last month; each calendar quarter and each
    12-month window lying wholly inside them; ``all`` = the run's own months (one month for --month).
    """
    if not months:
        return {}
    last_run = run_period.split("..")[-1]
    first = month_index(min(months))
    last = max(month_index(max(months)), month_index(last_run) if is_month(last_run) else -1)
    span = list(range(first, last + 1))
    out: dict[str, tuple[str, list[str]]] = {month_label(i): ("month", [month_label(i)]) for i in span}
    for i in span:
        if i % 3 == 0 and i + 2 <= last:
            out[f"{i // 12:04d}-Q{i % 12 // 3 + 1}"] = ("quarter", [month_label(j) for j in range(i, i + 3)])
        if i - 11 >= first:
            out[f"{month_label(i - 11)}..{month_label(i)}"] = ("rolling_12m", [month_label(j) for j in range(i - 11, i + 1)])
    out["all"] = ("all", [last_run] if is_month(run_period) else [month_label(i) for i in span])
    return out


def with_aggregates(metrics: pl.DataFrame, windows: dict[str, tuple[str, list[str]]]) -> pl.DataFrame:
    """The monthly cells and the run's ``all`` cells, plus a quarterly and rolling 12-month cell per group
    (numerators and denominators summed over the months), each row with its period type, first and last month,
    rate and interval."""
    return _dated(with_rates(_summed(metrics, windows)), windows)


def _dated(
    rows: pl.DataFrame, windows: dict[str, tuple[str, list[str]]], all_span: tuple[str, str] | None = None
) -> pl.DataFrame:
    """``rows`` with the first and last month of their period; ``all_span``: those of ``all`` where they are not
    its first and last month with figures (``run_span``)."""
    span = {p: (ms[0], ms[-1]) for p, (_, ms) in windows.items()}
    if all_span is not None and "all" in span:
        span["all"] = all_span
    return rows.with_columns(
        pl.col("period").replace_strict({p: first for p, (first, _) in span.items()}, default=None).alias("period_start"),
        pl.col("period").replace_strict({p: last for p, (_, last) in span.items()}, default=None).alias("period_end"),
    )


def run_span(
    windows: dict[str, tuple[str, list[str]]], run_period: str, case_months: tuple[str | None, str | None] | None
) -> tuple[str, str] | None:
    """The first and last month of a run over every month (``all``) as its report, log and site index state it: the
    months of its cases (``case_months``, ``period_status.cases_span``), from the first case on, imaged or not. The
    months with figures can start later (a CSF-leak case never imaged is in no measure's denominator) and end earlier;
    the counts are the same, since such a case adds to none. None where ``all`` is the run's one month, or no case
    months are given (``all`` then spans its months with figures)."""
    if "all" not in windows or is_month(run_period.split("..")[-1]) or not case_months or None in case_months:
        return None
    _, summed = windows["all"]
    return min(case_months[0], summed[0]), max(case_months[1], summed[-1])


def _summed(metrics: pl.DataFrame, windows: dict[str, tuple[str, list[str]]]) -> pl.DataFrame:
    """``with_aggregates``' cells, their counts only (the feed rates the rows it keeps, after the small-cell rule)."""
    # a window's sum is the difference of two running totals over the months, per series (numpy over a series x
    # month grid: at 10M orders ~130k monthly cells give ~430k window cells)
    months = sorted({m for _, ms in windows.values() for m in ms})
    month_no = {m: i for i, m in enumerate(months)}
    sums = [
        (label, kind, month_no[ms[0]], month_no[ms[-1]] + 1)
        for label, (kind, ms) in windows.items()
        if kind in ("quarter", "rolling_12m")
    ]
    monthly = metrics.filter(pl.col("period").is_in(months)).with_columns(
        pl.struct("level", "group_key", "measure_id").rank("dense").cast(pl.UInt32).alias("series")
    )
    base = metrics.select("period", "level", "group_key", "measure_id", "numerator", "denominator", "direction").with_columns(
        pl.when(pl.col("period") == "all").then(pl.lit("all")).otherwise(pl.lit("month")).alias("period_type")
    )
    if monthly.height == 0 or not sums:
        return base
    series = monthly.select("series", "level", "group_key", "measure_id", "direction").unique("series")
    row = monthly["series"].to_numpy().astype(np.int64)
    col = monthly["period"].replace_strict(month_no, return_dtype=pl.Int64).to_numpy()
    first = np.array([a for *_, a, _ in sums], dtype=np.int64)
    stop = np.array([b for *_, b in sums], dtype=np.int64)
    shape = (int(row.max(initial=0)) + 1, len(months) + 1)  # one more month column: the running total before any

    def window_sums(values: np.ndarray) -> np.ndarray:
        grid = np.zeros(shape, np.int64)
        np.add.at(grid, (row, col + 1), values)
        running = grid.cumsum(axis=1)
        return running[:, stop] - running[:, first]  # (series, window)

    cells = window_sums(np.ones(row.size, np.int64))  # how many monthly cells each window holds
    s_idx, w_idx = np.nonzero(cells > 0)  # a window a series has no month of has no cell
    summed = pl.DataFrame(
        {
            "series": pl.Series(s_idx, dtype=pl.UInt32),
            "window": pl.Series(w_idx, dtype=pl.UInt32),
            **{
                c: pl.Series(window_sums(monthly[c].fill_null(0).to_numpy().astype(np.int64))[s_idx, w_idx], dtype=pl.Int64)
                for c in ("numerator", "denominator")
            },
        }
    )
    labels = pl.DataFrame(
        [(i, label, kind) for i, (label, kind, *_) in enumerate(sums)],
        schema={"window": pl.UInt32, "period": pl.String, "period_type": pl.String},
        orient="row",
    )
    summed = summed.join(series, on="series").join(labels, on="window")
    return pl.concat([base, summed.select(base.columns)])


# ----------------------------------------------------------------------------- the small-cell rule


def _signature(rows: pl.DataFrame, columns: list[str], name: str) -> pl.DataFrame:
    """measure_id -> a name shared by the measures whose ``columns`` agree in every cell (the same count).

    Two order-independent sums of 40-bit row hashes and the row count stand for a measure's cells."""
    row = pl.struct([pl.col(c).fill_null(-1) if c in columns else pl.col(c).fill_null("") for c in KEYS[:3] + columns])
    sig = (
        rows.group_by("measure_id")
        .agg((row.hash(1) // (1 << 24)).sum().alias("h1"), (row.hash(2) // (1 << 24)).sum().alias("h2"), pl.len())
        .with_columns(pl.struct("h1", "h2", "len").rank("dense").cast(pl.String).alias(name))
    )
    return sig.select("measure_id", name)


def _denominator_cells(rows: pl.DataFrame, k: int, kind_above: dict[str, str | None], cell_key) -> pl.DataFrame:
    """One cell per shared denominator, period and group; primary withheld: 1..k-1, or 1..k-1 apart from a
    nested denominator of the same cell (evaluated orders within non-excluded within audited orders: the
    difference, the not-evaluable or excluded orders, is a count too). The one used by fewer measures goes.
    ``rows`` carry the integer codes of their keys and ``den_key`` (``cell_key`` of their denominator and cell):
    cells are told apart and joined on those."""
    kind_key, cell = ["kind_code"], ["period_code", "level_code", "group_key_code"]
    cells = rows.unique("den_key").select(
        "kind", "period", "period_type", "level", "group_key", "denominator", *kind_key, *cell, "den_key"
    )
    # uses: how many measures share the denominator above the providers (``kind_above``: the tables linked there)
    measures = (
        rows.select("kind", "measure_id")
        .unique()
        .with_columns(
            pl.col("kind")
            .replace_strict(kind_above, default=None, return_dtype=pl.String)
            .fill_null(pl.col("kind"))
            .alias("above")
        )
    )
    uses = measures.join(measures.group_by("above").len("uses"), on="above").select("kind", "uses").unique()
    # nested: one is at least the other in every cell both have, and they have the same cells above the
    # providers (per provider only the headline measures' denominators are laid out)
    above = pl.col("level") != "provider"
    above_cells = cells.filter(above)
    nested = (
        above_cells.join(above_cells, on=cell, suffix="_b")
        .filter(pl.col("kind") != pl.col("kind_b"))
        .group_by("kind", "kind_b")
        .agg((pl.col("denominator") >= pl.col("denominator_b")).all().alias("ge"), pl.len().alias("common"))
        .join(above_cells.group_by("kind").len("n_a"), on="kind")
        .join(above_cells.group_by("kind").len("n_b").rename({"kind": "kind_b"}), on="kind_b")
        .filter(pl.col("ge") & (pl.col("common") == pl.col("n_a")) & (pl.col("common") == pl.col("n_b")))
        .select("kind", "kind_b")
    )
    # the pairs of cells of nested denominators, at every level
    codes = cells.select("kind", *kind_key).unique()
    nested = nested.join(codes, on="kind").join(codes.rename({"kind": "kind_b", "kind_code": "kind_code_b"}), on="kind_b")
    mine = cells.select(*kind_key, *cell, "denominator")
    theirs = cells.select(pl.col("den_key").alias("key_b"), pl.col("denominator").alias("denominator_b"))
    pairs = mine.join(nested, on="kind_code").with_columns(cell_key("kind_code_b").alias("key_b")).join(theirs, on="key_b")
    gap = (
        pairs.filter(disclosure.small(pl.col("denominator") - pl.col("denominator_b"), k))
        .join(uses, on="kind")
        .join(uses.rename({"kind": "kind_b", "uses": "uses_b"}), on="kind_b")
        .select(*cell, pl.when(pl.col("uses") <= pl.col("uses_b")).then("kind_code").otherwise("kind_code_b").alias("kind_code"))
        .select(cell_key("kind_code").alias("den_key"))
        .unique()
        .with_columns(pl.lit(True).alias("gap"))
    )
    return (
        cells.join(gap, on="den_key", how="left")
        .with_columns(
            (disclosure.small(pl.col("denominator"), k) | pl.col("gap").fill_null(False)).alias("withheld"),
            pl.col("kind").alias("unit"),
            pl.col("kind_code").alias("unit_code"),
            pl.col("denominator").alias("value"),
            pl.col("denominator").alias("den"),
            pl.lit(None, pl.Int64).alias("complement"),
        )
        .drop("gap")
    )


def _cell_key(rows: pl.DataFrame, cell: list[str]):
    """``key(unit_code)``: an expression giving one Int64 per table (``unit_code``, a family's or a denominator's)
    and cell, from the integer codes of ``rows`` (``disclosure.key_of``, with the cell codes' sizes over ``rows``,
    so every frame made from them keys alike). The denominators' cells, the families' cells and the rows are
    joined on it, one column rather than four: the joins over ~600k rows took a quarter of the feed's Polars time."""
    sizes = [int(rows[c].max()) + 1 for c in cell]

    def key(unit_code: str) -> pl.Expr:
        return disclosure.key_of([pl.col(unit_code), *(pl.col(c) for c in cell)], [0, *sizes])

    return key


def _link(unit: str, above: dict[str, str | None]) -> pl.Expr:
    """``disclosure.protect``'s ``link``: a hospital-wide or department cell is named by the table it belongs to
    above the providers (``above``: unit -> that table), so equal counts of two units share one name; a provider
    cell by its own unit (protect adds the period, level and group)."""
    shared = pl.coalesce(pl.col(unit).replace_strict(above, default=None, return_dtype=pl.String), "u" + pl.col(unit))
    return (
        pl.when(pl.col("level") != "provider")
        .then(pl.concat_str([pl.lit("a"), shared], separator="\x1f"))
        .otherwise(pl.concat_str([pl.lit("p"), pl.col(unit)], separator="\x1f"))
        .alias("link")
    )


def _counts(rows: pl.DataFrame, atoms: relations.Atoms, headline: set[str]) -> relations.Counts:
    """The cell's counts as ``relations`` sees them: each denominator (kind code) and numerator (family code) as its
    atoms, and the order they are given up in: a numerator before a denominator, off the headline before on it, the
    one fewer measures share first."""
    kinds = rows.group_by("kind_code").agg(pl.col("measure_id").unique().sort()).sort("kind_code")
    families = (
        rows.group_by("family_code").agg(pl.col("measure_id").unique().sort(), pl.col("kind_code").first()).sort("family_code")
    )
    names = ["d:" + ms[0] for ms in kinds["measure_id"]] + ["n:" + ms[0] for ms in families["measure_id"]]
    shared = [len(ms) for ms in kinds["measure_id"]] + [len(ms) for ms in families["measure_id"]]
    on_headline = [any(m in headline for m in ms) for ms in kinds["measure_id"]] + [
        any(m in headline for m in ms) for ms in families["measure_id"]
    ]
    n_kinds = kinds.height
    is_numerator = np.arange(len(names)) >= n_kinds
    kind_of = np.concatenate([np.arange(n_kinds), families["kind_code"].to_numpy().astype(np.int64)])
    # what a count costs to give up: a numerator (one row) less than a denominator (every row over it), off the
    # headline far less than on it; then the fewer measures share it, the less
    cost = {(True, False): 10, (False, False): 100, (True, True): 10_000, (False, True): 100_000}
    rank = np.array([cost[num, on] + n for num, on, n in zip(is_numerator, on_headline, shared, strict=True)])
    return relations.Counts(atoms.columns(names), kind_of, is_numerator, rank)


def suppress(
    feed: pl.DataFrame, windows: dict[str, tuple[str, list[str]]], k: int, atoms: relations.Atoms, headline: set[str]
) -> tuple[pl.DataFrame, dict[str, list[str]], list[str]]:
    """The feed's counts with the small-cell rule applied: ``suppressed`` rows lose their numerator; a withheld
    denominator is null too. ``atoms``: how the audit's counts tie together within a cell (``relations``).

    Also the measures whose provider cells the joint pass over time and providers left to the line and time passes
    (``disclosure.JOINT_PROVIDER_ENTRIES``): measure_id -> which of its counts, ``denominator`` and/or
    ``numerator`` (``metrics.json``'s ``provider_joint_check``); and the parts of the whole-feed system over
    ``whole_feed.WHOLE_FEED_ENTRIES`` that its last check left to the passes ("released counts x unknowns")."""
    if feed.height == 0:
        return feed.with_columns(pl.lit(False).alias("suppressed")), {}, []
    month_no = {m: i for i, m in enumerate(sorted({m for _, ms in windows.values() for m in ms}))}
    periods = {p: (kind, [month_no[m] for m in ms]) for p, (kind, ms) in windows.items()}
    feed = feed.filter(pl.col("period").is_in(list(periods)))
    # measures that agree in every month (and the run's total) agree in every sum of months too
    base = feed.filter(pl.col("period_type").is_in(["month", "all"]))
    family = dict(_signature(base, ["numerator", "denominator"], "family").iter_rows())
    kind = dict(_signature(base, ["denominator"], "kind").iter_rows())
    # provider rows are kept for the headline measures only: two measures may agree hospital-wide and per
    # department yet be separate tables here; their cells above the providers are linked (withheld together)
    above = base.filter(pl.col("level") != "provider")
    family_above = dict(_signature(above, ["numerator", "denominator"], "family").iter_rows())
    kind_above = dict(_signature(above, ["denominator"], "kind").iter_rows())
    rows = feed.with_columns(
        pl.col("group_key").fill_null("\x00(none)").alias("gk"),
        pl.col("measure_id").replace_strict(family).alias("family"),
        pl.col("measure_id").replace_strict(kind).alias("kind"),
    )
    # every key as integer codes, once: the cells are grouped and joined on them (not on text), and the small-cell
    # passes order by them (disclosure.order_code: order-preserving, so the same choices as by the text)
    rows = rows.with_columns(disclosure.order_code(rows[c]).alias(f"{c}_code") for c in ("period", "level", "family", "kind"))
    rows = rows.with_columns(disclosure.order_code(rows["gk"]).alias("group_key_code"))
    cell = ["period_code", "level_code", "group_key_code"]
    cell_key = _cell_key(rows, cell)
    rows = rows.with_columns(cell_key("kind_code").alias("den_key"), cell_key("family_code").alias("fam_key"))
    # denominators first: a withheld one withholds every row built on it
    kind_link = {kind[m]: kind_above.get(m) for m in kind}
    den_cells = _denominator_cells(rows.with_columns(pl.col("gk").alias("group_key")), k, kind_link, cell_key)
    den_cells = den_cells.with_columns(_link("kind", kind_link), pl.col("withheld").alias("primary"))
    fam = (
        rows.group_by("fam_key")
        .agg(
            *(
                pl.col(c).first()
                for c in ("family_code", *cell, "den_key")
                + ("family", "kind_code", "period", "period_type", "level", "gk", "numerator", "denominator")
            )
        )
        .with_columns(
            pl.col("family").alias("unit"),
            pl.col("family_code").alias("unit_code"),
            pl.col("gk").alias("group_key"),
            pl.col("numerator").alias("value"),
            (pl.col("denominator") - pl.col("numerator")).alias("complement"),
            pl.col("denominator").alias("den"),
            (disclosure.small(pl.col("numerator"), k) | disclosure.small(pl.col("denominator") - pl.col("numerator"), k)).alias(
                "primary"
            ),
        )
        .with_columns(_link("family", {family[m]: family_above.get(m) for m in family}))
    )
    # the counts of a cell tie together (the audited orders less the judged less the excluded are the not-evaluable
    # ones): where the released counts of a cell give a withheld one, one more is withheld there (``relations``); that
    # can expose a total across cells again, so the passes repeat until neither adds a cell
    counts = _counts(rows, atoms, headline)
    # the months each period sums, by period code (relations: a released 0 of a quarter is a 0 in each of its months)
    cover = np.zeros((int(rows["period_code"].max()) + 1, len(month_no)), bool)
    preference = np.zeros(cover.shape[0], np.int64)  # per period code: which to give up first (months)
    for code, period in rows.select("period_code", "period").unique().iter_rows():
        cover[code, periods[period][1]] = True
        preference[code] = disclosure.PERIOD_PREFERENCE[periods[period][0]]
    forced_den = pl.DataFrame(schema={"den_key": pl.Int64, "forced": pl.Boolean})
    forced_fam = forced_den.rename({"den_key": "fam_key"})
    more_den = forced_den  # the denominators' pass runs first, and again only when a cell was added to them
    # the passes over the denominators' cells and over the numerators', built once: each round weighs again only the
    # series and tables the rounds before changed
    protect_den, protect_fam = disclosure.Protection(periods, k), disclosure.Protection(periods, k)
    whole = whole_feed.Check()

    def with_rows_withheld(fam: pl.DataFrame) -> pl.DataFrame:
        fam = fam.drop("withheld", "den_withheld", "forced", strict=False)
        fam = fam.join(den_cells.select("den_key", "den_withheld"), on="den_key", how="left")
        return fam.join(forced_fam, on="fam_key", how="left").with_columns(
            (pl.col("primary") | pl.col("den_withheld").fill_null(False) | pl.col("forced").fill_null(False)).alias("withheld")
        )

    def force(more: pl.DataFrame, forced: pl.DataFrame) -> pl.DataFrame:
        return pl.concat([forced, more.with_columns(pl.lit(True).alias("forced"))]).unique()

    while True:
        if more_den.height or "den_withheld" not in den_cells.columns:
            den_cells = den_cells.drop("withheld", "forced", strict=False).join(forced_den, on="den_key", how="left")
            den_cells = den_cells.with_columns((pl.col("primary") | pl.col("forced").fill_null(False)).alias("withheld"))
            den_cells = den_cells.with_columns(pl.Series("den_withheld", protect_den(den_cells)))
        fam = with_rows_withheld(fam)
        # the cells first, on what the denominators' pass left: the rows' pass then protects across cells what this
        # adds, and the check after it mostly finds nothing (each rows' pass costs ~1 s at 10M orders)
        more_den, more_fam = relations.exposed(
            den_cells, fam.with_columns(pl.col("withheld").alias("row_withheld")), cell, counts, k, cover
        )
        if more_den.height:
            forced_den, forced_fam = force(more_den, forced_den), force(more_fam, forced_fam)
            continue
        if more_fam.height:
            forced_fam = force(more_fam, forced_fam)
            fam = with_rows_withheld(fam)
        # a count whose atoms released 0s elsewhere show empty is known to be 0 (relations.zero_by_atoms)
        _, zero, zero_complement = relations.zero_by_atoms(
            den_cells, fam.with_columns(pl.col("withheld").alias("row_withheld")), cell, counts, cover
        )
        fam = fam.with_columns(pl.Series("zero", zero), pl.Series("zero_complement", zero_complement))
        fam = fam.with_columns(pl.Series("row_withheld", protect_fam(fam)))
        more_den, more_fam = relations.exposed(den_cells, fam, cell, counts, k, cover)
        if more_den.height == 0 and more_fam.height == 0:
            # the passes agree: last, every released count of the hospital and departments at once (``whole_feed``)
            more_den, more_fam = whole(den_cells, fam, cell, counts, k, cover, preference)
        if more_den.height == 0 and more_fam.height == 0:
            break
        forced_den, forced_fam = force(more_den, forced_den), force(more_fam, forced_fam)
    rows = rows.join(den_cells.select("den_key", "den_withheld"), on="den_key", how="left")
    rows = rows.join(fam.select("fam_key", "row_withheld"), on="fam_key")
    hide = pl.col("row_withheld")
    # a table is a count shared by measures (``kind``: a denominator, ``family``: a numerator); per measure its own
    left_out: dict[str, list[str]] = {}
    for count, tables, unit in (("denominator", protect_den, kind), ("numerator", protect_fam, family)):
        skipped = set(tables.joint_left_out)
        for measure in sorted(m for m, u in unit.items() if u in skipped):
            left_out.setdefault(measure, []).append(count)
    withheld = rows.with_columns(
        hide.alias("suppressed"),
        pl.when(hide).then(None).otherwise(pl.col("numerator")).alias("numerator"),
        pl.when(pl.col("den_withheld")).then(None).otherwise(pl.col("denominator")).alias("denominator"),
    ).drop("gk", "family", "kind", "den_withheld", "row_withheld", "family_code", "kind_code", *cell, "den_key", "fam_key")
    return withheld, dict(sorted(left_out.items())), whole.left_out


# ----------------------------------------------------------------------------- the feed


def build_feed(
    metrics: pl.DataFrame,
    run_info: dict,
    atoms: relations.Atoms,
    verified_from: datetime.date | None = None,
    case_months: tuple[str | None, str | None] | None = None,
) -> pl.DataFrame:
    """The feed rows (schema ``FEED_SCHEMA``), sorted, rates rounded, small cells withheld (``atoms``: how the
    audit's counts of a cell tie together, ``relations.Atoms.read``). ``verified_from``: the first site-local date
    whose units have their whole look-back within the data (None: the audit declares none); a period that starts
    before it is ``look_back = 'before_data'``. ``case_months``: the first and last month of the run's cases, which
    a run over every month states as its period and its ``all`` row spans (``run_span``)."""
    return _built(metrics, run_info, atoms, verified_from, case_months)[0]


def _built(
    metrics: pl.DataFrame,
    run_info: dict,
    atoms: relations.Atoms,
    verified_from: datetime.date | None,
    case_months: tuple[str | None, str | None] | None = None,
) -> tuple[pl.DataFrame, dict[str, list[str]], list[str]]:
    """``build_feed``'s rows, ``suppress``'s measures whose provider cells the joint pass left out and the parts of
    the whole-feed system its last check left to the passes."""
    months = sorted(p for p in metrics["period"].unique().drop_nulls().to_list() if is_month(p))
    windows = period_windows(months, str(run_info.get("period", "all")))
    if not windows:  # no month with data: an empty feed, its columns all there
        return pl.DataFrame(schema=FEED_SCHEMA), {}, []
    all_span = run_span(windows, str(run_info.get("period", "all")), case_months)
    maturity = Maturity.from_dict(run_info.get("maturity"))
    ends = {ms[-1] for _, ms in windows.values()} | ({all_span[1]} if all_span else set())
    status = {end: maturity.status(end) for end in sorted(ends)} if maturity else {}
    # per provider only the headline measures, and only the cells whose denominator is released: a
    # dashboard compares providers on those; the rest (reason shares, months of 1 to 10 orders) would be
    # millions of withheld rows at a large hospital, telling nothing
    headline = {m["id"] for m in run_info["audit"].get("measures", []) if m.get("headline")}
    metrics = metrics.filter((pl.col("level") != "provider") | pl.col("measure_id").is_in(sorted(headline)))
    feed, left_out, whole_left_out = suppress(_summed(metrics, windows), windows, min_cell_count(run_info), atoms, headline)
    feed = feed.filter((pl.col("level") != "provider") | pl.col("denominator").is_not_null())
    # rates and intervals of the rows kept (a suppressed row has none): an eighth of the cells the rule weighed
    feed = _dated(with_rates(feed), windows, all_span).with_columns(
        pl.when(pl.col("suppressed")).then(None).otherwise(pl.col(c)).alias(c) for c in ("rate", "ci_low", "ci_high")
    )
    out = feed.with_columns(
        pl.lit(SCHEMA_VERSION).alias("schema_version"),
        pl.lit(run_info["audit"]["id"]).alias("audit_id"),
        *[pl.col(c).round(ROUND_DIGITS).clip(0.0, 1.0) for c in ("rate", "ci_low", "ci_high")],
        pl.col("period_end").replace_strict(status, default=None, return_dtype=pl.String).alias("status"),
        pl.lit(data_through(run_info), pl.Date).alias("data_through"),
        _look_back(verified_from),
        pl.lit(verified_from, pl.Date).alias("verified_from"),
    )
    return out.select([pl.col(c).cast(t) for c, t in FEED_SCHEMA.items()]).sort(KEYS, nulls_last=True), left_out, whole_left_out


def _look_back(verified_from: datetime.date | None) -> pl.Expr:
    """``before_data`` where the period's first day lies before ``verified_from`` (some of its units look back
    before the data held), else ``complete``."""
    if verified_from is None:
        return pl.lit(LOOK_BACK[0]).alias("look_back")
    first_day = (pl.col("period_start") + "-01").str.to_date("%Y-%m-%d")
    return pl.when(first_day < verified_from).then(pl.lit(LOOK_BACK[1])).otherwise(pl.lit(LOOK_BACK[0])).alias("look_back")


def write_feed(
    out_dir: Path,
    metrics: pl.DataFrame,
    run_info: dict,
    headline_period: str,
    atoms: relations.Atoms,
    verified_from: datetime.date | None = None,
    case_months: tuple[str | None, str | None] | None = None,
) -> list[Path]:
    """metrics.csv, metrics.parquet (the rows) and metrics.json (what they are, and the headline rows);
    ``verified_from`` and ``case_months``: as ``build_feed``'s."""
    feed, left_out, whole_left_out = _built(metrics, run_info, atoms, verified_from, case_months)
    if left_out:
        _log_left_out(run_info["audit"]["id"], left_out)
    if whole_left_out:
        _log_whole_left_out(run_info["audit"]["id"], whole_left_out)
    csv_path, pq_path = write_rows(feed, out_dir)
    json_path = out_dir / "metrics.json"
    headline = feed.filter((pl.col("period") == headline_period) & (pl.col("level") == "overall"))
    summary = {
        "schema_version": SCHEMA_VERSION,
        "audit_id": run_info["audit"]["id"],
        # no run id or time here: the feed is data and a rerun must give the same bytes (run.json has them)
        "software_version": run_info["software_version"],
        "rule_set_version": run_info["rule_set_version"],
        "period": run_info["period"],
        "headline_period": headline_period,
        "min_cell_count": min_cell_count(run_info),
        # the feed's rule alone: the report's framing ("This report is an internal document") is no feed's
        "disclosure": disclosure_text(min_cell_count(run_info)),
        "interval": "Wilson score, 95%",
        "rows": feed.height,
        "columns": {c: str(t) for c, t in feed.schema.items()},
        "period_types": sorted(feed["period_type"].unique().drop_nulls().to_list()),
        "periods": sorted(feed["period"].unique().drop_nulls().to_list()),
        # from the run, not the rows: a feed without rows (a month without cases) still says how far the data reaches
        "data_through": through.isoformat() if (through := data_through(run_info)) else None,
        "verified_from": verified_from.isoformat() if verified_from else None,
        # 3.3: the zone of every site-local date and month of the rows (data_through, periods): the rows do not say it
        "site_timezone": run_info["config"].get("site_timezone"),
        "headline": json.loads(headline.drop("schema_version").write_json()),
        # 3.2: the measures whose provider cells only the line and time passes protect (docs/METRICS_FEED.md)
        "provider_joint_check": {"max_entries": disclosure.JOINT_PROVIDER_ENTRIES, "left_out": left_out},
        "files": {"csv": "metrics.csv", "parquet": "metrics.parquet"},
    }
    json_path.write_text(json.dumps(summary, indent=2, sort_keys=True, allow_nan=False) + "\n", encoding="utf-8", newline="\n")
    return [csv_path, pq_path, json_path]


def write_rows(feed: pl.DataFrame, out_dir: Path) -> tuple[Path, Path]:
    """The rows as metrics.csv and metrics.parquet. The Parquet file types each column by FEED_SCHEMA whatever its
    values: ``data_through`` and ``verified_from`` are Parquet DATE when every row is null too (the CSF-leak feed's
    ``verified_from``), so a reader gets one type from every feed (docs/METRICS_FEED.md, *The CSV, read with its
    types*, says which)."""
    csv_path, pq_path = out_dir / "metrics.csv", out_dir / "metrics.parquet"
    formula_guard.neutralised(feed).write_csv(csv_path, float_precision=ROUND_DIGITS)  # the Parquet keeps the raw text
    feed.write_parquet(pq_path, compression="zstd", statistics=False)
    return csv_path, pq_path


def _log_whole_left_out(audit_id: str, parts: list[str]) -> None:
    """The whole-feed check (``whole_feed``) weighed not every count together: the run's log says so."""
    event(
        f"{audit_id}: feed: {counted(len(parts), 'part')} of the whole-feed check's system ({'; '.join(parts)} released"
        f" counts x unknowns) are over its {whole_feed.WHOLE_FEED_ENTRIES:,} matrix entries; the passes alone protect"
        " their cells (docs/METRICS_FEED.md)",
        event="whole_feed_left_out",
        audit_id=audit_id,
        parts=parts,
        max_entries=whole_feed.WHOLE_FEED_ENTRIES,
    )


def _log_left_out(audit_id: str, left_out: dict[str, list[str]]) -> None:
    """The run's log says what metrics.json's ``provider_joint_check`` says, for whoever reads the log alone."""
    event(
        f"{audit_id}: feed: the provider cells of {counted(len(left_out), 'measure')} ({', '.join(left_out)}) are over"
        f" the joint check's {disclosure.JOINT_PROVIDER_ENTRIES:,} matrix entries; the line and time passes alone protect"
        " them (metrics.json: provider_joint_check)",
        event="provider_joint_left_out",
        audit_id=audit_id,
        measures=sorted(left_out),
        max_entries=disclosure.JOINT_PROVIDER_ENTRIES,
    )
