"""The synthetic generator: extracts with exact ground truth (``generate``); the audits bring their scenarios."""

from pipeline.synth.generate import generate

__all__ = ["generate"]
