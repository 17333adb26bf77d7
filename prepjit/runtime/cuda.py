"""The CUDA runtime: NVRTC compilation to cubin (cached on disk), batch planning and staging, CuPy launches.

Nothing here imports CuPy at module import time; rendering CUDA C and compiling it with NVRTC need no GPU.

A call (``fn.batch(samples)``; a single call is a batch of one) goes:

1. **Plan** every sample on the host with a generated prologue (``build_planner``): the CPU prologue's checks and
   size parameters, host ops (decoding), resampling weight tables; inputs made contiguous.
2. **Lay out** the batch (``layout_batch``): every host array (ragged images, tables — deduplicated across
   samples —, constants) at an aligned offset of one staging buffer, followed by the per-sample argument table
   (``N × NSLOTS`` int64: device pointers, then size parameters); scratch buffers at offsets of one device
   arena; outputs at ``i * sample_bytes`` of one ``(N, ...)`` array per output.
3. **Run** (``CudaExecutable``): fill a pinned host buffer, one host-to-device copy, one launch of the fused kernel
   on the current stream (torch's current stream for torch tensors), results as CuPy arrays (torch via DLPack).

Inputs already on the device (CuPy arrays, torch CUDA tensors) are not staged: their pointers and strides go in
the argument table directly.
"""
from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from prepjit import __version__
from prepjit.errors import CompileError, PrepjitError
from prepjit.ir import dims as D
from prepjit.ir.func import output_structure
from prepjit.lowering.lower import Program

NVRTC_OPTIONS = ("--fmad=false", "-std=c++17")
DEFAULT_AOT_ARCHS = ("sm_80", "sm_90")
ALIGN = 256


class CudaUnavailableError(PrepjitError, RuntimeError):
    """A ``target="cuda"`` function was run where CUDA (a device, a driver or CuPy) is not available."""


# -- NVRTC ---------------------------------------------------------------------------------------------------------
def _nvrtc():
    try:
        from cupy_backends.cuda.libs import nvrtc
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise CudaUnavailableError("compiling CUDA C needs CuPy and NVRTC: pip install 'prepjit[gpu]' "
                                   f"(cupy-cuda13x nvidia-cuda-nvrtc) ({e})") from None
    return nvrtc


@lru_cache(maxsize=None)
def nvrtc_version() -> str:
    major, minor = _nvrtc().getVersion()
    return f"{major}.{minor}"


def _check_arch(arch: str) -> str:
    if not (isinstance(arch, str) and arch.startswith("sm_") and arch[3:].rstrip("af").isdigit()):
        raise ValueError(f"CUDA architecture must look like 'sm_90', got {arch!r}")
    return arch


def compile_cubin(source: str, arch: str, name: str = "prepjit.cu") -> bytes:
    """CUDA C → cubin for ``arch`` (e.g. "sm_90") with NVRTC; no GPU needed."""
    nvrtc = _nvrtc()
    prog = nvrtc.createProgram(source, name, [], [])
    try:
        try:
            nvrtc.compileProgram(prog, [f"-arch={_check_arch(arch)}", *NVRTC_OPTIONS])
        except Exception as e:
            log = nvrtc.getProgramLog(prog)
            raise CompileError(f"NVRTC failed to compile the generated CUDA C for {arch}: {e}\n{log}") from None
        return bytes(nvrtc.getCUBIN(prog))
    finally:
        nvrtc.destroyProgram(prog)


def cubin_key(source: str, arch: str) -> str:
    """Cache key of a cubin: the generated source, the architecture, NVRTC version and options, prepjit."""
    from prepjit.compiler.driver import compiler_hash

    parts = ["cuda-cubin", source, arch, nvrtc_version(), repr(NVRTC_OPTIONS), __version__, compiler_hash()]
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()


def source_key(source: str) -> str:
    return hashlib.sha256(b"cuda-source\x00" + source.encode()).hexdigest()


