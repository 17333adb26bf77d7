"""Calling compiled code: a generated Python prologue per specialization.

The prologue reads sizes and strides, checks every size constraint (raising before native code runs),
allocates the outputs, fills the int64 argument array (pointers, then sizes/strides) and makes one native
call with the GIL released. It is generated as Python source and compiled once, so a call costs a few
microseconds of Python.

The prologue is also stored in the disk cache next to the object code (:func:`plan_meta`: its source, the
values it refers to — messages, constants, dtypes, host and table functions by reference — and its slot count),
so a warm process builds it from there (:meth:`Executable.from_plan`) without running the passes and lowering.
"""
from __future__ import annotations

import ctypes
import pickle
import re
import struct
import threading
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np

from prepjit.ir import dims as D
from prepjit.ir.types import TensorType

if TYPE_CHECKING:
    from prepjit.lowering.lower import Program

PLAN_VERSION = 4
MAX_PLAN_BYTES = 8 << 20

_CHECKS = {
    "bcast": "({0} == {1} or {0} == 1 or {1} == 1)",
    "bcast_to": "({0} == {1} or {0} == 1)",
    "eq": "{0} == {1}",
    "gt": "{0} > {1}",
    "ge": "{0} >= {1}",
}


def _fdiv(a, b):
    return a // b if b else 0


def _fmod(a, b):
    return a % b if b else 0


def _ifone(c, a, b):
    return a if c == 1 else b


def _aligned_copy(a):
    return a.copy()


def _data_address():
    """``addr(a)``: the address of an ndarray's data. ``a.ctypes.data`` costs ~2.4 us (it builds a ctypes helper
    object), several times a whole prologue's other work; the data pointer is the first field after the object
    header in NumPy's PyArrayObject (what ``PyArray_DATA`` reads), ~0.15 us to read with ctypes. The layout is
    checked here on probe arrays (views, offsets, other dtypes) and the slow form used if it does not hold."""
    off = object.__basicsize__
    read = ctypes.c_ssize_t.from_address

    def fast(a):
        return read(id(a) + off).value

    base = np.arange(24, dtype=np.int64).reshape(2, 3, 4)
    probes = [base, base[1:], base[:, 1, ::2], np.empty(7, np.uint8)[3:], np.zeros((0, 3), np.float32), base.T]
    try:
        if all(fast(a) == a.ctypes.data for a in probes):
            return fast
    except (TypeError, ValueError, OverflowError):  # pragma: no cover - an unusual interpreter
        pass
    return lambda a: a.ctypes.data  # pragma: no cover


addr = _data_address()


_thread_temps = threading.local()


def _temp(nbytes: int) -> int:
    """Address of this thread's scratch arena (64-byte aligned, at least ``nbytes``), reused across calls and
    grown when a call needs more. Kernels see only addresses: the arena outlives the call, this thread keeps it.
    (Fresh allocations of large arrays page-fault on every call, and faults serialize threads.)"""
    entry = getattr(_thread_temps, "arena", None)
    if entry is None or entry[1] < nbytes:
        buf = np.empty(max(nbytes, 1) + 64, np.uint8)
        entry = _thread_temps.arena = (buf, nbytes, buf.ctypes.data + (-buf.ctypes.data) % 64)
    return entry[2]


@lru_cache(maxsize=8192)
def _table(maker, *args) -> tuple:
    """(array, address) of a weight table: the cache keeps the array alive while its address is handed out."""
    a = maker(*args)
    return a, addr(a)


