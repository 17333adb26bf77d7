"""The ``prepjit`` command: inspect IR, manage the compile cache, run a demo."""
from __future__ import annotations

import argparse
import importlib
import os
import re
import sys
import tempfile
import time


def _load_function(target: str):
    if ":" not in target:
        raise SystemExit(f"prepjit: expected MODULE:FUNC (e.g. mypkg.prep:normalize), got {target!r}")
    mod_name, _, attr = target.partition(":")
    sys.path.insert(0, os.getcwd())
    try:
        mod = importlib.import_module(mod_name)
    except ImportError as e:
        raise SystemExit(f"prepjit: cannot import module {mod_name!r}: {e}") from None
    obj = mod
    for part in attr.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            raise SystemExit(f"prepjit: {mod_name!r} has no attribute {attr!r}")
    from prepjit.api import JitFunction

    if not isinstance(obj, JitFunction):
        raise SystemExit(f"prepjit: {target} is not a @jit_preprocess function")
    return obj


def _parse_spec(text: str):
    """'float32[?,3]' or 'uint8[?,?,3]' or 'float64[]' → TensorSpec."""
    from prepjit.api import TensorSpec

    m = re.fullmatch(r"\s*(\w+)\s*\[([^\]]*)\]\s*", text)
    if not m:
        raise SystemExit(f"prepjit: bad --spec {text!r}; expected e.g. 'float32[?,3]'")
    dims = [d.strip() for d in m.group(2).split(",") if d.strip()]
    try:
        return TensorSpec(m.group(1), tuple(None if d in ("?", "None") else int(d) for d in dims))
    except (TypeError, ValueError) as e:
        raise SystemExit(f"prepjit: bad --spec {text!r}: {e}") from None


def cmd_ir(args) -> int:
    from prepjit.compiler.tracer import InputSpec

    fn = _load_function(args.target)
    if args.spec:
        specs = [_parse_spec(s) for s in args.spec]
        fn._build(tuple(InputSpec(s.dtype, s.shape) for s in specs))  # becomes the function's last specialization
    elif not fn.signature:
        raise SystemExit("prepjit: this function declares no signature=; give one --spec per argument, "
                         "e.g. --spec 'float32[?]'")
    if args.stage in ("llvm", "cuda"):
        print(fn.source(args.stage))
    else:
        print(fn.ir(args.stage), end="")
    return 0


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return str(n)


def _ago(seconds: float) -> str:
    for unit, n in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= n:
            return f"{seconds / n:.0f} {unit}"
    return f"{max(seconds, 0):.0f} s"


def _usable_here(entry) -> bool:
    """Whether a cache entry was built for this machine and prepjit (entries from before host metadata count)."""
    from prepjit.runtime.portable import host_meta

    meta = entry.get("meta") or {}
    if not entry["valid"]:
        return False
    if "host" not in meta:
        return True
    here = host_meta()
    return all(meta.get(k) == here[k] for k in ("host", "llvm", "prepjit", "compiler"))


def cmd_cache(args) -> int:
    from prepjit.runtime.cache import CompileCache, parse_size

    cache = CompileCache(args.cache_dir)
    if args.action == "info":
        info = cache.info()
        print(f"directory: {info['directory']}")
        print(f"entries:   {info['entries']}")
        print(f"size:      {_human(info['size_bytes'])}")
        entries = cache.entries()
        stale = [e for e in entries if not _usable_here(e)]
        if stale:
            print(f"other CPUs / prepjit versions: {len(stale)} entries, {_human(sum(e['size'] for e in stale))} "
                  f"(never loaded here; `prepjit cache prune --stale` removes them)")
        if info["by_function"]:
            print("by function:")
            now = time.time()
            for name, d in sorted(info["by_function"].items()):
                used = max((e["last_used"] for e in entries if (e["function"] or "<unknown>") == name), default=now)
                print(f"  {name}: {d['entries']} entries, {_human(d['size_bytes'])}, last used "
                      f"{_ago(now - used)} ago")
    elif args.action == "clear":
        n = cache.clear()
        print(f"removed {n} entries from {cache.directory}")
    elif args.action == "prune":
        if args.max_size is None and not args.stale:
            raise SystemExit("prepjit cache prune: give --max-size (e.g. --max-size 500MB) and/or --stale")
        n = 0
        if args.stale:
            n += sum(cache._remove(e) for e in cache.entries() if not _usable_here(e))
        if args.max_size is not None:
            n += cache.prune(parse_size(args.max_size))
        print(f"removed {n} entries; {_human(cache.info()['size_bytes'])} left in {cache.directory}")
    return 0


