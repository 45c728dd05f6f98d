"""The same audit in pandas, as a competent analyst would write it.

Vectorised merges, groupbys and masks; no loop over data rows (the loops below run over
the value-set prefixes and over episode *rounds*, a handful each). The same CSV options
as the pipeline: every column read as text (dtype=str), then explicit formats for the
timestamps (`pd.to_datetime(format=...)`), local times read in the site zone (ambiguous
-> the earlier instant, a DST gap -> row rejected). Like the floor, orders and diagnoses
are parsed only for patients with an index procedure.

`audit_counts(input_dir)` returns {(case_index_month, ordering_department, verdict): n},
the counts of the pipeline's mart_audited_orders; `audit_orders()` the per-order verdicts.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.common import COLUMNS, REFERENCE, SITE_TZ, Counts, header, input_file

DAY = 86400.0
WINDOW_DAYS, CONTEXT_DAYS, EVIDENCE_DAYS = 30, 30, 14
PREMATURE_H, EPISODE_H, MIN_AGE = 72, 24, 18
CPT_FORM = r"^[0-9]{4}[0-9A-Z]$"

_OFFSET_FORMATS = ("%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M:%S.%f%z", "%Y-%m-%dT%H:%M%z")
_NAIVE_FORMATS = ("%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M:%S.%f", "%Y-%m-%dT%H:%M")


# ----------------------------------------------------------------------------- reading


def read_table(input_dir: Path, table: str, columns: dict[str, tuple[str, ...]] = COLUMNS) -> pd.DataFrame:
    path = input_file(input_dir, table)
    cols = columns[table]
    if path is None:
        return pd.DataFrame({c: pd.Series(dtype=str) for c in cols})
    have = {h.strip().lower(): h for h in header(path)}
    use = [have[c] for c in cols if c in have]
    if path.suffix == ".parquet":
        df = pd.read_parquet(path, columns=use)
        for c in df.columns:  # typed Parquet columns become text, nulls stay missing
            if not pd.api.types.is_string_dtype(df[c]):
                df[c] = df[c].astype(str).where(df[c].notna())
    else:
        df = pd.read_csv(path, dtype=str, usecols=use, keep_default_na=False, na_values=[""])
    df = df.rename(columns={have[c]: c for c in cols if c in have})
    for c in cols:
        if c not in df.columns:
            df[c] = pd.Series(np.nan, index=df.index, dtype=object)
    return df[list(cols)]


def text(s: pd.Series) -> pd.Series:
    """Trimmed text, empty -> missing."""
    s = s.str.strip()
    return s.where(s != "")


def parse_instants(raw: pd.Series, tz: str = SITE_TZ) -> tuple[pd.Series, pd.Series]:
    """(UTC instant, is bare date) for ISO 8601 text with or without offset."""
    s = text(raw).str.replace(" ", "T", n=1, regex=False).str.replace("Z", "+00:00", regex=False)
    out = pd.Series(pd.NaT, index=s.index, dtype="datetime64[us, UTC]")
    is_date = s.str.len() == 10
    has_offset = s.str.slice(10).str.contains(r"[+-]", regex=True).fillna(False).astype(bool)
    off = s[has_offset]
    for fmt in _OFFSET_FORMATS:
        todo = out.loc[off.index].isna()
        if not todo.any():
            break
        out.loc[todo[todo].index] = pd.to_datetime(off[todo], format=fmt, utc=True, errors="coerce")
    naive_src = s[~has_offset & ~is_date & s.notna()]
    naive = pd.Series(pd.NaT, index=naive_src.index, dtype="datetime64[us]")
    for fmt in _NAIVE_FORMATS:
        todo = naive.isna()
        if not todo.any():
            break
        naive.loc[todo] = pd.to_datetime(naive_src[todo], format=fmt, errors="coerce")
    dates = pd.to_datetime(s[is_date.fillna(False)], format="%Y-%m-%d", errors="coerce").astype("datetime64[us]")
    local = pd.concat([naive, dates])
    if len(local):
        # ambiguous (fall back) -> the earlier instant (daylight time); DST gap -> NaT (rejected)
        utc = local.dt.tz_localize(tz, ambiguous=np.ones(len(local), dtype=bool), nonexistent="NaT").dt.tz_convert("UTC")
        out.loc[utc.index] = utc
    return out, is_date.fillna(False).astype(bool)


def local_date(ts: pd.Series, tz: str = SITE_TZ) -> pd.Series:
    return ts.dt.tz_convert(tz).dt.tz_localize(None).dt.normalize()


def seconds(a: pd.Series, b: pd.Series) -> pd.Series:
    return (a - b).dt.total_seconds()


def read_orders(input_dir: Path, patients: set, tz: str = SITE_TZ) -> pd.DataFrame:
    """The imaging orders of these patients, ordered_at parsed (an unparseable time sets the row aside,
    an empty one stays)."""
    o = read_table(input_dir, "imaging_orders")
    o["patient_id"] = text(o["patient_id"])
    o = o[o["patient_id"].isin(patients)].copy()
    o["order_id"] = text(o["order_id"])
    o["order_code"] = text(o["order_code"]).str.upper()
    o = o.dropna(subset=["order_id", "patient_id", "order_code"])
    o["ordering_department"] = text(o["ordering_department"]).fillna("(not recorded)")
    o["status"] = o["status"].str.strip().str.lower()
    has_ts = text(o["ordered_at"]).notna()
    o["ordered_at"], _ = parse_instants(o["ordered_at"], tz)
    return o[~(has_ts & o["ordered_at"].isna())]


def reference(input_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    vs = pd.read_csv(REFERENCE / "value_sets.csv", dtype=str, keep_default_na=False)
    vs["code_norm"] = vs["code"].str.strip().str.upper().str.replace(".", "", regex=False)
    vs["match"] = vs["match"].str.strip().str.lower()
    maps = []
    for path, rank in ((REFERENCE / "code_map.csv", 0), (Path(input_dir) / "local_code_map.csv", 1)):
        if path.exists():
            m = pd.read_csv(path, dtype=str, keep_default_na=False)
            maps.append(
                pd.DataFrame(
                    {
                        "code": m["code"].str.strip().str.upper(),
                        "study_type": m["study_type"].str.strip().str.lower(),
                        "regions": m["regions"].str.strip().str.upper(),
                        "contrast": m["contrast"].str.strip().str.lower(),
                        "rank": rank,
                    }
                )
            )
    cmap = pd.concat(maps).sort_values(["code", "rank"]).drop_duplicates("code", keep="last").drop(columns="rank")
    return vs, cmap


def in_value_set(codes: pd.Series, vs: pd.DataFrame, value_set: str) -> pd.Series:
    """Dotless codes -> bool: member of the value set (exact or prefix rows)."""
    rows = vs[vs["value_set"] == value_set]
    hit = codes.isin(set(rows.loc[rows["match"] == "exact", "code_norm"]))
    for prefix in rows.loc[rows["match"] == "prefix", "code_norm"]:
        hit |= codes.str.startswith(prefix).fillna(False).astype(bool)
    return hit.fillna(False).astype(bool)


# ----------------------------------------------------------------------------- the audit


def audit_orders(input_dir: Path, tz: str = SITE_TZ) -> pd.DataFrame:
    """One row per audited (case, order): case_index_month, ordering_department, verdict."""
    input_dir = Path(input_dir)
    vs, cmap = reference(input_dir)

    # procedures
    p = read_table(input_dir, "procedures")
    for c in ("procedure_id", "patient_id", "procedure_code"):
        p[c] = text(p[c])
    p["procedure_code"] = p["procedure_code"].str.upper()
    p = p.dropna(subset=["procedure_id", "patient_id", "procedure_code", "performed_at"])
    p["performed_at"], _ = parse_instants(p["performed_at"], tz)
    p = p[p["performed_at"].notna()]
    idx = p[p["procedure_code"].isin(set(vs.loc[vs["value_set"] == "index_procedure", "code_norm"]))].copy()
    idx["local_date"] = local_date(idx["performed_at"], tz)
    birth = pd.to_datetime(text(idx["patient_birth_date"]).str.slice(0, 10), format="%Y-%m-%d", errors="coerce")
    ld = idx["local_date"]
    age_bd = (
        ld.dt.year
        - birth.dt.year
        - ((ld.dt.month < birth.dt.month) | ((ld.dt.month == birth.dt.month) & (ld.dt.day < birth.dt.day))).astype(int)
    )
    age = age_bd.where(birth.notna(), pd.to_numeric(text(idx["patient_age"]), errors="coerce"))
    idx["is_adult"] = (age >= MIN_AGE).fillna(False).astype(bool)
    idx_patients = set(idx["patient_id"])

    o = read_orders(input_dir, idx_patients, tz)

    ind = o[["order_id", "indication_codes"]].dropna()
    ind = ind.assign(code=ind["indication_codes"].str.split("|")).explode("code")
    ind["code"] = ind["code"].str.strip().str.upper().str.replace(".", "", regex=False)
    ind = ind[ind["code"] != ""]
    ind["leak"] = in_value_set(ind["code"], vs, "leak_diagnosis")
    ind["red"] = in_value_set(ind["code"], vs, "red_flag_indication")
    flags = ind.groupby("order_id")[["leak", "red"]].any()

    # leak evidence
    d = read_table(input_dir, "diagnoses")
    d["patient_id"] = text(d["patient_id"])
    d = d[d["patient_id"].isin(idx_patients)].copy()
    d["code"] = text(d["diagnosis_code"]).str.upper().str.replace(".", "", regex=False)
    d = d[in_value_set(d["code"], vs, "leak_diagnosis") & text(d["recorded_at"]).notna()]
    d["evidence_at"], d["is_date"] = parse_instants(d["recorded_at"], tz)
    o_leak = o[o["order_id"].isin(flags.index[flags["leak"]]) & o["ordered_at"].notna()]
    bp = p[
        p["procedure_code"].isin(set(vs.loc[vs["value_set"] == "blood_patch", "code_norm"])) & p["patient_id"].isin(idx_patients)
    ]
    ev = pd.concat(
        [
            d[["patient_id", "evidence_at", "is_date"]],
            pd.DataFrame({"patient_id": o_leak["patient_id"], "evidence_at": o_leak["ordered_at"], "is_date": False}),
            pd.DataFrame({"patient_id": bp["patient_id"], "evidence_at": bp["performed_at"], "is_date": False}),
        ],
        ignore_index=True,
    )
    ev = ev[ev["evidence_at"].notna()]
    ev["evidence_id"] = np.arange(len(ev))
    att = ev.merge(idx[["patient_id", "procedure_id", "performed_at", "local_date"]], on="patient_id")
    att = att[
        (att["performed_at"] <= att["evidence_at"])
        | (att["is_date"].astype(bool) & (att["local_date"] == local_date(att["evidence_at"], tz)))
    ]
    att = att.sort_values(["evidence_id", "performed_at", "procedure_id"], ascending=[True, False, False]).drop_duplicates(
        "evidence_id"
    )
    with_evidence = set(att.loc[seconds(att["evidence_at"], att["performed_at"]) <= EVIDENCE_DAYS * DAY, "procedure_id"])
    cases = idx[idx["is_adult"] & idx["procedure_id"].isin(with_evidence)]
    cases = pd.DataFrame(
        {
            "case_id": cases["procedure_id"],
            "patient_id": cases["patient_id"],
            "index_at": cases["performed_at"],
            "case_index_month": cases["local_date"].dt.strftime("%Y-%m"),
        }
    )

    # auditable orders of case patients
    a = o[o["patient_id"].isin(set(cases["patient_id"]))].merge(
        cmap, how="left", left_on="order_code", right_on="code", indicator=True
    )
    a["is_mapped"] = a["_merge"] == "both"
    a = a[(a["is_mapped"] & (a["study_type"] != "out_of_scope")) | (~a["is_mapped"] & ~a["order_code"].str.match(CPT_FORM))].drop(
        columns=["_merge", "code"]
    )
    a["regions"] = a["regions"].fillna("")
    a["has_red_flag"] = a["order_id"].map(flags["red"]).fillna(False).astype(bool)
    a["is_cancelled"] = a["status"].fillna("") == "cancelled"

    # assign to cases
    timed = a.loc[a["ordered_at"].notna(), ["order_id", "patient_id", "ordered_at"]].merge(cases, on="patient_id")
    dt = seconds(timed["ordered_at"], timed["index_at"])
    timed = timed[(dt >= -CONTEXT_DAYS * DAY) & (dt <= (WINDOW_DAYS + CONTEXT_DAYS) * DAY)].copy()
    dt = seconds(timed["ordered_at"], timed["index_at"])
    timed["in_window"] = (timed["ordered_at"] >= timed["index_at"]) & (dt <= WINDOW_DAYS * DAY)
    timed["rank_key"] = np.where(
        timed["in_window"], -(timed["index_at"] - pd.Timestamp(0, tz="UTC")).dt.total_seconds(), dt.abs()
    )
    timed = timed.sort_values(
        ["order_id", "in_window", "rank_key", "case_id"], ascending=[True, False, True, True]
    ).drop_duplicates("order_id")
    untimed = a.loc[a["ordered_at"].isna(), ["order_id", "patient_id"]].merge(cases, on="patient_id")
    untimed = (
        untimed.sort_values(["order_id", "index_at", "case_id"], ascending=[True, False, False])
        .drop_duplicates("order_id")
        .assign(in_window=np.nan)
    )
    assigned = pd.concat([timed[["order_id", "case_id", "in_window"]], untimed[["order_id", "case_id", "in_window"]]])
    x = assigned.merge(a, on="order_id").merge(cases[["case_id", "index_at", "case_index_month"]], on="case_id")
    x["hours"] = seconds(x["ordered_at"], x["index_at"]) / 3600.0
    in_window = x["in_window"].fillna(False).astype(bool)
    x["is_eligible"] = in_window & x["is_mapped"] & ~x["is_cancelled"] & ~x["has_red_flag"] & x["ordered_at"].notna()

    # anchored episodes: each round takes, per case, the first unassigned order and all within 24 h of it
    e = x[x["is_eligible"]].sort_values(["case_id", "ordered_at", "order_id"]).copy()
    e["episode"] = 0
    rnd = 0
    while (e["episode"] == 0).any():
        rnd += 1
        todo = e["episode"] == 0
        start = e.loc[todo].groupby("case_id")["ordered_at"].transform("min")
        take = seconds(e.loc[todo, "ordered_at"], start) <= EPISODE_H * 3600
        e.loc[take[take].index, "episode"] = rnd
    spine = e["study_type"] == "mri_spine"
    nc = e["contrast"].isin(["without", "without_and_with"])
    ct = e["contrast"].isin(["with", "without_and_with"])
    for r in "CTL":
        has = spine & e["regions"].str.contains(r, regex=False)
        e[f"cov_{r}"], e[f"nc_{r}"], e[f"ct_{r}"] = has, has & nc, has & ct
    g = e.groupby(["case_id", "episode"])
    cov_cols = [f"{k}_{r}" for k in ("cov", "nc", "ct") for r in "CTL"]
    e[cov_cols] = g[cov_cols].transform("any")
    e["complete"] = e["cov_C"] & e["cov_T"] & e["cov_L"]
    complete_nc = e[e["nc_C"] & e["nc_T"] & e["nc_L"]].groupby("case_id")["episode"].min()
    first = e["case_id"].map(complete_nc)
    e["subsequent"] = (first.notna() & (e["episode"] > first)).astype(bool)

    # CT myelography: CT spine "with" on an intrathecal-injection day (order or non-index procedure)
    e["ld"] = local_date(e["ordered_at"], tz)
    inj_codes = set(vs.loc[vs["value_set"] == "intrathecal_injection", "code_norm"])
    inj = e.loc[(e["study_type"] == "myelography_injection") | e["order_code"].isin(inj_codes), ["case_id", "ld"]]
    pinj = p[p["procedure_code"].isin(inj_codes)].merge(cases[["case_id", "patient_id"]], on="patient_id")
    pinj = pinj[pinj["procedure_id"] != pinj["case_id"]]
    inj = pd.concat([inj, pd.DataFrame({"case_id": pinj["case_id"], "ld": local_date(pinj["performed_at"], tz)})])
    inj_days = pd.MultiIndex.from_frame(inj.drop_duplicates())
    ct_with = (e["study_type"] == "ct_spine") & (e["contrast"] == "with")
    ct_days = pd.MultiIndex.from_frame(e.loc[ct_with, ["case_id", "ld"]].drop_duplicates())
    key = pd.MultiIndex.from_frame(e[["case_id", "ld"]])
    st = e["study_type"].copy()
    st[ct_with & key.isin(inj_days)] = "ct_myelography"
    inj_order = e["study_type"] == "myelography_injection"
    st[inj_order] = np.where(key[inj_order.to_numpy()].isin(ct_days), "ct_myelography", "myelography")

    def all_regions(kind: str) -> pd.Series:
        ok = pd.Series(True, index=e.index)
        for r in "CTL":
            ok &= ~e["regions"].str.contains(r, regex=False) | e[f"{kind}_{r}"]
        return ok

    regions_nc, regions_ct = all_regions("nc"), all_regions("ct")
    initial, complete = ~e["subsequent"], e["complete"]
    inappropriate = (
        (e["hours"] < PREMATURE_H)
        | ((st == "mri_spine") & (e["contrast"] == "with") & ~regions_nc)
        | (
            initial
            & (
                ((st == "mri_spine") & ~complete)
                | st.isin(["ct_head", "ct_spine", "ct_myelography", "cisternography", "mr_myelography"])
            )
        )
    )
    review = initial & (
        ((st == "mri_spine") & complete & (e["contrast"] == "without") & ~regions_ct)
        | st.isin(["dsm", "myelography"])
        | ((st == "mri_brain") & ~complete)
    )
    appropriate = (
        e["subsequent"]
        | (initial & (st == "mri_spine") & complete & regions_nc & regions_ct)
        | (initial & (st == "mri_brain") & complete)
    )
    e["verdict"] = np.select([inappropriate, review, appropriate], ["inappropriate", "review", "appropriate"], default="NULL")

    excluded = x["is_cancelled"] | x["has_red_flag"] | (x["ordered_at"].notna() & ~in_window)
    not_eval = ~x["is_mapped"] | x["ordered_at"].isna()
    x["verdict"] = np.select([excluded, not_eval], ["excluded", "not_evaluable"], default="NULL")
    clinical = e.set_index(["case_id", "order_id"])["verdict"]
    judged = x["verdict"] == "NULL"
    x.loc[judged, "verdict"] = (
        pd.MultiIndex.from_frame(x.loc[judged, ["case_id", "order_id"]]).map(clinical).fillna("NULL").to_numpy()
    )
    return x[["case_id", "order_id", "case_index_month", "ordering_department", "verdict"]]


def frame_counts(out: pd.DataFrame) -> Counts:
    """Per-order verdicts counted by (case_index_month, ordering_department, verdict)."""
    g = out.groupby(["case_index_month", "ordering_department", "verdict"]).size()
    return {tuple(map(str, k)): int(n) for k, n in g.items()}


def audit_counts(input_dir: Path, tz: str = SITE_TZ) -> Counts:
    return frame_counts(audit_orders(input_dir, tz))


if __name__ == "__main__":  # python -m benchmarks.pandas_audit INPUT_DIR
    for k, n in sorted(audit_counts(Path(sys.argv[1])).items()):
        print(*k, n, sep="\t")
