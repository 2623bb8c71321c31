"""Evaluation of mined files: metrics, reports, diffs."""
