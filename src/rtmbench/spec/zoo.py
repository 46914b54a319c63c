"""The model zoo: ``zoo/rtmdet.yaml`` parsed into a validated schema.

Every published figure is a ``Claim`` with its source, conditions and counting convention;
code never carries a claimed number. The data sets the figures are measured on (COCO val2017)
are declared beside the models, archive by archive (file name, size, sha256, sources, which
members to extract and their hashes), so that ``rtmbench fetch --coco`` gets them like a
checkpoint and a test zoo can declare made-up ones.
"""

from __future__ import annotations

import re
from decimal import Decimal
from fnmatch import fnmatchcase
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, StringConstraints, field_validator, model_validator

from ..errors import InputError
from .hfref import is_hf, parse_hf
from .schema import PlainName, Strict, load_yaml

Metric = Literal["params", "flops", "box_ap", "latency"]
UNITS = {"params": "M", "flops": "G", "box_ap": "AP", "latency": "ms"}
FLOPS_CONVENTIONS = ("mmengine", "mmengine+act")
# Weights that are not a zoo entry: seeded initialisation, or a user's checkpoint file.
RESERVED_WEIGHTS = ("random-init", "well-conditioned", "file")
AP_CONVENTIONS = ("coco", "mmdet-proposal")


class Source(Strict):
    title: str
    url: str


class Architecture(Strict):
    deepen_factor: float
    widen_factor: float
    neck_out_channels: int
    neck_num_csp_blocks: int
    exp_on_reg: bool


class Pipeline(Strict):
    decode: Literal["cv2-bgr"] = "cv2-bgr"
    resize: Literal["keep-ratio"] = "keep-ratio"
    interpolation: Literal["bilinear"] = "bilinear"
    pad_value: float
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    to_rgb: bool


class TestCfg(Strict):
    nms_pre: int
    score_thr: float
    nms_iou: float = Field(gt=0, le=1)
    max_per_img: int = Field(gt=0)
    min_bbox_size: float


class Defaults(Strict):
    input_size: tuple[int, int]
    pipeline: Pipeline
    test_cfg: TestCfg
    # Named alternatives a claim can say it was evaluated with (e.g. older configs).
    test_cfg_variants: dict[str, TestCfg] = {}
    num_classes: int = 80


# A checkpoint's name in the cache: one plain file name, never a path (no separator, no '..',
# not absolute), and none of the names the cache keeps for itself.
FILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,254}")
CACHE_SUFFIXES = (".part", ".lock", ".verified.json", ".source", ".tmp")
CACHE_NAMES = ("hashes.json", "tensorrt", "datasets")


def file_name_problem(name: str) -> str | None:
    """Why ``name`` cannot be a checkpoint's file name in the cache; None when it can."""
    if not FILE_NAME.fullmatch(name) or ".." in name:
        return (f"file {name!r} must be a plain file name (letters, digits, '.', '_', '+', '-'; "
                f"no '/', '\\', '..' or absolute path): it names the file in the cache")
    if name in CACHE_NAMES or name.endswith(CACHE_SUFFIXES) or ".part." in name:
        return f"file {name!r} is a name the rtmbench cache uses for its own bookkeeping"
    return None


def _plain_file_name(value: str) -> str:
    if problem := file_name_problem(value):
        raise ValueError(problem)
    return value


def _hf_entries_parse(value: list[str]) -> list[str]:
    for entry in value:
        if is_hf(entry):
            parse_hf(entry)  # a ValueError names the entry and the expected form
    return value


FileName = Annotated[str, AfterValidator(_plain_file_name)]  # a name in the cache
Urls = Annotated[list[str], AfterValidator(_hf_entries_parse)]  # tried in order


class Weights(Strict):
    """One published checkpoint file; ``urls`` are tried in order (official first)."""

    id: PlainName
    layout: Literal["mmdet", "mmyolo"]
    file: FileName | None = None
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{8}([0-9a-f]{56})?$")
    size: int | None = Field(default=None, gt=0)  # bytes; caps the download exactly
    urls: Urls = []
    unavailable: str | None = None

    @model_validator(mode="after")
    def _file_or_reason(self) -> Weights:
        if self.unavailable is None and not (self.file and self.sha256 and self.urls):
            raise ValueError("give file, sha256 and urls, or 'unavailable' with the reason")
        if self.unavailable is not None and self.file is not None:
            raise ValueError("a weights entry with 'unavailable' cannot also name a file")
        if self.file and not self.file.removesuffix(".pth").endswith(self.sha256[:8]):
            raise ValueError(f"file name {self.file} does not end in its sha256 prefix")
        return self


