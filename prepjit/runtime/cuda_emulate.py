"""Run generated CUDA C on the CPU: the emulation harness the tests use where there is no GPU.

The program's CUDA C is compiled *unchanged* as C++ (g++) after a small shim (``SHIM``): ``blockIdx`` /
``threadIdx`` / ``blockDim`` / ``gridDim`` are per-thread variables; blocks run one after another, and the
threads of a block are host threads driven by a deterministic scheduler — exactly one runs at a time, each runs
until its next ``__syncthreads()`` (or its end), in a fixed order (highest thread index first by default). A
missing barrier therefore shows up deterministically as a read of data another thread has not written yet
(scratch memory starts filled with a garbage pattern), and since threads never run concurrently AddressSanitizer
and UBSan see a race-free program.

The host side is the real runtime's: ``build_planner`` + ``layout_batch`` (same argument table, same pieces).
Each piece (one input image, one weight table, one scratch buffer, one sample's output) is a separate exact-size
``malloc`` in the emulator, so with ``sanitize=True`` (``-fsanitize=address,undefined``) any access outside a
buffer aborts the run: that is the "a kernel never indexes outside its buffers" check.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import struct
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from prepjit.errors import CompileError

SHIM = r"""
#include <math.h>
#include <string.h>
struct pj_dim3 { unsigned int x, y, z; };
extern thread_local pj_dim3 threadIdx, blockIdx;
extern pj_dim3 blockDim, gridDim;
void __syncthreads();
#define __global__
#define __device__
#define __shared__ static  /* blocks run one at a time: one array per block is one per function */
#define __forceinline__ inline
#define __launch_bounds__(n)
#define PJ_DEV static inline
static inline float pj_f32_bits(unsigned int u) { float f; memcpy(&f, &u, 4); return f; }
static inline double pj_f64_bits(unsigned long long u) { double f; memcpy(&f, &u, 8); return f; }
static inline unsigned int pj_f32_u(float x) { unsigned int u; memcpy(&u, &x, 4); return u; }
static inline unsigned long long pj_f64_u(double x) { unsigned long long u; memcpy(&u, &x, 8); return u; }
static inline double __longlong_as_double(long long x) { double f; memcpy(&f, &x, 8); return f; }
"""

DRIVER = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <thread>
#include <mutex>
#include <condition_variable>
#include <vector>
struct pj_dim3 { unsigned int x, y, z; };
thread_local pj_dim3 threadIdx, blockIdx;
pj_dim3 blockDim, gridDim;
extern "C" void prepjit_cuda_entry(const long long* args, long long n);
/* deterministic scheduler: one thread runs at a time, until its next barrier */
static std::mutex pj_mu;
static std::condition_variable pj_cv;
static int pj_turn, pj_nthr, pj_order;
static std::vector<int> pj_state;  /* 0 ready, 1 at barrier, 2 done */
static thread_local int pj_me;
static int pj_next(int from) {
  for (int k = 1; k <= pj_nthr; ++k) {
    int j = pj_order ? (from + k) % pj_nthr : (from - k + 2 * pj_nthr) % pj_nthr;
    if (pj_state[j] == 0) return j;
  }
  return -1;
}
static void pj_pass(int me) {
  int j = pj_next(me);
  if (j < 0) {
    bool any = false;
    for (int k = 0; k < pj_nthr; ++k) if (pj_state[k] == 1) { pj_state[k] = 0; any = true; }
    j = any ? (pj_order ? pj_next(pj_nthr - 1) : pj_next(0)) : -1;
  }
  pj_turn = j;
  pj_cv.notify_all();
}
void __syncthreads() {
  std::unique_lock<std::mutex> lk(pj_mu);
  pj_state[pj_me] = 1;
  pj_pass(pj_me);
  pj_cv.wait(lk, [] { return pj_turn == pj_me; });
}
static void pj_run_block(const long long* args, long long n, int nthr) {
  pj_nthr = nthr;
  pj_state.assign(nthr, 0);
  pj_turn = pj_order ? 0 : nthr - 1;
  std::vector<std::thread> ts;
  pj_dim3 b = blockIdx;
  for (int t = 0; t < nthr; ++t) ts.emplace_back([=] {
    pj_me = t; threadIdx = {(unsigned)t, 0, 0}; blockIdx = b;
    { std::unique_lock<std::mutex> lk(pj_mu); pj_cv.wait(lk, [] { return pj_turn == pj_me; }); }
    prepjit_cuda_entry(args, n);
    std::unique_lock<std::mutex> lk(pj_mu);
    pj_state[pj_me] = 2;
    pj_pass(pj_me);
  });
  for (auto& t : ts) t.join();
}

"""