def cached_cubin(source: str, arch: str, meta: dict | None = None, use_cache: bool = True,
                 stats: dict | None = None) -> bytes:
    """The cubin for (source, arch) from the on-disk cache, compiling (under the per-key lock) on a miss."""
    if not use_cache:
        return compile_cubin(source, arch)
    from prepjit.runtime.cache import get_cache

    store = get_cache()
    key = cubin_key(source, arch)
    entry = store.load(key)
    if entry is not None:
        if stats is not None:
            stats["disk_hits"] = stats.get("disk_hits", 0) + 1
        return entry.payload
    with store.lock(key):
        entry = store.load(key)
        if entry is not None:
            if stats is not None:
                stats["disk_hits"] = stats.get("disk_hits", 0) + 1
            return entry.payload
        cubin = compile_cubin(source, arch)
        if stats is not None:
            stats["compiles"] = stats.get("compiles", 0) + 1
        skey = source_key(source)
        m = dict(meta or {}, target="cuda", arch=arch, nvrtc=nvrtc_version(), options=list(NVRTC_OPTIONS),
                 source_key=skey)
        if store.load(skey) is None:
            store.store(skey, source.encode(), dict(meta or {}, target="cuda", kind="source"))
        store.store(key, cubin, m)
        return cubin


# -- device -------------------------------------------------------------------------------------------------------
def cupy_module():
    try:
        import cupy
    except ImportError as e:
        raise CudaUnavailableError("target='cuda' needs CuPy: pip install 'prepjit[gpu]' "
                                   f"(cupy-cuda13x nvidia-cuda-nvrtc) ({e})") from None
    return cupy


def device_arch() -> str:
    """``sm_XY`` of the current device, or CudaUnavailableError saying why there is none."""
    cupy = cupy_module()
    try:
        n = cupy.cuda.runtime.getDeviceCount()
    except Exception as e:
        n, why = 0, f"{type(e).__name__}: {e}"
    else:
        why = "the CUDA runtime reports 0 devices"
    if n == 0:
        raise CudaUnavailableError(
            f"no CUDA device is available ({why}). A target='cuda' function can still be traced and "
            "inspected here: fn.source('cuda', example=...) and fn.compile(..., arch=['sm_80', 'sm_90']) work "
            "without a GPU; to run on this machine use fn.to('cpu').")
    return "sm_" + cupy.cuda.Device().compute_capability


# -- planning: the host prologue per sample ---------------------------------------------------------------------
class DeviceArray:
    """A device-resident input (``__cuda_array_interface__``: CuPy arrays, torch CUDA tensors): not staged."""

    __slots__ = ("shape", "strides", "dtype", "ptr", "owner", "ndim")

    def __init__(self, obj):
        cai = obj.__cuda_array_interface__
        self.dtype = np.dtype(cai["typestr"])
        self.shape = tuple(cai["shape"])
        self.ndim = len(self.shape)
        st = cai.get("strides")
        if st is None:
            st, n = [], self.dtype.itemsize
            for d in reversed(self.shape):
                st.append(n)
                n *= d
            st = tuple(reversed(st))
        self.strides = tuple(st)
        self.ptr = int(cai["data"][0])
        self.owner = obj


@dataclass
class SamplePlan:
    arrays: dict          # buffer name -> np.ndarray (host data to stage) or DeviceArray
    sized: dict           # buffer name -> (shape, dtype) for temps and outputs
    params: list          # int values, in Program.params order


