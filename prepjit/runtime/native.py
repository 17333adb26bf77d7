"""Native code generation and loading with llvmlite: host target machine, new pass manager, object code, LLJIT.

Everything here is process-global and created lazily (importing prepjit does not initialize LLVM). Object
code is what the disk cache stores; loading an object links it into a per-process LLJIT instance.
"""
from __future__ import annotations

import ctypes
import itertools
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


@lru_cache(maxsize=None)
def host_cpu() -> tuple[str, str, str]:
    """(triple, cpu name, feature string) of this machine: part of every cache key."""
    llvm = _llvm()
    return llvm.get_process_triple(), llvm.get_host_cpu_name(), llvm.get_host_cpu_features().flatten()


@lru_cache(maxsize=None)
def target_machine():
    llvm = _llvm()
    triple, cpu, features = host_cpu()
    target = llvm.Target.from_triple(triple)
    return target.create_target_machine(cpu=cpu, features=features, opt=OPT_LEVEL, reloc="pic", codemodel="default")


def llvm_version() -> str:
    import llvmlite

    llvm = _llvm()
    return f"llvmlite {llvmlite.__version__} / LLVM {'.'.join(map(str, llvm.llvm_version_info))}"


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
    """A loaded entry point. Keeps the LLJIT resource tracker alive as long as it is referenced."""

    __slots__ = ("address", "_tracker", "cfunc")

    def __init__(self, tracker, address: int):
        self._tracker = tracker
        self.address = address
        self.cfunc = ENTRY_TYPE(address)


def load_object(obj: bytes, symbol: str) -> NativeFunction:
    llvm = _llvm()
    with _lock:
        lib = llvm.JITLibraryBuilder().add_object_img(obj).add_current_process().export_symbol(symbol)
        tracker = lib.link(_lljit(), f"prepjit_{next(_counter)}")
        address = tracker[symbol]
    if not address:
        raise RuntimeError(f"symbol {symbol} not found in compiled object")
    return NativeFunction(tracker, address)