MAIN = r"""
static void rd(FILE* f, void* p, size_t n) { if (n && fread(p, 1, n, f) != n) { fprintf(stderr, "short job\n"); exit(3); } }

int main(int argc, char** argv) {
  FILE* f = fopen(argv[1], "rb");
  long long h[9];
  rd(f, h, sizeof h);
  long long n = h[0], nslots = h[1], nthr = h[2], gx = h[3], npieces = h[4], nbufs = h[5], nouts = h[6];
  pj_order = (int)h[7];
  long long fill = h[8];
  std::vector<long long> pieces(npieces * 4);   /* region, offset, nbytes, is_output_index */
  rd(f, pieces.data(), pieces.size() * 8);
  std::vector<long long> rows(n * nslots), kinds(n * nslots);
  rd(f, rows.data(), rows.size() * 8);
  rd(f, kinds.data(), kinds.size() * 8);
  std::vector<long long> out_sizes(nouts);
  rd(f, out_sizes.data(), nouts * 8);
  long long stage_n; rd(f, &stage_n, 8);
  std::vector<unsigned char> stage(stage_n);
  rd(f, stage.data(), stage_n);
  fclose(f);
  std::vector<unsigned char*> mem(npieces);
  for (long long p = 0; p < npieces; ++p) {
    long long region = pieces[4 * p], off = pieces[4 * p + 1], nb = pieces[4 * p + 2];
    mem[p] = (unsigned char*)malloc(nb ? nb : 1);
    if (nb && region == 0) memcpy(mem[p], stage.data() + off, nb);
    else if (nb) memset(mem[p], (int)fill, nb);
  }
  std::vector<long long> table(n * nslots);
  for (long long i = 0; i < n * nslots; ++i)
    table[i] = kinds[i] ? (long long)(size_t)mem[rows[i]] : rows[i];
  blockDim = {(unsigned)nthr, 1, 1};
  gridDim = {(unsigned)gx, (unsigned)n, 1};
  for (long long y = 0; y < n; ++y)
    for (long long x = 0; x < gx; ++x) {
      blockIdx = {(unsigned)x, (unsigned)y, 0};
      pj_run_block(table.data(), n, (int)nthr);
    }
  std::vector<std::vector<unsigned char>> outs(nouts);
  for (long long k = 0; k < nouts; ++k) outs[k].assign(out_sizes[k], 0);
  for (long long p = 0; p < npieces; ++p) {
    long long out = pieces[4 * p + 3];
    if (out >= 0 && pieces[4 * p + 2]) memcpy(outs[out].data() + pieces[4 * p + 1], mem[p], pieces[4 * p + 2]);
  }
  FILE* o = fopen(argv[2], "wb");
  for (long long k = 0; k < nouts; ++k) if (out_sizes[k]) fwrite(outs[k].data(), 1, out_sizes[k], o);
  fclose(o);
  for (long long p = 0; p < npieces; ++p) free(mem[p]);
  return 0;
}
"""

LIBRARY = r"""
extern "C" void pj_launch(const long long* args, long long n, long long gx, long long gy, long long nthr, long long order) {
  pj_order = (int)order;
  blockDim = {(unsigned)nthr, 1, 1};
  gridDim = {(unsigned)gx, (unsigned)gy, 1};
  for (long long y = 0; y < gy; ++y)
    for (long long x = 0; x < gx; ++x) {
      blockIdx = {(unsigned)x, (unsigned)y, 0};
      pj_run_block(args, n, (int)nthr);
    }
}
"""

SANITIZE_FLAGS = ("-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-fno-omit-frame-pointer")


def compiler() -> str | None:
    return shutil.which(os.environ.get("CXX", "g++")) or shutil.which("c++")


def _build_dir() -> Path:
    d = Path(os.environ.get("PREPJIT_EMU_DIR", Path(tempfile.gettempdir()) / f"prepjit-emu-{os.getuid()}"))
    d.mkdir(parents=True, exist_ok=True)
    return d


def _compile(cxx, flags, text: str, out: Path, link: list | None = None) -> Path:
    """Compile ``text`` (``link`` None: to an object; else link it with the objects in ``link``), cached."""
    if out.exists():
        return out
    pid = os.getpid()
    src = out.with_name(f".{pid}.{out.name}.cpp")
    src.write_text(text)
    tmp = out.with_name(f".{pid}.{out.name}")
    cmd = [cxx, *flags, str(src), "-o", str(tmp)] + (["-c"] if link is None else [str(x) for x in link])
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise CompileError(f"g++ could not compile the generated CUDA C:\n{r.stderr[-4000:]}")
    os.replace(src, out.with_name(out.name + ".cpp"))
    os.replace(tmp, out)
    return out


