"""The generator's bytes are pinned: a change to the engine's generator or to an audit's scenarios that
moves a single random draw or row changes these digests (benchmark inputs and every truth test
depend on it). If a change of the data is meant, regenerate the digests and say why in the commit."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from pipeline.synth import generate

PINNED = {
    # order-audit synth --patients 2000 --months 12 --seed 7 --start 2024-01
    1.0: {
        "diagnoses.csv": "d5ababbb0832ce1fb7857fbf455126091e34ea99bff83e0b89d8f123e89f2aef",
        "ground_truth/csf_leak/cases.csv": "d593f5263e65b7fda6e55cc6a1bc104ce4f467958a22cf6ec622be6cf4ad7b13",
        "ground_truth/csf_leak/orders.csv": "2ae656162e47d05e2bbb34da0feec63fd12fea18dc1c6d1d464fca4c49cabe27",
        "ground_truth/low_back_pain/episodes.csv": "563aff6142d53f183a866aa64e73dbf37113c3acdacaf734d3717cdadc5fc6e0",
        "ground_truth/low_back_pain/orders.csv": "73c0c539de7a3c07b515d651b745f6379133832e08288fba3bd96635ffc74201",
        "ground_truth_cases.csv": "80e096221ce063fbe1df5312532d45fbcb5981591c04daf00c54c56748a6c757",
        "ground_truth_orders.csv": "f01cb29958ace40ee6af6196cfb2cac1dbf190b48f7a038e52b01aa24ac36a87",
        "imaging_orders.csv": "e440c36bdbc691f69d5a2f6158e8188119a1417b8ee159394f0a67403546f78d",
        "local_code_map.csv": "a1f46a4335e5666add014cedd85bba256d3ca152234e147c05b44e1745286b73",
        "procedures.csv": "3afa1d098601dea0b4f31dc357231c6de89093c9a69185235e0968f65c42812a",
        "synth.json": "684c73b7c766918621195e76f48d1e6ec3a23c81169ff8158aabd7c0e8f84699",
    },
    # the same with --case-density 5 (five times the low back pain episodes; too small for more leak work-ups)
    5.0: {
        "diagnoses.csv": "d18ed2688f47fc2c71be10ba4d9de580bb91ff6f083a0a38e9e3dfa7c9e06685",
        "ground_truth/csf_leak/cases.csv": "d09e3ed75e57b376ba6ae0405ff971eaabc2be3400fa0d0477aaddb1ac7cec3b",
        "ground_truth/csf_leak/orders.csv": "2a4465e3e40c4b8712fa9b0c0d331e2fbd9ec649e65c03152bab5570e2805952",
        "ground_truth/low_back_pain/episodes.csv": "c6047e795cb526613e9bb5d348a435da51d3cd001431048830c48eaad77b84aa",
        "ground_truth/low_back_pain/orders.csv": "e12d0d620d245cc470cce0696cb3ea98c7478adb83ed2b777526c5ecb6b78b28",
        "ground_truth_cases.csv": "80e096221ce063fbe1df5312532d45fbcb5981591c04daf00c54c56748a6c757",
        "ground_truth_orders.csv": "f01cb29958ace40ee6af6196cfb2cac1dbf190b48f7a038e52b01aa24ac36a87",
        "imaging_orders.csv": "6d84540e6bdd64c1b5729c94e34d1631b32432d1c86624a50039a19211fe86df",
        "local_code_map.csv": "a1f46a4335e5666add014cedd85bba256d3ca152234e147c05b44e1745286b73",
        "procedures.csv": "42857551c327c66f7cdf9025d5c67523703387516a6878d4ac1396b8d6ef95c7",
        "synth.json": "b636cbaf74d639794692c1eaa892790ed94840b719b78a9d507d6ed3ba90d2c9",
    },
}


@pytest.mark.parametrize("case_density", sorted(PINNED))
def test_generated_extract_has_the_pinned_bytes(case_density, tmp_path):
    generate(tmp_path, patients=2000, months=12, seed=7, start_month="2024-01", case_density=case_density)
    written = {
        str(p.relative_to(tmp_path)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(Path(tmp_path).rglob("*"))
        if p.is_file()
    }
    assert written == PINNED[case_density]
