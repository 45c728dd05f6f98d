"""The synthetic generator: extracts with exact ground truth (``generate``)."""

from pipeline.synth.codes import LEAK_CODES_ALL, REGISTRY
from pipeline.synth.generate import generate
from pipeline.synth.scenarios import SCENARIO_NAMES, SCENARIOS

__all__ = ["LEAK_CODES_ALL", "REGISTRY", "SCENARIOS", "SCENARIO_NAMES", "generate"]
