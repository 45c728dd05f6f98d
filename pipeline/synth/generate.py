"""Deterministic synthetic extract with exact ground truth.

`generate()` writes the three input tables (procedures, imaging_orders, diagnoses), the site's local
code map, and the audits' ground truth for a synthetic population. The engine draws a hospital's
background (random procedures, orders and diagnoses of its code mix); the audits bring their cases
(``audits/<id>/scenarios.py``):

* scenarios inside the population (population_scenarios.py): patients drawn among the generated
  ones from the population's random stream, their rows numbered with the background's in time order;
* scenarios appended after it (audit_scenarios.py): whole new patients from a stream of their own.

How the truth stays exact: the background holds no evidence that makes a case of any audit, so an
audit's cases are its scenario patients, with the verdicts its DESIGN.md gives each of their orders.
Scenario patients get no background imaging of the neuro mix.

Everything is built as numpy columns (loops run over the scenario catalogues only), then sorted by
time, numbered, and written in chunks, so 2M patients / 10M orders fit in about a minute and a few GB.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl

from pipeline.months import shift as shift_month
from pipeline.synth import audit_scenarios, population_scenarios
from pipeline.synth.codes import (
    BG_DIAGNOSES,
    BG_IND_NEURO,
    BG_IND_NONNEURO,
    BG_NEURO,
    BG_NONNEURO,
    BG_PROCS,
    INDICATIONS,
    LOCAL_CODE_MAP_BACKGROUND,
    LOCAL_CODE_MAP_HEADER,
    NEURO_SHARE,
    NO_NEURO_AFTER,
    ORDER_DEPTS,
    ORDER_NAMES,
    PRIORITIES,
    PROC_DEPTS,
    PROC_NAMES,
    SETTINGS,
    SITES,
    STATUSES,
    WITHOUT_NEEDLE,
)
from pipeline.synth.columns import CHUNK, Writer, fmt_instants, gather, null_where, pick, to_utc_seconds, transitions
from pipeline.synth.population_scenarios import CodeTable, PopulationContext, coded, columns


def generate(
    out_dir: Path,
    patients: int,
    months: int,
    seed: int,
    start_month: str = "2024-01",
    fmt: str = "csv",
    site_timezone: str = "America/New_York",
    case_density: float = 1.0,
) -> dict:
    """Write a synthetic extract with its ground truth into out_dir; return the counts summary.

    ``case_density`` multiplies the number of cases the audits place inside the population (each
    audit's scenarios.py says what 1 means; 5 is the case-dense benchmark scale).
    """
    if fmt not in ("csv", "parquet"):
        raise ValueError(f"format must be csv or parquet, got {fmt!r}")
    if case_density <= 0:
        raise ValueError(f"case_density must be above 0, got {case_density!r}")
    if patients < 1 or months < 1:
        raise ValueError("patients and months must be at least 1")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    tz = site_timezone
    N = int(patients)

    start_local = int(np.datetime64(f"{start_month}-01", "s").astype(np.int64))
    end_local = int(np.datetime64(f"{shift_month(start_month, months)}-01", "s").astype(np.int64))
    t_lo, t_hi = (int(x) for x in to_utc_seconds(np.array([start_local, end_local]), tz))
    day = 86400

    # ---- scenario patients inside the population: how many each audit's scenarios need (drawn first)
    hooks = population_scenarios.modules()
    instances = [module.population_instances(rng, N, case_density) for _, module in hooks]
    n_scen_pat = sum(sum(counts.values()) for counts in instances)
    if n_scen_pat > N:
        raise ValueError(f"too few patients ({N}) for the scenario catalogue ({n_scen_pat} needed)")

    perm = rng.permutation(N).astype(np.int64)
    scen_pat_all = perm[:n_scen_pat]
    bg_pat = np.sort(perm[n_scen_pat:])
    del perm

    # ---- per-patient birth dates (days since epoch), most adults, some children
    mid = (t_lo + t_hi) // 2 // day
    age_years = np.where(rng.random(N) < 0.08, rng.uniform(0.5, 17.5, N), rng.uniform(18.5, 90, N))
    birth = (mid - age_years * 365.25).astype(np.int64)
    birth_known = np.ones(N, dtype=bool)

    # ---- DST transitions
    spring, fall = transitions(tz, t_lo, t_hi)
    if not spring or not fall:
        s2, f2 = transitions(tz, t_lo, t_lo + 2 * 366 * day)
        spring, fall = spring or s2, fall or f2

    # ---- the scenario rows (numpy columns, codes as text until they meet the code tables)
    n_order_providers = max(50, N // 400)
    pctx = PopulationContext(rng, tz, start_local, end_local, spring, fall, birth, birth_known, n_order_providers)
    parts = []
    pos = 0
    for (audit_id, module), counts in zip(hooks, instances, strict=True):
        n = sum(counts.values())
        parts.append((audit_id, module.population_rows(pctx, scen_pat_all[pos : pos + n], counts)))
        pos += n
    rows = [r for _, r in parts]
    proc_codes = CodeTable("procedure code", PROC_NAMES)
    order_codes = CodeTable("order code", ORDER_NAMES)
    indications = CodeTable("indication", dict(INDICATIONS))
    dx_codes = CodeTable("diagnosis code", {c: c for c in BG_DIAGNOSES[0]}, self_named=True)
    statuses = CodeTable("status", {s: s for s in STATUSES})
    order_depts = CodeTable("ordering department", {d: d for d in ORDER_DEPTS})
    n_proc_s, n_order_s = pctx.next_procedure_key, pctx.next_order_key

    # ---- background procedures
    n_proc_total = int(round(0.5 * N))
    n_bg_p = max(0, n_proc_total - n_proc_s)
    bgp_pat = bg_pat[rng.integers(0, bg_pat.size, n_bg_p)] if bg_pat.size else np.zeros(0, np.int64)
    bg_codes = np.array([proc_codes.position[c] for c in BG_PROCS[0]])
    bgp_code = bg_codes[pick(rng, BG_PROCS, n_bg_p)]
    bgp_t = rng.integers(t_lo, t_hi, n_bg_p)
    pr_pat = np.concatenate([columns(rows, "procedures", "pat"), bgp_pat])
    pr_t = np.concatenate([columns(rows, "procedures", "t"), bgp_t])
    pr_code = np.concatenate([coded(parts, "procedures", "code", proc_codes, "procedures"), bgp_code])
    pr_key = np.concatenate([columns(rows, "procedures", "key"), np.full(n_bg_p, -1)])
    n_pr = pr_pat.size

    index_codes = {proc_codes.position[c] for c in NO_NEURO_AFTER}
    has_index = np.zeros(N, dtype=bool)
    has_index[bgp_pat[np.isin(bgp_code, list(index_codes))]] = True
    has_index[scen_pat_all] = True
    neuro_pool = bg_pat[~has_index[bg_pat]]

    # ---- background orders
    n_ord_total = int(round(5 * N))
    n_bg_o = max(0, n_ord_total - n_order_s)
    is_neuro = rng.random(n_bg_o) < NEURO_SHARE
    if neuro_pool.size == 0:
        is_neuro[:] = False
    nn = int(is_neuro.sum())
    bgo_pat = rng.integers(0, N, n_bg_o)
    if nn:
        bgo_pat[is_neuro] = neuro_pool[rng.integers(0, neuro_pool.size, nn)]
    nonneuro_codes = np.array([order_codes.position[c] for c in BG_NONNEURO[0]])
    neuro_codes = np.array([order_codes.position[c] for c in BG_NEURO[0]])
    bgo_code = nonneuro_codes[pick(rng, BG_NONNEURO, n_bg_o)]
    if nn:
        bgo_code[is_neuro] = neuro_codes[pick(rng, BG_NEURO, nn)]
    bgo_ind = np.array([indications.position[c] for c in BG_IND_NONNEURO[0]])[pick(rng, BG_IND_NONNEURO, n_bg_o)]
    if nn:
        bgo_ind[is_neuro] = np.array([indications.position[c] for c in BG_IND_NEURO[0]])[pick(rng, BG_IND_NEURO, nn)]
    bgo_status = rng.choice(4, size=n_bg_o, p=[0.12, 0.10, 0.70, 0.08])
    bgo_t = rng.integers(t_lo, t_hi, n_bg_o)
    bgo_dept = rng.integers(0, len(ORDER_DEPTS), n_bg_o)
    bgo_prov = rng.integers(1, n_order_providers + 1, n_bg_o)
    del is_neuro
    o_pat = np.concatenate([columns(rows, "orders", "pat"), bgo_pat])
    del bgo_pat
    o_t = np.concatenate([columns(rows, "orders", "t"), bgo_t])
    del bgo_t
    o_code = np.concatenate([coded(parts, "orders", "code", order_codes, "orders"), bgo_code]).astype(np.int16)
    del bgo_code
    o_status = np.concatenate([coded(parts, "orders", "status", statuses, "statuses"), bgo_status]).astype(np.int8)
    del bgo_status
    o_ind = np.concatenate([coded(parts, "orders", "ind", indications, "indications"), bgo_ind]).astype(np.int16)
    del bgo_ind
    o_missing = np.concatenate([columns(rows, "orders", "missing", bool), np.zeros(n_bg_o, bool)])
    o_dept = np.concatenate([coded(parts, "orders", "dept", order_depts, "departments"), bgo_dept]).astype(np.int8)
    o_prov = np.concatenate([columns(rows, "orders", "prov"), bgo_prov]).astype(np.int32)
    del bgo_dept, bgo_prov
    o_key = np.concatenate([columns(rows, "orders", "key"), np.full(n_bg_o, -1)])
    n_o = o_pat.size

    # ---- background diagnoses
    n_bg_d = int(round(0.6 * N))
    bgd_pat = rng.integers(0, N, n_bg_d)
    bgd_code = np.array([dx_codes.position[c] for c in BG_DIAGNOSES[0]])[pick(rng, BG_DIAGNOSES, n_bg_d)]
    bgd_t = rng.integers(t_lo, t_hi, n_bg_d)
    bgd_date = rng.random(n_bg_d) < 0.1
    d_pat = np.concatenate([columns(rows, "diagnoses", "pat"), bgd_pat])
    d_t = np.concatenate([columns(rows, "diagnoses", "t"), bgd_t])
    d_code = np.concatenate([coded(parts, "diagnoses", "code", dx_codes, "diagnoses"), bgd_code])
    d_date = np.concatenate([columns(rows, "diagnoses", "date_only", bool), bgd_date])

    # ---- id widths
    pw = max(7, len(str(N)))
    prw = max(6, len(str(n_pr)))
    ow = max(8, len(str(n_o)))
    ext = "csv" if fmt == "csv" else "parquet"

    # ---- the audits' own scenario patients (audits/<id>/scenarios.py): new patients, appended below
    ctx = audit_scenarios.ScenarioContext(
        # a random source of their own: adding or changing an audit's scenarios leaves every draw of the
        # population (and so its verdicts and benchmark figures) as it was
        rng=np.random.default_rng([seed, audit_scenarios.RNG_STREAM]),
        patients=N,
        case_density=case_density,
        first_day=np.datetime64(f"{start_month}-01", "D"),
        end_day=np.datetime64(f"{shift_month(start_month, months)}-01", "D"),
        site_timezone=tz,
        next_patient=N,
        next_procedure=n_pr,
        next_order=n_o,
        widths=(pw, prw, ow),
    )
    collected = audit_scenarios.collect(ctx)

    def append_audit_rows(writer: Writer, table: str, frame: pl.DataFrame) -> None:
        rows = audit_scenarios.rows_for(table, frame.columns, collected)
        if rows is not None:
            writer.write(rows)

    def pid(idx):
        return pl.select(pl.lit("P") + pl.Series(idx.astype(np.int64) + 1).cast(pl.String).str.zfill(pw))[:, 0]

    # ---- procedures: sort by time, number, write
    order = np.lexsort((pr_key, pr_t))
    pr_pat, pr_t, pr_code, pr_key = pr_pat[order], pr_t[order], pr_code[order], pr_key[order]
    proc_num_of_key = np.empty(n_proc_s, np.int64)
    sk = pr_key >= 0
    proc_num_of_key[pr_key[sk]] = np.flatnonzero(sk)
    fmt_kind = rng.choice(3, size=n_pr, p=[0.9, 0.06, 0.04])
    gauge = rng.choice(np.array([18, 20, 22, 24, 25, 27]), size=n_pr, p=[0.05, 0.35, 0.35, 0.1, 0.1, 0.05])
    ntype = rng.choice(2, size=n_pr, p=[0.6, 0.4])
    attempts = rng.choice(np.arange(1, 6), size=n_pr, p=[0.62, 0.22, 0.1, 0.04, 0.02])
    position = rng.choice(3, size=n_pr, p=[0.35, 0.35, 0.3])
    pdept = rng.integers(0, len(PROC_DEPTS), n_pr)
    psite = rng.choice(2, size=n_pr, p=[0.7, 0.3])
    pprov = rng.integers(1, max(30, N // 2000) + 1, n_pr)
    spinal = ~np.isin(pr_code, [proc_codes.position[c] for c in WITHOUT_NEEDLE])
    w = Writer(out_dir / f"procedures.{ext}", fmt)
    for a in range(0, max(n_pr, 1), CHUNK):
        sl = slice(a, min(a + CHUNK, n_pr))
        sp = spinal[sl]
        bd = birth[pr_pat[sl]]
        bd_s = null_where(pl.from_epoch(pl.Series(bd), "d").dt.strftime("%Y-%m-%d"), ~birth_known[pr_pat[sl]])
        df = pl.DataFrame(
            {
                "procedure_id": pl.select(pl.lit("PR") + pl.int_range(sl.start + 1, sl.stop + 1).cast(pl.String).str.zfill(prw))[
                    :, 0
                ],
                "patient_id": pid(pr_pat[sl]),
                "performed_at": fmt_instants(pr_t[sl], fmt_kind[sl], None, tz),
                "procedure_code": gather(proc_codes.codes, pr_code[sl]),
                "procedure_name": gather(proc_codes.text(), pr_code[sl]),
                "department": gather(PROC_DEPTS, pdept[sl]),
                "site": gather(SITES, psite[sl]),
                "provider_id": pl.select(pl.lit("PV") + pl.Series(pprov[sl]).cast(pl.String).str.zfill(5))[:, 0],
                "patient_birth_date": bd_s,
                "needle_gauge": null_where(pl.Series(gauge[sl]).cast(pl.String), ~sp),
                "needle_type": null_where(gather(["cutting", "pencil_point"], ntype[sl]), ~sp),
                "attempts": null_where(pl.Series(attempts[sl]).cast(pl.String), ~sp),
                "patient_position": null_where(gather(["sitting", "lateral", "prone"], position[sl]), ~sp),
            }
        )
        w.write(df)
    append_audit_rows(w, "procedures", df)
    w.close()
    del pr_pat, pr_t, fmt_kind, gauge, ntype, attempts, position, pdept, psite, pprov, spinal

    # ---- orders
    order = np.lexsort((o_key, o_t))  # orders without a time keep their would-be place
    o_pat, o_t, o_code, o_status, o_ind, o_missing, o_dept, o_prov, o_key = (
        x[order] for x in (o_pat, o_t, o_code, o_status, o_ind, o_missing, o_dept, o_prov, o_key)
    )
    del order
    order_num_of_key = np.empty(n_order_s, np.int64)
    sk = o_key >= 0
    order_num_of_key[o_key[sk]] = np.flatnonzero(sk)
    del o_key, sk
    fmt_kind = rng.choice(3, size=n_o, p=[0.9, 0.06, 0.04]).astype(np.int8)
    prio = rng.choice(3, size=n_o, p=[0.75, 0.2, 0.05]).astype(np.int8)
    osite = rng.choice(2, size=n_o, p=[0.7, 0.3]).astype(np.int8)
    ind_codes, ind_text, order_names = indications.codes, indications.text(), order_codes.text()
    w = Writer(out_dir / f"imaging_orders.{ext}", fmt)
    for a in range(0, max(n_o, 1), CHUNK):
        sl = slice(a, min(a + CHUNK, n_o))
        df = pl.DataFrame(
            {
                "order_id": pl.select(pl.lit("O") + pl.int_range(sl.start + 1, sl.stop + 1).cast(pl.String).str.zfill(ow))[:, 0],
                "patient_id": pid(o_pat[sl]),
                "ordered_at": fmt_instants(o_t[sl], fmt_kind[sl], o_missing[sl], tz),
                "order_code": gather(order_codes.codes, o_code[sl]),
                "order_name": gather(order_names, o_code[sl]),
                "ordering_department": gather(order_depts.codes, o_dept[sl]),
                "ordering_provider_id": pl.select(pl.lit("DR") + pl.Series(o_prov[sl]).cast(pl.String).str.zfill(5))[:, 0],
                "indication_codes": gather(ind_codes, o_ind[sl]),
                "indication_text": gather(ind_text, o_ind[sl]),
                "status": gather(statuses.codes, o_status[sl]),
                "priority": gather(PRIORITIES, prio[sl]),
                "site": gather(SITES, osite[sl]),
            }
        )
        w.write(df)
    append_audit_rows(w, "imaging_orders", df)
    w.close()
    del o_pat, o_t, o_code, o_status, o_ind, o_missing, o_dept, fmt_kind, prio, osite, o_prov

    # ---- diagnoses (sorted by time)
    order = np.lexsort((d_pat, d_t))
    d_pat, d_t, d_code, d_date = d_pat[order], d_t[order], d_code[order], d_date[order]
    dk = rng.choice(3, size=d_pat.size, p=[0.9, 0.06, 0.04]).astype(np.int8)
    dk[d_date] = 3
    # the encounter setting of each diagnosis (an optional contract column some audits read)
    d_setting = rng.choice(len(SETTINGS[0]), size=d_pat.size, p=np.asarray(SETTINGS[1]) / sum(SETTINGS[1]))
    w = Writer(out_dir / f"diagnoses.{ext}", fmt)
    for a in range(0, max(d_pat.size, 1), CHUNK):
        sl = slice(a, min(a + CHUNK, d_pat.size))
        df = pl.DataFrame(
            {
                "patient_id": pid(d_pat[sl]),
                "diagnosis_code": gather(dx_codes.codes, d_code[sl]),
                "recorded_at": fmt_instants(d_t[sl], dk[sl], None, tz),
                "setting": gather(SETTINGS[0], d_setting[sl]),
            }
        )
        w.write(df)
    append_audit_rows(w, "diagnoses", df)
    w.close()
    n_d = d_pat.size
    n_d += sum(r.tables["diagnoses"].height for _, r in collected if "diagnoses" in r.tables)
    del d_pat, d_t, d_code, d_date, dk, d_setting

    # ---- local code map: the local codes the audits' scenarios order, then the background's
    local_rows = "".join(getattr(module, "LOCAL_CODE_MAP", "") for _, module in audit_scenarios.scenario_modules())
    local_map = LOCAL_CODE_MAP_HEADER + local_rows + LOCAL_CODE_MAP_BACKGROUND
    (out_dir / "local_code_map.csv").write_text(local_map, encoding="utf-8", newline="")

    # ---- ground truth of the scenarios inside the population: keys become ids
    def pr_id(nums):
        return pl.select(pl.lit("PR") + pl.Series(nums + 1).cast(pl.String).str.zfill(prw))[:, 0]

    def o_id(nums):
        return pl.select(pl.lit("O") + pl.Series(nums + 1).cast(pl.String).str.zfill(ow))[:, 0]

    def ids(kind: str, keys: pl.Series) -> pl.Series:
        k = keys.to_numpy().astype(np.int64)
        if kind == "patient":
            return pid(k)
        return pr_id(proc_num_of_key[k]) if kind == "procedure" else o_id(order_num_of_key[k])

    truth_counts = {}
    summaries = {}
    for (audit_id, module), (_, r) in zip(hooks, parts, strict=True):
        written = {}
        for name, t in r.truth.items():
            frame = t.frame.with_columns([ids(kind, t.frame[col]).alias(col) for col, kind in t.ids.items()]).sort(t.sort)
            frame.write_csv(out_dir / name)
            written[name] = frame
            truth_counts[Path(name).stem] = frame.height
        extra = module.population_summary(r, written, lambda p: pid(p).to_list())
        clash = sorted(set(extra) & set(summaries))
        if clash:
            raise ValueError(f"scenarios of audit {audit_id}: synth.json keys {clash} are another audit's")
        summaries |= extra
    audit_truth = audit_scenarios.write_truth(out_dir, collected)

    summary = {
        "generator": "pipeline.synth",
        "parameters": {
            "patients": N,
            "months": months,
            "seed": seed,
            "start_month": start_month,
            "format": fmt,
            "site_timezone": tz,
            "case_density": case_density,
        },
        "counts": {
            "patients": N,
            "procedures": int(ctx.next_procedure),
            "imaging_orders": int(ctx.next_order),
            "diagnoses": int(n_d),
            **truth_counts,
            "scenario_patients": int(n_scen_pat),
            "audit_scenario_patients": int(ctx.next_patient - N),
        },
        "audit_scenarios": {a: {"ground_truth": audit_truth.get(a, {}), **r.summary} for a, r in collected},
        "audit_ground_truth": audit_truth,
        **summaries,
    }
    (out_dir / "synth.json").write_text(json.dumps(summary, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    return summary