def build(source_text: str, sanitize: bool = True) -> Path:
    """Compile CUDA C + shim, link with the driver (compiled once) into an executable (cached by content)."""
    cxx = compiler()
    if cxx is None:
        raise CompileError("the CUDA emulation harness needs a C++ compiler (g++)")
    flags = ["-std=c++17", "-O0", "-g0", "-ffp-contract=off", "-fno-fast-math", "-pthread", "-w"]
    if sanitize:
        flags += SANITIZE_FLAGS
    salt = repr(flags) + cxx
    d = _build_dir()
    drv_text = DRIVER + MAIN
    drv = _compile(cxx, flags, drv_text, d / f"driver-{hashlib.sha256((drv_text + salt).encode()).hexdigest()[:24]}.o")
    text = SHIM + source_text
    key = hashlib.sha256((text + salt + drv.name).encode()).hexdigest()[:24]  # the driver is part of the key
    return _compile(cxx, flags, text, d / f"emu-{key}", [drv])


def load_library(source_text: str):
    """The CUDA C as a shared library in this process (no sanitizers): ``launch(args_ptr, n, gx, gy, threads,
    order)`` runs the grid on host threads, with the same deterministic scheduler."""
    import ctypes

    cxx = compiler()
    if cxx is None:
        raise CompileError("the CUDA emulation harness needs a C++ compiler (g++)")
    flags = ["-std=c++17", "-O0", "-g0", "-ffp-contract=off", "-fno-fast-math", "-pthread", "-w", "-fPIC"]
    salt = repr(flags) + cxx
    d = _build_dir()
    drv_text = DRIVER + LIBRARY
    drv = _compile(cxx, flags, drv_text, d / f"libdrv-{hashlib.sha256((drv_text + salt).encode()).hexdigest()[:24]}.o")
    text = SHIM + source_text
    so = _compile(cxx, flags + ["-shared"], text,
                  d / f"lib-{hashlib.sha256((text + salt + drv.name).encode()).hexdigest()[:24]}.so", [drv])
    lib = ctypes.CDLL(str(so))
    fn = lib.pj_launch
    fn.argtypes = [ctypes.c_void_p] + [ctypes.c_longlong] * 5
    fn.restype = None
    return fn


def run(jit_fn, samples: list, threads: int = 4, order: str = "descending", sanitize: bool = True,
        grid_x: int | None = None, fill: int = 0xA5, transform=None, seed: int = 0, index: int = 0):
    """Emulate ``jit_fn.batch`` for CUDA: list of per-sample argument tuples → stacked numpy outputs (a list, one
    per output buffer, in Program order) and the CudaSource. ``transform`` edits the CUDA C text first (tests
    of the harness itself)."""
    from prepjit.lowering.cuda import render_program
    from prepjit.runtime.cuda import build_planner, fill_staging, layout_batch
    from prepjit.runtime.executable import spec_text

    samples = [tuple(s) if isinstance(s, (tuple, list)) else (s,) for s in samples]
    c = jit_fn._compiled_for(samples[0], "cuda")
    prog = c.program
    src = render_program(prog.kernels, prog.slots(), prog.name, block_threads=threads)
    planner = build_planner(prog, jit_fn.arg_names, [spec_text(t) for t in prog.inputs])
    plans = [planner(*s, _rng=(seed, index + i)) for i, s in enumerate(samples)]
    lay = layout_batch(prog, plans, jit_fn.name)
    regions = {"stage": 0, "temp": 1}
    stage = np.zeros(lay.stage_nbytes, np.uint8)
    fill_staging(lay, stage, {"stage": 0, "temp": 0, **{("out", k): 0 for k in range(len(lay.out_names))}})
    stage = stage[:lay.args_offset]
    if any(type(a).__name__ == "DeviceArray" for p in plans for a in p.arrays.values()):
        raise ValueError("the emulator runs host inputs only")
    rows, kinds = lay.values.reshape(-1), lay.kinds.astype(np.int64).reshape(-1)
    pieces = []
    for region, off, nb in lay.pieces:
        out = region[1] if isinstance(region, tuple) else -1
        pieces += [regions.get(region, 2), off, nb, out]
    out_sizes = [lay.n * int(np.prod(s, dtype=np.int64)) * dt.itemsize for s, dt in zip(lay.out_shapes, lay.out_dtypes)]
    gx = grid_x if grid_x is not None else (2 if src.mode == "grid" else 1)
    exe = build(transform(src.text) if transform else src.text, sanitize)
    with tempfile.TemporaryDirectory() as d:
        job, res = Path(d) / "job", Path(d) / "out"
        with open(job, "wb") as f:
            f.write(struct.pack("<9q", lay.n, lay.nslots, threads, gx, len(lay.pieces), 0, len(out_sizes),
                                0 if order == "descending" else 1, fill))
            f.write(np.asarray(pieces, np.int64).tobytes())
            f.write(np.asarray(rows, np.int64).tobytes())
            f.write(np.asarray(kinds, np.int64).tobytes())
            f.write(np.asarray(out_sizes, np.int64).tobytes())
            f.write(struct.pack("<q", stage.nbytes))
            f.write(stage.tobytes())
        env = dict(os.environ, ASAN_OPTIONS="detect_leaks=0:abort_on_error=0", UBSAN_OPTIONS="print_stacktrace=1")
        r = subprocess.run([str(exe), str(job), str(res)], capture_output=True, text=True, env=env, timeout=600)
        if r.returncode != 0:
            raise RuntimeError(f"emulated CUDA kernel failed (exit {r.returncode}):\n{r.stderr[-6000:]}")
        data = res.read_bytes()
    outs, pos = [], 0
    for s, dt, nb in zip(lay.out_shapes, lay.out_dtypes, out_sizes):
        outs.append(np.frombuffer(data[pos:pos + nb], dt).reshape((lay.n,) + s).copy())
        pos += nb
    return outs, src


