"""API-surface FAKE of the ``tensorrt`` 10.x Python package (see ``_tensorrt_api``): weak typing
(``BuilderFlag.FP16``, deprecated since 10.12 but present) and strong typing
(``NetworkDefinitionCreationFlag.STRONGLY_TYPED``); ``EXPLICIT_BATCH`` is deprecated and ignored
(networks are always explicit batch), and using it warns. Not TensorRT."""

from ._tensorrt_api import FakeVersion, install

install(globals(), FakeVersion(
    version="10.13.3.9",
    builder_flags=("FP16", "BF16", "INT8", "DEBUG", "GPU_FALLBACK", "REFIT",
                   "DISABLE_TIMING_CACHE", "TF32", "SPARSE_WEIGHTS", "OBEY_PRECISION_CONSTRAINTS",
                   "PREFER_PRECISION_CONSTRAINTS", "DIRECT_IO", "FP8", "INT4", "FP4"),
    creation_flags=("EXPLICIT_BATCH", "STRONGLY_TYPED", "PREFER_AOT_PYTHON_PLUGINS",
                    "PREFER_JIT_PYTHON_PLUGINS"),
    deprecated_creation_flags=("EXPLICIT_BATCH",)))
