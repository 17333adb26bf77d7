"""Native code generation and loading: host target machine, new pass manager, object code, loading.

Everything here is process-global and created lazily (importing prepjit does not initialize LLVM). Object
code is what the disk cache stores. Loading maps it with prepjit's own small ELF loader (``elfload.py``), so a
warm process never loads LLVM; objects that loader refuses are linked into a per-process LLJIT instance.
``PREPJIT_LOADER=llvm`` forces LLJIT, ``=elf`` forbids the fallback (tests).

The cache key needs the host's LLVM triple, CPU name and features and the LLVM version, which only LLVM can
tell; :func:`host_cpu` memoizes them in the cache directory under a cheap fingerprint of the CPU (``/proc/cpuinfo``
model and flags) and of the llvmlite library file, so a warm process does not load LLVM for them either.
"""
from __future__ import annotations

import ctypes
import itertools
import json
import os
import sys
import threading
from functools import lru_cache

_lock = threading.RLock()
_counter = itertools.count()

OPT_LEVEL = 3
CODEGEN_FLAGS = {"opt": OPT_LEVEL, "loop_vectorization": True, "slp_vectorization": True, "reloc": "pic"}

ENTRY_TYPE = ctypes.CFUNCTYPE(None, ctypes.c_void_p)  # ctypes releases the GIL around the call


@lru_cache(maxsize=None)
def _llvm():
    import llvmlite.binding as llvm

    llvm.initialize_native_target()
    llvm.initialize_native_asmprinter()
    return llvm


def sha256(data: bytes = b""):
    """hashlib.sha256, without importing hashlib (it loads OpenSSL: ~3 ms of a warm start) for small data where
    CPython's builtin implementation exists; OpenSSL's is faster on large payloads (text tables)."""
    hashlib = sys.modules.get("hashlib")
    if hashlib is None and len(data) <= 1 << 16:
        try:
            from _sha2 import sha256 as h  # CPython >= 3.12
        except ImportError:
            try:
                from _sha256 import sha256 as h  # CPython 3.11
            except ImportError:
                import hashlib
                h = hashlib.sha256
        return h(data)
    if hashlib is None:
        import hashlib
    return hashlib.sha256(data)


_CPUINFO_FIELDS = (b"vendor_id", b"cpu family", b"model", b"model name", b"stepping", b"flags")


def _host_fingerprint() -> str | None:
    """What decides host_cpu() and llvm_version(), read without LLVM: the CPU's identity and feature flags and
    the llvmlite library file. None where that cannot be read (then LLVM is asked every time)."""
    import importlib.util

    try:
        with open("/proc/cpuinfo", "rb") as f:
            block = f.read(65536).split(b"\n\n", 1)[0]  # the first processor (they share the ISA)
        spec = importlib.util.find_spec("llvmlite")
        pkg = os.path.join(os.path.dirname(spec.origin), "binding")
        libs = sorted(e for e in os.listdir(pkg) if e.startswith("libllvmlite"))
        stats = [(e, *(lambda st: (st.st_size, st.st_mtime_ns, st.st_ino))(os.stat(os.path.join(pkg, e))))
                 for e in libs]
    except (OSError, AttributeError, TypeError, ValueError):
        return None
    cpu = sorted(ln.strip() for ln in block.splitlines() if ln.split(b":")[0].strip() in _CPUINFO_FIELDS)
    if not libs or not any(ln.startswith(b"flags") for ln in cpu):
        return None
    h = sha256(repr((os.uname().machine, cpu, pkg, stats)).encode())
    return h.hexdigest()[:32]


def _memo_path(kind: str, fingerprint: str) -> str:
    from prepjit.runtime.cache import VERSION_DIR, default_cache_dir

    return os.path.join(default_cache_dir(), VERSION_DIR, "host", f"{kind}-{fingerprint}.json")


