"""Sessions: reproduce (the main job), fetch (COCO and the checkpoints, for the full table),
gate (CI's regression gate), report, tests, parity (against MMDetection), lint, dev.

Every session but parity runs in ONE shared environment, `.nox/shared` (torch alone is several
GB: one install instead of one per session). It is built on first use and rebuilt only when
`pyproject.toml` or `constraints.txt` change, or the choice of extras does; the project is
installed editable, so code changes need no reinstall. On a machine where `nvidia-smi -L` lists a
GPU the `gpu` extra (TensorRT, onnxruntime-gpu, nvidia-ml-py) is installed too, and every session
says in one line what it chose; `RTMBENCH_GPU_EXTRA=1` or `=0` forces either choice.
`parity` adds MMDetection 3.3.0 and mmcv-lite in its own small
environment layered on the shared one (they are installed without their dependency pins, which
must not leak into the environment the other sessions use).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import nox
from nox.logger import logger as _nox_logger

# nox looks for uv (an optional installer) whenever a session starts and logs "uv binary not
# found." when there is none; these sessions use no nox-made virtualenv (backend "none"), so the
# line says nothing about them and is dropped.
_nox_logger.addFilter(lambda record: record.getMessage() != "uv binary not found.")

nox.options.sessions = ["tests"]
nox.options.default_venv_backend = "none"  # sessions use the shared environment below

ROOT = Path(__file__).resolve().parent
SHARED = ROOT / ".nox" / "shared"
PARITY = ROOT / ".nox" / "parity"
CONSTRAINTS = ("-c", str(ROOT / "constraints.txt"))
SMOKE_BASELINE = "suites/baselines/smoke.jsonl"
# openvino: ~59 MB more to download (the environment's torch is several GB), so that the
# CPU backends are all measured, and their tests run, everywhere
EXTRAS = "onnx,openvino,dev"
GPU_EXTRA = "gpu"  # onnxruntime-gpu, tensorrt, nvidia-ml-py (pyproject.toml)
GPU_SWITCH = "RTMBENCH_GPU_EXTRA"  # 1: always install the gpu extra, 0: never; unset: detect


def _bin(venv: Path) -> Path:
    return venv / "bin"  # Unix only, like the fcntl lock below


def listed_gpus() -> list[str]:
    """The GPUs ``nvidia-smi -L`` lists ("GPU 0: NVIDIA H200 (UUID: ...)"); none without the
    tool, or when it fails (no driver loaded, no device visible to this container)."""
    tool = shutil.which("nvidia-smi")
    if tool is None:
        return []
    try:
        out = subprocess.run([tool, "-L"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return []
    if out.returncode != 0:
        return []
    return [line.split(":", 1)[1].split("(UUID")[0].strip()
            for line in out.stdout.splitlines() if line.startswith("GPU ") and ":" in line]


def gpu_extra_choice(environ: dict[str, str] | None = None) -> tuple[bool, str]:
    """Whether the shared environment gets the ``gpu`` extra, and the one line that says why.

    A machine where ``nvidia-smi -L`` lists a GPU gets it (TensorRT, ONNX Runtime's CUDA and
    TensorRT providers, NVML); a CPU-only machine does not (TensorRT's wheels download several
    GB from NVIDIA's index). ``RTMBENCH_GPU_EXTRA=1`` or ``=0`` forces either choice."""
    environ = os.environ if environ is None else environ
    forced = environ.get(GPU_SWITCH, "").strip().lower()
    if forced in ("1", "true", "yes", "on"):
        return True, f"{GPU_SWITCH}={environ[GPU_SWITCH]}: installing the gpu extra."
    if forced in ("0", "false", "no", "off"):
        return False, f"{GPU_SWITCH}={environ[GPU_SWITCH]}: not installing the gpu extra."
    if forced:
        raise ValueError(f"{GPU_SWITCH}={environ[GPU_SWITCH]!r}: use 1 (install the gpu "
                         f"extra), 0 (do not) or leave it unset (install it where nvidia-smi "
                         f"lists a GPU)")
    gpus = listed_gpus()
    if gpus:
        return True, (f"nvidia-smi lists {', '.join(gpus)}: installing the gpu extra "
                      f"(TensorRT, onnxruntime-gpu, nvidia-ml-py; {GPU_SWITCH}=0 skips it).")
    return False, (f"no GPU listed by nvidia-smi: CPU-only environment ({GPU_SWITCH}=1 "
                   f"installs the gpu extra anyway).")


def extras(gpu: bool) -> str:
    return f"{EXTRAS},{GPU_EXTRA}" if gpu else EXTRAS


def _install_key(gpu: bool = False) -> str:
    """What the shared environment was built from: a change to any of it reinstalls."""
    digest = hashlib.sha256(f"{extras(gpu)}\n{sys.version}\n".encode())
    for name in ("pyproject.toml", "constraints.txt"):
        digest.update((ROOT / name).read_bytes())
    return digest.hexdigest()


def _site_packages(venv: Path) -> Path:
    out = subprocess.run([str(_bin(venv) / "python"), "-c", "import sysconfig; "
                          "print(sysconfig.get_paths()['purelib'])"],
                         check=True, capture_output=True, text=True)
    return Path(out.stdout.strip())


def shared_env(session: nox.Session) -> dict[str, str]:
    """The shared environment, built or refreshed if needed; the env vars that select it."""
    SHARED.parent.mkdir(parents=True, exist_ok=True)
    stamp = SHARED / ".rtmbench-install-key"
    try:
        gpu, why = gpu_extra_choice()
    except ValueError as exc:
        session.error(str(exc))
    session.log(why)
    with open(SHARED.parent / "shared.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two sessions at once: one installs, one waits
        key = _install_key(gpu)
        if not stamp.exists() or stamp.read_text() != key:
            if not (_bin(SHARED) / "python").exists():
                session.run(sys.executable, "-m", "venv", str(SHARED), external=True)
            pip = (str(_bin(SHARED) / "python"), "-m", "pip", "install", "--quiet",
                   "--disable-pip-version-check", *CONSTRAINTS)
            session.run(*pip, "-e", f"{ROOT}[{extras(gpu)}]", external=True)
            if gpu:
                # onnxruntime (the onnx extra) and onnxruntime-gpu install the same package
                # directory: with both, whichever came last half-wins. ONNX Runtime's advice:
                # keep the GPU build only.
                python = str(_bin(SHARED) / "python")
                version = session.run(python, "-c", "import importlib.metadata as m; "
                                      "print(m.version('onnxruntime-gpu'))", silent=True,
                                      external=True).strip()
                session.run(python, "-m", "pip", "uninstall", "--yes", "--quiet", "onnxruntime",
                            external=True)
                session.run(*pip, "--force-reinstall", "--no-deps",
                            f"onnxruntime-gpu=={version}", external=True)
            stamp.write_text(key)
    return {"VIRTUAL_ENV": str(SHARED),
            "PATH": f"{_bin(SHARED)}{os.pathsep}{os.environ.get('PATH', '')}"}


def run(session: nox.Session, program: str, *args: str, env: dict[str, str]) -> None:
    """``program`` from the shared environment (nox looks programs up on its own PATH)."""
    local = _bin(SHARED) / program
    session.run(str(local) if local.exists() else program, *args, env=env, external=True)


def run_id(suite: str) -> str:
    return f"{datetime.now(UTC).strftime('%Y-%m-%dT%H-%M-%SZ')}-{suite}-nox"


@nox.session
def dev(session: nox.Session) -> None:
    """Build the shared environment and say how to use its `rtmbench` command."""
    shared_env(session)
    session.log(f"rtmbench is installed in {SHARED}: run `source {_bin(SHARED)}/activate`, "
                f"or call {_bin(SHARED) / 'rtmbench'} directly.")


@nox.session
def tests(session: nox.Session) -> None:
    """The fast test suite (slow and GPU tests are marked; GPU tests skip without a GPU)."""
    env = shared_env(session)
    run(session, "pytest", "-m", "not mmdet", *session.posargs, env=env)


@nox.session
def reproduce(session: nox.Session) -> None:
    """Run suites/reproduce.yaml (every column of the seed table, all five sizes; the plan's
    summary first: units, missing prerequisites, estimated time), then render the report into
    reports/local/. `-- --resume ID` continues a run; `-- --plan` only shows the plan."""
    env = shared_env(session)
    args = list(session.posargs) or ["--run-id", run_id("reproduce")]
    run(session, "rtmbench", "run", "reproduce", *args, env=env)
    if "--plan" in args:
        return
    ref = (args[args.index("--resume") + 1] if "--resume" in args
           else args[args.index("--run-id") + 1] if "--run-id" in args else None)
    run(session, "rtmbench", "report", *([ref] if ref else []), env=env)


@nox.session
def fetch(session: nox.Session) -> None:
    """Fetch what the full table needs, verified by sha256: COCO val2017 and every published
    checkpoint (RTMBENCH_MIRROR and RTMBENCH_COCO_MIRROR name mirrors; `-- ARGS` go to both
    fetches, e.g. `-- --quiet`)."""
    env = shared_env(session)
    failed = []
    for what, args in (("COCO val2017", ["--coco"]), ("the checkpoints", ["--weights", "all"])):
        try:  # one failing fetch must not keep the other from running
            run(session, "rtmbench", "fetch", *args, *session.posargs, env=env)
        except nox.command.CommandFailed:
            failed.append(what)
    if failed:
        session.error(f"could not fetch {' and '.join(failed)}: see the messages above")


@nox.session
def gate(session: nox.Session) -> None:
    """Run the smoke suite and gate it against the published claims and the shipped baseline."""
    env = shared_env(session)
    rid = run_id("smoke")
    run(session, "rtmbench", "run", "smoke", "--run-id", rid, "--no-progress", env=env)
    run(session, "rtmbench", "gate", rid, "--baseline", SMOKE_BASELINE, "--suite", "smoke",
        env=env)


@nox.session
def report(session: nox.Session) -> None:
    """Render the report: the committed runs plus any given, into reports/local/ (`-- RUN...`);
    `-- --publish` rewrites reports/ and the README's table from the committed runs."""
    env = shared_env(session)
    run(session, "rtmbench", "report", *session.posargs, env=env)


@nox.session
def parity(session: nox.Session) -> None:
    """Compare our RTMDet with MMDetection 3.3.0's own, all five sizes (mmcv's C ops stubbed)."""
    shared_env(session)
    if not (_bin(PARITY) / "python").exists():
        session.run(sys.executable, "-m", "venv", str(PARITY), external=True)
    # The shared environment's packages (torch, rtmbench...) seen from this one: a .pth line
    # that starts with "import" runs, and addsitedir also processes the shared .pth files
    # (the editable install of rtmbench).
    (_site_packages(PARITY) / "_rtmbench_shared.pth").write_text(
        f"import site; site.addsitedir({str(_site_packages(SHARED))!r})\n")
    py = str(_bin(PARITY) / "python")
    # mmdet and mmcv-lite without their dependency pins (mmcv has no wheels for current torch);
    # the few pure-Python packages mmdet imports at model-build time come next.
    pip = (py, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *CONSTRAINTS)
    session.run(*pip, "--no-deps", "mmdet==3.3.0", "mmcv-lite==2.1.0", external=True)
    session.run(*pip, "six", "terminaltables", "shapely", "addict", "yapf", "termcolor",
                external=True)
    session.run(py, "-m", "pytest", "-m", "mmdet", *session.posargs, external=True,
                env={"VIRTUAL_ENV": str(PARITY),
                     "PATH": f"{_bin(PARITY)}{os.pathsep}{os.environ.get('PATH', '')}"})


@nox.session
def lint(session: nox.Session) -> None:
    """ruff, and the layering contracts (import-linter, [tool.importlinter] in pyproject)."""
    env = shared_env(session)
    run(session, "ruff", "check", "src", "tests", "benchmarks", "tools", "noxfile.py", env=env)
    run(session, "lint-imports", env=env)
