"""The batch driver: one native loop per worker thread that runs a batch's samples, claimed one at a time.

``.batch`` on CPU prepares each sample's argument slots in Python (the prologue's checks and sizes, see
``Executable.prep``) and publishes them in a table; every worker thread makes a single native call to this
driver, which claims rows with an atomic counter, waits for rows not yet published, relocates the row's
temporaries into the thread's scratch arena and calls the sample's kernel. Compared with one ctypes call per
sample, the workers never take the GIL between samples, so Python's share of a batch (preparing rows) runs
beside native code instead of taking turns with it (prepjit.runtime.batch).

Control block (int64 words, one per worker thread)::

    0 table     rows of ROW words: kernel address (0: nothing to run, the row was done in Python; the driver
                clears it once the row has run, so the caller can tell finished rows), argument
                slots address, relocations address, their count, address of the scratch arenas (one address
                per worker, each large enough for the row)
    1 counter   address of the shared next-row counter (atomically incremented)
    2 ready     address of the number of published rows (rows below it are complete)
    3 limit     address of the row count to run (lowered to stop the batch at a bad sample)
    4 worker    this thread's index into the rows' arenas;  5 ran: rows this thread ran (counted up)
    6 finished  address of the shared count of claimed rows that are complete (atomically incremented)
    7 status    out: DONE (no rows left), STARVED (the next row is not published after SPIN pauses) or PAUSED
    8 spin      pauses to wait for the next row to be published before returning STARVED (0: the caller, which
                publishes rows itself, returns at once)
    9 budget    rows to run before returning PAUSED (counted down): the preparing thread runs rows between
                preparing others
   10 sleepers  address of the count of resident workers asleep until a row is published (``worker_source``)
   11 guided    0: claim one row at a time; d > 0: claim max(1, rows published and unclaimed / d) rows at once
                (guided self-scheduling: a batch published at once, of rows too small for a claim each, is
                claimed in blocks that shrink towards its end, so the threads still finish together)

The driver never returns to Python for anything a row needs (the preparing thread holds the GIL for long
stretches, so a worker waiting for it would idle): the preparer sizes the arenas before publishing a row.
"""
from __future__ import annotations

SYMBOL = "prepjit_batch_driver"
VERSION = "9"
ROW = 5
CTL_WORDS = 12
DONE, STARVED, PAUSED = 0, 1, 2
UNLIMITED = 1 << 62  # a row budget that never runs out
# (name, word, type loaded or None for just its address) of the control block and of a table row
CTL_FIELDS = [("table", 0, "ptr"), ("counter", 1, "ptr"), ("ready", 2, "ptr"), ("limit", 3, "ptr"),
              ("worker", 4, "i64"), ("ran", 5, None), ("finished", 6, "ptr"), ("status", 7, None),
              ("spin", 8, "i64"), ("budget", 9, None), ("guided", 11, "i64")]
ROW_FIELDS = [("fn", 0, "ptr"), ("args", 1, "ptr"), ("rel", 2, "ptr"), ("nrel", 3, "i64"), ("arenas", 4, "ptr")]


def _fields(base: str, fields) -> str:
    """Loads of int64 words of ``%base``: ``%name.p`` (the word's address) and ``%name`` (its value)."""
    lines = []
    for name, word, ty in fields:
        lines.append(f"  %{name}.p = getelementptr i64, ptr %{base}, i64 {word}")
        if ty:
            lines.append(f"  %{name} = load {ty}, ptr %{name}.p")
    return "\n".join(lines)


def _pause(machine: str) -> tuple[str, str]:
    """(declaration, call) of the spin-wait hint of ``machine`` (none where unknown)."""
    if machine in ("x86_64", "AMD64", "i386", "i686"):
        return "declare void @llvm.x86.sse2.pause()", "call void @llvm.x86.sse2.pause()"
    if machine in ("aarch64", "arm64"):
        return "declare void @llvm.aarch64.hint(i32)", "call void @llvm.aarch64.hint(i32 1)"
    return "", ""


def source(machine: str) -> str:
    """The driver's LLVM IR; ``machine``: the host architecture (the spin-wait hint is per architecture)."""
    pause_decl, _ = _pause(machine)
    return f"{pause_decl}\n{_driver_ir(machine, SYMBOL, '')}"


