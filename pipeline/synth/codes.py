"""The generator's code tables: a hospital's background mix of order, procedure, indication and diagnosis codes.

An audit's scenarios add the codes only they use (with their text): audits/<id>/scenarios.py."""

from __future__ import annotations

# The site's local code map (local_code_map.csv in the input folder); the audits' scenarios add the
# local codes they order (their LOCAL_CODE_MAP rows).
LOCAL_CODE_MAP_HEADER = "code_system,code,study_type,modality,regions,contrast,description,valid_from,valid_to,source\n"
LOCAL_CODE_MAP_BACKGROUND = (  # the background's own local code, after the audits' rows
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
    # neuro (the background's share: NEURO_SHARE)
    "72141": "MRI cervical spine without contrast",
    "72156": "MRI cervical spine without and with contrast",
    "72148": "MRI lumbar spine without contrast",
    "72149": "MRI lumbar spine with contrast",
    "72158": "MRI lumbar spine without and with contrast",
    "70551": "MRI brain without contrast",
    "70553": "MRI brain without and with contrast",
    "70450": "CT head without contrast",
    "72131": "CT lumbar spine without contrast",
}

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
}
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
# Background patients with one of these procedures (lumbar injections and punctures) get no background
# imaging of the neuro mix: the imaging after such a procedure is what scenarios write, with its truth.
NO_NEURO_AFTER = BG_PROCS[0][:8]
WITHOUT_NEEDLE = ["20610", "20552", "27096"]  # procedures written without the needle columns
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
SITES = ["MAIN_HOSPITAL", "NORTH_CLINIC"]
STATUSES = ["ordered", "scheduled", "completed", "cancelled"]
PRIORITIES = ["routine", "urgent", "stat"]
SETTINGS = (["outpatient", "emergency", "inpatient", "observation", "telehealth"], [0.6, 0.15, 0.15, 0.05, 0.05])

# indication code lists and their text
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
    ("G06.1", "suspected spinal epidural abscess"),
    ("G83.4", "cauda equina symptoms"),
]
BG_IND_NONNEURO = (
    ["", "R10.9", "R05.9", "M25.561", "S83.511A", "J18.9", "M54.50"],
    [0.35, 0.15, 0.15, 0.12, 0.05, 0.08, 0.10],
)
BG_IND_NEURO = (
    ["", "M54.50", "R51.9", "M54.16", "R51.9|M54.50", "G06.1", "G83.4"],
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
