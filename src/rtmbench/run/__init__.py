"""Running suites: checks (a unit of work -> a measurement), the runner (plan, resume, lock)
and the one entry point to a model with its weights (:func:`rtmbench.run.build.build`)."""

from .._aliases import renamed  # noqa: E402

# Renamed modules, still importable under their old names (rtmbench._aliases).
renamed("rtmbench.run.model", "rtmbench.run.build")
