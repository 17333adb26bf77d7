"""Native batches on CPU: the caller prepares samples, worker threads run them without taking turns at the GIL.

The caller's thread runs each sample's prologue (``Executable.prep``: checks, sizes, argument slots) and
publishes the row; each worker runs the batch driver (:mod:`prepjit.lowering.batch_driver`), which claims
published rows with a compare-and-swap and runs them; the caller runs a row itself whenever enough are published
and unclaimed, and the rest once all are prepared. On Linux x86-64 the workers are resident (``_Resident``):
they wait for the next batch in native code and never take the GIL; elsewhere pool threads make one native call
to the driver per batch. One
ctypes call per sample would hand the GIL over twice a sample, and on a busy or virtualized host each hand-off
can wait on a sleeping thread; here Python's share of the batch runs beside native code. Text batches use the
same machinery with a chunk of texts per row (``run`` takes any row preparer).

Rows are published while workers run only where the CPU makes stores visible in program order (x86); elsewhere
all rows are prepared before the workers start. A bad sample stops the preparing at its row: workers finish the
rows before it and the error names it, as in the per-sample path.
"""
from __future__ import annotations

import atexit
import os
import platform
import re
import struct
import sys
import threading
import time

import numpy as np

from prepjit.lowering import batch_driver as B
from prepjit.runtime.executable import addr

ENABLED = os.environ.get("PREPJIT_NATIVE_BATCH", "1") != "0"  # 0: one ctypes call per sample (comparisons)
STREAMING = platform.machine() in ("x86_64", "AMD64", "i386", "i686")
# Resident workers (threads that wait for batches in native code, see ``_Resident``) where futexes exist;
# PREPJIT_RESIDENT_WORKERS=0: pool threads that enter the driver from Python for each batch (comparisons)
RESIDENT = (STREAMING and sys.platform.startswith("linux") and platform.machine() in B.FUTEX_SYSCALL
            and os.environ.get("PREPJIT_RESIDENT_WORKERS", "1") != "0")
SPIN = 1 << 14  # pauses (~0.1-0.5 ms) a worker waits for an unpublished row (or batch) before sleeping
AHEAD = 8  # rows (per worker) kept published and unclaimed before the caller runs one itself
UNLIMITED = B.UNLIMITED  # a worker's row budget
CHUNK_SLOTS = 8192  # int64 argument slots per buffer of packed rows
_ROW = struct.Struct(f"{B.ROW}q")
_COUNTER, _READY, _LIMIT, _FINISHED, _SLEEPERS = 0, 8, 16, 24, 32  # words of the sync array: a 64-byte line each
_SYNC_WORDS = 40
_SEQ, _CTL, _ACK, _QUIT, _HOME_SPIN, _IN = range(6)  # words of a resident worker's home block (batch_driver)

_driver = None
_driver_lock = threading.Lock()
_local = threading.local()


def driver():
    """The batch driver's native entry point (compiled once per host, then from the disk cache)."""
    global _driver
    if _driver is None:
        with _driver_lock:
            if _driver is None:
                _driver = _load("batch driver", *driver_key(), B.SYMBOL)
    return _driver


def driver_key() -> tuple[str, str]:
    """(cache key, LLVM IR) of this host's batch driver."""
    return _key("batch driver", B.source(platform.machine()))


def _key(name: str, src: str) -> tuple[str, str]:
    from prepjit.runtime import native

    return native.fixed_kernel_key(name, B.VERSION, src), src


def _load(name: str, key: str, src: str, symbol: str):
    """One of the batch module's fixed kernels, from the disk cache or compiled now."""
    from prepjit.runtime import native

    return native.load_fixed_kernel(key, lambda: src, symbol, {
        "function": f"prepjit {name}", "target": "cpu", "specialization": []})


_worker_code = None
_resident_free: list = []  # idle groups of resident workers (one group per batch running at a time)
_resident_all: list = []  # every group of this process, stopped at exit
_immortal: list = []
_resident_lock = threading.Lock()
_libc = None