def emit_sizes(prog: Program, arg_names, spec_text, env: dict, lines: list, input_prep: str,
               host_wrap: str = "{}") -> D.PyNames:
    """Prologue lines shared by the CPU call and the CUDA planner: unpack input shapes (static dims are part of
    the specialization and are checked), run host ops (decoding: their sizes are new symbols), check every size
    constraint, compute the size parameters. ``input_prep``/``host_wrap`` adapt inputs and host results.
    Returns the renderer of further sizes (it reuses the parameters and size-rule results computed here)."""
    py = D.PyNames(lines)
    for k, t in enumerate(prog.inputs):
        if not isinstance(t, TensorType):  # encoded bytes: read only by host ops below
            continue
        a = f"a{k}"
        lines.append("    " + input_prep.format(a=a))
        names = []
        for j, d in enumerate(t.shape):
            if isinstance(d, int):
                names.append("_")
                env[f"_shape_msg{k}"] = f"argument {arg_names[k]!r}: expected {spec_text[k]} but got shape {{}}"
                lines.append(f"    if {a}.shape[{j}] != {d}: raise TypeError(_shape_msg{k}.format({a}.shape))")
            else:
                names.append(d.args[0])
        if names:
            lines.append(f"    {', '.join(names)}{',' if len(names) == 1 else ''} = {a}.shape")
    for b in prog.buffers.values():
        if b.kind == "host":
            env[f"_host_{b.name}"] = b.maker
            env[f"_host_kw_{b.name}"] = dict(b.maker_args)
            env[f"_host_msg_{b.name}"] = f"argument {arg_names[b.arg]!r}: {{}}"
            host_args = "".join(f"a{k}, " for k in (b.host_args or (b.arg,)))
            lines.append("    try:")
            lines.append(f"        {b.name} = {host_wrap.format(f'_host_{b.name}({host_args}**_host_kw_{b.name})')}")
            lines.append(f"    except ValueError as _e: raise ValueError(_host_msg_{b.name}.format(_e)) from None")
            dims = [d.args[0] if not isinstance(d, int) else "_" for d in b.shape]
            lines.append(f"    {', '.join(dims)}{',' if len(dims) == 1 else ''} = {b.name}.shape")
    for i, c in enumerate(prog.constraints):
        args = [py(x) for x in c.args]
        env[f"_msg{i}"] = (f"{c.loc.file}:{c.loc.line}: " if c.loc.line else "") + c.message
        cond = _CHECKS[c.kind].format(*args)
        lines.append(f"    if not ({cond}): raise {c.error}(_msg{i}.format({', '.join(args)}))")
    for name, d in prog.params.items():
        if isinstance(d, tuple) and d[0] == "stride":
            _, buf, j = d
            b = prog.buffers[buf]
            lines.append(f"    {name} = a{b.arg}.strides[{j}] // {b.dtype.itemsize}")
        elif not (isinstance(d, D.Dim) and d.op == "sym"):
            lines.append(f"    {name} = {py(d)}")
            py.bind(d, name)
    return py


class Executable:
    """One compiled specialization: ``run(*arrays)`` → outputs in the traced function's structure.

    ``compiled``: the driver's ``Compiled`` (its ``program`` is lowered on first access when this executable
    came from a cached plan)."""

    def __init__(self, compiled, native, arg_names: list[str], spec_text: list[str]):
        self.compiled = compiled
        self.native = native
        self.plan = _generate(compiled.program, arg_names, spec_text)
        self._link()

    @classmethod
    def from_plan(cls, compiled, native, plan: dict) -> "Executable":
        self = cls.__new__(cls)
        self.compiled, self.native, self.plan = compiled, native, plan
        self._link()
        return self

    def _link(self) -> None:
        """``run``; for a native batch (None where the program cannot run as one: host ops such as decoding,
        outputs the prologue copies) ``prep``, ``nslots`` and ``relocs`` (int64 slot indices of temporaries)."""
        self.run, self.prep = _link(self.plan, self.native)
        self.generated_prep = self.prep  # (prep itself may be wrapped, e.g. by tests counting calls)
        self.nslots = self.plan["nslots"]
        # whether a call draws random numbers (uses its sample's RNG key beyond unpacking it)
        self.draws = bool(re.search(r"\brng_(?:seed|index)\b", self.plan["source"].replace(_RNG_KEY, "")))
        self.relocs = np.array(self.plan["relocs"] or [0], np.int64)[:len(self.plan["relocs"])]
        self.relocs_at = addr(self.relocs)

    @property
    def program(self) -> "Program":
        return self.compiled.program

    def forget_sizes(self) -> None:
        """Drop what the prologue remembers per input shape (``_by_shape``): e.g. to time sizes new to the
        process."""
        vector = getattr(self, "vector_prep", None)  # (runtime.batch's array form of prep has its own)
        for env in (self.run.__globals__, *([vector[0].__globals__] if vector else [])):
            for name, memo in env.items():
                if name.startswith("_shape_memo_"):
                    memo.clear()


