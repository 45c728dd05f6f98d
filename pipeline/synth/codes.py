"""The generator's code tables: order, procedure, indication and diagnosis codes with their mix."""

from __future__ import annotations

# Same content as examples/local_code_map.csv (the pipeline reads local_code_map.csv from the input folder).
LOCAL_CODE_MAP_CSV = (
    "code_system,code,study_type,modality,regions,contrast,description,valid_from,valid_to,source\n"
    "LOCAL,LOC-DSM,dsm,XR,CTL,intrathecal,Digital subtraction myelography,2000-01-01,,example only: replace with your site's exam code master\n"  # noqa: E501
    "LOCAL,LOC-CTMYELO,ct_myelography,CT,CTL,intrathecal,Conventional CT myelography,2000-01-01,,example only: replace with your site's exam code master\n"  # noqa: E501
    "LOCAL,LOC-DCTM,ct_myelography,CT,CTL,intrathecal,Dynamic CT myelography,2000-01-01,,example only: replace with your site's exam code master\n"  # noqa: E501
    "LOCAL,LOC-MRMYELO,mr_myelography,MR,CTL,intrathecal,MR myelography with intrathecal gadolinium (off-label),2000-01-01,,example only: replace with your site's exam code master\n"  # noqa: E501
    'LOCAL,LOC-MRSPINE-WWO,mri_spine,MR,CTL,without_and_with,"Local complete-spine MRI protocol, without and with IV contrast",2000-01-01,,example only: replace with your site\'s exam code master\n'  # noqa: E501
    "LOCAL,LOC-XR-CHEST,out_of_scope,XR,,,Chest radiograph (declared non-neuro so it is not reported as unmapped),2000-01-01,,example only: replace with your site's exam code master\n"  # noqa: E501
)

ORDER_NAMES = {
    # non-neuro (not audited)
    "71046": "XR chest 2 views",
    "74177": "CT abdomen and pelvis with contrast",
    "73721": "MRI knee without contrast",
    "72100": "XR lumbar spine 2-3 views",
    "76700": "US abdomen complete",
    "LOC-XR-CHEST": "XR chest (local)",
    "71250": "CT chest without contrast",
    "73030": "XR shoulder",
    # neuro
    "72141": "MRI cervical spine without contrast",
    "72142": "MRI cervical spine with contrast",
    "72156": "MRI cervical spine without and with contrast",
    "72146": "MRI thoracic spine without contrast",
    "72147": "MRI thoracic spine with contrast",
    "72157": "MRI thoracic spine without and with contrast",
    "72148": "MRI lumbar spine without contrast",
    "72149": "MRI lumbar spine with contrast",
    "72158": "MRI lumbar spine without and with contrast",
    "70551": "MRI brain without contrast",
    "70552": "MRI brain with contrast",
    "70553": "MRI brain without and with contrast",
    "70450": "CT head without contrast",
    "72131": "CT lumbar spine without contrast",
    "72132": "CT lumbar spine with contrast",
    "62284": "Injection for myelography and/or CT",
    "62305": "Myelography 2+ regions, injection and imaging",
    "78630": "Radionuclide cisternography",
    "30855-1": "MR C+T+L spine without and with IV contrast",
    "30854-4": "MR C+T+L spine without contrast",
    "LOC-MRSPINE-WWO": "MRI complete spine without and with contrast (local)",
    "LOC-CTMYELO": "CT myelography (local)",
    "LOC-DCTM": "Dynamic CT myelography (local)",
    "LOC-MRMYELO": "MR myelography intrathecal gadolinium (local)",
    "LOC-DSM": "Digital subtraction myelography (local)",
    "LOC-UNKNOWN-7": "Spine special study (local)",
}
ORDER_CODES = list(ORDER_NAMES)
OCODE = {c: i for i, c in enumerate(ORDER_CODES)}

BG_NONNEURO = (
    ["71046", "74177", "73721", "72100", "76700", "LOC-XR-CHEST", "71250", "73030"],
    [0.26, 0.12, 0.10, 0.14, 0.12, 0.08, 0.10, 0.08],
)
BG_NEURO = (
    ["72148", "72158", "72141", "72156", "70551", "70553", "70450", "72131", "72149"],
    [0.25, 0.10, 0.10, 0.05, 0.15, 0.12, 0.15, 0.04, 0.04],
)
NEURO_SHARE = 0.08