def _futex_wake(addr: int) -> None:
    """Wake every thread asleep on the futex word at ``addr``."""
    global _libc
    if _libc is None:
        import ctypes

        lib = ctypes.CDLL(None, use_errno=True)
        lib.syscall.restype = ctypes.c_long  # (an int argument without argtypes is passed as 32 bits)
        lib.syscall.argtypes = (ctypes.c_long, ctypes.c_void_p, ctypes.c_long, ctypes.c_long)
        _libc = lib
    _libc.syscall(B.FUTEX_SYSCALL[platform.machine()], addr, B.FUTEX_WAKE_PRIVATE, 1 << 30)


class _Resident:
    """Worker threads that stay in native code between batches (``batch_driver.worker_source``).

    A pool thread entering the driver from Python needs the GIL once per batch, and the preparing thread holds
    it while it prepares rows: the worker starts only when the caller first runs a row, and on a virtual
    machine its wake-up costs tens to hundreds of µs more. A resident worker waits for a posted batch in native
    code (spinning briefly, then asleep on a futex), runs it and acknowledges it, never taking the GIL. One batch
    uses a group at a time; concurrent batches (from several threads) take separate groups."""

    def __init__(self):
        self.homes: list = []
        self.ctls: list = []
        self.threads: list = []
        self.sync = np.zeros(_SYNC_WORDS, np.int64)

    def grow(self, n: int) -> None:
        global _worker_code
        if _worker_code is None:
            with _driver_lock:
                if _worker_code is None:
                    _worker_code = _load("batch worker", *_key("batch worker", B.worker_source(platform.machine())),
                                         B.WORKER_SYMBOL)
        while len(self.homes) < n:
            home = np.zeros(B.HOME_WORDS, np.int64)
            home[_HOME_SPIN] = SPIN
            t = threading.Thread(target=_worker_code.cfunc, args=(home.ctypes.data,), daemon=True,
                                 name=f"prepjit-batch-{len(self.homes) + 1}")
            t.start()  # (a group's code, home and control blocks are never freed: its threads run on them)
            self.homes.append(home)
            self.ctls.append(np.zeros(B.CTL_WORDS, np.int64))
            self.threads.append(t)

    def idle(self) -> None:
        """Wait until every worker has left the last batch posted to it (usually it has: a worker leaves an
        instant after its last row, or after a late wake-up to a batch already done)."""
        for home in self.homes:
            if home[_ACK] != home[_SEQ]:
                _futex_wake(self.sync.ctypes.data + 8 * _READY)  # (if it sleeps on a row that will not come)
                _wait(lambda home=home: home[_ACK] == home[_SEQ])

    def started(self, n: int) -> int:
        """How many of workers 1..n have started the batch posted last."""
        return sum(int(h[_IN] == h[_SEQ]) for h in self.homes[:n])

    def post(self, n: int, fill) -> None:
        """Give the batch to workers 1..n: ``fill(k, ctl)`` writes worker k's control block, then it is woken."""
        for k in range(1, n + 1):
            home, ctl = self.homes[k - 1], self.ctls[k - 1]
            fill(k, ctl)
            home[_CTL] = addr(ctl)
            home[_SEQ] += 1  # (x86: stores are seen in order, the control block before the batch number)
            _futex_wake(addr(home) + 8 * _SEQ)


WAIT_SPINS = 2000  # checks (~0.1-0.4 ms) before _wait yields the CPU


def _wait(done) -> None:
    """Until ``done()``: what it waits for (a worker's last row, its acknowledgement) is usually µs away, so look
    again at once for a while; then yield the CPU (and the GIL) between looks. ``time.sleep(0)`` alone lets
    Linux's timer slack turn each look into ~50-100 µs, at the end of every batch."""
    for _ in range(WAIT_SPINS):
        if done():
            return
    while not done():
        time.sleep(0)  # a host with fewer cores than threads: let the worker run


