"""Deterministic synthetic extract with exact ground truth.

`generate()` writes the three input tables (procedures, imaging_orders, diagnoses),
the site's local code map, and the ground truth of the audit (which orders the audit
must list, with verdict and reasons) for a synthetic population.

How the truth stays exact: the population is split in two.

* Background patients get random procedures, orders and diagnoses drawn without any
  leak evidence (no leak diagnosis, no blood patch 62273, no leak indication code), so
  none of them is ever a case and none of their orders is audited.
* Scenario patients each play one entry of `SCENARIOS`: a hand-written timeline of
  procedures, diagnoses and orders relative to the index procedure, with the verdict
  and reasons that the audit's DESIGN.md gives each order. They also receive random
  non-neuro orders (CPT codes not in the imaging map, or the local out_of_scope code),
  which the audit never lists.

Everything is built as numpy columns (loops run over the scenario catalogue only),
then sorted by time, numbered, and written in chunks, so 2M patients / 10M orders fit
in about a minute and a few GB.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl

from pipeline.months import shift as shift_month
from pipeline.synth import audit_scenarios
from pipeline.synth.codes import (
    BG_DIAGNOSES,
    BG_IND_NEURO,
    BG_IND_NONNEURO,
    BG_NEURO,
    BG_NONNEURO,
    BG_PROCS,
    CASE_INDEX_CODES,
    CASE_ORDER_DEPTS,
    IND,
    INDICATIONS,
    LEAK_DX_CODES,
    LOCAL_CODE_MAP_CSV,
    N_BG_INDEX_SHARE,
    NEURO_SHARE,
    OCODE,
    ORDER_CODES,
    ORDER_DEPTS,
    ORDER_NAMES,
    PCODE,
    PRIORITIES,
    PROC_CODES,
    PROC_DEPTS,
    PROC_NAMES,
    SETTINGS,
    SITES,
    STATUSES,
)
from pipeline.synth.columns import CHUNK, Writer, fmt_instants, gather, null_where, pick, to_utc_seconds, transitions
from pipeline.synth.scenarios import SCENARIOS, H


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

    ``case_density`` multiplies the number of leak work-ups (cases): 1 gives about 0.2% of orders
    audited, 5 about 1.2% (the case-dense benchmark scale, a busy leak clinic).
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

    # ---- scenario instance counts
    case_scen = [s for s in SCENARIOS if s.cases]
    nc_scen = [s for s in SCENARIOS if not s.cases]
    n_case_target = max(len(case_scen), int(round(N * 0.5 * N_BG_INDEX_SHARE * 0.015 * case_density)))
    n_nc_target = max(len(nc_scen), int(round(N * 0.001)))
    guarantee = N >= 2000 or (len(SCENARIOS) * 4 <= N)
    counts = {}
    for group, target in ((case_scen, n_case_target), (nc_scen, n_nc_target)):
        w = np.array([s.weight for s in group], dtype=float)
        if guarantee:
            extra = rng.multinomial(target - len(group), w / w.sum())
            c = extra + 1
        else:
            c = rng.multinomial(max(0, min(target, N // 20)), w / w.sum())
        for s, k in zip(group, c, strict=True):
            counts[s.name] = int(k)
    n_scen_pat = sum(counts.values())
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

    # ---- scenario rows (numpy column lists)
    P_cols = {k: [] for k in ("pat", "t", "code", "key")}
    O_cols = {k: [] for k in ("pat", "t", "code", "status", "ind", "missing", "dept", "prov", "gt")}
    n_order_providers = max(50, N // 400)
    Dg_cols = {k: [] for k in ("pat", "t", "code", "date_only")}
    gt_rows = []  # (order_row_keys, case_proc_keys, verdict, reasons)
    gt_case = []  # (proc_keys, patient_idx, scenario)
    DX_CODES = LEAK_DX_CODES + BG_DIAGNOSES[0]
    DXI = {c: i for i, c in enumerate(DX_CODES)}
    n_proc_s = 0
    n_order_s = 0
    nc_examples = {}
    pos = 0
    span = end_local - start_local
    lo_idx = start_local + 31 * day if span > 120 * day else start_local
    hi_idx = end_local - 75 * day if span > 120 * day else max(start_local + day, end_local - 5 * day)
    for s in SCENARIOS:
        k = counts[s.name]
        if k == 0:
            continue
        pats = scen_pat_all[pos : pos + k]
        pos += k
        # index time
        if s.timing == "random":
            local_day = rng.integers(lo_idx, hi_idx, k) // day * day  # local midnight (naive seconds)
            loc = local_day + rng.integers(7 * 60, 14 * 60, k) * 60
            t0 = to_utc_seconds(loc, tz)
        elif s.timing in ("dst_spring", "dst_fall"):
            tr = np.array(spring if s.timing == "dst_spring" else fall, dtype=np.int64)
            tr_pick = tr[rng.integers(0, tr.size, k)]
            # local date of the transition (naive seconds): convert UTC -> local wall clock
            loc_tr = (
                pl.from_epoch(pl.Series(tr_pick), "s")
                .dt.replace_time_zone("UTC")
                .dt.convert_time_zone(tz)
                .dt.replace_time_zone(None)
                .dt.epoch("s")
                .to_numpy()
            )
            loc = (loc_tr // day - rng.integers(1, 3, k)) * day + rng.integers(7 * 60, 14 * 60, k) * 60
            t0 = to_utc_seconds(loc, tz)
        else:  # dst_fall_amb: orders in the second pass of the repeated hour
            tr = np.array(fall, dtype=np.int64)
            t0 = tr[rng.integers(0, tr.size, k)] + 20 * 60 - 100 * H
        jit = rng.integers(0, 3, k) * day + rng.integers(0, 120, k) * 60
        if s.age == "teen":
            birth[pats] = t0 // day - (rng.uniform(16.2, 16.8, k) * 365.25).astype(np.int64)
        else:
            birth[pats] = t0 // day - (rng.uniform(19, 85, k) * 365.25).astype(np.int64)
        if s.age == "unknown":
            birth_known[pats] = False
        if not s.cases:
            nc_examples[s.name] = [int(p) + 1 for p in pats[:3]]
        proc_keys = {}
        for p in s.procs:
            code = (
                np.array([PCODE[c] for c in CASE_INDEX_CODES])[rng.integers(0, len(CASE_INDEX_CODES), k)]
                if p.code is None
                else np.full(k, PCODE[p.code])
            )
            keys = np.arange(n_proc_s, n_proc_s + k)
            n_proc_s += k
            proc_keys[p.label] = keys
            P_cols["pat"].append(pats)
            P_cols["t"].append(t0 + int(round(p.h * H)))
            P_cols["code"].append(code)
            P_cols["key"].append(keys)
        for lab in s.cases:
            gt_case.append((proc_keys[lab], pats, s.name))
        for d in s.dx:
            Dg_cols["pat"].append(pats)
            Dg_cols["t"].append(t0 + int(round(d.h * H)))
            Dg_cols["code"].append(np.full(k, DXI[d.code]))
            Dg_cols["date_only"].append(np.full(k, d.date_only))
        default_ind = IND["G97.1|R51.9"] if s.evidence_in_orders else IND["R51.9|M54.50"]
        # one ordering clinician and department per patient's work-up: a complete spine ordered as
        # C + T + L within minutes comes from one person, as it does in a hospital
        pat_dept = np.array(CASE_ORDER_DEPTS)[rng.integers(0, len(CASE_ORDER_DEPTS), k)]
        pat_prov = rng.integers(1, n_order_providers + 1, k)
        for o in s.orders:
            keys = np.arange(n_order_s, n_order_s + k)
            n_order_s += k
            O_cols["pat"].append(pats)
            O_cols["t"].append(t0 + int(round(o.h * H)) + (jit if o.j else 0))
            O_cols["code"].append(np.full(k, OCODE[o.code]))
            O_cols["status"].append(np.full(k, STATUSES.index(o.status)))
            O_cols["ind"].append(np.full(k, default_ind if o.ind is None else IND[o.ind]))
            O_cols["missing"].append(np.full(k, o.missing))
            O_cols["dept"].append(pat_dept)
            O_cols["prov"].append(pat_prov)
            O_cols["gt"].append(keys)
            if o.verdict is not None:
                gt_rows.append((keys, proc_keys[o.case], o.verdict, o.reasons))

    def cat(lst, dtype=np.int64):
        return np.concatenate(lst).astype(dtype) if lst else np.zeros(0, dtype)

    # ---- background procedures
    n_proc_total = int(round(0.5 * N))
    n_bg_p = max(0, n_proc_total - n_proc_s)
    bgp_pat = bg_pat[rng.integers(0, bg_pat.size, n_bg_p)] if bg_pat.size else np.zeros(0, np.int64)
    bg_codes = np.array([PCODE[c] for c in BG_PROCS[0]])
    bgp_code = bg_codes[pick(rng, BG_PROCS, n_bg_p)]
    bgp_t = rng.integers(t_lo, t_hi, n_bg_p)
    pr_pat = np.concatenate([cat(P_cols["pat"]), bgp_pat])
    pr_t = np.concatenate([cat(P_cols["t"]), bgp_t])
    pr_code = np.concatenate([cat(P_cols["code"]), bgp_code])
    pr_key = np.concatenate([cat(P_cols["key"]), np.full(n_bg_p, -1)])
    n_pr = pr_pat.size

    index_codes = {PCODE[c] for c in BG_PROCS[0][:8]}
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
    nonneuro_codes = np.array([OCODE[c] for c in BG_NONNEURO[0]])
    neuro_codes = np.array([OCODE[c] for c in BG_NEURO[0]])
    bgo_code = nonneuro_codes[pick(rng, BG_NONNEURO, n_bg_o)]
    if nn:
        bgo_code[is_neuro] = neuro_codes[pick(rng, BG_NEURO, nn)]
    bgo_ind = np.array(BG_IND_NONNEURO[0])[pick(rng, BG_IND_NONNEURO, n_bg_o)]
    if nn:
        bgo_ind[is_neuro] = np.array(BG_IND_NEURO[0])[pick(rng, BG_IND_NEURO, nn)]
    bgo_status = rng.choice(4, size=n_bg_o, p=[0.12, 0.10, 0.70, 0.08])
    bgo_t = rng.integers(t_lo, t_hi, n_bg_o)
    bgo_dept = rng.integers(0, len(ORDER_DEPTS), n_bg_o)
    bgo_prov = rng.integers(1, n_order_providers + 1, n_bg_o)
    del is_neuro
    o_pat = np.concatenate([cat(O_cols["pat"]), bgo_pat])
    del bgo_pat
    o_t = np.concatenate([cat(O_cols["t"]), bgo_t])
    del bgo_t
    o_code = np.concatenate([cat(O_cols["code"]), bgo_code]).astype(np.int16)
    del bgo_code
    o_status = np.concatenate([cat(O_cols["status"]), bgo_status]).astype(np.int8)
    del bgo_status
    o_ind = np.concatenate([cat(O_cols["ind"]), bgo_ind]).astype(np.int16)
    del bgo_ind
    o_missing = np.concatenate([cat(O_cols["missing"], bool), np.zeros(n_bg_o, bool)])
    o_dept = np.concatenate([cat(O_cols["dept"]), bgo_dept]).astype(np.int8)
    o_prov = np.concatenate([cat(O_cols["prov"]), bgo_prov]).astype(np.int32)
    del bgo_dept, bgo_prov
    o_key = np.concatenate([cat(O_cols["gt"]), np.full(n_bg_o, -1)])
    n_o = o_pat.size

    # ---- background diagnoses
    n_bg_d = int(round(0.6 * N))
    bgd_pat = rng.integers(0, N, n_bg_d)
    bgd_code = np.array([DXI[c] for c in BG_DIAGNOSES[0]])[pick(rng, BG_DIAGNOSES, n_bg_d)]
    bgd_t = rng.integers(t_lo, t_hi, n_bg_d)
    bgd_date = rng.random(n_bg_d) < 0.1
    d_pat = np.concatenate([cat(Dg_cols["pat"]), bgd_pat])
    d_t = np.concatenate([cat(Dg_cols["t"]), bgd_t])
    d_code = np.concatenate([cat(Dg_cols["code"]), bgd_code])
    d_date = np.concatenate([cat(Dg_cols["date_only"], bool), bgd_date])

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
    spinal = ~np.isin(pr_code, [PCODE["20610"], PCODE["20552"], PCODE["27096"]])
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
                "procedure_code": gather(PROC_CODES, pr_code[sl]),
                "procedure_name": gather([PROC_NAMES[c] for c in PROC_CODES], pr_code[sl]),
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
    ind_codes = [c for c, _ in INDICATIONS]
    ind_text = [t for _, t in INDICATIONS]
    order_names = [ORDER_NAMES[c] for c in ORDER_CODES]
    w = Writer(out_dir / f"imaging_orders.{ext}", fmt)
    for a in range(0, max(n_o, 1), CHUNK):
        sl = slice(a, min(a + CHUNK, n_o))
        df = pl.DataFrame(
            {
                "order_id": pl.select(pl.lit("O") + pl.int_range(sl.start + 1, sl.stop + 1).cast(pl.String).str.zfill(ow))[:, 0],
                "patient_id": pid(o_pat[sl]),
                "ordered_at": fmt_instants(o_t[sl], fmt_kind[sl], o_missing[sl], tz),
                "order_code": gather(ORDER_CODES, o_code[sl]),
                "order_name": gather(order_names, o_code[sl]),
                "ordering_department": gather(ORDER_DEPTS, o_dept[sl]),
                "ordering_provider_id": pl.select(pl.lit("DR") + pl.Series(o_prov[sl]).cast(pl.String).str.zfill(5))[:, 0],
                "indication_codes": gather(ind_codes, o_ind[sl]),
                "indication_text": gather(ind_text, o_ind[sl]),
                "status": gather(STATUSES, o_status[sl]),
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
                "diagnosis_code": gather(DX_CODES, d_code[sl]),
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

    # ---- local code map
    (out_dir / "local_code_map.csv").write_text(LOCAL_CODE_MAP_CSV, encoding="utf-8", newline="")

    # ---- ground truth
    def pr_id(nums):
        return pl.select(pl.lit("PR") + pl.Series(nums + 1).cast(pl.String).str.zfill(prw))[:, 0]

    if gt_rows:
        gt = pl.DataFrame(
            {
                "order_id": pl.concat(
                    [
                        pl.select(pl.lit("O") + pl.Series(order_num_of_key[k] + 1).cast(pl.String).str.zfill(ow))[:, 0]
                        for k, _, _, _ in gt_rows
                    ]
                ),
                "case_id": pl.concat([pr_id(proc_num_of_key[c]) for _, c, _, _ in gt_rows]),
                "verdict": pl.Series([v for k, _, v, _ in gt_rows for _ in range(k.size)], dtype=pl.String),
                "reasons": pl.Series([r for k, _, _, r in gt_rows for _ in range(k.size)], dtype=pl.String),
            }
        ).sort("order_id")
    else:
        gt = pl.DataFrame(schema={"order_id": pl.String, "case_id": pl.String, "verdict": pl.String, "reasons": pl.String})
    gt.write_csv(out_dir / "ground_truth_orders.csv")
    if gt_case:
        gc = pl.DataFrame(
            {
                "case_id": pl.concat([pr_id(proc_num_of_key[k]) for k, _, _ in gt_case]),
                "patient_id": pl.concat([pid(p) for _, p, _ in gt_case]),
                "scenario": pl.Series([s for k, _, s in gt_case for _ in range(k.size)], dtype=pl.String),
            }
        ).sort("case_id")
    else:
        gc = pl.DataFrame(schema={"case_id": pl.String, "patient_id": pl.String, "scenario": pl.String})
    gc.write_csv(out_dir / "ground_truth_cases.csv")
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
            "ground_truth_orders": gt.height,
            "ground_truth_cases": gc.height,
            "scenario_patients": int(n_scen_pat),
            "audit_scenario_patients": int(ctx.next_patient - N),
        },
        "audit_scenarios": {a: {"ground_truth": audit_truth.get(a, {}), **r.summary} for a, r in collected},
        "audit_ground_truth": audit_truth,
        "verdicts": dict(sorted(gt.group_by("verdict").len().iter_rows())) if gt.height else {},
        "scenarios": {s.name: {"instances": counts[s.name], "is_case": bool(s.cases), "note": s.note} for s in SCENARIOS},
        "noncase_example_patients": {k: [f"P{str(v).zfill(pw)}" for v in vs] for k, vs in nc_examples.items()},
    }
    (out_dir / "synth.json").write_text(json.dumps(summary, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    return summary
