"""Fork safety: reset process-local state in a forked child.

``os.fork`` copies only the forking thread. A lock held by another thread at that moment (a compile in
progress, the thread pool being created, a cache write) would stay locked forever in the child, and a thread
pool inherited through fork has no threads. The handler registered here runs in every forked child (torch
DataLoader workers, ``multiprocessing`` fork and forkserver children) and gives each such piece of state a
fresh lock; it only touches modules that are already imported, so it costs nothing otherwise.

Code already loaded in the parent (LLJIT-linked objects) is inherited by the child and keeps working; new
specializations link into the same (single-threaded, in-place) LLJIT instance. ``stats`` counters of every
jit function restart at zero in the child, so ``fn.stats["compiles"]`` inside a worker counts that worker's
own work.
"""
from __future__ import annotations

import os
import sys
import threading


def _after_fork_in_child() -> None:
    threads = sys.modules.get("prepjit.runtime.threads")
    if threads is not None:
        threads._lock = threading.Lock()
        threads._pool = None
        threads._pool_size = 0
        threads._pool_pid = 0
    batch = sys.modules.get("prepjit.runtime.batch")
    if batch is not None:
        batch._driver_lock = threading.Lock()
        batch._resident_lock = threading.Lock()
        batch._resident_free = []  # the parent's resident workers are not in the child
        batch._resident_all = []
    native = sys.modules.get("prepjit.runtime.native")
    if native is not None:
        native._lock = threading.RLock()
    cache = sys.modules.get("prepjit.runtime.cache")
    if cache is not None:
        cache._held = threading.local()          # lock files held by the parent's threads are not ours
        cache._caches_lock = threading.Lock()
        for c in list(cache._caches.values()):
            c._mem_lock = threading.Lock()
    api = sys.modules.get("prepjit.api")
    if api is not None:
        for fn in list(api._live_functions):
            fn._lock = threading.RLock()
            fn.stats.update(compiles=0, disk_hits=0, compile_seconds=0.0)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
