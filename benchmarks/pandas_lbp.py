"""The low back pain audit in pandas, as a competent analyst would write it.

Written from DOMAIN-LOW-BACK-PAIN.md and audits/low_back_pain/DESIGN.md like the floor
(floor_lbp.sql), with the reading and time helpers of the CSF-leak version (pandas_audit.py):
every column read as text, explicit timestamp formats, site-local calendar days. Vectorised
merges and masks; the only loops run over prefix lengths of the value sets. Only patients with
a low back pain diagnosis are parsed any further, as in the floor.

`audit_orders(input_dir)` returns one row per audited order: case_id (the episode's index date),
order_id, case_index_month, ordering_department, verdict; `audit_counts()` counts them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.common import LBP_COLUMNS, LBP_REFERENCE, ROOT, SITE_TZ, Counts, header, input_file
from benchmarks.pandas_audit import CPT_FORM, frame_counts, local_date, parse_instants, read_orders, read_table, text

MIN_AGE, MAX_AGE = 18, 75
HISTORY_DAYS, EARLY_DAYS, WINDOW_DAYS, RED_FLAG_AFTER_DAYS = 180, 28, 42, 28
LOOKBACK_DAYS = {"trauma": 90}
LOOKBACK_MONTHS = dict.fromkeys(
    ("iv_drug_use", "neurological", "spinal_infection", "steroids", "osteoporosis", "palliative_care"), 12
)  # every other group: any time before
INDEX_SETTINGS = ("outpatient", "emergency", "observation", "telehealth")
LUMBAR_STUDY_TYPES = ("xr_spine", "ct_spine", "mri_spine")
BOOLEANS = {**dict.fromkeys(("true", "t", "yes", "y", "1"), True), **dict.fromkeys(("false", "f", "no", "n", "0"), False)}


# ----------------------------------------------------------------------------- reference


def value_sets() -> pd.DataFrame:
    vs = pd.read_csv(LBP_REFERENCE / "value_sets.csv", dtype=str, keep_default_na=False)
    return pd.DataFrame(
        {
            "value_set": vs["value_set"].str.strip(),
            "code_norm": vs["code"].str.strip().str.upper().str.replace(".", "", regex=False),
            "match": vs["match"].str.strip().str.lower(),
            "valid_from": pd.to_datetime(vs["valid_from"].str.strip(), format="%Y-%m-%d", errors="coerce"),
            "valid_to": pd.to_datetime(vs["valid_to"].str.strip(), format="%Y-%m-%d", errors="coerce"),
        }
    )


def code_map(input_dir: Path) -> pd.DataFrame:
    """One merged map: every audit's code_map.csv, the site's local_code_map.csv over it."""
    shipped = [pd.read_csv(p, dtype=str, keep_default_na=False) for p in sorted((ROOT / "audits").glob("*/code_map.csv"))]
    local = Path(input_dir) / "local_code_map.csv"
    maps = [pd.concat(shipped).assign(rank=0)]
    if local.exists():
        maps.append(pd.read_csv(local, dtype=str, keep_default_na=False).assign(rank=1))
    m = pd.concat(maps)
    m = pd.DataFrame(
        {
            "code": m["code"].str.strip().str.upper(),
            "study_type": m["study_type"].str.strip().str.lower(),
            "regions": m["regions"].fillna("").str.strip().str.upper(),
            "rank": m["rank"],
        }
    )
    return m.sort_values(["code", "rank"]).drop_duplicates("code", keep="last").drop(columns="rank")


def code_matches(codes: pd.Series, vs: pd.DataFrame) -> pd.DataFrame:
    """(row, value_set, valid_from, valid_to) for each value-set row a dotless code matches (exact or prefix)."""
    frame = pd.DataFrame({"row": codes.index, "code": codes.to_numpy()}).dropna()
    parts = [frame.merge(vs[vs["match"] == "exact"], left_on="code", right_on="code_norm")]
    prefixes = vs[vs["match"] == "prefix"]
    for n in sorted(prefixes["code_norm"].str.len().unique()):
        rows = prefixes[prefixes["code_norm"].str.len() == n]
        parts.append(frame.assign(key=frame["code"].str.slice(0, n)).merge(rows, left_on="key", right_on="code_norm"))
    return pd.concat(parts, ignore_index=True)[["row", "value_set", "valid_from", "valid_to"]]


def rows_of(values: pd.Series, m: pd.DataFrame) -> pd.Series:
    """values at the matches' rows, aligned with the matches (empty inputs included)."""
    return pd.Series(values.reindex(m["row"]).to_numpy(), index=m.index)


def in_force(m: pd.DataFrame, day: pd.Series) -> pd.Series:
    """The value-set row is in force on the day (a missing day: any row is)."""
    return day.isna() | ((m["valid_from"].isna() | (day >= m["valid_from"])) & (m["valid_to"].isna() | (day <= m["valid_to"])))


