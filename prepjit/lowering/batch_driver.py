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

The driver never returns to Python for anything a row needs (the preparing thread holds the GIL for long
stretches, so a worker waiting for it would idle): the preparer sizes the arenas before publishing a row.
"""
from __future__ import annotations

SYMBOL = "prepjit_batch_driver"
VERSION = "5"
ROW = 5
CTL_WORDS = 10
DONE, STARVED, PAUSED = 0, 1, 2


def source(machine: str) -> str:
    """The driver's LLVM IR; ``machine``: the host architecture (the spin-wait hint is per architecture)."""
    if machine in ("x86_64", "AMD64", "i386", "i686"):
        pause_decl, pause = "declare void @llvm.x86.sse2.pause()", "call void @llvm.x86.sse2.pause()"
    elif machine in ("aarch64", "arm64"):
        pause_decl, pause = "declare void @llvm.aarch64.hint(i32)", "call void @llvm.aarch64.hint(i32 1)"
    else:
        pause_decl, pause = "", ""
    return f"""
{pause_decl}

define void @{SYMBOL}(ptr %ctl) {{
entry:
  %table = load ptr, ptr %ctl
  %counter.p = getelementptr i64, ptr %ctl, i64 1
  %counter = load ptr, ptr %counter.p
  %ready.p = getelementptr i64, ptr %ctl, i64 2
  %ready = load ptr, ptr %ready.p
  %limit.p = getelementptr i64, ptr %ctl, i64 3
  %limit = load ptr, ptr %limit.p
  %worker.p = getelementptr i64, ptr %ctl, i64 4
  %worker = load i64, ptr %worker.p
  %finished.p = getelementptr i64, ptr %ctl, i64 6
  %finished = load ptr, ptr %finished.p
  %status.p = getelementptr i64, ptr %ctl, i64 7
  %spin.p = getelementptr i64, ptr %ctl, i64 8
  %spin = load i64, ptr %spin.p
  %budget.p = getelementptr i64, ptr %ctl, i64 9
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

take:  ; claim row %c only while it is still the next one (a row is claimed once, and only once published)
  %c1 = add i64 %c, 1
  %cas = cmpxchg ptr %counter, i64 %c, i64 %c1 seq_cst seq_cst
  %won = extractvalue {{ i64, i1 }} %cas, 1
  br i1 %won, label %row, label %lost

lost:
  br label %look

row:
  %i = add i64 %c, 0
  %r = mul i64 %i, {ROW}
  %fn.p = getelementptr i64, ptr %table, i64 %r
  %fn = load ptr, ptr %fn.p
  %r1 = add i64 %r, 1
  %args.p = getelementptr i64, ptr %table, i64 %r1
  %args = load ptr, ptr %args.p
  %r2 = add i64 %r, 2
  %rel.p = getelementptr i64, ptr %table, i64 %r2
  %rel = load ptr, ptr %rel.p
  %r3 = add i64 %r, 3
  %nrel.p = getelementptr i64, ptr %table, i64 %r3
  %nrel = load i64, ptr %nrel.p
  %r4 = add i64 %r, 4
  %arenas.p = getelementptr i64, ptr %table, i64 %r4
  %arenas = load ptr, ptr %arenas.p
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
  %ran.p = getelementptr i64, ptr %ctl, i64 5
  %ran.n = load i64, ptr %ran.p
  %ran.n1 = add i64 %ran.n, 1
  store i64 %ran.n1, ptr %ran.p
  %left.r = load i64, ptr %budget.p
  %left.r1 = sub i64 %left.r, 1
  store i64 %left.r1, ptr %budget.p
  br label %next.done

next.done:  ; the row's writes are complete before the count says so
  %fin = atomicrmw add ptr %finished, i64 1 release
  br label %next

next:
  br label %claim

done:
  store i64 {DONE}, ptr %status.p
  ret void
}}
"""