DEMO_SOURCE = '''
import numpy as np

def feat(x):
    y = np.clip((x - 3.0) / 2.0, -5.0, 5.0)
    return np.log1p(np.abs(y)) * np.sign(y) + np.where(x > 0, 1.0, 0.0)
'''


def cmd_demo(args) -> int:
    import numpy as np

    import prepjit as pj

    ns: dict = {}
    exec(DEMO_SOURCE, ns)  # noqa: S102 - our own example
    feat = ns["feat"]
    print("prepjit demo: the feature pipeline")
    print("  " + DEMO_SOURCE.strip().replace("\n", "\n  "))
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["PREPJIT_CACHE_DIR"] = tmp
        x = (np.random.default_rng(0).standard_normal(args.n) * 4).astype(np.float32)
        cold = pj.jit_preprocess(feat)
        t0 = time.perf_counter()
        out = cold(x[:16])
        t_cold = time.perf_counter() - t0
        warm = pj.jit_preprocess(feat)  # a new function object: must come from the disk cache
        t0 = time.perf_counter()
        warm(x[:16])
        t_warm = time.perf_counter() - t0
        assert warm.stats["compiles"] == 0 and warm.stats["disk_hits"] == 1, warm.stats
        out = warm(x)
        ref = feat(x)
        np.testing.assert_allclose(out, ref, rtol=1e-6, atol=1e-6)

        def best(f, reps=5):
            ts = []
            for _ in range(reps):
                t = time.perf_counter()
                f(x)
                ts.append(time.perf_counter() - t)
            return min(ts)

        t_np, t_pj = best(feat), best(warm)
    print(f"\ncold compile + first call: {t_cold * 1e3:8.1f} ms  (stats {cold.stats['compiles']} compile)")
    print(f"warm (disk cache) first call: {t_warm * 1e3:5.1f} ms  (0 compiles, 1 disk hit)")
    print(f"{args.n:,} float32 elements: numpy {t_np * 1e3:.1f} ms, prepjit {t_pj * 1e3:.1f} ms "
          f"→ {t_np / t_pj:.1f}× faster, identical within 1e-6")
    if args.show_ir:
        print("\noptimized IR:\n" + warm.ir("optimized"))
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="prepjit", description="JIT compiler for ML preprocessing")
    sub = p.add_subparsers(dest="command", required=True)

    pi = sub.add_parser("ir", help="print the IR of a @jit_preprocess function")
    pi.add_argument("target", help="MODULE:FUNC")
    pi.add_argument("--stage", choices=("traced", "optimized", "lowered", "llvm", "cuda"), default="traced")
    pi.add_argument("--spec", action="append", help="input spec per argument, e.g. 'float32[?,3]' "
                                                     "(default: the function's first signature=)")
    pi.set_defaults(func=cmd_ir)

    pc = sub.add_parser("cache", help="inspect or clean the on-disk compile cache")
    pc.add_argument("action", choices=("info", "clear", "prune"))
    pc.add_argument("--cache-dir", default=None, help="default: $PREPJIT_CACHE_DIR or the user cache dir")
    pc.add_argument("--max-size", default=None, help="for prune: e.g. 500MB (least recently used go first)")
    pc.add_argument("--stale", action="store_true", help="for prune: remove entries built for other CPUs or "
                    "prepjit versions")
    pc.set_defaults(func=cmd_cache)

    pw = sub.add_parser("warm", add_help=False, help="compile every signature= of MODULE(s) into the cache "
                        "ahead of time (prepjit warm --help)")
    pw.add_argument("args", nargs=argparse.REMAINDER)

    pd = sub.add_parser("demo", help="run a built-in example: cold vs warm compile, speed vs numpy")
    pd.add_argument("--n", type=int, default=10_000_000, help="elements (default 10M)")
    pd.add_argument("--show-ir", action="store_true")
    pd.set_defaults(func=cmd_demo)

    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["warm"]:  # its own parser (prepjit/warm.py), options and --help included
        from prepjit.warm import main as warm_main

        return warm_main(argv[1:])
    args = p.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