Sha256 = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
# A member of an archive, or a pattern of members ('*' and '?' within one folder level):
# relative, '/'-separated plain names; never absolute, never '..', never a backslash.
_MEMBER_SEGMENT = re.compile(r"[A-Za-z0-9_*?][A-Za-z0-9._+*?-]{0,254}")


def member_path_problem(path: str, *, pattern: bool = False) -> str | None:
    """Why ``path`` cannot name (or, with ``pattern``, select) archive members to extract."""
    what = "pattern" if pattern else "member"
    segments = path.split("/")
    bad = [s for s in segments if not _MEMBER_SEGMENT.fullmatch(s) or s.strip(".") == ""
           or (not pattern and any(c in s for c in "*?"))]
    if not path or bad:
        wild = ", and * or ? within a name" if pattern else ""
        return (f"{what} {path!r} must be a relative path of plain names separated by '/' "
                f"(letters, digits, '.', '_', '+', '-'{wild}; no '..', no leading '/', no "
                f"backslash)")
    return None


def member_matches(name: str, pattern: str) -> bool:
    """``name`` (an archive member) is selected by ``pattern``: as many levels, each matched
    with fnmatch's rules ('*' never crosses a '/')."""
    names, parts = name.split("/"), pattern.split("/")
    return len(names) == len(parts) and all(fnmatchcase(n, p) for n, p in zip(names, parts))


class Archive(Strict):
    """One archive of a data set: fetched like a checkpoint (mirrors, then ``urls``), verified
    by its full sha256, then only the members matching ``extract`` are extracted; a member
    listed in ``members`` must also have that sha256."""

    file: FileName
    size: int = Field(gt=0)  # bytes; caps the download exactly
    sha256: Sha256
    urls: Annotated[Urls, Field(min_length=1)]
    extract: list[str] = Field(min_length=1)
    members: dict[str, Sha256] = {}

    @field_validator("extract")
    @classmethod
    def _patterns(cls, value: list[str]) -> list[str]:
        for pattern in value:
            if problem := member_path_problem(pattern, pattern=True):
                raise ValueError(problem)
        return value

    @model_validator(mode="after")
    def _members_are_extracted(self) -> Archive:
        for name in self.members:
            if problem := member_path_problem(name):
                raise ValueError(problem)
            if not any(member_matches(name, p) for p in self.extract):
                raise ValueError(f"member {name!r} has a sha256 but matches no 'extract' "
                                 f"pattern ({', '.join(self.extract)}): it would never be "
                                 f"extracted nor checked")
        return self


class Dataset(Strict):
    """A data set as its publisher distributes it: the archives, in the order they are
    fetched; extracted together into one folder."""

    title: str
    url: str  # where it is published
    archives: list[Archive] = Field(min_length=1)

    @model_validator(mode="after")
    def _distinct_files(self) -> Dataset:
        files = [a.file for a in self.archives]
        if len(files) != len(set(files)):
            raise ValueError(f"archive file names repeat ({', '.join(files)})")
        return self


