"""``prepjit warm MODULE [MODULE ...]``: compile every declared signature ahead of time into the disk cache.

    prepjit warm mypkg.transforms --cache-dir /shared/prepjit-cache        # or: python -m prepjit.warm ...

Imports each module, finds every ``@jit_preprocess`` function defined in it (module attributes, and functions
held as class attributes one level down), and compiles each ``signature=`` entry for the chosen targets
(default: each function's own). Functions without ``signature=`` are listed as skipped: their inputs are only
known at call time. Prints a progress bar (tqdm or rich, when installed and stderr is a terminal), a summary
(compiled / already cached / failed / skipped, with time) and exits 1 if anything failed, 2 on usage errors.

Many processes may warm the same modules at once (a per-key file lock makes each key compile once); the
result is the same cache either way.
"""
from __future__ import annotations

import argparse
import importlib
import inspect
import json
import os
import sys
import time
import traceback
from dataclasses import dataclass, field


@dataclass
class Result:
    function: str
    specs: str
    target: str
    status: str            # compiled | cached | failed | skipped
    seconds: float = 0.0
    error: str = ""


@dataclass
class Summary:
    results: list = field(default_factory=list)
    seconds: float = 0.0
    cache_dir: str = ""

    def count(self, status: str) -> int:
        return sum(r.status == status for r in self.results)

    @property
    def ok(self) -> bool:
        return self.count("failed") == 0

    def as_dict(self) -> dict:
        return {"compiled": self.count("compiled"), "cached": self.count("cached"), "failed": self.count("failed"),
                "skipped": self.count("skipped"), "seconds": round(self.seconds, 3), "cache_dir": self.cache_dir,
                "results": [r.__dict__ for r in self.results]}

    def line(self) -> str:
        s = (f"prepjit warm: {self.count('compiled')} compiled, {self.count('cached')} already cached, "
             f"{self.count('failed')} failed")
        if self.count("skipped"):
            s += f", {self.count('skipped')} skipped (no signature=)"
        return s + f" in {self.seconds:.2f} s → {self.cache_dir}"


def find_functions(module) -> list[tuple[str, object]]:
    """(qualified name, JitFunction) for every jit function defined in ``module``."""
    from prepjit.api import JitFunction

    found, seen = [], set()

    def add(name, obj):
        if isinstance(obj, JitFunction) and id(obj) not in seen and obj.__module__ == module.__name__:
            seen.add(id(obj))
            found.append((f"{module.__name__}.{name}", obj))

    for name, obj in sorted(vars(module).items()):
        add(name, obj)
        if inspect.isclass(obj) and obj.__module__ == module.__name__:
            for attr, val in sorted(vars(obj).items()):
                add(f"{name}.{attr}", val.__func__ if isinstance(val, staticmethod) else val)
    return found


def _for_target(fn, target: str, arch: str | None):
    """``fn`` itself, or a sibling JitFunction compiling the same Python function for another target/arch."""
    from prepjit.api import JitFunction

    if target == fn.target and arch is None:
        return fn
    if fn.fn is None:
        raise ValueError(f"{fn.name} was rebuilt from IR; it can only be compiled for target {fn.target!r}")
    if arch is not None and target != "cuda":
        raise ValueError(f"--arch is not supported for target {target!r}")
    return JitFunction(fn.fn, target=target, cache=True, signature=fn.signature)


def _plan(functions, targets, archs):
    """Work items: (qualified name, fn, target, arch, signature entry or None)."""
    items = []
    for qual, fn in functions:
        for target in targets or [fn.target]:
            for arch in (archs if target != "cpu" and archs else [None]):
                if not fn.signature:
                    items.append((qual, fn, target, arch, None))
                for entry in fn.signature or []:
                    items.append((qual, fn, target, arch, entry))
    return items


def _progress(total: int, enabled: bool):
    """A progress object with update(description) and close(); tqdm, rich or nothing."""
    class Null:
        def update(self, desc):
            pass

        def close(self):
            pass

    if not enabled or total == 0:
        return Null()
    try:
        from tqdm import tqdm

        bar = tqdm(total=total, unit="spec", desc="prepjit warm", file=sys.stderr, leave=False)

        class Tqdm:
            def update(self, desc):
                bar.set_postfix_str(desc[-60:], refresh=False)
                bar.update(1)

            def close(self):
                bar.close()

        return Tqdm()
    except ImportError:
        pass
    try:
        from rich.progress import Progress

        prog = Progress(transient=True)
        prog.start()
        task = prog.add_task("prepjit warm", total=total)

        class Rich:
            def update(self, desc):
                prog.update(task, advance=1, description=desc[-60:])

            def close(self):
                prog.stop()

        return Rich()
    except ImportError:
        return Null()


