"""Worker processes that are safe to start from a busy process."""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor


def process_pool(workers: int) -> ProcessPoolExecutor:
    """``workers`` processes started from a clean server process, never forked from this one.

    A fork copies locks that other threads hold (OpenCV's and OpenMP's thread pools, a loopback
    server's), and a child that needs one waits forever: seen in the test suite with plain
    ``fork``. The fork server (one per process, started at the first pool) imports the main
    module and rtmbench's worker modules once, before any worker forks from it, so workers
    start in milliseconds (a new worker module goes into ``PRELOAD``).
    """
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
    if context.get_start_method() == "forkserver":
        context.set_forkserver_preload(["__main__", *PRELOAD])
    return ProcessPoolExecutor(workers, mp_context=context)


PRELOAD = ("rtmbench.data.synthetic", "rtmbench.measure.scoring")  # the pools' worker modules