def _take_resident(n: int) -> _Resident:
    with _resident_lock:  # a group whose workers all left their last batch, else any idle one (then wait)
        ready = [g for g in _resident_free if all(h[_ACK] == h[_SEQ] for h in g.homes)]
        group = (ready or _resident_free or [None])[-1]
        if group is not None:
            _resident_free.remove(group)
    if group is None:
        group = _Resident()
        _resident_all.append(group)
    group.grow(n)
    group.idle()
    return group


def _give_back_resident(group: _Resident) -> None:
    with _resident_lock:
        _resident_free.append(group)


@atexit.register
def _stop_residents() -> None:
    """Workers leave their native loop before interpreter teardown frees the code and memory they run on; any
    that does not answer in time keeps them for good (a reference that is never dropped)."""
    groups = list(_resident_all)
    for g in groups:
        for home in g.homes:
            home[_QUIT] = 1
            _futex_wake(addr(home) + 8 * _SEQ)
        _futex_wake(g.sync.ctypes.data + 8 * _READY)
    deadline = time.monotonic() + 2.0
    for g in groups:
        for t in g.threads:
            t.join(max(0.0, deadline - time.monotonic()))
        if any(t.is_alive() for t in g.threads):
            _immortal.extend((g, _worker_code))
            import ctypes

            ctypes.pythonapi.Py_IncRef(ctypes.py_object(_immortal))


