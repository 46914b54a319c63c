"""Judging records: the one judge (claims, baselines, tolerances), the gate and the report.
Reads records and specs only; never measures."""