class Claim(Strict):
    """A published figure. ``value`` keeps the decimals it was published with."""

    metric: Metric
    value: Decimal
    source: str
    unit: str | None = None
    rounding: Literal["round", "truncate"] = "round"
    convention: str | None = None
    note: str | None = None
    # box_ap: which weights produced it, with which test_cfg variant (None: the default)
    weights: str | None = None
    test_cfg: str | None = None
    # latency: the conditions it was measured under
    hardware: str | None = None
    backend: str | None = None
    precision: str | None = None
    batch: int | None = None
    nms: bool | None = None
    software: str | None = None
    input_size: tuple[int, int] | None = None  # width, height; default: the model's

    @model_validator(mode="after")
    def _fields_fit_metric(self) -> Claim:
        expected = UNITS[self.metric]
        if self.unit is not None and self.unit != expected:
            raise ValueError(f"unit of a {self.metric} claim is {expected}, not {self.unit}")
        latency_only = ("hardware", "backend", "precision", "batch", "nms", "software",
                        "input_size")
        if self.metric == "latency":
            missing = [f for f in ("hardware", "backend", "precision") if getattr(self, f) is None]
            if missing:
                raise ValueError(f"a latency claim needs {', '.join(missing)}")
        elif any(getattr(self, f) is not None for f in latency_only):
            raise ValueError(f"{', '.join(latency_only)} belong to latency claims only")
        if self.metric != "box_ap" and self.test_cfg is not None:
            raise ValueError("test_cfg belongs to box_ap claims only")
        if self.metric == "box_ap" and self.weights is None:
            raise ValueError("a box_ap claim must name the weights id that produced it")
        if self.metric == "flops" and self.convention not in FLOPS_CONVENTIONS:
            raise ValueError(f"a flops claim needs convention: one of {FLOPS_CONVENTIONS}")
        if self.metric == "box_ap" and self.convention not in (None, *AP_CONVENTIONS):
            raise ValueError(f"box_ap convention must be one of {AP_CONVENTIONS}")
        return self

    @property
    def decimals(self) -> int:
        return max(0, -self.value.as_tuple().exponent)

    @property
    def unit_name(self) -> str:
        return UNITS[self.metric]


class ModelEntry(Strict):
    name: PlainName  # results/eval/<name>, records
    size: PlainName
    config: str
    architecture: Architecture
    weights: list[Weights]
    claims: list[Claim]
    input_size: tuple[int, int] | None = None
    pipeline: Pipeline | None = None
    test_cfg: TestCfg | None = None


class Zoo(Strict):
    collection: dict[str, str]
    sources: dict[str, Source]
    defaults: Defaults
    models: list[ModelEntry]
    datasets: dict[str, Dataset] = {}
    path: Path | None = None

    @field_validator("datasets")
    @classmethod
    def _dataset_names(cls, value: dict[str, Dataset]) -> dict[str, Dataset]:
        for name in value:
            if not FILE_NAME.fullmatch(name) or ".." in name:
                raise ValueError(f"data set name {name!r} must be a plain name (letters, "
                                 f"digits, '.', '_', '+', '-'): it names its folder")
        return value

    @model_validator(mode="after")
    def _references_resolve(self) -> Zoo:
        seen: set[str] = set()
        for m in self.models:
            for key in (m.name, m.size):
                if key in seen:
                    raise ValueError(f"model name or size {key!r} appears twice")
                seen.add(key)
            ids = [w.id for w in m.weights]
            for c in m.claims:
                if c.source not in self.sources:
                    raise ValueError(f"{m.name}: claim source {c.source!r} is not in 'sources' "
                                     f"({', '.join(self.sources)})")
                if c.test_cfg is not None and c.test_cfg not in self.defaults.test_cfg_variants:
                    raise ValueError(f"{m.name}: claim names test_cfg {c.test_cfg!r}, not among "
                                     f"defaults.test_cfg_variants "
                                     f"{list(self.defaults.test_cfg_variants)}")
                if c.weights is not None and c.weights not in ids:
                    raise ValueError(f"{m.name}: claim names weights {c.weights!r}, "
                                     f"not among {ids}")
        return self

    @property
    def sizes(self) -> list[str]:
        return [m.size for m in self.models]

    def dataset(self, name: str) -> Dataset:
        if name not in self.datasets:
            where = f" {self.path}" if self.path else ""
            raise InputError(f"the zoo{where} declares no data set {name!r} (under 'datasets:'; "
                             f"declared: {', '.join(self.datasets) or 'none'}); use a zoo that "
                             f"does, e.g. the shipped one (unset RTMBENCH_ZOO, no --zoo).")
        return self.datasets[name]

    def get(self, key: str) -> ResolvedModel:
        for m in self.models:
            if key in (m.size, m.name):
                return ResolvedModel(m, self.defaults)
        names = ", ".join(m.name for m in self.models)
        where = f" {self.path}" if self.path else ""
        raise InputError(f"no model {key!r} in the zoo{where}; known sizes: "
                         f"{', '.join(self.sizes)} (or names {names}).")


