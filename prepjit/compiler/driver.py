"""The compile driver: trace → passes → lower → render → native code, with the on-disk cache in the middle.

The cache key is computed from the *traced* IR, so a warm process skips LLVM entirely: it re-runs the cheap
Python passes (deterministic, so they rebuild the same program) and loads the cached object code.
"""
from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from prepjit import __version__
from prepjit.compiler.pass_manager import PassManager
from prepjit.compiler.passes import canonicalize, constant_fold, cse, dce, fuse, fuse_text, infer_types, plan_decode
from prepjit.compiler.tracer import InputSpec, trace
from prepjit.ir.core import Function, clone_function
from prepjit.ir.printer import canonical_text, print_function
from prepjit.lowering.loop_ir import print_kernel
from prepjit.lowering.lower import Program, lower_function


def optimization_pipeline(verify_each: bool = False) -> PassManager:
    return PassManager([
        ("canonicalize", canonicalize),
        ("constant-fold", constant_fold),
        ("cse", cse),
        ("canonicalize", canonicalize),
        ("dce", dce),
        ("fuse-text", fuse_text),
        ("plan-decode", plan_decode),
        ("fuse", fuse),
        ("dce", dce),
    ], verify_each=verify_each)


@lru_cache(maxsize=None)
def compiler_hash() -> str:
    """Hash of prepjit's own source: any change to the compiler invalidates cached code."""
    h = hashlib.sha256()
    root = Path(__file__).resolve().parent.parent
    for p in sorted(root.rglob("*.py")):
        h.update(str(p.relative_to(root)).encode())
        h.update(p.read_bytes())
    return h.hexdigest()[:16]


@dataclass
class Compiled:
    traced: Function
    traced_text: str
    optimized: Function
    program: Program
    key: str
    llvm_ir: str | None = None          # rendered (unoptimized) module, when compiled in this process
    optimized_llvm_ir: str | None = None
    object_code: bytes | None = None
    from_disk: bool = False
    compile_seconds: float = 0.0
    cuda_source: object = None          # prepjit.lowering.cuda.CudaSource, rendered on demand (target="cuda")

    def lowered_text(self) -> str:
        header = f"// program @{self.program.name}: buffers " + ", ".join(
            f"%{b.name}:{b.kind}" for b in self.program.buffers.values())
        return header + "\n" + "\n\n".join(print_kernel(k) for k in self.program.kernels) + "\n"


def cache_key(traced: Function, target: str) -> str:
    from prepjit.runtime import native

    triple, cpu, features = native.host_cpu()
    parts = [canonical_text(traced), target, triple, cpu, features, native.llvm_version(), __version__,
             compiler_hash(), repr(sorted(native.CODEGEN_FLAGS.items()))]
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()


def build(fn, specs: list[InputSpec], arg_names: list[str], name: str, target: str = "cpu",
          verify_each: bool = False) -> Compiled:
    """Trace and optimize; lower to a Program. No native code yet."""
    return build_traced(trace(fn, specs, arg_names, name), target, verify_each)


def build_traced(traced: Function, target: str = "cpu", verify_each: bool = False) -> Compiled:
    """Optimize and lower an already-traced Function (from the tracer, or parsed from pickled/bundled IR text)."""
    traced_text = print_function(traced)
    optimized = clone_function(traced)
    optimization_pipeline(verify_each).run(optimized)
    constraints = infer_types(optimized)
    program = lower_function(optimized, constraints, target)
    return Compiled(traced, traced_text, optimized, program, cache_key(traced, target))


def render_llvm(c: Compiled) -> str:
    from prepjit.lowering.llvm import render_program

    if c.llvm_ir is None:
        c.llvm_ir = render_program(c.program.kernels, c.program.slots(), c.program.name)
    return c.llvm_ir


def compile_native(c: Compiled) -> bytes:
    from prepjit.runtime import native

    t0 = time.perf_counter()
    obj, optimized_ir = native.compile_object(render_llvm(c))
    c.object_code, c.optimized_llvm_ir = obj, optimized_ir
    c.compile_seconds = time.perf_counter() - t0
    return obj