def build_planner(prog: Program, arg_names: list[str], spec_text: list[str]):
    """Generate ``plan(a0, ...) -> SamplePlan``: the CPU prologue's checks and sizes, no native call."""
    from prepjit.runtime.executable import _RNG_KEY, _fdiv, _fmod, _ifone, emit_sizes  # the CPU prologue's pieces

    env: dict = {"_np": np, "_fdiv": _fdiv, "_fmod": _fmod, "_ifone": _ifone, "_Plan": SamplePlan,
                 "_Dev": DeviceArray}
    env.update(D.CALLS)
    args = [f"a{k}" for k in range(len(prog.inputs))] + ["_rng=(0, 0)"]
    lines = [f"def plan({', '.join(args)}):",
             f"    {_RNG_KEY}  # the sample's key for random ops (prepjit.kernels.rng)"]
    py = emit_sizes(prog, arg_names, spec_text, env, lines,
                    input_prep="if type({a}) is not _Dev: {a} = _np.ascontiguousarray({a})",
                    host_wrap="_np.ascontiguousarray({})")
    arrays, sized = [], []
    for b in prog.buffers.values():
        if b.kind == "input":
            arrays.append(f"{b.name!r}: a{b.arg}")
        elif b.kind == "const":
            env[f"_{b.name}"] = np.ascontiguousarray(b.value)
            arrays.append(f"{b.name!r}: _{b.name}")
        elif b.kind == "host":
            arrays.append(f"{b.name!r}: {b.name}")
        elif b.kind == "table":  # cached by size here too: equal tables are one staged array per batch
            env[f"_mk_{b.name}"] = lru_cache(maxsize=1024)(b.maker)
            arrays.append(f"{b.name!r}: _mk_{b.name}({', '.join(py(x) for x in b.maker_args)})")
        else:
            env[f"_dt_{b.name}"] = b.dtype
            shape = "(" + "".join(f"{py(d)}, " for d in b.shape) + ")"
            sized.append(f"{b.name!r}: ({shape}, _dt_{b.name})")
    params = ", ".join(prog.params)
    arrays_text, sized_text = ", ".join(arrays), ", ".join(sized)
    lines.append(f"    return _Plan({{{arrays_text}}}, {{{sized_text}}}, [{params}{',' if params else ''}])")
    source = "\n".join(lines) + "\n"
    exec(compile(source, f"<prepjit cuda planner {prog.name}>", "exec"), env)  # noqa: S102 - generated above
    plan = env["plan"]
    plan.__prepjit_source__ = source
    return plan


def _align(n: int, a: int = ALIGN) -> int:
    return (n + a - 1) // a * a


PIECE, IMMEDIATE = 1, 0


@dataclass
class BatchLayout:
    """Where everything of a batch lives. A pointer slot names a piece ``(region, offset, nbytes)`` resolved
    against the regions' base addresses: "stage" (host data, copied once), "temp" (device arena), ("out", k);
    other slots are immediate int64 values (size parameters, pointers of device-resident inputs)."""

    n: int
    nslots: int
    stage_nbytes: int
    stage_parts: list          # (offset, ndarray) host arrays to copy into the staging buffer
    args_offset: int           # offset of the int64 argument table in the staging buffer
    temp_nbytes: int
    out_names: list            # output buffer names, in Program order
    out_shapes: list           # per-sample shape of each output
    out_dtypes: list
    pieces: list = field(default_factory=list)      # unique (region, offset, nbytes)
    kinds: np.ndarray = None   # (N, NSLOTS) int8: PIECE or IMMEDIATE
    values: np.ndarray = None  # (N, NSLOTS) int64: piece index or the value itself

    def resolve(self, bases: dict) -> np.ndarray:
        """The (N, NSLOTS) int64 argument table for region base addresses ``bases``."""
        addr = np.array([bases[r] + off for r, off, _ in self.pieces] or [0], np.int64)
        return np.where(self.kinds == PIECE, addr[np.where(self.kinds == PIECE, self.values, 0)], self.values)


