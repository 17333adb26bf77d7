"""Worker threads for ``.batch``: native code runs with the GIL released, so threads scale across cores.

The pool is created lazily and re-created in a forked child (a pool inherited through fork has no threads).
"""
from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None
_pool_size = 0
_pool_pid = 0


def available_cpus() -> int:
    """CPUs this process may run on (respects affinity masks and container CPU sets)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def pool(workers: int) -> ThreadPoolExecutor:
    global _pool, _pool_size, _pool_pid
    with _lock:
        if _pool is None or _pool_pid != os.getpid() or _pool_size < workers:
            old = _pool if _pool_pid == os.getpid() else None
            _pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="prepjit")
            _pool_size, _pool_pid = workers, os.getpid()
            if old is not None:
                old.shutdown(wait=False)
        return _pool