def _driver_ir(machine: str, name: str, linkage: str) -> str:
    _, pause = _pause(machine)
    return f"""
define {linkage} void @{name}(ptr %ctl) {{
entry:
{_fields("ctl", CTL_FIELDS)}
  %guided.pos = icmp sgt i64 %guided, 0
  %guided.d = select i1 %guided.pos, i64 %guided, i64 1
  br label %claim

claim:
  %left = load i64, ptr %budget.p
  %spent = icmp sle i64 %left, 0
  br i1 %spent, label %paused, label %look

paused:
  store i64 {PAUSED}, ptr %status.p
  ret void

look:
  %k = phi i64 [ 0, %claim ], [ %k1, %pause ], [ %k, %lost ]
  %c = load atomic i64, ptr %counter acquire, align 8
  %lim = load atomic i64, ptr %limit acquire, align 8
  %over = icmp sge i64 %c, %lim
  br i1 %over, label %done, label %published

published:
  %rdy = load atomic i64, ptr %ready acquire, align 8
  %avail = icmp slt i64 %c, %rdy
  %over.r = icmp slt i64 %lim, %rdy
  br i1 %avail, label %take, label %tired.check

tired.check:
  %tired = icmp sge i64 %k, %spin
  br i1 %tired, label %starved, label %pause

pause:
  {pause}
  %k1 = add i64 %k, 1
  br label %look

starved:
  store i64 {STARVED}, ptr %status.p
  ret void

take:  ; claim rows %c..%end-1 only while %c is still the next one (a row is claimed once, and only once published)
  %top = select i1 %over.r, i64 %lim, i64 %rdy
  %open = sub i64 %top, %c
  %by.guide = icmp sgt i64 %guided, 0
  %share = sdiv i64 %open, %guided.d
  %many = icmp sgt i64 %share, 1
  %both = and i1 %by.guide, %many
  %n.claim = select i1 %both, i64 %share, i64 1
  %end = add i64 %c, %n.claim
  %cas = cmpxchg ptr %counter, i64 %c, i64 %end seq_cst seq_cst
  %won = extractvalue {{ i64, i1 }} %cas, 1
  br i1 %won, label %row, label %lost

lost:
  br label %look

row:
  %i = phi i64 [ %c, %take ], [ %i.next, %next.row ]
  %r = mul i64 %i, {ROW}
  %row.p = getelementptr i64, ptr %table, i64 %r
{_fields("row.p", ROW_FIELDS)}
  %skip = icmp eq ptr %fn, null
  br i1 %skip, label %next.done, label %fits

fits:
  %base.p = getelementptr i64, ptr %arenas, i64 %worker
  %base = load i64, ptr %base.p
  br label %reloc

reloc:
  %j = phi i64 [ 0, %fits ], [ %j1, %reloc.body ]
  %more = icmp slt i64 %j, %nrel
  br i1 %more, label %reloc.body, label %call

reloc.body:
  %slot.p = getelementptr i64, ptr %rel, i64 %j
  %slot = load i64, ptr %slot.p
  %arg.p = getelementptr i64, ptr %args, i64 %slot
  %off = load i64, ptr %arg.p
  %addr = add i64 %off, %base
  store i64 %addr, ptr %arg.p
  %j1 = add i64 %j, 1
  br label %reloc

call:
  call void %fn(ptr %args)
  store atomic i64 0, ptr %fn.p release, align 8  ; mark done: the caller reports finished rows in order
  %ran.n = load i64, ptr %ran.p
  %ran.n1 = add i64 %ran.n, 1
  store i64 %ran.n1, ptr %ran.p
  %left.r = load i64, ptr %budget.p
  %left.r1 = sub i64 %left.r, 1
  store i64 %left.r1, ptr %budget.p
  br label %next.done

next.done:
  %i.next = add i64 %i, 1
  %more.rows = icmp slt i64 %i.next, %end
  br i1 %more.rows, label %next.row, label %block.done

next.row:
  br label %row

block.done:  ; the rows' writes are complete before the count says so
  %fin = atomicrmw add ptr %finished, i64 %n.claim release
  br label %next

next:
  br label %claim

done:
  store i64 {DONE}, ptr %status.p
  ret void
}}
"""


# -- resident workers (Linux): threads that stay in native code between batches -------------------------------
WORKER_SYMBOL = "prepjit_batch_worker"
FUTEX_SYSCALL = {"x86_64": 202, "AMD64": 202}  # SYS_futex; resident workers exist where it is listed
FUTEX_WAIT_PRIVATE, FUTEX_WAKE_PRIVATE = 128, 129
FUTEX_TIMEOUT_NS = 50_000_000  # a sleeper looks again after this long, whatever a wake-up did
HOME_WORDS = 8
# Home block of a resident worker (int64 words):
#   0 seq    batches posted to it (the caller counts up; the low 32 bits are the futex word it sleeps on)
#   1 ctl    address of its control block for the batch posted last
#   2 ack    the last batch it has left: it reads none of that batch's memory after storing it
#   3 quit   nonzero: return to the caller of the worker function
#   4 spin   pauses it waits for a new batch before sleeping
#   5 in     the last batch it has started (the caller runs rows itself while a worker is not yet in)
# Control block word 10 (sleepers): address of the count of workers asleep waiting for a row to be published.