def layout_batch(prog: Program, plans: list[SamplePlan], fn_name: str = "") -> BatchLayout:
    n = len(plans)
    slots = prog.slots()
    nbuf = len(prog.buffers)
    outputs = [b.name for b in prog.buffers.values() if b.kind == "output"]
    first = plans[0]
    out_shapes = [tuple(int(d) for d in first.sized[o][0]) for o in outputs]
    out_dtypes = [np.dtype(first.sized[o][1]) for o in outputs]
    for i, p in enumerate(plans[1:], 1):
        for o, shp in zip(outputs, out_shapes):
            got = tuple(int(d) for d in p.sized[o][0])
            if got != shp:
                raise ValueError(f"{fn_name}.batch(): sample {i}: output shape {got} differs from sample 0's "
                                 f"{shp}; outputs of a batch must agree in shape to be stacked")
    lay = BatchLayout(n, len(slots), 0, [], 0, 0, outputs, out_shapes, out_dtypes)
    lay.kinds = np.full((n, len(slots)), IMMEDIATE, np.int8)
    lay.kinds[:, :nbuf] = PIECE
    lay.values = np.empty((n, len(slots)), np.int64)
    piece_of: dict = {}
    staged: dict = {}    # id(host array) -> offset (tables and constants are shared by samples)
    keep = []
    stage_off = temp_off = 0
    out_nbytes = [int(np.prod(s, dtype=np.int64)) * dt.itemsize for s, dt in zip(out_shapes, out_dtypes)]
    roles = []           # per buffer slot: ("arr"|"out"|"temp", name or output index)
    for name in slots[:nbuf]:
        b = prog.buffers[name]
        roles.append(("out", outputs.index(name)) if b.kind == "output" else
                     ("arr", name) if b.kind in ("input", "const", "host", "table") else ("temp", name))
    pieces = lay.pieces
    for i, p in enumerate(plans):
        row = lay.values[i]
        for j, (role, ref) in enumerate(roles):
            if role == "arr":
                arr = p.arrays[ref]
                if type(arr) is DeviceArray:
                    lay.kinds[i, j] = IMMEDIATE
                    row[j] = arr.ptr
                    continue
                off = staged.get(id(arr))
                if off is None:
                    off = staged[id(arr)] = stage_off
                    lay.stage_parts.append((off, arr))
                    keep.append(arr)
                    stage_off = _align(stage_off + arr.nbytes)
                key = ("stage", off, arr.nbytes)
            elif role == "out":
                key = (("out", ref), i * out_nbytes[ref], out_nbytes[ref])
            else:
                shape, dt = p.sized[ref]
                nbytes = dt.itemsize
                for d in shape:
                    nbytes *= d
                key = ("temp", temp_off, nbytes)  # an empty buffer may share its offset with the next one
                temp_off = _align(temp_off + nbytes)
            k = piece_of.get(key)
            if k is None:
                k = piece_of[key] = len(pieces)
                pieces.append(key)
            row[j] = k
        row[nbuf:] = p.params
    lay.args_offset = stage_off
    lay.stage_nbytes = stage_off + n * len(slots) * 8
    lay.temp_nbytes = temp_off
    return lay


def fill_staging(lay: BatchLayout, buf: np.ndarray, bases: dict) -> None:
    """Write the host arrays and the resolved argument table into ``buf`` (uint8, ``lay.stage_nbytes``)."""
    for off, arr in lay.stage_parts:
        if arr.nbytes:
            buf[off:off + arr.nbytes].view(arr.dtype).reshape(arr.shape)[...] = arr
    table = lay.resolve(bases)
    buf[lay.args_offset:lay.args_offset + table.nbytes] = table.reshape(-1).view(np.uint8)


