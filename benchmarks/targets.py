"""The targets `make bench` is held to (issues 6, 10, 15 and 16), each measured, marked, and, where missed,
with what holds it in the same run's own stage figures: results.md says why from one run, not from notes."""

from __future__ import annotations

from collections.abc import Callable

DECK = "deck"
DECK_TARGETS = {"validate": 6.0, "no_validate": 3.0}  # seconds, whole process (issue 10)


def fmt_s(x, nd=2):
    return "—" if x is None else f"{x:.{nd}f}"


def stage_medians(summary: dict | None) -> dict[str, float]:
    """A run summary's stages (median seconds), largest first."""
    stages = {k: v["median"] for k, v in ((summary or {}).get("stages") or {}).items() if v.get("median") is not None}
    return dict(sorted(stages.items(), key=lambda kv: -kv[1]))


def largest_stages(summary: dict | None, n: int = 4) -> str:
    """'parse 11.0, models 3.7, ... of 26.9 s (imports, start and commit outside the stages 2.1)'."""
    stages = stage_medians(summary)
    if not stages or not (summary or {}).get("wall"):
        return "no stage figures"
    wall = summary["wall"]
    top = ", ".join(f"{k} {v:.1f}" for k, v in list(stages.items())[:n])
    outside = wall - sum(stages.values())
    return f"{top} of {wall:.1f} s (outside the stages: {outside:.1f} s of imports, start-up and exit)"


def grown(summary: dict | None, base: dict | None, n: int = 3) -> str:
    """The stages that grew most from `base` to `summary`: 'render 5.7 -> 13.4 s, ...'."""
    now, before = stage_medians(summary), stage_medians(base)
    if not now or not before:
        return "no stage figures to compare"
    growth = sorted(((now[k] - before.get(k, 0.0), k) for k in now), reverse=True)[:n]
    return ", ".join(f"{k} {before.get(k, 0.0):.1f} -> {now[k]:.1f} s" for _, k in growth)


def _target(target: str, measured: str, ok: bool | None, holds: Callable[[], str]) -> dict:
    """One target; `holds` is asked only where the target is missed."""
    return {"target": target, "measured": measured, "ok": ok, "holds": holds() if ok is False else ""}


def _below(target: str, summary: dict | None, figure: str, limit: float, unit: str, nd: int = 2) -> dict:
    """A target one figure of a run (its wall seconds, its peak memory) meets when below `limit`; a run without
    the figure is not run, and a miss names the run's largest stages."""
    value = (summary or {}).get(figure)
    return _target(
        target,
        f"{fmt_s(value, nd)} {unit}" if value else "not run",
        (value < limit) if value else None,
        lambda: largest_stages(summary),
    )


