"""Evaluation: prediction, the infer step, thresholds and the submission."""