def warm(modules, targets=None, archs=None, cache_dir=None, progress: bool = False) -> Summary:
    """Import ``modules`` (names) and compile every declared specialization; see the module docstring."""
    from prepjit.api import TARGETS
    from prepjit.runtime.cache import ENV_VAR, get_cache
    from prepjit.runtime.portable import spec_to_text

    if cache_dir is not None:
        os.environ[ENV_VAR] = str(cache_dir)
    for t in targets or []:
        if t not in TARGETS:
            raise ValueError(f"{t} target not available (this prepjit supports: {', '.join(TARGETS)})")
    summary = Summary()
    t0 = time.perf_counter()
    cache = get_cache()
    summary.cache_dir = str(cache.directory)
    functions = []
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    for name in modules:
        try:
            functions += find_functions(importlib.import_module(name))
        except Exception as e:
            summary.results.append(Result(name, "", "", "failed", error=f"cannot import: {type(e).__name__}: {e}"))
    items = _plan(functions, targets, archs)
    bar = _progress(len(items), progress)
    try:
        for qual, fn, target, arch, entry in items:
            label = target + (f":{arch}" if arch else "")
            if entry is None:
                summary.results.append(Result(qual, "", label, "skipped", error="no signature="))
                bar.update(qual)
                continue
            specs = ", ".join(spec_to_text(s) for s in entry)
            t1 = time.perf_counter()
            try:
                f = _for_target(fn, target, arch)
                before = dict(f.stats)
                f.compile(*entry, **({"arch": [arch]} if arch else {}))
                status = "compiled" if f.stats["compiles"] > before["compiles"] else "cached"
                summary.results.append(Result(qual, specs, label, status, time.perf_counter() - t1))
            except Exception as e:
                err = f"{type(e).__name__}: {e}"
                if os.environ.get("PREPJIT_WARM_TRACEBACK"):
                    err += "\n" + traceback.format_exc()
                summary.results.append(Result(qual, specs, label, "failed", time.perf_counter() - t1, err))
            bar.update(f"{qual}({specs})")
    finally:
        bar.close()
    if cache.in_memory and any(r.status == "compiled" for r in summary.results):
        summary.results.append(Result("<cache>", "", "", "failed",
                                      error=f"cache directory {cache.directory} is not writable: nothing was kept"))
    summary.seconds = time.perf_counter() - t0
    return summary


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="prepjit warm", description="compile every @jit_preprocess signature= of the "
                                "given modules into the disk cache ahead of time")
    p.add_argument("modules", nargs="+", metavar="MODULE", help="importable module names (e.g. mypkg.transforms)")
    p.add_argument("--target", action="append", default=None, help="cpu (default: each function's own target); "
                   "repeat or comma-separate for several")
    p.add_argument("--arch", default=None, help="GPU architectures for --target cuda, e.g. sm_80,sm_90")
    p.add_argument("--cache-dir", default=None, help="default: $PREPJIT_CACHE_DIR or the user cache dir")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    p.add_argument("-q", "--quiet", action="store_true", help="print only failures and the summary line")
    args = p.parse_args(argv)
    targets = [t.strip() for ts in args.target for t in ts.split(",") if t.strip()] if args.target else None
    archs = [a.strip() for a in args.arch.split(",") if a.strip()] if args.arch else None
    if archs and not (targets and any(t != "cpu" for t in targets)):
        print("prepjit warm: --arch needs a GPU --target (e.g. --target cuda --arch sm_80,sm_90)", file=sys.stderr)
        return 2
    try:
        summary = warm(args.modules, targets, archs, args.cache_dir,
                       progress=not args.no_progress and not args.json and sys.stderr.isatty())
    except ValueError as e:
        print(f"prepjit warm: {e}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(summary.as_dict()))
    else:
        for r in summary.results:
            if r.status == "failed":
                print(f"FAILED  {r.function}({r.specs}) [{r.target}]: {r.error}", file=sys.stderr)
            elif not args.quiet:
                what = f"({r.specs})" if r.specs else ""
                tail = f"  {r.seconds * 1e3:.0f} ms" if r.status == "compiled" else ""
                print(f"{r.status:8s} {r.function}{what} [{r.target}]{tail}" + (f" — {r.error}" if r.error else ""))
        print(summary.line())
    return 0 if summary.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