class ResolvedModel:
    """A zoo entry with the shared defaults filled in: what a check needs to run."""

    def __init__(self, entry: ModelEntry, defaults: Defaults) -> None:
        self.entry = entry
        self.name, self.size = entry.name, entry.size
        self.architecture = entry.architecture
        self.num_classes = defaults.num_classes
        self.input_size = entry.input_size or defaults.input_size
        self.pipeline = entry.pipeline or defaults.pipeline
        self.test_cfg = entry.test_cfg or defaults.test_cfg
        self.test_cfg_variants = defaults.test_cfg_variants
        self.weights = entry.weights
        self.claims = entry.claims

    def claims_for(self, metric: str) -> list[Claim]:
        return [c for c in self.claims if c.metric == metric]

    def default_weights_id(self) -> str | None:
        """The first weights entry that was published (the zoo lists the seed's first)."""
        return next((w.id for w in self.weights if not w.unavailable), None)

    def box_ap_claim(self, weights_id: str | None = None) -> Claim | None:
        """The published box AP of ``weights_id`` (default: the default weights)."""
        weights_id = weights_id or self.default_weights_id()
        return next((c for c in self.claims_for("box_ap") if c.weights == weights_id), None)

    def claim_record(self, claim: Claim) -> dict[str, Any]:
        """A claim as a record stores it: value as a number, its published decimals, unit and
        every condition (a latency claim's input size and batch filled with the defaults)."""
        data = claim.model_dump(mode="json", exclude_none=True)
        data["value"] = float(claim.value)
        data["decimals"] = claim.decimals
        data["unit"] = claim.unit_name
        if claim.metric == "latency":
            data["input_size"] = list(claim.input_size or self.input_size)
            data["batch"] = claim.batch or 1
        return data

    def test_cfg_for(self, claim: Claim) -> TestCfg:
        """The test-time settings a box_ap claim was evaluated with."""
        return self.test_cfg_variants[claim.test_cfg] if claim.test_cfg else self.test_cfg

    def test_cfg_named(self, name: str | None) -> TestCfg:
        """``None`` or ``"default"``: MMDetection 3.x's; else a named zoo variant."""
        if name in (None, "default"):
            return self.test_cfg
        if name not in self.test_cfg_variants:
            raise InputError(f"test settings {name!r} are not in the zoo; use 'default' or one "
                             f"of {', '.join(self.test_cfg_variants) or '(none)'}.")
        return self.test_cfg_variants[name]

    def evaluation_test_cfg(self, weights_id: str | None, override: str | None = None
                            ) -> tuple[str, TestCfg]:
        """(name, settings) to evaluate ``weights_id`` with: ``override`` if given, else the
        settings the weights' published box AP used, else the default. The one rule for the
        box AP check and ``rtmbench evaluate``."""
        if override is not None:
            return override, self.test_cfg_named(override)
        claim = self.box_ap_claim(weights_id) if weights_id not in RESERVED_WEIGHTS else None
        name = claim.test_cfg if claim and claim.test_cfg else "default"
        return name, self.test_cfg_named(name)

    def weights_by_id(self, weights_id: str) -> Weights:
        for w in self.weights:
            if w.id == weights_id:
                return w
        raise InputError(f"{self.name} has no weights {weights_id!r}; known: "
                         f"{', '.join(w.id for w in self.weights)}.")

    def __repr__(self) -> str:
        return f"ResolvedModel({self.name})"


def default_zoo_path() -> Path:
    """``RTMBENCH_ZOO`` if set; else the zoo shipped in the wheel, else the checkout's zoo/."""
    from .settings import load_settings

    if (env := load_settings().zoo) is not None:
        return env
    packaged = Path(__file__).parents[1] / "_data" / "zoo" / "rtmdet.yaml"
    if packaged.exists():
        return packaged
    return Path(__file__).resolve().parents[3] / "zoo" / "rtmdet.yaml"


@lru_cache(maxsize=8)
def _load(path: Path) -> Zoo:
    zoo = load_yaml(path, Zoo, "zoo")
    return zoo.model_copy(update={"path": path})


def load_zoo(path: str | Path | None = None) -> Zoo:
    return _load(Path(path) if path else default_zoo_path())
