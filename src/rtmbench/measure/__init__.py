"""Measuring: complexity, evaluation and scoring, the latency protocol, backends and export.
These modules measure and never judge (judging is rtmbench.judge's)."""
