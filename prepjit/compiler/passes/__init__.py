"""Compiler passes; each is a short function over a Function returning whether it changed anything."""
from prepjit.compiler.passes.canonicalize import canonicalize
from prepjit.compiler.passes.constant_fold import constant_fold
from prepjit.compiler.passes.cse import cse
from prepjit.compiler.passes.dce import dce
from prepjit.compiler.passes.fuse_text import fuse_text
from prepjit.compiler.passes.fusion import fuse
from prepjit.compiler.passes.infer_types import infer_types
from prepjit.compiler.passes.plan_decode import plan_decode

__all__ = ["canonicalize", "constant_fold", "cse", "dce", "fuse", "fuse_text", "infer_types", "plan_decode"]