# the control block words the worker loop reads itself (the driver reads the rest)
RESIDENT_CTL_FIELDS = [("counter", 1, "ptr"), ("ready", 2, "ptr"), ("limit", 3, "ptr"), ("status", 7, None),
                       ("budget", 9, None), ("sleepers", 10, "ptr")]


def worker_source(machine: str) -> str:
    """LLVM IR of the resident worker loop (``WORKER_SYMBOL``, one argument: its home block): wait for a posted
    batch (spinning, then asleep on a futex), run the driver on it until no row is left, sleeping on the
    published-row count whenever the driver reports STARVED, acknowledge, repeat. A worker never needs the
    GIL, so it starts on a batch's first published row instead of after the preparing thread first lets go of
    the GIL."""
    pause_decl, pause = _pause(machine)
    sys_futex = FUTEX_SYSCALL[machine]
    drv = "prepjit_batch_driver_resident"
    futex_wait = (f"call i64 (i64, ...) @syscall(i64 {sys_futex}, ptr %{{addr}}, i64 {FUTEX_WAIT_PRIVATE}, "
                  f"i64 %{{val}}, ptr @timeout)")
    return f"""
{pause_decl}
declare i64 @syscall(i64, ...)
@timeout = internal constant [2 x i64] [i64 0, i64 {FUTEX_TIMEOUT_NS}]
{_driver_ir(machine, drv, "internal")}

define void @{WORKER_SYMBOL}(ptr %home) {{
entry:
  %seq.p = getelementptr i64, ptr %home, i64 0
  %ctl.pp = getelementptr i64, ptr %home, i64 1
  %ack.p = getelementptr i64, ptr %home, i64 2
  %quit.p = getelementptr i64, ptr %home, i64 3
  %hspin.p = getelementptr i64, ptr %home, i64 4
  %in.p = getelementptr i64, ptr %home, i64 5
  %hspin = load i64, ptr %hspin.p
  br label %wait

wait:
  %k = phi i64 [ 0, %entry ], [ %k1, %idle.pause ], [ 0, %idle.sleep ], [ 0, %batch.done ]
  %quit = load atomic i64, ptr %quit.p acquire, align 8
  %stop = icmp ne i64 %quit, 0
  br i1 %stop, label %exit, label %look

look:
  %seq = load atomic i64, ptr %seq.p acquire, align 8
  %ack = load i64, ptr %ack.p
  %new = icmp ne i64 %seq, %ack
  br i1 %new, label %batch, label %idle

idle:
  %tired = icmp sge i64 %k, %hspin
  br i1 %tired, label %idle.sleep, label %idle.pause

idle.pause:
  {pause}
  %k1 = add i64 %k, 1
  br label %wait

idle.sleep:
  %seq32 = and i64 %seq, 4294967295
  {futex_wait.format(addr="seq.p", val="seq32")}
  br label %wait

batch:
  store atomic i64 %seq, ptr %in.p release, align 8
  %ctl = load ptr, ptr %ctl.pp
{_fields("ctl", RESIDENT_CTL_FIELDS)}
  br label %drive

drive:
  store i64 {UNLIMITED}, ptr %budget.p
  call void @{drv}(ptr %ctl)
  %status = load i64, ptr %status.p
  %finished = icmp eq i64 %status, {DONE}
  br i1 %finished, label %batch.done, label %starved

starved:  ; count itself asleep first, then look: a publisher that stores the count, then reads the sleepers, wakes it
  %s0 = atomicrmw add ptr %sleepers, i64 1 seq_cst
  %r = load atomic i64, ptr %ready seq_cst, align 8
  %c = load atomic i64, ptr %counter seq_cst, align 8
  %l = load atomic i64, ptr %limit seq_cst, align 8
  %has = icmp slt i64 %c, %r
  %over = icmp sge i64 %c, %l
  %go = or i1 %has, %over
  br i1 %go, label %woke, label %sleep

sleep:
  %r32 = and i64 %r, 4294967295
  {futex_wait.format(addr="ready", val="r32")}
  br label %woke

woke:
  %s1 = atomicrmw sub ptr %sleepers, i64 1 seq_cst
  br label %drive

batch.done:
  store atomic i64 %seq, ptr %ack.p release, align 8
  br label %wait

exit:
  ret void
}}
"""
