"""What to reproduce and how: the zoo (models, weights, claims), suites (checks, tolerances)
and settings from the environment. Plain data, validated; imports nothing above it."""

from .schema import Strict, load_yaml
from .settings import Settings, load_settings
from .suite import SuiteBase, Tolerance, find_suite, load_suite
from .zoo import Claim, ResolvedModel, Zoo, load_zoo

__all__ = ["Claim", "ResolvedModel", "Settings", "Strict", "SuiteBase", "Tolerance", "Zoo",
           "find_suite", "load_settings", "load_suite", "load_yaml", "load_zoo"]

from .._aliases import renamed  # noqa: E402

# Renamed modules, still importable under their old names (rtmbench._aliases).
renamed("rtmbench.spec.checks", "rtmbench.spec.check_specs")
renamed("rtmbench.spec.datasets", "rtmbench.spec.fetched_datasets")