def targets(cell: Callable[[str, str], dict | None], scaling: dict, no_validate: bool) -> list[dict]:
    """Every target of the run whose cells `cell(scale, fmt)` returns."""
    out = []
    t10 = cell("10M", "csv") or {}
    v = t10.get("validate")
    out.append(_below("10M CSV to report, validation included: < 20 s wall", v, "wall", 20, "s"))
    out.append(_below("10M CSV, validation included: < 3 GB peak memory", v, "rss", 3072, "MB", 0))
    r = t10.get("ratios", {})
    like = t10.get("no_validate") or v
    floor = t10.get("floor") or {}

    def over_floor() -> str:
        parse = stage_medians(like).get("parse")
        return (
            f"the parse alone ({fmt_s(parse, 1)} s: every row read, typed and written) against the floor's whole "
            f"process ({fmt_s(floor.get('wall'), 1)} s, which keeps no typed rows and writes no outputs); "
            f"{largest_stages(like)}"
        )

    out.append(
        _target(
            "pipeline / floor (no validation) <= 1.5x at 10M CSV",
            f"{fmt_s(r.get('pipeline_over_floor'))}x whole process; "
            f"{fmt_s(r.get('core_over_floor_query'))}x load+transform vs floor query"
            + ("" if no_validate else " (run with validation: no --no-validate flag)"),
            (r["pipeline_over_floor"] <= 1.5) if "pipeline_over_floor" in r else None,
            over_floor,
        )
    )
    gate_stages = stage_medians(v)
    out.append(
        _target(
            "validation adds at most half again (<= +50%) at 10M CSV",
            "no --no-validate flag" if "validation_overhead" not in r else f"{r['validation_overhead']:+.0%}",
            (r["validation_overhead"] <= 0.5) if "validation_overhead" in r else None,
            lambda: f"gate {fmt_s(gate_stages.get('gate'), 1)} s, output checks {fmt_s(gate_stages.get('output_checks'), 1)} s",
        )
    )
    pandas = t10.get("pandas") or {}

    def against_pandas() -> str:
        stages = stage_medians(like)
        return (
            f"pandas computes the verdicts only ({fmt_s(pandas.get('wall'), 1)} s); the pipeline also types and "
            f"keeps every input row (parse {fmt_s(stages.get('parse'), 1)} s) and writes the reports, workbooks, "
            f"feeds and data files (render {fmt_s(stages.get('render'), 1)} s)"
        )

    out.append(
        _target(
            "pandas audit / pipeline >= 3x at 10M CSV, like for like",
            f"{fmt_s(r.get('pandas_over_pipeline'))}x",
            (r["pandas_over_pipeline"] >= 3) if "pandas_over_pipeline" in r else None,
            against_pandas,
        )
    )
    fh = (cell("10M", "fhir") or {}).get("validate")
    both = bool(fh and v and fh["wall"] and v["wall"])

    def fhir_parse() -> str:
        f_stages, c_stages = stage_medians(fh), stage_medians(v)
        rest = sum(x for k, x in f_stages.items() if k != "parse"), sum(x for k, x in c_stages.items() if k != "parse")
        return (
            f"the parse: {fmt_s(f_stages.get('parse'), 1)} s from NDJSON against {fmt_s(c_stages.get('parse'), 1)} s "
            f"from CSV; every later stage together {rest[0]:.1f} s against {rest[1]:.1f} s"
        )

    out.append(
        _target(
            "10M orders as a FHIR export within 2x the same orders as CSV (whole process, validation included)",
            f"{fh['wall'] / v['wall']:.2f}x ({fmt_s(fh['wall'])} s against {fmt_s(v['wall'])} s)"
            if both
            else "not run (BENCH_FORMATS=csv,fhir)",
            (fh["wall"] / v["wall"] <= 2) if both else None,
            fhir_parse,
        )
    )
    dense = cell("10M-dense", "csv") or {}
    dv, dfl = dense.get("validate"), dense.get("floor")
    ran = bool(dv and dfl and dv["wall"] and dfl["wall"])
    out.append(
        _target(
            "case-dense 10M (both audits), gate on: whole process <= 2x the floor's (issue 16)",
            f"{dv['wall'] / dfl['wall']:.2f}x ({fmt_s(dv['wall'])} s against {fmt_s(dfl['wall'])} s; "
            f"CPU {dv['cpu'] / dfl['cpu']:.2f}x)"
            if ran and dv.get("cpu") and dfl.get("cpu")
            else "not run",
            (dv["wall"] / dfl["wall"] <= 2) if ran else None,
            lambda: f"what grows with the cases (against 10M CSV): {grown(dv, v)}; {largest_stages(dv)}",
        )
    )
    dr = (dv or {}).get("stages", {}).get("render")
    out.append(
        _target(
            "case-dense 10M: render stage <= 5 s and report.html <= 5 MB (issue 10)",
            f"render {fmt_s(dr['median'])} s, report.html {fmt_s(dv.get('report_mb'), 1)} MB"
            if dr and dv.get("report_mb")
            else "not run",
            (dr["median"] <= 5 and dv["report_mb"] <= 5) if dr and dv.get("report_mb") else None,
            lambda: (
                f"the render stage here writes both audits' outputs ({fmt_s(dr['median'], 1)} s); issue 10's 5 s is one "
                "audit's render, which `benchmarks.render_bench --audit` times alone (the profile notes)"
            ),
        )
    )
    c100 = cell("100M", "csv")
    v100 = (c100 or {}).get("validate")
    done100 = bool(v100 and v100["wall"])
    out.append(
        _target(
            "100M orders out of core: <= 3 minutes (issue 16)",
            f"{fmt_s(v100['wall'], 0)} s" if done100 else "not run (BENCH_SCALE=100M)",
            (v100["wall"] <= 180) if done100 else None,
            lambda: largest_stages(v100),
        )
    )
    out.append(
        _target(
            "100M orders complete out of core, < 8 GB peak",
            f"{fmt_s(v100['wall'], 0)} s, {fmt_s(v100['rss'], 0)} MB"
            if done100
            else "not run (BENCH_SCALE=100M)"
            if not c100
            else "FAILED",
            (v100["rss"] < 8192) if done100 else (False if c100 else None),
            lambda: largest_stages(v100) if done100 else (v100 or {}).get("error") or "the run failed",
        )
    )
    sk = scaling.get("pipeline csv")
    out.append(
        _target(
            "10M takes <= 12x the time of 1M (pipeline, CSV)",
            f"{sk:.1f}x" if sk else "not run",
            (sk <= 12) if sk else None,
            lambda: largest_stages(v),
        )
    )
    deck = cell(DECK, "csv")
    for variant, limit in DECK_TARGETS.items():
        s = (deck or {}).get(variant)
        out.append(
            _target(
                f"test deck, whole process {'with the gate' if variant == 'validate' else 'with --no-validate'}: "
                f"<= {limit:g} s wall",
                f"{fmt_s(s['wall'])} s (CPU {fmt_s(s.get('cpu'), 1)} s)" if s and s["wall"] else "not run",
                (s["wall"] <= limit) if s and s["wall"] else None,
                lambda s=s: largest_stages(s),
            )
        )
    return out
