"""Exceptions raised to users. Each names the user's source line when one is known."""
from __future__ import annotations


class PrepjitError(Exception):
    """Base class for prepjit's own errors."""


class TracingError(PrepjitError):
    """The function cannot be traced (data-dependent control flow, dynamic sizes used as ints, ...)."""


class UnsupportedError(PrepjitError, TypeError):
    """A NumPy function, method or argument combination prepjit does not compile."""


class CompileError(PrepjitError):
    """Native compilation failed (a bug in prepjit: please report it with ``fn.ir('optimized')``)."""


class IRParseError(PrepjitError, ValueError):
    """Textual IR could not be parsed."""


class BundleError(PrepjitError, ValueError):
    """A bundle (``fn.save`` / ``prepjit.load``) is missing, truncated, tampered with, or incompatible."""


class VerificationError(PrepjitError):
    """The IR is malformed."""


def at(loc, message: str) -> str:
    """Prefix ``message`` with a user location ``loc`` (a prepjit.ir.core.Loc) when it is known."""
    if loc is None or getattr(loc, "line", 0) == 0:
        return message
    return f"{loc.file}:{loc.line}: {message}"
