"""Typed, versioned records and the append-only run files that hold them.

Below both ``run`` (which writes records) and ``judge`` (which reads them): it imports nothing of
ours but ``errors``, ``fileio`` and the specs (``plan``: which units a suite plans, for the
runner and the gate alike).
"""

from .io import (
    LOCAL,
    PUBLISHED,
    LineProblem,
    Published,
    Run,
    RunWriter,
    check_run_id,
    is_interrupted,
    latest_run,
    list_runs,
    load_usable_run,
    publish_run,
    read_run,
    resolve_run,
    run_dirs,
    run_path,
)
from .record import (
    FLOPS_CONVENTIONS,
    METRICS,
    SCHEMA_VERSION,
    BoxAPMetrics,
    ComplexityMetrics,
    LatencyMetrics,
    Record,
    SchemaError,
    Status,
    UnitKey,
    migrate,
    parse_record,
)
from .suite_units import PlannedUnit, plan_digest, plan_keys, plan_units

__all__ = ["LOCAL", "PUBLISHED", "Published", "publish_run", "run_dirs",
           "FLOPS_CONVENTIONS", "METRICS", "SCHEMA_VERSION", "BoxAPMetrics", "ComplexityMetrics",
           "LatencyMetrics", "LineProblem", "PlannedUnit", "Record", "Run", "RunWriter",
           "SchemaError", "Status", "UnitKey", "check_run_id", "is_interrupted", "latest_run",
           "list_runs", "load_usable_run", "migrate", "parse_record", "plan_digest", "plan_keys",
           "plan_units",
           "read_run", "resolve_run", "run_path"]

from .._aliases import renamed  # noqa: E402

# Renamed modules, still importable under their old names (rtmbench._aliases).
renamed("rtmbench.records.model", "rtmbench.records.record")
renamed("rtmbench.records.plan", "rtmbench.records.suite_units")