def plan_id(key: str, traced_text: str, arg_names, spec_texts) -> str:
    """What a prologue depends on beyond the cache key: argument names and the traced text with locations."""
    from prepjit.runtime.native import sha256

    return sha256("\x00".join(["prologue", str(PLAN_VERSION), key, traced_text, *arg_names, *spec_texts])
                  .encode()).hexdigest()


def plan_meta(plan: dict, pid: str) -> dict | None:
    """The plan as JSON-able cache metadata; None when something in it cannot be pickled by reference."""
    import binascii

    try:
        data = pickle.dumps(plan, protocol=4)
    except Exception:  # noqa: BLE001 - e.g. a local function as a table maker: just no cached prologue
        return None
    if len(data) > MAX_PLAN_BYTES:  # large captured constants: keep entry headers small; lower when warm instead
        return None
    return {"id": pid, "pickle": binascii.b2a_base64(data, newline=False).decode("ascii")}


def plan_from_meta(meta: dict, pid: str) -> dict | None:
    """The plan stored by :func:`plan_meta` in a cache entry, if it is this specialization's; None otherwise, or
    when it refers to something that no longer exists. (The entry is checksummed and written by prepjit, like the
    object code next to it, which is trusted the same way.)"""
    import binascii

    rec = meta.get("prologue")
    if not isinstance(rec, dict) or rec.get("id") != pid or not isinstance(rec.get("pickle"), str):
        return None
    try:
        plan = pickle.loads(binascii.a2b_base64(rec["pickle"]))  # noqa: S301 - prepjit's own checksummed cache
    except Exception:  # noqa: BLE001
        return None
    if not isinstance(plan, dict) or not {"source", "env", "nslots", "relocs", "name", "consts"} <= set(plan):
        return None
    return plan


def _link(plan: dict, native):
    """Compile the prologue source against its values, this process's helpers and the native entry point."""
    env = dict(D.CALLS)  # named size rules used by dim expressions (the plan carries the ones it calls)
    env.update(plan["env"])
    env.update({"_np": np, "_fdiv": _fdiv, "_fmod": _fmod, "_ifone": _ifone, "_temp": _temp, "_table": _table,
                "_addr": addr,
                "_native": native.cfunc if native else None, "_keep": native,  # the code lives as long as run
                "_aligned_copy": _aligned_copy})
    packer = struct.Struct(f"{max(1, plan['nslots'])}q")
    env.update({"_pack": packer.pack, "_pack_into": packer.pack_into})
    for name in plan["consts"]:  # addresses of constants are per process
        env[f"_{name}_ptr"] = addr(env[f"_{name}"])
    code = compile(plan["source"], f"<prepjit prologue {plan['name']}>", "exec")
    exec(code, env)  # noqa: S102 - source generated by _generate from the program
    run = env["run"]
    run.__prepjit_source__ = plan["source"]
    return run, (env.get("prep") if native else None)


