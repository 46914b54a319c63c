"""``rtmbench fetch``: the zoo's checkpoints (one weights entry or all of them) and COCO
val2017, verified by sha256, with what each came from. The downloading is
:mod:`rtmbench.sources`'."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from ..spec.zoo import ResolvedModel, Zoo


def wanted_weights(entries: list[ResolvedModel], weights: str | None
                   ) -> tuple[list[tuple[ResolvedModel, str | None]], list[str]]:
    """(entry, weights id) pairs to fetch, and a note for each entry ``all`` skips because it
    was never published. ``weights``: an id, ``all``, or None (each size's default)."""
    wanted: list[tuple[ResolvedModel, str | None]] = []
    skipped: list[str] = []
    for entry in entries:
        if weights != "all":
            wanted.append((entry, weights))
            continue
        for w in entry.weights:
            if w.unavailable:
                skipped.append(f"{entry.name}: no {w.id} weights were published "
                               f"({w.unavailable}); skipped.")
            else:
                wanted.append((entry, w.id))
    return wanted, skipped


@dataclass
class FetchedWeights:
    entry: ResolvedModel
    weights: str
    fetched: Any  # rtmbench.sources.FetchedCheckpoint
    layout: str | None = None  # set when loaded

    def to_dict(self) -> dict[str, Any]:
        record = {"model": self.entry.name, "weights": self.weights,
                  **self.fetched.provenance(), "path": str(self.fetched.path)}
        if self.layout is not None:
            record["loaded"] = {"layout": self.layout, "strict": True}
        return record

    def describe(self) -> str:
        f = self.fetched
        origin = f"{f.source}: {f.url}" if f.url else f.source
        loaded = f"\n  loads strictly ({self.layout} layout)" if self.layout else ""
        return (f"{self.entry.name}: {f.file}\n  sha256 {f.sha256}\n  {f.size:,} bytes from "
                f"{origin}{loaded}\n  {f.path}")


def fetch_all(wanted: list[tuple[ResolvedModel, str | None]], *, load: bool, trust: bool,
              progress: bool) -> Iterator[FetchedWeights]:
    """Fetch (and with ``load``, strictly load) each pair, one at a time."""
    from ..sources import fetch_weights
    from .build import build

    for entry, weights in wanted:
        fetched = fetch_weights(entry, weights, progress=progress)
        done = FetchedWeights(entry, weights or entry.default_weights_id(), fetched)
        if load or trust:
            done.layout = build(entry, weights, trust=trust, progress=False).provenance["layout"]
        yield done


def fetch_coco(zoo: Zoo, target: str | None, progress: bool):
    """COCO val2017 as the zoo declares it, into the cache (or ``target``)."""
    from ..sources.datasets import fetch_dataset
    from ..spec.fetched_datasets import COCO_VAL2017

    return fetch_dataset(zoo.dataset(COCO_VAL2017), COCO_VAL2017, target=target,
                         progress=progress)


def describe_coco(got, zoo: Zoo) -> list[str]:
    """A fetched COCO for people: each archive, what was extracted, how it is used."""
    from ..spec.fetched_datasets import COCO_VAL2017, dataset_dir

    dataset = zoo.dataset(COCO_VAL2017)
    lines = [f"{got.name}: {dataset.title}"]
    for a in got.archives:
        origin = f"{a.source}: {a.url}" if a.url else a.source
        lines.append(f"  {a.file}: sha256 {a.sha256}, {a.size:,} bytes from {origin}")
    if got.source == "cache":
        lines.append(f"  already fetched and complete ({got.files:,} files); nothing to do")
    else:
        checked = "".join(f"; {m} sha256 {h}" for m, h in got.member_sha256.items())
        lines.append(f"  {got.files:,} files extracted{checked}")
    if got.path == dataset_dir(COCO_VAL2017):
        lines.append("  rtmbench evaluate and the suites use it when RTMBENCH_COCO is not set")
    else:
        lines.append(f"  to use it: export RTMBENCH_COCO={got.path}")
    lines.append(str(got.path))
    return lines