PROC_NAMES = {
    "62322": "Interlaminar epidural injection, lumbar/sacral",
    "62323": "Interlaminar epidural injection, lumbar/sacral, imaging guided",
    "64483": "Transforaminal epidural injection, lumbar/sacral",
    "64493": "Facet joint injection, lumbar/sacral",
    "62270": "Diagnostic lumbar puncture",
    "62328": "Diagnostic lumbar puncture, imaging guided",
    "62272": "Therapeutic spinal puncture",
    "62284": "Injection for myelography and/or CT",
    "20610": "Arthrocentesis/injection, major joint",
    "62321": "Interlaminar epidural injection, cervical/thoracic, imaging guided",
    "64490": "Facet joint injection, cervical/thoracic",
    "20552": "Trigger point injection",
    "27096": "Sacroiliac joint injection",
    "64479": "Transforaminal epidural injection, cervical/thoracic",
    "62273": "Epidural blood patch",
}
PROC_CODES = list(PROC_NAMES)
PCODE = {c: i for i, c in enumerate(PROC_CODES)}
CASE_INDEX_CODES = [
    "62322",
    "62323",
    "64483",
    "62270",
    "62328",
    "62272",
    "64493",
]  # no intrathecal injections
BG_PROCS = (
    [
        "62322",
        "62323",
        "64483",
        "64493",
        "62270",
        "62328",
        "62272",
        "62284",
        "20610",
        "62321",
        "64490",
        "20552",
        "27096",
        "64479",
    ],
    [0.12, 0.10, 0.12, 0.06, 0.08, 0.04, 0.02, 0.01, 0.15, 0.10, 0.07, 0.06, 0.04, 0.03],
)
N_BG_INDEX_SHARE = 0.55
PROC_DEPTS = ["pain_management", "anesthesiology", "interventional_radiology", "neurology", "emergency"]
ORDER_DEPTS = [
    "emergency",
    "primary_care",
    "neurology",
    "orthopedics",
    "pain_management",
    "anesthesiology",
    "neurosurgery",
    "internal_medicine",
]
CASE_ORDER_DEPTS = [2, 4, 0, 1, 5]
SITES = ["MAIN_HOSPITAL", "NORTH_CLINIC"]
STATUSES = ["ordered", "scheduled", "completed", "cancelled"]
PRIORITIES = ["routine", "urgent", "stat"]
SETTINGS = (["outpatient", "emergency", "inpatient", "observation", "telehealth"], [0.6, 0.15, 0.15, 0.05, 0.05])

# indication code lists (index into INDICATIONS); text is derived
INDICATIONS = [
    ("", ""),
    ("M54.50", "low back pain"),
    ("R51.9", "headache"),
    ("M54.16", "lumbar radiculopathy"),
    ("R10.9", "abdominal pain"),
    ("R05.9", "cough"),
    ("M25.561", "right knee pain"),
    ("S83.511A", "knee injury"),
    ("R51.9|M54.50", "headache; back pain history"),
    ("J18.9", "pneumonia, follow-up"),
    ("G97.1", "post-dural puncture headache"),
    ("G97.1|R51.9", "positional headache after lumbar puncture"),
    ("G06.1", "suspected spinal epidural abscess"),
    ("G06.1|M54.50", "suspected epidural abscess; back pain"),
    ("G83.4", "cauda equina symptoms"),
]
IND = {c: i for i, (c, _) in enumerate(INDICATIONS)}
BG_IND_NONNEURO = (
    [IND[""], IND["R10.9"], IND["R05.9"], IND["M25.561"], IND["S83.511A"], IND["J18.9"], IND["M54.50"]],
    [0.35, 0.15, 0.15, 0.12, 0.05, 0.08, 0.10],
)
BG_IND_NEURO = (
    [IND[""], IND["M54.50"], IND["R51.9"], IND["M54.16"], IND["R51.9|M54.50"], IND["G06.1"], IND["G83.4"]],
    [0.25, 0.25, 0.2, 0.15, 0.1, 0.03, 0.02],
)

# No low back pain code among the background diagnoses: a back-pain episode is a case of an audit, and
# the audits' own scenario patients carry them (with exact ground truth); cervical codes stand in.
BG_DIAGNOSES = (
    [
        "M54.2",
        "M54.12",
        "M50.20",
        "M48.02",
        "I10",
        "E11.9",
        "J45.909",
        "R51.9",
        "F41.1",
        "K21.9",
        "M17.11",
        "Z00.00",
    ],
    [0.14, 0.08, 0.05, 0.04, 0.15, 0.12, 0.06, 0.08, 0.07, 0.08, 0.06, 0.07],
)
LEAK_DX_CODES = ["G97.1", "G97.0", "G96.00", "G96.811", "R51.0", "G97.84"]
LEAK_CODES_ALL = {
    "G97.0",
    "G97.1",
    "G96.00",
    "G96.01",
    "G96.02",
    "G96.08",
    "G96.09",
    "G96.810",
    "G96.811",
    "G96.819",
    "G97.84",
    "R51.0",
}

REGISTRY = [
    "cancelled",
    "red_flag_indication",
    "outside_window",
    "unmapped_code",
    "missing_time",
    "premature",
    "contrast_only",
    "wrong_region",
    "ct_initial",
    "ct_myelography_initial",
    "cisternography_initial",
    "mr_myelography_initial",
    "noncontrast_only",
    "dsm_initial",
    "brain_only_initial",
    "mri_complete_spine_wwo",
    "brain_mri_companion",
    "subsequent_after_mri",
]