def dotless(s: pd.Series) -> pd.Series:
    return text(s).str.upper().str.replace(".", "", regex=False)


# ----------------------------------------------------------------------------- the audit


def episodes(input_dir: Path, dx: pd.DataFrame, vs: pd.DataFrame, tz: str) -> pd.DataFrame:
    """Cases: new low back pain episodes of patients aged 18-75 (patient_id, index_date)."""
    m = code_matches(dx["code"], vs[vs["value_set"] == "lbp_uncomplicated"])
    lbp = dx.loc[m["row"].unique()].copy()
    lbp["day"] = local_date(parse_instants(lbp["recorded_at"], tz)[0], tz)
    day = rows_of(lbp["day"], m)
    m = m[in_force(m, day) & day.notna()]
    lbp = lbp.loc[m["row"].unique()]

    path = input_file(input_dir, "diagnoses")
    cols = {h.strip().lower() for h in header(path)} if path else set()
    eligible = pd.Series(True, index=lbp.index)
    if {"is_principal", "diagnosis_rank"} & cols:
        principal = text(lbp["is_principal"]).str.lower().map(BOOLEANS)
        rank = pd.to_numeric(text(lbp["diagnosis_rank"]), errors="coerce")
        by_rank = (rank == 1).where(rank.notna())  # is_principal decides; an empty position is not principal
        eligible &= principal.where(principal.notna(), by_rank).fillna(False).astype(bool)
    if "setting" in cols:
        eligible &= text(lbp["setting"]).str.lower().isin(INDEX_SETTINGS)

    cand = lbp.loc[eligible, ["patient_id", "day"]].drop_duplicates()
    hist = cand.merge(lbp[["patient_id", "day"]].rename(columns={"day": "h"}), on="patient_id")
    recurrent = hist[(hist["h"] < hist["day"]) & (hist["h"] >= hist["day"] - pd.Timedelta(days=HISTORY_DAYS))]
    new = cand.merge(recurrent[["patient_id", "day"]].drop_duplicates(), how="left", indicator=True)
    new = new.loc[new["_merge"] == "left_only", ["patient_id", "day"]].rename(columns={"day": "index_date"})

    # age: patients.birth_date, else the procedures' birth date when they agree, else patient_age on the index date
    lbp_patients = set(new["patient_id"])
    pat = read_table(input_dir, "patients", LBP_COLUMNS)
    pat = pat[text(pat["patient_id"]).isin(lbp_patients)]
    pat_birth = pd.DataFrame(
        {
            "patient_id": text(pat["patient_id"]),
            "pat_birth": pd.to_datetime(text(pat["birth_date"]).str.slice(0, 10), format="%Y-%m-%d", errors="coerce"),
        }
    ).dropna()
    pr = read_table(input_dir, "procedures", LBP_COLUMNS)
    pr["patient_id"] = text(pr["patient_id"])
    pr = pr[pr["patient_id"].isin(lbp_patients)].copy()
    pr["birth"] = pd.to_datetime(text(pr["patient_birth_date"]).str.slice(0, 10), format="%Y-%m-%d", errors="coerce")
    births = pr.dropna(subset=["birth"]).groupby("patient_id")["birth"].agg(["nunique", "min"])
    proc_birth = births.loc[births["nunique"] == 1, "min"].rename("proc_birth").reset_index()
    pr["age"] = pd.to_numeric(text(pr["patient_age"]), errors="coerce")
    pr["day"] = local_date(parse_instants(pr["performed_at"], tz)[0], tz)
    ages = pr.dropna(subset=["age", "day"]).groupby(["patient_id", "day"])["age"].agg(["nunique", "min"])
    proc_age = ages.loc[ages["nunique"] == 1, "min"].rename("proc_age").reset_index()

    new = new.merge(pat_birth, how="left", on="patient_id").merge(proc_birth, how="left", on="patient_id")
    new = new.merge(proc_age, how="left", left_on=["patient_id", "index_date"], right_on=["patient_id", "day"])
    d, b = new["index_date"], new["pat_birth"].where(new["pat_birth"].notna(), new["proc_birth"])
    before_birthday = (d.dt.month < b.dt.month) | ((d.dt.month == b.dt.month) & (d.dt.day < b.dt.day))
    age = (d.dt.year - b.dt.year - before_birthday.astype(int)).where(b.notna(), new["proc_age"])
    return new.loc[(age >= MIN_AGE) & (age <= MAX_AGE), ["patient_id", "index_date"]].reset_index(drop=True)