def read_memo(kind: str, fingerprint: str | None):
    if fingerprint is None:
        return None
    try:
        with open(_memo_path(kind, fingerprint), encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def write_memo(kind: str, fingerprint: str | None, value) -> None:
    """Atomically write a small JSON memo (best effort: an unwritable cache just means no memo)."""
    if fingerprint is None:
        return
    path = _memo_path(kind, fingerprint)
    tmp = f"{path}.{os.getpid()}.{threading.get_ident()}.tmp"
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(value, f)
        os.replace(tmp, path)
    except OSError:
        try:
            os.unlink(tmp)
        except OSError:
            pass


@lru_cache(maxsize=None)
def _host_info() -> tuple[str, str, str, str]:
    fp = _host_fingerprint()
    memo = read_memo("llvm-host", fp)
    if isinstance(memo, list) and len(memo) == 4 and all(isinstance(x, str) for x in memo):
        return tuple(memo)
    import llvmlite

    llvm = _llvm()
    info = (llvm.get_process_triple(), llvm.get_host_cpu_name(), llvm.get_host_cpu_features().flatten(),
            f"llvmlite {llvmlite.__version__} / LLVM {'.'.join(map(str, llvm.llvm_version_info))}")
    write_memo("llvm-host", fp, list(info))
    return info


def host_cpu() -> tuple[str, str, str]:
    """(triple, cpu name, feature string) of this machine, as LLVM sees it: part of every cache key."""
    return _host_info()[:3]


@lru_cache(maxsize=None)
def target_machine():
    llvm = _llvm()
    triple, cpu, features = host_cpu()
    target = llvm.Target.from_triple(triple)
    return target.create_target_machine(cpu=cpu, features=features, opt=OPT_LEVEL, reloc="pic", codemodel="default")


def llvm_version() -> str:
    return _host_info()[3]


def optimize(llvm_ir: str):
    """Parse, verify and optimize (O3, loop + SLP vectorization) a module; returns the ModuleRef."""
    llvm = _llvm()
    tm = target_machine()
    mod = llvm.parse_assembly(llvm_ir)
    mod.triple = tm.triple
    mod.data_layout = str(tm.target_data)
    mod.verify()
    pto = llvm.create_pipeline_tuning_options(speed_level=OPT_LEVEL)
    pto.loop_vectorization = True
    pto.slp_vectorization = True
    pto.loop_unrolling = True
    pb = llvm.create_pass_builder(tm, pto)
    pb.getModulePassManager().run(mod, pb)
    return mod


def compile_object(llvm_ir: str) -> tuple[bytes, str]:
    """LLVM IR text → (object code for this host, optimized LLVM IR text)."""
    with _lock:
        mod = optimize(llvm_ir)
        return target_machine().emit_object(mod), str(mod)


@lru_cache(maxsize=None)
def _lljit():
    llvm = _llvm()
    return llvm.create_lljit_compiler(target_machine())


class NativeFunction:
    """A loaded entry point. Keeps its code (the LLJIT resource tracker, or the ELF loader's mapping) alive as long
    as it is referenced. ``loader``: "elf" or "llvm"."""

    __slots__ = ("address", "_tracker", "cfunc", "loader")

    def __init__(self, tracker, address: int, loader: str = "llvm"):
        self._tracker = tracker
        self.address = address
        self.cfunc = ENTRY_TYPE(address)
        self.loader = loader


def load_object(obj: bytes, symbol: str) -> NativeFunction:
    """Load object code and return its entry point ``symbol``: prepjit's ELF loader, else LLJIT."""
    mode = os.environ.get("PREPJIT_LOADER", "auto")
    if mode != "llvm":
        from prepjit.runtime import elfload

        try:
            loaded = elfload.load(obj)
            address = loaded.symbols.get(symbol)
            if not address:
                raise elfload.Unsupported(f"symbol {symbol} not found in compiled object")
            return NativeFunction(loaded, address, "elf")
        except elfload.Unsupported:
            if mode == "elf":
                raise
    return _load_lljit(obj, symbol)


def _load_lljit(obj: bytes, symbol: str) -> NativeFunction:
    llvm = _llvm()
    with _lock:
        lib = llvm.JITLibraryBuilder().add_object_img(obj).add_current_process().export_symbol(symbol)
        tracker = lib.link(_lljit(), f"prepjit_{next(_counter)}")
        address = tracker[symbol]
    if not address:
        raise RuntimeError(f"symbol {symbol} not found in compiled object")
    return NativeFunction(tracker, address)


def fixed_kernel_key(name: str, version: str, source: str) -> str:
    """Cache key of a kernel prepjit ships (not traced from user code): its name, version and source (LLVM IR, or
    the generator's code), for this host and LLVM."""
    from prepjit import __version__

    triple, cpu, features = host_cpu()
    parts = [name, version, sha256(source.encode()).hexdigest(), triple, cpu, features, llvm_version(),
             __version__, repr(sorted(CODEGEN_FLAGS.items()))]
    return sha256("\x00".join(parts).encode()).hexdigest()


_provided: dict = {}  # cache key -> object code of a shipped kernel handed over by a bundle (``pj.load``)


def provide_fixed_kernel(key: str, obj: bytes) -> None:
    """Make ``obj`` the object code of the shipped kernel with cache key ``key`` in this process (a bundle carries
    the kernels its functions' prologues call, so it runs without compiling them)."""
    _provided[key] = obj


def fixed_kernel_object(key: str) -> bytes | None:
    """The object code of a shipped kernel: handed over by a bundle, or from the cache."""
    if key in _provided:
        return _provided[key]
    from prepjit.runtime.cache import get_cache

    entry = get_cache().load(key)
    return entry.payload if entry is not None else None


def load_fixed_kernel(key: str, build_ir, symbol: str, meta: dict) -> NativeFunction:
    """A kernel prepjit ships: object code handed over by a bundle or from the disk cache, or ``build_ir()``
    compiled now (under the entry's lock, so concurrent processes compile it once) and stored; a cached object
    that does not link is rebuilt."""
    from prepjit.runtime.cache import get_cache

    store = get_cache()
    obj = fixed_kernel_object(key)
    if obj is None:
        with store.lock(key):
            entry = store.load(key)
            if entry is not None:
                obj = entry.payload
            else:
                obj, _ = compile_object(build_ir())
                store.store(key, obj, meta)
    try:
        return load_object(obj, symbol)
    except Exception:  # noqa: BLE001 - a cached object that does not link: compile again
        obj, _ = compile_object(build_ir())
        return load_object(obj, symbol)