def _generate(prog: "Program", arg_names, spec_text) -> dict:
    """The prologue of ``prog``: {"source", "env" (the values it refers to), "nslots", "relocs", "name",
    "consts"}. The source defines ``run`` (one call) and, for programs without host ops, ``prep``: the same
    checks and sizes for one sample of a native batch (:mod:`prepjit.runtime.batch`), packing the argument
    slots into a caller's buffer instead of calling, with temporaries as offsets that the batch driver turns
    into addresses in its thread's arena (``relocs``: the slots holding them). Its ``_out`` is None (it
    allocates one sample's outputs and returns them: the batch's first sample) or (the addresses of the
    sample's output rows, the shapes they must have)."""
    env: dict = {}
    lines, consts, nslots, relocs = _emit(prog, arg_names, spec_text, env, prep=False)
    if prog.kernels and not any(b.kind == "host" for b in prog.buffers.values()) and _outputs_in_place(prog):
        lines += _emit(prog, arg_names, spec_text, env, prep=True)[0]
    source = "\n".join(lines) + "\n"
    # the named size rules it calls, so a warm process unpickling the plan imports the modules defining them
    env.update({name: fn for name, fn in D.CALLS.items() if f"{name}(" in source})
    return {"source": source, "env": env, "nslots": nslots, "relocs": relocs, "name": prog.name, "consts": consts}


def _outputs_in_place(prog: "Program") -> bool:
    """Whether native code writes every output leaf (no leaf is an argument, a constant or a repeat), so a batch
    needs nothing from the prologue after the native call."""
    seen = set()
    for kind, ref in prog.outputs:
        if kind != "buf" or prog.buffers[ref].kind != "output" or ref in seen:
            return False
        seen.add(ref)
    return True


_RNG_KEY = "rng_seed, rng_index = _rng"


