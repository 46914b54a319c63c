"""``hf://OWNER/REPO[@REVISION][/SUBDIR]``: a Hugging Face Hub model repository as a source of
checkpoints, in ``RTMBENCH_MIRROR`` or a zoo weight's ``urls``;
``hf://datasets/OWNER/REPO[@REVISION][/SUBDIR]``: a *dataset* repository (huggingface_hub's
``repo_type="dataset"``), e.g. COCO's archives in ``RTMBENCH_COCO_MIRROR``. The first segment
``datasets`` always names the repository type (no Hub user or organisation is called that), as
in huggingface_hub's own ``hf://`` paths.

``REVISION`` is a branch, a tag or a commit hash (default ``main``); a revision with a slash in
it (``refs/pr/1``) is written percent-encoded (``refs%2Fpr%2F1``). ``SUBDIR`` is the folder of
the repository holding the files; the file name is appended, as for a base URL, unless the
entry already ends in it. Parsed here, in the spec layer, so the zoo schema can refuse a
malformed entry with its file and line; fetched by :mod:`rtmbench.sources.hf`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import quote, unquote

SCHEME = "hf://"
DATASETS = "datasets"  # hf://datasets/OWNER/REPO: a dataset repository
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,95}")
_REVISION = re.compile(r"[A-Za-z0-9._/-]{1,255}")
_SEGMENT = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._+-]*")


@dataclass(frozen=True)
class HfRef:
    repo_id: str          # OWNER/REPO
    revision: str | None  # None: the repository's default branch (main)
    subdir: str           # "" or "a/b"
    repo_type: str = "model"  # "model" | "dataset" (huggingface_hub's repo_type)

    def path_of(self, file: str) -> str:
        """The file's path inside the repository."""
        return f"{self.subdir}/{file}" if self.subdir else file

    def url(self, file: str, revision: str | None = None) -> str:
        """``hf://OWNER/REPO@REVISION/PATH`` of ``file`` (``revision`` overrides, e.g. with the
        commit a download resolved to)."""
        rev = revision or self.revision
        at = f"@{quote(rev, safe='')}" if rev else ""
        kind = f"{DATASETS}/" if self.repo_type == "dataset" else ""
        return f"{SCHEME}{kind}{self.repo_id}{at}/{self.path_of(file)}"


def is_hf(entry: str) -> bool:
    return entry.strip().startswith(SCHEME)


def parse_hf(entry: str, file: str | None = None) -> HfRef:
    """``entry`` as a :class:`HfRef`; when its last path segment is ``file`` that segment is the
    file, not a folder. Raises ValueError saying what is wrong and the expected form."""
    text = entry.strip()
    form = ("expected hf://OWNER/REPO[@REVISION][/SUBDIR], or hf://datasets/OWNER/REPO... for a "
            "dataset repository")
    if not text.startswith(SCHEME):
        raise ValueError(f"{entry!r} is not an hf:// source ({form})")
    parts = text[len(SCHEME):].split("/")
    repo_type = "model"
    if parts[0] == DATASETS:
        repo_type, parts = "dataset", parts[1:]
    if len(parts) < 2:
        raise ValueError(f"{entry!r} names no repository ({form})")
    owner, repo, rest = parts[0], parts[1], [p for p in parts[2:]]
    if rest and rest[-1] == "":
        rest = rest[:-1]  # a trailing slash
    revision = None
    if "@" in repo:
        repo, revision = repo.split("@", 1)
        revision = unquote(revision)
        if not _REVISION.fullmatch(revision) or ".." in revision:
            raise ValueError(f"{entry!r}: revision {revision!r} is not a branch, tag or commit "
                             f"({form}; percent-encode a '/' in a revision)")
        if revision == "refs":  # refs/pr/1 unencoded: "refs" would be the revision
            raise ValueError(f"{entry!r}: revision 'refs' is the start of a ref such as "
                             f"refs/pr/1: percent-encode its '/' (@refs%2Fpr%2F1)")
    for what, name in (("owner", owner), ("repository", repo)):
        if not _NAME.fullmatch(name):
            raise ValueError(f"{entry!r}: {what} {name!r} is not a Hub name (letters, digits, "
                             f"'.', '_', '-'; {form})")
    for segment in rest:
        if not _SEGMENT.fullmatch(segment) or segment in (".", ".."):
            raise ValueError(f"{entry!r}: folder {segment!r} is not a plain folder name ({form})")
    if file is not None and rest and rest[-1] == file:
        rest = rest[:-1]
    return HfRef(f"{owner}/{repo}", revision, "/".join(rest), repo_type)