def _new_arenas(workers: int, need: int) -> tuple:
    """(size, workers, buffers, int64 array of their 64-byte aligned addresses, its address): one scratch arena
    per worker."""
    size = -(-(need + need // 4) // 64) * 64  # headroom: the next, slightly larger image reuses these
    bufs = [np.empty(size + 64, np.uint8) for _ in range(workers)]
    addrs = np.array([b.ctypes.data + (-b.ctypes.data) % 64 for b in bufs], np.int64)
    return size, workers, bufs, addrs, addrs.ctypes.data


def sample_rows(resolve, run_here):
    """``prepare`` for :func:`run` from per-sample executables: ``resolve(i)`` → (executable, arrays, outputs
    (their rows' addresses and shapes), rng key), or raises for a bad sample; ``run_here(i, executable,
    arrays)`` runs a sample whose executable cannot be a row (no ``prep``) in the caller's thread."""
    chunk, chunk_at, used = np.empty(0, np.int64), 0, 0

    def prepare(i):
        nonlocal chunk, chunk_at, used
        exe, arrays, rowouts, rng = resolve(i)
        if exe.prep is None:
            run_here(i, exe, arrays)
            return 0, 0, 0, 0, 0, None
        if used + exe.nslots > len(chunk):  # argument slots of many rows per buffer
            chunk, used = np.empty(max(CHUNK_SLOTS, exe.nslots), np.int64), 0
            chunk_at = addr(chunk)
        need, alive, _ = exe.prep(*arrays, rowouts, rng, chunk, 8 * used)
        at = chunk_at + 8 * used
        used += exe.nslots
        return exe.native.address, at, exe.relocs_at, len(exe.relocs), need, (exe, alive, chunk)

    return prepare


UNIFORM_MIN = 4  # samples a batch needs for uniform_rows to be worth its two probe rows
GUIDED = 4  # a bulk batch's claims take the unclaimed rows / (GUIDED * workers), at least one


def uniform_rows(exe, cols: list, outs: list, rng: tuple):
    """Every row's argument slots at once, for a batch whose samples are NumPy arrays of one shape, dtype and
    strides per argument, run by ``exe``: then a row's slots are sample 0's except the input and output
    addresses and the values drawn at random, so the per-sample Python prologue (≈ 3-7 µs, more than the native
    work of a small image) is not needed. Returns ``run``'s ``bulk`` (kernel address, slots (n, nslots),
    relocations address, their count, scratch bytes, objects to keep alive), or None where that does not hold:
    the caller prepares rows one by one.

    The slots that are addresses are found from two probe rows (samples 0 and 1) prepared by the prologue
    itself: a slot equal to sample k's address of argument j in both is that argument's; one equal to row k of
    output j in both is that output's. Random draws: the prologue runs once more with the batch's sample indices
    as an array and the draw functions' array forms (``dims.VECTOR_CALLS``), giving a slot's values for every
    sample at once (which must agree with both probes). Every other slot must be the same in both probes."""
    n = len(cols[0])
    if n < UNIFORM_MIN or exe.prep is None:
        return None
    rows = np.arange(n, dtype=np.int64)
    addrs = []
    for c in cols:
        a0 = c[0]
        if type(a0) is not np.ndarray or not a0.flags.aligned:
            return None
        shape, dtype, strides = a0.shape, a0.dtype, a0.strides
        if type(c) is np.ndarray:  # a stacked array: its rows share all that, at a fixed distance
            at = addr(c) + c.strides[0] * rows
        else:
            for a in c:
                if type(a) is not np.ndarray or a.shape != shape or a.strides != strides or a.dtype != dtype:
                    return None
            at = np.fromiter(map(addr, c), np.int64, n)
        if dtype.alignment > 1 and (at % dtype.alignment).any():
            return None
        if at[0] == at[1]:  # the same memory twice: the probes cannot tell its slot
            return None
        addrs.append(at)
    shapes = tuple(o.shape[1:] for o in outs)
    bases = [(addr(o), o.strides[0]) for o in outs]
    values = _drawn_slots(exe, cols, (tuple(b for b, _ in bases), shapes), rng[0], rng[1] + rows) if exe.draws else ()
    if values is None:
        return None
    probe = np.empty(2 * exe.nslots, np.int64)
    needs = [exe.prep(*[c[k] for c in cols], (tuple(b + k * st for b, st in bases), shapes), (rng[0], rng[1] + k),
                      probe, 8 * k * exe.nslots)[0] for k in (0, 1)]
    row0, row1 = probe[:exe.nslots], probe[exe.nslots:]
    slots = np.repeat(row0[None], n, 0)
    drawn = set()
    if values:
        for j, v in enumerate(values):
            if isinstance(v, np.ndarray):
                if v.shape != (n,) or v.dtype.kind not in "iub" or v[0] != row0[j] or v[1] != row1[j]:
                    return None
                slots[:, j] = v
                drawn.add(j)
    varying = [j for j in np.flatnonzero(row0 != row1).tolist() if j not in drawn]
    for j in varying:
        for at in addrs:
            if row0[j] == at[0] and row1[j] == at[1]:
                slots[:, j] = at
                break
        else:
            for b, st in bases:
                if row0[j] == b and row1[j] == b + st:
                    slots[:, j] = b + st * rows
                    break
            else:  # a slot that differs for another reason: not a uniform batch after all
                return None
    return exe.native.address, slots, exe.relocs_at, len(exe.relocs), max(needs), (exe, slots, cols)


_CHECK = re.compile(r"^(\s*)if not \((.*)\): raise ", re.M)


def _drawn_slots(exe, cols: list, rowouts: tuple, seed: int, indices: np.ndarray):
    """Sample 0's prologue run with the batch's sample indices as an array (``rng_index``) and the draw functions'
    array forms: its argument slots (ints, and one array a slot the draws decide), or None where some statement
    cannot take arrays (a draw without an array form, a table built from a random box, a branch on a draw). Its
    checks (``if not (cond): raise``) hold when they hold for every sample; any other branch on an array fails."""
    vector = getattr(exe, "vector_prep", None)
    if vector is None:
        vector = exe.vector_prep = _vector_prep(exe)
    prep, got, lock = vector
    with lock:  # (got: one batch's slots at a time)
        got.clear()
        try:
            prep(*[c[0] for c in cols], rowouts, (seed, indices), None, 0)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        return got[0] if got else None


def _vector_prep(exe) -> tuple:
    """(the executable's ``prep`` over arrays of sample indices, the list its slots go to, a lock): its generated
    source, checks made array-wide, against its own globals with the draw functions' array forms."""
    from prepjit.ir import dims as D

    code = compile(_CHECK.sub(r"\1if not _np.all(\2): raise ", exe.plan["source"]),
                   f"<prepjit vector prologue {exe.plan['name']}>", "exec")
    env = dict(exe.generated_prep.__globals__)
    for name, fn in D.CALLS.items():
        if name in env:  # a function without an array form must not see an array: it fails, row by row then
            env[name] = D.VECTOR_CALLS.get(name) or _scalars_only(fn)
    exec(code, env)  # noqa: S102 - the executable's own generated prologue
    got: list = []
    env["_pack_into"] = lambda _buf, _off, *values: got.append(values)
    return env["prep"], got, threading.Lock()


def _scalars_only(fn):
    def call(*args):
        if any(isinstance(a, np.ndarray) for a in args):
            raise TypeError("no array form")
        return fn(*args)
    return call


def run(prepare, start: int, n: int, workers: int, pool, failures: list, done=None, bulk=None) -> None:
    """Run rows ``start``..``n-1`` on ``workers`` threads (the caller and ``workers - 1`` from ``pool``).

    ``prepare(i)`` → (kernel address or 0, argument slots address, relocations address, their count, scratch
    bytes, objects to keep alive until the batch ends) for row i, or raises: the error is appended to
    ``failures`` as (i, exception) and no later row runs. ``done(i)``, if given, is called in the caller's
    thread for each finished row, in order (while other rows run, where rows are published as they come).
    ``bulk``, instead of ``prepare``: every row at once (:func:`uniform_rows`), published together."""
    code = driver()
    cfunc = code.cfunc
    table = np.zeros((n, B.ROW), np.int64)
    resident = _take_resident(workers - 1) if RESIDENT and workers > 1 and start < n else None
    sync = resident.sync if resident is not None else np.zeros(_SYNC_WORDS, np.int64)
    sync[:] = 0
    sync[_COUNTER], sync[_READY], sync[_LIMIT] = start, start, n
    sync_at = addr(sync)
    # a batch published at once is claimed in shrinking blocks (rows too small for a claim each: the claims'
    # shared cache lines would cost more than the rows); one published row by row, a row at a time
    guided = GUIDED * workers if bulk is not None else 0
    addrs = (addr(table), sync_at + 8 * _COUNTER, sync_at + 8 * _READY, sync_at + 8 * _LIMIT)
    ready_at = addrs[2]
    published = threading.Condition()
    waiting = [0]
    entered = [0]  # workers that have been in native code: until all have, the caller runs rows early
    finished = [start]  # rows below it have been passed to done()

    def control(worker: int, ctl=None) -> np.ndarray:
        ctl = np.zeros(B.CTL_WORDS, np.int64) if ctl is None else ctl
        ctl[:] = 0
        ctl[:5] = *addrs, worker
        ctl[6], ctl[8] = sync_at + 8 * _FINISHED, SPIN if worker else 0
        ctl[10] = sync_at + 8 * _SLEEPERS
        ctl[11] = guided
        return ctl

    def wake():  # workers asleep until a row is published (or the batch stops)
        if resident is not None:
            if sync[_SLEEPERS]:
                _futex_wake(ready_at)
        elif waiting[0]:
            with published:
                published.notify_all()

    # A worker may still be in the driver (past its last row, on its way out) when run() returns: it keeps the
    # memory it reads there and the driver's code alive itself.
    def work(worker: int, ctl=None, _alive=(table, sync, code)):
        ctl = control(worker) if ctl is None else ctl
        if worker:
            entered[0] += 1  # (under the GIL, which cfunc releases before the caller can look)
        while True:
            ctl[9] = UNLIMITED
            cfunc(addr(ctl))
            if ctl[7] == B.DONE:
                return
            with published:  # STARVED: sleep until a row is published or the batch stops
                waiting[0] += 1
                published.wait_for(lambda: sync[_READY] > sync[_COUNTER] or sync[_COUNTER] >= sync[_LIMIT],
                                   timeout=0.05)
                waiting[0] -= 1

    def report(upto: int):  # rows run by the driver have their kernel word cleared (B.source: "mark done")
        k = finished[0]
        while k < upto and table[k, 0] == 0:
            done(k)
            k += 1
        finished[0] = k

    arenas = getattr(_local, "arenas", None)
    if arenas is not None and arenas[1] < workers:
        arenas = None
    keep = []  # what the rows' addresses point into, alive until every row has run
    futures = []
    mine = control(0)  # the caller's control block: it runs rows between preparing others
    mine_at = addr(mine)
    settled = False  # every row claimed and finished
    ahead = AHEAD * (workers - 1)
    try:
        if resident is not None:  # they wake, and take rows as soon as they are published
            resident.post(workers - 1, control)
        elif STREAMING and workers > 1 and start < n:  # they wake while the first rows are prepared, and take
            # the GIL when the caller runs a row (it holds the GIL only to prepare one, a few µs at a time)
            futures = [pool.submit(work, k) for k in range(1, workers)]
        if bulk is not None:
            fn, slots, relocs, nrel, need, alive = bulk
            if arenas is None or arenas[0] < need:
                keep.append(arenas)
                arenas = _new_arenas(workers, need)
            keep.append(alive)
            table[start:] = (fn, 0, relocs, nrel, arenas[4])
            table[start:, 1] = addr(slots) + slots.strides[0] * np.arange(start, n, dtype=np.int64)
            sync[_READY] = n
        for i in range(start, n if bulk is None else start):
            try:
                fn, args, relocs, nrel, need, alive = prepare(i)
                if arenas is None or arenas[0] < need:
                    keep.append(arenas)
                    arenas = _new_arenas(workers, need)
                keep.append(alive)
                _ROW.pack_into(table, i * _ROW.size, fn, args, relocs, nrel, arenas[4])
            except Exception as e:  # noqa: BLE001 - reported by the caller, after the workers stop
                failures.append((i, e))
                sync[_LIMIT] = i
                break
            if STREAMING and workers > 1:
                sync[_READY] = i + 1
                wake()
                unclaimed = i + 1 - sync[_COUNTER]
                if resident is not None and entered[0] < workers - 1:
                    entered[0] = resident.started(workers - 1)
                # Rows kept for workers not yet in the driver wait for nobody: until they are in, this thread
                # runs a row whenever two are unclaimed. (A pool thread needs the GIL once to enter the driver,
                # and this thread holds it while preparing: running a row hands it over.)
                if unclaimed > ahead or (unclaimed > 1 and entered[0] < workers - 1):
                    mine[9] = 1
                    cfunc(mine_at)
                if done is not None:
                    report(i + 1)
        sync[_READY] = min(n, int(sync[_LIMIT]))
        wake()
        if not futures and workers > 1 and resident is None:
            futures = [pool.submit(work, k) for k in range(1, workers)]
        if done is not None:  # one row at a time, reporting finished rows between them (beside the workers)
            while True:
                mine[9] = 1
                cfunc(mine_at)
                report(n)
                if mine[7] == B.DONE:
                    break
        work(0, mine)
        # Every row is claimed: wait for the last ones to finish (in native code; a worker's return to Python
        # afterwards is not waited for, saving a wake-up of this thread per batch)
        _wait(lambda: sync[_FINISHED] >= sync[_COUNTER] - start)
        # The counter has reached the limit: no worker can claim a row any more, so one that has not yet
        # left the batch (a late wake-up) touches none of its memory; the group's next batch waits for it
        settled = True
        futures = [f for f in futures if f.done()]  # a finished worker's error, if any, is raised below
    finally:  # workers stop at the first row never published (a bad row, or an interrupt)
        sync[_LIMIT] = min(int(sync[_LIMIT]), int(sync[_READY]))
        with published:
            published.notify_all()
        for f in futures:
            f.result()
        if resident is not None:
            if sync[_SLEEPERS] or not settled:
                _futex_wake(ready_at)
            if not settled:  # interrupted: published rows may be unclaimed; workers leave before memory goes
                resident.idle()
            _give_back_resident(resident)
    if arenas is not None:
        _local.arenas = arenas  # the next batch on this thread starts with arenas of the right size
    if done is not None and not failures:
        report(n)
