"""Every error class says what a unit that meets it records: "not run" only for a missing
prerequisite, "failed" for everything else, so a real failure can never turn grey."""

from __future__ import annotations

import importlib
import pkgutil

import rtmbench
from rtmbench.errors import MissingPrerequisite, RtmbenchError


def all_error_classes() -> list[type[RtmbenchError]]:
    for info in pkgutil.walk_packages(rtmbench.__path__, "rtmbench."):
        if info.name.endswith("__main__"):
            continue
        importlib.import_module(info.name)  # every module, so every subclass is defined
    seen, todo = [], [RtmbenchError]
    while todo:
        cls = todo.pop()
        seen.append(cls)
        todo.extend(cls.__subclasses__())
    return sorted(set(seen), key=lambda c: f"{c.__module__}.{c.__qualname__}")


# What each class means for a unit; a new class must be added here on purpose.
EXPECTED = {
    "rtmbench.errors.RtmbenchError": "failed",
    "rtmbench.errors.Failed": "failed",            # a failed unit, a regression, a missed claim
    "rtmbench.run.request_builder.RequestError": "failed",  # a request out of its bounds
    "rtmbench.errors.MissingPrerequisite": "not run",
    "rtmbench.errors.InputError": "failed",
    "rtmbench.errors.DatasetError": "failed",
    "rtmbench.errors.DatasetMissing": "not run",
    "rtmbench.errors.PackageMissing": "not run",
    "rtmbench.errors.PackageBroken": "failed",        # installed, and its import fails
    "rtmbench.errors.OutputNotWritable": "failed",    # a full disk: fix it, then resume
    "rtmbench.errors.DeviceMissing": "not run",
    "rtmbench.errors.NonFiniteOutputs": "failed",        # NaN/inf from a network or engine
    "rtmbench.sources.fetch_errors.CheckpointError": "failed",
    "rtmbench.sources.fetch_errors.WeightsUnavailable": "not run",
    "rtmbench.sources.fetch_errors.DownloadError": "not run",
    "rtmbench.sources.fetch_errors.OfflineError": "not run",
    "rtmbench.sources.fetch_errors.HashMismatchError": "failed",
    "rtmbench.sources.fetch_errors.UnsafeCheckpointError": "failed",
    "rtmbench.sources.fetch_errors.CheckpointMismatchError": "failed",
    # a source serves too much: not ours
    "rtmbench.sources.fetch_errors.SizeLimitError": "failed",
    "rtmbench.sources.fetch_errors.CacheNotWritable": "failed",   # the user's setup must be fixed
    "rtmbench.sources.fetch_errors.UnsafeCachePath": "failed",    # a planted link: never followed
    "rtmbench.sources.fetch_errors.DatasetArchiveError": "failed",  # wrong hash, unsafe entry, caps
    "rtmbench.sources.fetch_errors.DatasetUnavailable": "not run",  # no source delivered an archive
    "rtmbench.measure.export.ExportError": "failed",
    "rtmbench.measure.backends.base.BackendUnavailable": "not run",
    "rtmbench.measure.backends.base.BackendError": "failed",
}


def test_every_error_class_declares_its_outcome_in_its_own_body():
    undeclared = [c.__qualname__ for c in all_error_classes() if "outcome" not in vars(c)]
    assert not undeclared, f"declare outcome = 'failed' or 'not run' in: {undeclared}"


def test_every_error_class_is_classified_as_expected():
    found = {f"{c.__module__}.{c.__qualname__}": c.outcome for c in all_error_classes()}
    unknown = sorted(set(found) - set(EXPECTED))
    assert not unknown, f"new error classes: add them to EXPECTED with their meaning: {unknown}"
    assert found == {k: v for k, v in EXPECTED.items() if k in found}
    assert set(EXPECTED) <= set(found), sorted(set(EXPECTED) - set(found))


def test_not_run_means_a_missing_prerequisite_and_nothing_else():
    for cls in all_error_classes():
        assert (cls.outcome == "not run") == issubclass(cls, MissingPrerequisite), cls


# ------------------------------------------------------------- import errors, told apart
def test_require_tells_a_missing_package_from_a_broken_one(shadow_package):
    import pytest

    from rtmbench.errors import PackageBroken, PackageMissing, require

    with pytest.raises(PackageMissing, match="'no_such_package_rtmbench'.*not installed"):
        require("no_such_package_rtmbench", "onnx")
    shadow_package("onnxruntime", "raise ImportError('libonnxruntime.so.1.32.0: cannot open "
                   "shared object file: No such file or directory')\n")
    with pytest.raises(PackageBroken) as broken:
        require("onnxruntime", "onnx")
    message = str(broken.value)
    assert "'onnxruntime' is installed" in message and "libonnxruntime.so" in message, message
    assert "importing it failed" in message and "shadowed/onnxruntime" in message, message
    assert broken.value.outcome == "failed"


def test_require_names_a_missing_dependency_of_an_installed_package(shadow_package):
    import pytest

    from rtmbench.errors import PackageMissing, require

    shadow_package("onnxruntime", "import flatbuffers_not_installed_here\n")
    with pytest.raises(PackageMissing, match="'flatbuffers_not_installed_here'"):
        require("onnxruntime", "onnx")
