"""COCO dataset on disk, MMDetection's RTMDet test pipeline, and a synthetic COCO generator."""

from ..errors import DatasetError
from .coco import ANNOTATIONS, ENV_VAR, IMAGES, CocoDataset, ImageRecord, resolve_coco_root
from .pipeline import PreparedImage, TestPipeline, rescale_size
from .synthetic import COCO_CATEGORIES, make_synthetic_coco

__all__ = ["ANNOTATIONS", "COCO_CATEGORIES", "ENV_VAR", "IMAGES", "CocoDataset", "DatasetError",
           "ImageRecord", "PreparedImage", "TestPipeline", "make_synthetic_coco", "rescale_size",
           "resolve_coco_root"]