# -- the executable ---------------------------------------------------------------------------------------------
class CudaExecutable:
    """One compiled specialization on the GPU: ``run_batch(samples)`` → stacked outputs (CuPy arrays)."""

    def __init__(self, program: Program, source, planner, fn_name: str, cubin: bytes):
        self.program = program
        self.source = source
        self.planner = planner
        self.fn_name = fn_name
        self.cubin = cubin
        self._function = None
        self._pinned = None
        self._pinned_event = None
        self._lock = threading.Lock()
        self.launches = 0

    def function(self):
        if self._function is None:
            cupy = cupy_module()
            mod = cupy.cuda.function.Module()
            mod.load(self.cubin)  # the cached cubin: no compilation at load time
            self._module = mod
            self._function = mod.get_function(self.source.entry)
        return self._function

    def plan(self, samples: list, seed: int = 0, index: int = 0) -> list:
        """Host prologue per sample; random ops see sample ``i`` as ``(seed, index + i)``, as on the CPU."""
        plans = []
        for i, s in enumerate(samples):
            try:
                plans.append(self.planner(*s, _rng=(int(seed), int(index) + i)))
            except (TypeError, ValueError, IndexError) as e:
                if len(samples) == 1:
                    raise
                raise type(e)(f"{self.fn_name}.batch(): sample {i}: {e}") from None
        return plans

    def _staging(self, nbytes: int):
        cupy = cupy_module()
        if self._pinned_event is not None:
            self._pinned_event.synchronize()  # the previous copy out of this buffer has finished
        if self._pinned is None or self._pinned.size < nbytes:
            size = max(nbytes, 1 << 20)
            mem = cupy.cuda.alloc_pinned_memory(size)
            self._pinned = np.frombuffer(mem, np.uint8, size)
            self._pinned_mem = mem
        return self._pinned

    def run_batch(self, samples: list, stream=None, seed: int = 0, index: int = 0):
        cupy = cupy_module()
        fn = self.function()
        plans = self.plan(samples, seed, index)
        lay = layout_batch(self.program, plans, self.fn_name)
        stream = stream or cupy.cuda.get_current_stream()
        with self._lock, stream:  # allocations are ordered on the stream the work goes to
            outs = [cupy.empty((lay.n,) + s, dt) for s, dt in zip(lay.out_shapes, lay.out_dtypes)]
            stage_dev = cupy.empty(max(lay.stage_nbytes, 1), np.uint8)
            temp_dev = cupy.empty(max(lay.temp_nbytes, 1), np.uint8)
            bases = {"stage": stage_dev.data.ptr, "temp": temp_dev.data.ptr}
            for k, o in enumerate(outs):
                bases[("out", k)] = o.data.ptr
            host = self._staging(lay.stage_nbytes)
            fill_staging(lay, host, bases)
            cupy.cuda.runtime.memcpyAsync(stage_dev.data.ptr, host.ctypes.data, lay.stage_nbytes,
                                          cupy.cuda.runtime.memcpyHostToDevice, stream.ptr)
            ev = cupy.cuda.Event(block=False, disable_timing=True)
            ev.record(stream)
            self._pinned_event = ev  # the next call waits for this copy before refilling the pinned buffer
            threads = self.source.block_threads
            gx = 1
            if self.source.mode == "grid":
                work = max(int(np.prod(s, dtype=np.int64)) for s in lay.out_shapes) if lay.out_shapes else 1
                gx = int(min(max(1, -(-work // threads)), 4096))
            gy = min(lay.n, 65535)
            fn((gx, gy, 1), (threads, 1, 1), (np.int64(stage_dev.data.ptr + lay.args_offset), np.int64(lay.n)),
               stream=stream)
            self.launches += 1
        return outs


def describe_no_device() -> str | None:
    """None when a CUDA device can be used, else the reason (for tests and benchmarks)."""
    try:
        device_arch()
    except CudaUnavailableError as e:
        return str(e)
    return None


__all__ = ["CudaUnavailableError", "CudaExecutable", "compile_cubin", "cached_cubin", "cubin_key", "device_arch",
           "build_planner", "layout_batch", "fill_staging", "nvrtc_version", "DEFAULT_AOT_ARCHS"]


# -- JitFunction integration (called from prepjit.api for target="cuda") ----------------------------------------
def render(c):
    """The CUDA C of a Compiled specialization (memoized on it)."""
    from prepjit.lowering.cuda import render_program

    if c.cuda_source is None:
        c.cuda_source = render_program(c.program.kernels, c.program.slots(), c.program.name)
    return c.cuda_source


def _meta(jf, c) -> dict:
    from prepjit.runtime.executable import spec_text

    return {"function": f"{jf.fn.__module__}.{jf.fn.__qualname__}",
            "specialization": [spec_text(t) for t in c.program.inputs]}


def executable(jf, specs) -> CudaExecutable:
    """Compile (or load from the cache) the cubin of one specialization for the current device."""
    from prepjit.runtime.executable import spec_text

    arch = device_arch()
    c = jf._build(specs)
    src = render(c)
    stats: dict = {}
    cubin = cached_cubin(src.text, arch, _meta(jf, c), jf.cache, stats)
    jf.stats["compiles"] += stats.get("compiles", 0)
    jf.stats["disk_hits"] += stats.get("disk_hits", 0)
    jf.stats["specializations"] += 1
    c.from_disk = bool(stats.get("disk_hits"))
    planner = build_planner(c.program, jf.arg_names, [spec_text(t) for t in c.program.inputs])
    return CudaExecutable(c.program, src, planner, jf.name, cubin)


def compile_ahead(jf, todo, archs) -> None:
    """AOT: render and NVRTC-compile every specialization in ``todo`` for ``archs`` into the cache (no GPU)."""
    from prepjit.api import _prebuild_fixed_kernels

    archs = [archs] if isinstance(archs, str) else list(archs)
    for spec in todo:
        c = jf._build(spec)
        src = render(c)
        _prebuild_fixed_kernels(c.program)  # the host prologue's resize-table kernels (CPU code)
        for arch in archs:
            stats: dict = {}
            cached_cubin(src.text, _check_arch(arch), _meta(jf, c), jf.cache, stats)
            jf.stats["compiles"] += stats.get("compiles", 0)
            jf.stats["disk_hits"] += stats.get("disk_hits", 0)


def _is_torch(x) -> bool:
    import sys

    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


def _convert(jf, a, i):
    if type(a) is np.ndarray:
        return a
    if _is_torch(a):  # torch first: its __cuda_array_interface__ raises for tensors that require grad
        return DeviceArray(a.detach()) if a.device.type == "cuda" else jf._to_numpy(a, i)
    if hasattr(a, "__cuda_array_interface__"):  # CuPy arrays, Numba device arrays, ...
        return DeviceArray(a)
    return jf._to_numpy(a, i)


def _stream(torch_in: bool):
    cupy = cupy_module()
    if torch_in:  # pragma: no cover - needs a GPU
        import torch

        if torch.cuda.is_available():
            ts = torch.cuda.current_stream()
            if hasattr(ts, "__cuda_stream__") and hasattr(cupy.cuda.Stream, "from_external"):
                return cupy.cuda.Stream.from_external(ts)  # the CUDA stream protocol (CuPy >= 14)
            import warnings

            with warnings.catch_warnings():  # deprecated in CuPy 14, the only way before it
                warnings.simplefilter("ignore", DeprecationWarning)
                return cupy.cuda.ExternalStream(ts.cuda_stream)
    return cupy.cuda.get_current_stream()


def run(jf, samples: list, single: bool, seed: int = 0, index: int = 0):
    """Run N samples (tuples of arguments) in one launch; outputs in the function's structure, stacked unless
    ``single``. Random ops see sample ``i`` as ``(seed, index + i)``: the CPU path's augmentations."""
    from prepjit.api import _key

    device_arch()  # a clear error before any tracing when there is no device
    torch_in = any(_is_torch(a) for s in samples for a in s)
    conv = []
    for i, s in enumerate(samples):
        try:
            conv.append(tuple(_convert(jf, a, j) for j, a in enumerate(s)))
        except TypeError as e:
            raise TypeError(e if single else f"{jf.name}.batch(): sample {i}: {e}") from None
    key = _key(conv[0])
    for i, s in enumerate(conv[1:], 1):
        if _key(s) != key:
            raise TypeError(f"{jf.name}.batch(): sample {i} differs in dtype or rank from sample 0; a GPU batch is "
                            "one specialization")
    exe = jf._execs.get(key) or jf._specialize(list(conv[0]), key)
    outs = exe.run_batch(conv, _stream(torch_in), seed, index)
    prog = exe.program
    cupy = cupy_module()
    by_name = dict(zip([b.name for b in prog.buffers.values() if b.kind == "output"], outs))
    leaves = []
    for kind, ref in prog.outputs:
        if kind == "buf" and ref in by_name:
            x = by_name[ref]
        elif kind == "buf":  # a constant returned as is
            x = cupy.asarray(np.broadcast_to(prog.buffers[ref].value, (len(conv),) + prog.buffers[ref].value.shape))
        else:  # an input returned unchanged
            x = cupy.stack([cupy.asarray(s[ref]) if type(s[ref]) is not DeviceArray else cupy.asarray(s[ref].owner)
                            for s in conv])
        x = x[0] if single else x
        if torch_in:  # pragma: no cover - needs a GPU
            import torch

            x = torch.from_dlpack(x)
        leaves.append(x)
    tree = prog.tree
    return output_structure(tree, leaves)
