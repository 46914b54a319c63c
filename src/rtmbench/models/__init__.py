"""RTMDet in plain PyTorch, with MMDetection 3.x state_dict names and shapes."""

from .detector import RTMDet, RTMDetArch, build_rtmdet
from .postprocess import (
    Detections,
    TestSettings,
    postprocess,
    postprocess_batched,
    postprocess_single,
)

__all__ = ["RTMDet", "RTMDetArch", "build_rtmdet", "Detections", "TestSettings", "postprocess",
           "postprocess_batched",
           "postprocess_single"]
