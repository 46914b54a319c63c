"""MMDetection's RTMDet test pipeline, step for step, parameters from the zoo entry.

Config (rtmdet_l_8xb32-300e_coco.py): LoadImageFromFile (cv2.imdecode, colour, BGR) ->
Resize(scale=(640, 640), keep_ratio=True) (mmcv.imrescale: one scale factor
min(long/max(h, w), short/min(h, w)), new size int(x * s + 0.5), cv2.INTER_LINEAR; the recorded
scale_factor is (new_w / w, new_h / h)) -> Pad(size=(640, 640), pad_val=114) on the bottom and
right -> DetDataPreprocessor: float, (x - mean) / std per channel, in BGR order unless
``to_rgb``. Decoding, resize and pad run per image in DataLoader workers (uint8); normalising
runs batched in torch, where it is cheap.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from ..errors import DatasetError

INTERPOLATION = {"bilinear": cv2.INTER_LINEAR}


def rescale_size(width: int, height: int, scale: tuple[int, int]) -> tuple[tuple[int, int], float]:
    """mmcv.rescale_size with a tuple scale: the largest size that fits ``scale`` keeping ratio."""
    factor = min(max(scale) / max(height, width), min(scale) / min(height, width))
    return (int(width * float(factor) + 0.5), int(height * float(factor) + 0.5)), factor


@dataclass
class PreparedImage:
    """One image ready for batching: padded uint8 pixels (H x W x 3) and how it got there."""

    image_id: int
    pixels: np.ndarray
    scale_factor: tuple[float, float]  # (w_scale, h_scale), as MMDetection records it
    ori_hw: tuple[int, int]
    seconds: float = 0.0  # decode + resize + pad time, where the caller measured it


class TestPipeline:
    """Per-image part of the pipeline (decode, resize, pad) plus the batched normalisation."""

    __test__ = False  # not a pytest class

    def __init__(self, input_size: tuple[int, int], pipeline) -> None:
        self.width, self.height = input_size
        self.pad_value = pipeline.pad_value
        self.interpolation = INTERPOLATION[pipeline.interpolation]
        self.to_rgb = pipeline.to_rgb
        self.mean = torch.tensor(pipeline.mean, dtype=torch.float32).view(1, 3, 1, 1)
        self.std = torch.tensor(pipeline.std, dtype=torch.float32).view(1, 3, 1, 1)

    @classmethod
    def for_model(cls, entry) -> TestPipeline:
        return cls(entry.input_size, entry.pipeline)

    @staticmethod
    def decode(path: Path) -> np.ndarray:
        """cv2 decoding to BGR, as mmcv.imfrombytes(flag='color', backend='cv2')."""
        try:
            buffer = np.fromfile(path, dtype=np.uint8)
        except OSError as exc:
            raise DatasetError(f"image {path} cannot be read: {exc}.") from None
        image = cv2.imdecode(buffer, cv2.IMREAD_COLOR) if buffer.size else None
        if image is None:
            raise DatasetError(f"image {path} is not a decodable image (corrupt or truncated "
                               f"file, {buffer.size} bytes); re-download it.")
        return image

    def resize(self, image: np.ndarray) -> tuple[np.ndarray, tuple[float, float]]:
        """mmcv's keep-ratio rescale on a square input (MMDetection's, pixel for pixel). It
        takes a (w, h) scale as (long edge, short edge), which on a non-square input can
        overflow one side; there the image is scaled by min(W / w, H / h) to fit instead."""
        height, width = image.shape[:2]
        if self.width == self.height:
            (new_w, new_h), _ = rescale_size(width, height, (self.width, self.height))
        else:
            factor = min(self.width / width, self.height / height)
            new_w = min(int(width * factor + 0.5), self.width)
            new_h = min(int(height * factor + 0.5), self.height)
        resized = cv2.resize(image, (new_w, new_h), interpolation=self.interpolation)
        return resized, (new_w / width, new_h / height)

    def pad(self, image: np.ndarray) -> np.ndarray:
        height, width = image.shape[:2]
        if height > self.height or width > self.width:
            raise ValueError(f"resized image {width}x{height} exceeds the pad size")
        padded = np.full((self.height, self.width, 3), self.pad_value, dtype=image.dtype)
        padded[:height, :width] = image
        return padded

    def prepare(self, image_id: int, path: Path) -> PreparedImage:
        image = self.decode(path)
        resized, scale_factor = self.resize(image)
        return PreparedImage(image_id, self.pad(resized), scale_factor, image.shape[:2])

    def normalize(self, batch: torch.Tensor) -> torch.Tensor:
        """N x H x W x 3 uint8 -> N x 3 x H x W float32, as DetDataPreprocessor computes it."""
        x = batch.permute(0, 3, 1, 2)
        if self.to_rgb:
            x = x[:, [2, 1, 0]]
        x = x.float()
        return (x - self.mean.to(x.device)) / self.std.to(x.device)