def complicated(cases: pd.DataFrame, evidence: pd.DataFrame) -> pd.Series:
    """Per case row: some red-flag evidence lies in its group's window."""
    x = cases.reset_index(names="case").merge(evidence, on="patient_id")
    lower = pd.Series(pd.Timestamp.min, index=x.index)
    for grp, days in LOOKBACK_DAYS.items():
        sel = x["grp"] == grp
        lower[sel] = x.loc[sel, "index_date"] - pd.Timedelta(days=days)
    months = x["grp"].isin(list(LOOKBACK_MONTHS))
    lower[months] = x.loc[months, "index_date"] - pd.DateOffset(months=12)  # calendar months, month ends clamped
    hit = (x["day"] >= lower) & (x["day"] <= x["index_date"] + pd.Timedelta(days=RED_FLAG_AFTER_DAYS))
    return cases.index.isin(x.loc[hit, "case"])


def audit_orders(input_dir: Path, tz: str = SITE_TZ) -> pd.DataFrame:
    """One row per audited order: case_id (index date), order_id, case_index_month, ordering_department, verdict."""
    input_dir = Path(input_dir)
    vs = value_sets()
    red = vs[vs["value_set"].str.startswith("red_flag_")].assign(grp=lambda v: v["value_set"].str.slice(9))

    dx = read_table(input_dir, "diagnoses", LBP_COLUMNS)
    dx["patient_id"] = text(dx["patient_id"])
    dx["code"] = dotless(dx["diagnosis_code"])
    dx = dx[dx["patient_id"].notna() & text(dx["recorded_at"]).notna()].reset_index(drop=True)
    cases = episodes(input_dir, dx, vs, tz)
    case_patients = set(cases["patient_id"])

    # orders of case patients
    o = read_orders(input_dir, case_patients, tz).reset_index(drop=True)
    o["day"] = local_date(o["ordered_at"], tz)

    # red flags: indications of any order (an untimed one's codes match ignoring the dates) and diagnoses
    ind = o[["order_id", "patient_id", "day", "indication_codes"]].dropna(subset=["indication_codes"])
    ind = ind.assign(code=ind["indication_codes"].str.split("|")).explode("code").reset_index(drop=True)
    ind["code"] = dotless(ind["code"])
    m = code_matches(ind["code"], red)
    m = m[in_force(m, rows_of(ind["day"], m))].merge(red[["value_set", "grp"]].drop_duplicates(), on="value_set")
    ind_flags = ind.loc[m["row"], ["order_id", "patient_id", "day"]].assign(grp=m["grp"].to_numpy())
    dxc = dx[dx["patient_id"].isin(case_patients)].copy()
    dxc["day"] = local_date(parse_instants(dxc["recorded_at"], tz)[0], tz)
    dxc = dxc[dxc["day"].notna()]
    m = code_matches(dxc["code"], red)
    m = m[in_force(m, rows_of(dxc["day"], m))].merge(red[["value_set", "grp"]].drop_duplicates(), on="value_set")
    evidence = pd.concat(
        [
            dxc.loc[m["row"], ["patient_id", "day"]].assign(grp=m["grp"].to_numpy()),
            ind_flags.loc[ind_flags["day"].notna(), ["patient_id", "day", "grp"]],
        ],
        ignore_index=True,
    )
    cases["complicated"] = complicated(cases, evidence)

    # audited orders: lumbar imaging, or a code in no map and not in CPT form
    cmap = code_map(input_dir)
    a = o.merge(cmap, how="left", left_on="order_code", right_on="code", indicator=True)
    a["is_mapped"] = a["_merge"] == "both"
    lumbar = a["study_type"].isin(LUMBAR_STUDY_TYPES) & (
        a["regions"].fillna("").str.contains("L", regex=False) | a["regions"].fillna("").str.contains("S", regex=False)
    )
    a = a[lumbar | (~a["is_mapped"] & ~a["order_code"].str.match(CPT_FORM))].drop(columns=["_merge", "code"])

    # a dated order: the most recent episode with it on days 0-42; an untimed one: the most recent episode
    x = a.merge(cases, on="patient_id")
    x["days"] = (x["day"] - x["index_date"]).dt.days
    x = x[x["day"].isna() | ((x["days"] >= 0) & (x["days"] <= WINDOW_DAYS))]
    x = x.sort_values(["order_id", "index_date"], ascending=[True, False]).drop_duplicates("order_id")

    excluded = (x["status"].fillna("") == "cancelled") | x["complicated"] | x["order_id"].isin(set(ind_flags["order_id"]))
    not_evaluable = ~x["is_mapped"] | x["day"].isna()
    verdict = np.select(
        [excluded, not_evaluable, x["days"] <= EARLY_DAYS], ["excluded", "not_evaluable", "inappropriate"], default="appropriate"
    )
    return pd.DataFrame(
        {
            "case_id": x["index_date"].dt.strftime("%Y-%m-%d"),
            "order_id": x["order_id"],
            "case_index_month": x["index_date"].dt.strftime("%Y-%m"),
            "ordering_department": x["ordering_department"],
            "verdict": verdict,
        }
    )


def audit_counts(input_dir: Path, tz: str = SITE_TZ) -> Counts:
    return frame_counts(audit_orders(input_dir, tz))