def _emit(prog: "Program", arg_names, spec_text, env: dict, prep: bool):
    """Lines of ``run`` (or ``prep``), filling ``env``; also the constants, slot count and temporaries' slots."""
    lines: list[str] = []
    consts: list = []
    params = [f"a{k}" for k in range(len(prog.inputs))]
    if prep:
        lines.append(f"def prep({', '.join(params + ['_out', '_rng', '_buf', '_off'])}):")
    else:
        lines.append(f"def run({', '.join(params + ['_out=None', '_rng=(0, 0)'])}):")
    lines.append(f"    {_RNG_KEY}  # the sample's key for random ops (prepjit.kernels.rng)")
    py = emit_sizes(prog, arg_names, spec_text, env, lines,
                    input_prep="if not {a}.flags.aligned: {a} = _aligned_copy({a})")
    first_leaf: dict = {}
    for k, (kind, ref) in enumerate(prog.outputs):
        if kind == "buf" and prog.buffers[ref].kind == "output":
            first_leaf.setdefault(ref, k)
    ptrs, temps, alive = [], [], []
    for b in prog.buffers.values():
        if b.kind == "input":
            ptrs.append(f"_addr(a{b.arg})")
            alive.append(f"a{b.arg}")
        elif b.kind == "const":
            env[f"_{b.name}"] = b.value
            consts.append(b.name)  # its address: set by _link
            ptrs.append(f"_{b.name}_ptr")
        elif b.kind == "host":
            ptrs.append(f"_addr({b.name})")
        elif b.kind == "table":  # built (and cached) by a Python function of the sizes
            env[f"_mk_{b.name}"] = b.maker
            args = "".join(f", {py(x)}" for x in b.maker_args)
            lines.append(f"    {b.name}, {b.name}_ptr = _table(_mk_{b.name}{args})")
            ptrs.append(f"{b.name}_ptr")
            alive.append(b.name)
        else:
            env[f"_dt_{b.name}"] = b.dtype
            shape = "(" + "".join(f"{py(d)}, " for d in b.shape) + ")"
            if b.name in first_leaf and prep:  # a batch row's output: an address in the batch's stacked array
                k = first_leaf[b.name]
                env[f"_rowmsg{k}"] = (f"output {k} has shape {{}} here but {{}} in the batch's first sample (a batch "
                                      "stacks outputs of one shape)")
                lines.append(f"    _shp = {shape}")
                lines.append(f"    if _out is None: {b.name} = _np.empty(_shp, _dt_{b.name}); {b.name}_ptr = "
                             f"_addr({b.name})")
                lines.append("    else:")
                lines.append(f"        {b.name}_ptr = _out[0][{k}]")
                lines.append(f"        if _shp != _out[1][{k}]: "
                             f"raise ValueError(_rowmsg{k}.format(_shp, _out[1][{k}]))")
                ptrs.append(f"{b.name}_ptr")
                continue
            if b.name in first_leaf:  # an output: allocate, or write into the caller's array (batches)
                k = first_leaf[b.name]
                env[f"_outmsg{k}"] = f"output {k}: expected a C-contiguous {b.dtype} array of shape {{}}, got {{}}"
                lines.append(f"    _shp = {shape}")
                lines.append(f"    if _out is None: {b.name} = _np.empty(_shp, _dt_{b.name})")
                lines.append("    else:")
                lines.append(f"        {b.name} = _out[{k}]")
                lines.append(f"        if {b.name}.shape != _shp or {b.name}.dtype != _dt_{b.name} or not "
                             f"{b.name}.flags.c_contiguous: raise ValueError(_outmsg{k}.format(_shp, "
                             f"({b.name}.dtype, {b.name}.shape)))")
            else:  # temporaries live only during the native call: slices of this thread's arena
                if all(isinstance(d, int) for d in b.shape):
                    size = str(-(-int(np.prod(b.shape, dtype=np.int64)) * b.dtype.itemsize // 64) * 64)
                else:
                    size = "-(-(" + " * ".join([str(b.dtype.itemsize)] + [py(d) for d in b.shape]) + ") // 64) * 64"
                temps.append((b.name, size, len(ptrs)))
                ptrs.append(f"{b.name}_ptr")
                continue
            ptrs.append(f"_addr({b.name})")
    if temps:
        fixed = sum(int(size) for _, size, _ in temps if size.isdigit())
        total = " + ".join([str(fixed)] + [size for _, size, _ in temps if not size.isdigit()])
        lines.append(f"    _need = {total}" if prep else f"    _at = _temp({total})")
        if prep:
            lines.append("    _at = 0")
        for k, (name, size, _) in enumerate(temps):
            lines.append(f"    {name}_ptr = _at")
            if k + 1 < len(temps):
                lines.append(f"    _at += {size}")
    elif prep:
        lines.append("    _need = 0")
    slot_values = ptrs + list(prog.params)
    outs = []
    for kind, ref in prog.outputs:
        if kind == "arg":
            outs.append(f"a{ref}")
        elif prog.buffers[ref].kind == "const":
            outs.append(f"_{ref}.copy()")
        else:
            outs.append(ref)
    tree = prog.tree
    if tree == "single":
        result = outs[0]
    elif tree == "tuple":
        result = f"({', '.join(outs)}{',' if len(outs) == 1 else ''})"
    elif tree == "list":
        result = f"[{', '.join(outs)}]"
    else:
        result = "{" + ", ".join(f"{k!r}: {o}" for k, o in zip(tree, outs)) + "}"
    dims = [d.args[0] for t in prog.inputs if isinstance(t, TensorType) for d in t.shape if not isinstance(d, int)]
    hosted = any(b.kind == "host" for b in prog.buffers.values())
    if prep:  # the slots into the batch's buffer; the objects whose addresses they hold, kept by the batch; the
        # outputs it allocated when given none (the batch's first sample: their structure, shapes and dtypes)
        lines.append(f"    _pack_into(_buf, _off, {', '.join(slot_values)})")
        lines.append(f"    return _need, ({''.join(a + ', ' for a in alive)}), None if _out is not None else {result}")
        return _by_shape(lines, "prep", dims, hosted), consts, len(slot_values), [slot for _, _, slot in temps]
    if prog.kernels:  # the argument array: int64 slots packed into a bytes object (ctypes passes its address)
        lines.append(f"    _native(_pack({', '.join(slot_values)}))")
    copies = [(k, o) for k, o in enumerate(outs) if first_leaf.get(prog.outputs[k][1]) != k
              or prog.outputs[k][0] != "buf"]
    lines.append("    if _out is not None:")
    for k, o in copies:
        lines.append(f"        _out[{k}][...] = {o}")
    lines.append("        return None")
    lines.append(f"    return {result}")
    return (_by_shape(lines, "run", dims, hosted), consts, len(slot_values) if prog.kernels else 0,
            [slot for _, _, slot in temps])


_ASSIGNED = re.compile(r"(?:^|(?<=[\s;:]))([A-Za-z_]\w*(?:, [A-Za-z_]\w*)*) \+?= (?!=)")  # as generated
_NAME = re.compile(r"[A-Za-z_]\w*")
_PER_CALL = re.compile(r"\b(?:a\d+|_out|_buf|_off|_temp|_addr|_pack|_pack_into|_native|_np|return|rng_seed|rng_index)\b"
                       r"|\.strides\b")
SHAPE_MEMO = 128  # input shapes remembered per prologue function (each entry holds its weight tables)


def _assigned(text: str) -> list:
    """The names a statement of generated prologue code assigns (``x = ...``, ``x, y = ...``, ``x += ...``)."""
    return [n.strip() for m in _ASSIGNED.finditer(text) for n in m.group(1).split(",")]


def _by_shape(lines: list, fn: str, dims: list, hosted: bool) -> list:
    """``lines`` (one prologue function) with the work that depends only on the input sizes — size rules and
    checks, weight tables, temporaries' offsets, output shapes — moved into a function of the sizes whose
    results are remembered per input shape: a dataset's images come in a few sizes, and that work is ~10 µs of
    Python per sample (a resize's rules and tables), on the caller's path of a batch. Per-call work stays:
    addresses, strides, outputs, random draws and all that depends on them (a random crop's box and the tables
    of its resize). A function with host ops keeps its lines as they are: its sizes come from decoded data."""
    if hosted:
        return lines
    head = 2  # the def line and the RNG key
    while head < len(lines) and re.search(r"\ba\d+\b", lines[head]):  # inputs: alignment, checks, shapes
        head += 1
    stmts: list = []  # statements after the head: a 4-space line with its nested lines (an else with its if)
    for line in lines[head:]:
        if line.startswith("        ") or line.startswith("    else:") or line.startswith("    elif "):
            stmts[-1].append(line)
        else:
            stmts.append([line])
    text = ["\n".join(st) for st in stmts]
    count: dict = {}
    for t in text:
        for name in _assigned(t):
            count[name] = count.get(name, 0) + 1
    per_call = {name for name, n in count.items() if n > 1}  # reassigned (a cursor, one shape per output)
    sizes, rest, names = [], [], []
    for st, t in zip(stmts, text):
        assigned = _assigned(t)
        if len(st) > 1 or _PER_CALL.search(t) or set(_NAME.findall(t)) & per_call:
            rest.extend(st)
            per_call.update(assigned)
            continue
        sizes.extend(st)
        names.extend(n for n in assigned if n not in names)
    if not names:
        return lines
    memo, key = f"_shape_memo_{fn}", "(" + "".join(f"{d}, " for d in dims) + ")"
    unpack = ", ".join(names) + ("," if len(names) == 1 else "")
    return [f"{memo} = {{}}", f"def _by_shape_{fn}({', '.join(dims)}):", *sizes, f"    return {unpack}",
            *lines[:head],
            f"    _m = {memo}.get({key})",
            "    if _m is None:",
            f"        _m = _by_shape_{fn}({', '.join(dims)})",
            f"        if len({memo}) >= {SHAPE_MEMO}: {memo}.clear()",
            f"        {memo}[{key}] = _m",
            f"    {unpack} = _m",
            *rest]


def spec_text(t) -> str:
    if not isinstance(t, TensorType):
        return "encoded image bytes"
    dims = ", ".join(str(d) if isinstance(d, int) else "?" for d in t.shape)
    return f"{t.dtype} array of shape ({dims}{',' if len(t.shape) == 1 else ''})"