# -- an emulated device for the runtime path ------------------------------------------------------------------------
class _Ptr:
    def __init__(self, ptr):
        self.ptr = ptr


class _DevArray:
    """Host memory standing in for a CuPy array: ``.data.ptr``, shape/dtype, ``__array__``, indexing."""

    def __init__(self, a: np.ndarray):
        self.a = a
        self.shape, self.dtype = a.shape, a.dtype
        self.data = _Ptr(a.ctypes.data)
        self.__cuda_array_interface__ = {"shape": a.shape, "typestr": a.dtype.str, "strides": a.strides,
                                         "data": (a.ctypes.data, False), "version": 3}

    def __array__(self, dtype=None, copy=None):
        return self.a if dtype is None else self.a.astype(dtype)

    def __getitem__(self, k):
        return _DevArray(np.asarray(self.a[k]))


class _Stream:
    ptr = 0

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def synchronize(self):
        pass


class _Event:
    def __init__(self, **kw):
        pass

    def record(self, stream=None):
        pass

    def synchronize(self):
        pass


class _Function:
    """A launch runs on host threads; blocks get ``threads`` threads (the kernels are correct for any block
    size; a few keep the scheduler cheap)."""

    def __init__(self, launch, order, threads=4):
        self.launch, self.order, self.threads = launch, order, threads

    def __call__(self, grid, block, args, stream=None, shared_mem=0):
        self.launch(int(args[0]), int(args[1]), grid[0], grid[1], min(block[0], self.threads), self.order)


class FakeCupy:
    """The part of CuPy ``prepjit.runtime.cuda`` uses, on host memory; kernels run through ``load_library``."""

    def __init__(self, order: str = "descending"):
        import ctypes
        import types

        self.order = 0 if order == "descending" else 1
        self.launches = 0
        rt = types.SimpleNamespace(
            memcpyHostToDevice=1,
            memcpyAsync=lambda dst, src, n, kind, stream: ctypes.memmove(dst, src, n),
            getDeviceCount=lambda: 1)
        self.cuda = types.SimpleNamespace(
            runtime=rt, get_current_stream=lambda: _Stream(), Event=_Event,
            alloc_pinned_memory=lambda n: bytearray(n), ExternalStream=lambda ptr: _Stream())
        self.ndarray = _DevArray

    def empty(self, shape, dtype):
        return _DevArray(np.empty(shape, dtype))

    def asarray(self, a):
        return _DevArray(np.ascontiguousarray(np.asarray(a)))

    def stack(self, xs):
        return _DevArray(np.stack([np.asarray(x) for x in xs]))


def emulated_device(monkeypatch, order: str = "descending"):
    """Patch ``prepjit.runtime.cuda`` (with pytest's ``monkeypatch``) so ``target="cuda"`` functions run end to end
    — real NVRTC cubins in the cache, the real planner/layout/staging/launch code — with the CUDA C executed on
    the CPU. Returns the FakeCupy (``.launches`` counts kernel launches)."""
    from prepjit.runtime import cuda as C

    fake = FakeCupy(order)

    def function(self):
        if self._function is None:
            self._function = _Function(load_library(self.source.text), fake.order)
        fake.launches += 1
        return self._function

    monkeypatch.setattr(C, "cupy_module", lambda: fake)
    monkeypatch.setattr(C, "device_arch", lambda: "sm_90")
    monkeypatch.setattr(C.CudaExecutable, "function", function)
    return fake
