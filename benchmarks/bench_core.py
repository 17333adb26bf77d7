"""Core benchmark for prepjit: throughput, cold compile, warm start and per-call overhead.

    python benchmarks/bench_core.py            # full run (10M elements), prints a Markdown report
    python benchmarks/bench_core.py --quick    # small smoke run
    python benchmarks/bench_core.py --json out.json

Compares, on the ``feat`` chain below (float32 input, float64 output):

* NumPy -- the function itself;
* numba ``@njit`` -- an explicit loop computing the same result (float32 arithmetic for the clip/log1p/sign chain,
  then float64 for the final add, exactly as NumPy's NEP 50 promotion does); default options (fastmath=False,
  parallel=False) is the reference, fastmath=True and parallel=True are reported for information;
* prepjit -- ``prepjit.jit_preprocess(feat)``;
* the memory floor -- ``x.astype(np.float64)``: same bytes in (4/elem) and out (8/elem), no arithmetic.

All peers are timed round-robin in the same process (the machine is shared and noisy); min and median of the
repeats are reported, ratios use the min. Fresh-process measurements (cold compile, warm start) run helper scripts
written to a temp directory, with temp cache directories, and report the median of several runs.

Progress goes to stderr; the report (Markdown) goes to stdout. Exit status is 0 unless something crashed or a
result did not match NumPy.
"""
from __future__ import annotations

import argparse
import gc
import inspect
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

try:
    import numba
    from numba import njit, prange
    HAVE_NUMBA = True
except ImportError:  # numba rows are skipped with a note
    numba = None
    HAVE_NUMBA = False
    prange = range

import prepjit as pj

RESULT_MARK = "@@BENCH_RESULT@@"
BYTES_PER_ELEM = 4 + 8  # float32 in, float64 out
# NumPy's own float32 log1p is not correctly rounded (it differs from the correctly rounded value by 1 ulp on
# ~12% of random inputs), so bit-exactness across implementations is not expected: the chain runs in float32,
# and the check is "equal to a few float32 ulps".
RTOL, ATOL = 1e-6, 1e-7


# ---------------------------------------------------------------------------------------------------------------
# The pipeline and its peers. The sources of `feat` and `feat_loop` are also copied verbatim into the
# fresh-process helper scripts (inspect.getsource), so every measurement runs the same code.
# ---------------------------------------------------------------------------------------------------------------
def feat(x):
    y = np.clip((x - 3.0) / 2.0, -5.0, 5.0)
    return np.log1p(np.abs(y)) * np.sign(y) + np.where(x > 0, 1.0, 0.0)


def feat_loop(x):
    # Faithful scalar version of `feat` for float32 x: NEP 50 keeps (x - 3.0) / 2.0, clip, abs, log1p, sign and
    # the product in float32; np.where(x > 0, 1.0, 0.0) is float64, so only the final add is float64.
    n = x.shape[0]
    out = np.empty(n, dtype=np.float64)
    three = np.float32(3.0)
    two = np.float32(2.0)
    lo = np.float32(-5.0)
    hi = np.float32(5.0)
    one = np.float32(1.0)
    zero = np.float32(0.0)
    for i in prange(n):
        xi = x[i]
        y = (xi - three) / two
        if y < lo:  # np.clip; NaN falls through both tests and propagates
            y = lo
        elif y > hi:
            y = hi
        if y > zero:  # np.sign: 1, -1, 0, or NaN for NaN
            s = one
        elif y < zero:
            s = -one
        elif y == zero:
            s = zero
        else:
            s = y
        p = np.log1p(np.abs(y)) * s  # float32 log1p (log1pf), float32 product
        w = 1.0 if xi > zero else 0.0
        out[i] = np.float64(p) + w
    return out


def make_input(n: int, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal(n) * 4).astype(np.float32)


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------------------------
# Timing helpers
# ---------------------------------------------------------------------------------------------------------------
def time_round_robin(fns: dict, args: tuple, repeat: int, number: int = 1) -> dict:
    """Seconds per call for each fn: `repeat` rounds, each timing `number` calls of every fn in turn."""
    times = {k: [] for k in fns}
    gc_was = gc.isenabled()
    gc.disable()
    try:
        for _ in range(repeat):
            for k, f in fns.items():
                t0 = time.perf_counter()
                for _ in range(number):
                    f(*args)
                times[k].append((time.perf_counter() - t0) / number)
                if number == 1:
                    gc.collect()  # free the big result outside the timed region
    finally:
        if gc_was:
            gc.enable()
    return {k: {"min": min(v), "median": statistics.median(v), "all": v} for k, v in times.items()}


def calibrate_number(f, args, target_s: float = 0.02) -> int:
    number = 1
    while True:
        t0 = time.perf_counter()
        for _ in range(number):
            f(*args)
        dt = time.perf_counter() - t0
        if dt >= target_s or number >= 1 << 22:
            return number
        number *= 2


# ---------------------------------------------------------------------------------------------------------------
# Fresh-process helpers
# ---------------------------------------------------------------------------------------------------------------
_FEAT_SRC = inspect.getsource(feat)
_LOOP_SRC = inspect.getsource(feat_loop)

_SMALL = "x = (np.random.default_rng(0).standard_normal(1000) * 4).astype(np.float32)\n"
_CHECK = "ok = bool(np.allclose(r, feat(x), rtol=%r, atol=%r))\n" % (RTOL, ATOL)

PREPJIT_COLD = f"""\
import json, time
import numpy as np
import prepjit as pj

{_FEAT_SRC}
fn = pj.jit_preprocess(feat)
{_SMALL}
t0 = time.perf_counter()
r = fn(x)
t1 = time.perf_counter()
{_CHECK}
print({RESULT_MARK!r} + json.dumps({{"seconds": t1 - t0, "stats": fn.stats, "ok": ok}}))
"""

NUMBA_COLD = f"""\
import json, time
import numpy as np
import numba
from numba import njit, prange

{_FEAT_SRC}
{_LOOP_SRC}
fn = njit(feat_loop)
{_SMALL}
t0 = time.perf_counter()
r = fn(x)
t1 = time.perf_counter()
{_CHECK}
print({RESULT_MARK!r} + json.dumps({{"seconds": t1 - t0, "ok": ok}}))
"""

# Warm start: the clock starts at the top of the script, before numpy / prepjit / numba are imported.
PREPJIT_WARM = f"""\
import time
_T0 = time.perf_counter()
import json
import numpy as np
import prepjit as pj
_TI = time.perf_counter()

{_FEAT_SRC}
fn = pj.jit_preprocess(feat)
{_SMALL}
r = fn(x)
_T1 = time.perf_counter()
{_CHECK}
print({RESULT_MARK!r} + json.dumps({{"seconds": _T1 - _T0, "import_s": _TI - _T0, "stats": fn.stats, "ok": ok}}))
"""

NUMBA_WARM = f"""\
import time
_T0 = time.perf_counter()
import json
import numpy as np
from numba import njit, prange
_TI = time.perf_counter()

{_LOOP_SRC.replace("def feat_loop(x):", "@njit(cache=True)" + chr(10) + "def feat_loop(x):", 1)}
{_SMALL}
r = feat_loop(x)
_T1 = time.perf_counter()

{_FEAT_SRC}
{_CHECK}
st = feat_loop.stats
print({RESULT_MARK!r} + json.dumps({{"seconds": _T1 - _T0, "import_s": _TI - _T0, "ok": ok,
                                     "cache_hits": sum(st.cache_hits.values()),
                                     "cache_misses": sum(st.cache_misses.values())}}))
"""

BASELINE = """\
import time
_T0 = time.perf_counter()
import json
import numpy as np
_T1 = time.perf_counter()
print(%r + json.dumps({"seconds": _T1 - _T0, "import_s": _T1 - _T0, "ok": True}))
""" % RESULT_MARK


class FreshProcessError(RuntimeError):
    pass


def run_script(path: str, env: dict, cwd: str) -> dict:
    """Run a helper script in a fresh interpreter; returns its JSON result plus whole-process wall time."""
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, path], env=env, cwd=cwd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        raise FreshProcessError(f"{os.path.basename(path)} failed (rc={p.returncode}):\n{p.stderr}{p.stdout}")
    for line in p.stdout.splitlines():
        if line.startswith(RESULT_MARK):
            res = json.loads(line[len(RESULT_MARK):])
            res["wall"] = wall
            return res
    raise FreshProcessError(f"{os.path.basename(path)} printed no result:\n{p.stderr}{p.stdout}")


def write(tmp: str, name: str, text: str) -> str:
    path = os.path.join(tmp, name)
    with open(path, "w") as f:
        f.write(text)
    return path


def fresh_env(**extra) -> dict:
    env = dict(os.environ)
    env.pop("PYTHONSTARTUP", None)
    env.update(extra)
    return env


def med(rs: list, key: str) -> float:
    return statistics.median(r[key] for r in rs)


# ---------------------------------------------------------------------------------------------------------------
# The benchmarks
# ---------------------------------------------------------------------------------------------------------------
def bench_throughput(n: int, repeat: int, res: dict, problems: list) -> None:
    log(f"[1/4] throughput on {n:,} float32 elements ...")
    x = make_input(n)
    fj = pj.jit_preprocess(feat)
    peers = {"numpy": feat, "prepjit": fj}
    if HAVE_NUMBA:
        peers["numba"] = njit(feat_loop)
        peers["numba fastmath=True"] = njit(fastmath=True)(feat_loop)
        peers["numba parallel=True"] = njit(parallel=True)(feat_loop)
    peers["memory floor"] = lambda a: a.astype(np.float64)

    expected = feat(x)
    checks = {}
    for name, f in peers.items():
        if name in ("numpy", "memory floor"):
            continue
        got = f(x)  # also the compile / warm-up call
        ok = (got.dtype == expected.dtype and got.shape == expected.shape
              and bool(np.allclose(got, expected, rtol=RTOL, atol=ATOL, equal_nan=True)))
        diff = np.abs(got.astype(np.float64) - expected)
        checks[name] = {"ok": ok, "dtype": str(got.dtype), "max_abs_diff": float(np.nanmax(diff)),
                        "bit_exact_fraction": float(np.mean(got == expected))}
        if not ok:
            problems.append(f"{name} result does not match NumPy (dtype {got.dtype}, max |diff| "
                            f"{checks[name]['max_abs_diff']:.3g})")
        del got, diff
    if fj.stats["compiles"] + fj.stats["disk_hits"] != 1:
        problems.append(f"prepjit stats after warm-up look wrong: {fj.stats}")
    del expected
    for f in peers.values():  # warm-up: page in allocator, caches, thread pools
        for _ in range(2):
            f(x)
    gc.collect()
    t = time_round_robin(peers, (x,), repeat)
    res["throughput"] = {"n": n, "repeat": repeat, "bytes_per_elem": BYTES_PER_ELEM, "checks": checks,
                         "prepjit_stats": dict(fj.stats),
                         "seconds": {k: {"min": v["min"], "median": v["median"]} for k, v in t.items()}}


def bench_cold(procs: int, tmp: str, res: dict, problems: list) -> None:
    log(f"[2/4] cold compile, {procs} fresh processes each ...")
    out = {}
    p_script = write(tmp, "cold_prepjit.py", PREPJIT_COLD)
    n_script = write(tmp, "cold_numba.py", NUMBA_COLD) if HAVE_NUMBA else None
    runs = {"prepjit": [], "numba": []}
    for i in range(procs):  # interleaved, a fresh empty cache directory per run
        cache = tempfile.mkdtemp(prefix=f"pj_cold{i}_", dir=tmp)
        runs["prepjit"].append(run_script(p_script, fresh_env(PREPJIT_CACHE_DIR=cache), tmp))
        if n_script:
            ncache = tempfile.mkdtemp(prefix=f"nb_cold{i}_", dir=tmp)
            runs["numba"].append(run_script(n_script, fresh_env(NUMBA_CACHE_DIR=ncache), tmp))
    for r in runs["prepjit"]:
        if r["stats"]["compiles"] != 1 or r["stats"]["disk_hits"] != 0:
            problems.append(f"prepjit cold run did not compile exactly once: {r['stats']}")
    for name, rs in runs.items():
        if not rs:
            continue
        if not all(r["ok"] for r in rs):
            problems.append(f"{name} cold-compile result does not match NumPy")
        out[name] = {"first_call_s": med(rs, "seconds"), "runs_s": [r["seconds"] for r in rs]}
    out["prepjit"]["stats"] = runs["prepjit"][-1]["stats"]
    out["prepjit"]["compile_seconds_median"] = statistics.median(r["stats"]["compile_seconds"] for r in runs["prepjit"])
    res["cold_compile"] = out


def bench_warm(procs: int, tmp: str, res: dict, problems: list) -> None:
    log(f"[3/4] warm start (cache hit in a fresh process), {procs} fresh processes each ...")
    pj_cache = tempfile.mkdtemp(prefix="pj_warm_", dir=tmp)
    nb_cache = tempfile.mkdtemp(prefix="nb_warm_", dir=tmp)
    p_script = write(tmp, "warm_prepjit.py", PREPJIT_WARM)
    n_script = write(tmp, "warm_numba.py", NUMBA_WARM) if HAVE_NUMBA else None
    b_script = write(tmp, "baseline_numpy.py", BASELINE)
    p_env = fresh_env(PREPJIT_CACHE_DIR=pj_cache)
    n_env = fresh_env(NUMBA_CACHE_DIR=nb_cache)
    populate = {"prepjit": run_script(p_script, p_env, tmp)}
    if n_script:
        populate["numba"] = run_script(n_script, n_env, tmp)
    # A run that is not a cache hit is discarded and retried: prepjit's cache key includes a hash of the
    # compiler's own sources, so an edit to prepjit while the benchmark runs (or a numba cache invalidation)
    # legitimately forces one recompile; that run re-populates the cache and is not a warm start.
    is_hit = {"prepjit": lambda r: r["stats"]["compiles"] == 0 and r["stats"]["disk_hits"] >= 1,
              "numba": lambda r: r["cache_misses"] == 0 and r["cache_hits"] >= 1,
              "baseline": lambda r: True}
    scripts = {"prepjit": (p_script, p_env)}
    if n_script:
        scripts["numba"] = (n_script, n_env)
    scripts["baseline"] = (b_script, fresh_env())
    runs = {k: [] for k in scripts}
    discarded = {k: [] for k in scripts}
    for _ in range(3 * procs):  # interleaved; at most 2*procs retries in all
        todo = [k for k in scripts if len(runs[k]) < procs]
        if not todo:
            break
        for k in todo:
            r = run_script(*scripts[k], tmp)
            if not r["ok"]:
                problems.append(f"{k} warm-start result does not match NumPy")
            (runs if is_hit[k](r) else discarded)[k].append(r)
    for k, rs in discarded.items():
        if rs:
            what = [r["stats"] if k == "prepjit" else {"hits": r["cache_hits"], "misses": r["cache_misses"]}
                    for r in rs]
            log(f"  {k}: discarded {len(rs)} warm run(s) that were not cache hits: {what}")
        if len(runs[k]) < procs:
            problems.append(f"{k} warm start: only {len(runs[k])} of {procs} runs were cache hits "
                            f"(discarded: {len(rs)})")
        if not runs[k]:
            runs[k] = rs  # report something rather than nothing
    out = {"populate": {k: {"seconds": v["seconds"], "wall": v["wall"]} for k, v in populate.items()}}
    for name, rs in runs.items():
        if not rs:
            continue
        out[name] = {"import_to_result_s": med(rs, "seconds"), "process_wall_s": med(rs, "wall"),
                     "imports_s": med(rs, "import_s"), "discarded_not_hits": len(discarded[name]),
                     "runs_s": [r["seconds"] for r in rs], "runs_wall_s": [r["wall"] for r in rs]}
    out["prepjit"]["stats"] = runs["prepjit"][-1]["stats"]
    if runs.get("numba"):
        out["numba"]["cache_hits"] = runs["numba"][-1]["cache_hits"]
        out["numba"]["cache_misses"] = runs["numba"][-1]["cache_misses"]
    res["warm_start"] = out


def bench_overhead(size: int, repeat: int, res: dict, problems: list) -> None:
    log(f"[4/4] per-call overhead on {size} elements ...")
    x = make_input(size)
    fj = pj.jit_preprocess(feat)
    peers = {"numpy": feat, "prepjit": fj}
    if HAVE_NUMBA:
        peers["numba"] = njit(feat_loop)
    expected = feat(x)
    for name, f in peers.items():
        got = f(x)
        if not np.allclose(got, expected, rtol=RTOL, atol=ATOL):
            problems.append(f"{name} result on {size} elements does not match NumPy")
    numbers = {k: calibrate_number(f, (x,)) for k, f in peers.items()}
    times = {}
    for k in peers:
        times[k] = []
    gc.disable()
    try:
        for _ in range(repeat):
            for k, f in peers.items():
                num = numbers[k]
                t0 = time.perf_counter()
                for _ in range(num):
                    f(x)
                times[k].append((time.perf_counter() - t0) / num)
    finally:
        gc.enable()
    res["overhead"] = {"size": size, "repeat": repeat, "calls_per_repeat": numbers,
                       "seconds": {k: {"min": min(v), "median": statistics.median(v)} for k, v in times.items()}}


# ---------------------------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------------------------
def fmt_ratio(r):
    return "n/a" if r is None else f"{r:.2f}×"


def report(res: dict, problems: list) -> str:
    L = []
    th = res["throughput"]
    n = th["n"]
    s = th["seconds"]
    gbs = lambda t: BYTES_PER_ELEM * n / t / 1e9  # noqa: E731
    L.append("# prepjit core benchmark\n")
    L.append(f"python {platform.python_version()} · numpy {np.__version__} · "
             f"numba {numba.__version__ if HAVE_NUMBA else '(not installed)'} · prepjit {pj.__version__} · "
             f"{platform.machine()} · {os.cpu_count()} CPUs · {platform.platform()}\n")
    if not HAVE_NUMBA:
        L.append("> numba is not installed: numba rows are skipped.\n")
    elif not res["config"].get("numba_svml"):
        L.append("> numba runs without SVML (no `icc_rt`), so its `log1p` on float32 is a scalar `log1pf` libm call "
                 "per element that `fastmath=True` cannot vectorize; NumPy uses its own SIMD loops.\n")

    L.append(f"## 1. Throughput: `feat` on {n:,} float32 → float64 "
             f"(min / median of {th['repeat']} round-robin repeats)\n")
    L.append(f"GB/s counts {BYTES_PER_ELEM} bytes per element (4 read + 8 written), the traffic of the memory floor "
             f"`x.astype(np.float64)`; ratios use the min. \"× faster\" > 1 means the row is faster.\n")
    L.append("| implementation | ms/call (min) | ms/call (median) | GB/s | × faster than NumPy | "
             "× faster than numba | × memory floor (time) |")
    L.append("|---|---:|---:|---:|---:|---:|---:|")
    base_np = s["numpy"]["min"]
    base_nb = s["numba"]["min"] if "numba" in s else None
    floor = s["memory floor"]["min"]
    for k, v in s.items():
        t = v["min"]
        L.append(f"| {k} | {t * 1e3:.2f} | {v['median'] * 1e3:.2f} | {gbs(t):.2f} | {base_np / t:.2f}× | "
                 f"{fmt_ratio(base_nb / t if base_nb else None)} | {t / floor:.2f}× |")
    L.append("")
    L.append("Correctness vs NumPy (checked before timing; `allclose(rtol=%g, atol=%g)`):\n" % (RTOL, ATOL))
    for k, c in th["checks"].items():
        L.append(f"- {k}: {'OK' if c['ok'] else 'MISMATCH'} · dtype {c['dtype']} · max |diff| "
                 f"{c['max_abs_diff']:.3g} · bit-identical {100 * c['bit_exact_fraction']:.1f}%")
    L.append("")

    cc = res["cold_compile"]
    L.append(f"## 2. Cold compile (fresh process, empty cache; median of {len(cc['prepjit']['runs_s'])} runs)\n")
    L.append("Time of the first call (1,000 elements) of the decorated function, `import` excluded.\n")
    L.append(f"- prepjit: **{cc['prepjit']['first_call_s'] * 1e3:.1f} ms** "
             f"(runs: {', '.join(f'{t * 1e3:.0f}' for t in cc['prepjit']['runs_s'])} ms); "
             f"fn.stats = `{json.dumps(cc['prepjit']['stats'])}` "
             f"(median compile_seconds {cc['prepjit']['compile_seconds_median'] * 1e3:.1f} ms)")
    if "numba" in cc:
        L.append(f"- numba `@njit`: **{cc['numba']['first_call_s'] * 1e3:.1f} ms** "
                 f"(runs: {', '.join(f'{t * 1e3:.0f}' for t in cc['numba']['runs_s'])} ms)")
    L.append("")

    ws = res["warm_start"]
    nw = len(ws["prepjit"]["runs_s"])
    L.append(f"## 3. Warm start: fresh process, compile cache already populated (median of {nw} runs)\n")
    L.append("`import → first result`: from the first line of the script (before importing numpy) to the first "
             "result on 1,000 elements; `of which imports`: numpy + prepjit / numba imports only. `process wall`: from before `subprocess.run` to its exit "
             "(interpreter start-up included, common to all).\n")
    L.append("| | import → first result, ms | of which imports, ms | process wall, ms | cache |")
    L.append("|---|---:|---:|---:|---|")
    L.append(f"| prepjit | {ws['prepjit']['import_to_result_s'] * 1e3:.1f} | {ws['prepjit']['imports_s'] * 1e3:.1f} | "
             f"{ws['prepjit']['process_wall_s'] * 1e3:.1f} | fn.stats = `{json.dumps(ws['prepjit']['stats'])}` |")
    if "numba" in ws:
        L.append(f"| numba `@njit(cache=True)` | {ws['numba']['import_to_result_s'] * 1e3:.1f} | "
                 f"{ws['numba']['imports_s'] * 1e3:.1f} | "
                 f"{ws['numba']['process_wall_s'] * 1e3:.1f} | cache_hits={ws['numba']['cache_hits']}, "
                 f"cache_misses={ws['numba']['cache_misses']} |")
    L.append(f"| baseline: `import numpy` only | {ws['baseline']['import_to_result_s'] * 1e3:.1f} | "
             f"{ws['baseline']['imports_s'] * 1e3:.1f} | "
             f"{ws['baseline']['process_wall_s'] * 1e3:.1f} | – |")
    pop = ws["populate"]
    L.append("")
    nd = {k: v.get("discarded_not_hits", 0) for k, v in ws.items() if k != "populate"}
    if any(nd.values()):
        L.append("Discarded and retried (not cache hits, e.g. prepjit's sources changed mid-run, which changes its "
                 "cache key): " + ", ".join(f"{k} {v}" for k, v in nd.items() if v) + "\n")
    L.append("Populating runs (compile + store): " + ", ".join(
        f"{k} {v['seconds'] * 1e3:.0f} ms (wall {v['wall'] * 1e3:.0f} ms)" for k, v in pop.items()) + "\n")

    ov = res["overhead"]
    o = ov["seconds"]
    L.append(f"## 4. Per-call overhead: `feat` on {ov['size']} float32 elements "
             f"(min / median of {ov['repeat']} repeats)\n")
    L.append("| | µs/call (min) | µs/call (median) |")
    L.append("|---|---:|---:|")
    for k, v in o.items():
        L.append(f"| {k} | {v['min'] * 1e6:.2f} | {v['median'] * 1e6:.2f} |")
    L.append("")

    # --- summary table ---
    L.append("## Summary\n")
    L.append("| benchmark | prepjit | numpy | numba | ratio |")
    L.append("|---|---:|---:|---:|---|")
    pjt = s["prepjit"]["min"]
    nbt = s["numba"]["min"] if "numba" in s else None
    na = "–"
    nb_txt = lambda v: na if v is None else v  # noqa: E731
    L.append(f"| `feat` {n / 1e6:g}M f32→f64, ms/call | {pjt * 1e3:.2f} | {base_np * 1e3:.2f} | "
             f"{nb_txt(f'{nbt * 1e3:.2f}' if nbt else None)} | prepjit {base_np / pjt:.2f}× faster than numpy"
             + (f", {nbt / pjt:.2f}× vs numba" if nbt else "") + " |")
    L.append(f"| `feat` throughput, GB/s (12 B/elem) | {gbs(pjt):.2f} | {gbs(base_np):.2f} | "
             f"{nb_txt(f'{gbs(nbt):.2f}' if nbt else None)} | memory floor {gbs(floor):.2f} GB/s "
             f"({floor * 1e3:.2f} ms); prepjit = {pjt / floor:.2f}× floor time |")
    cpj = cc["prepjit"]["first_call_s"]
    cnb = cc["numba"]["first_call_s"] if "numba" in cc else None
    L.append(f"| cold compile (first call, empty cache), ms | {cpj * 1e3:.1f} | {na} | "
             f"{nb_txt(f'{cnb * 1e3:.1f}' if cnb else None)} | "
             + (f"prepjit {cnb / cpj:.2f}× faster than numba" if cnb else na) + " |")
    wpj = ws["prepjit"]["import_to_result_s"]
    wnb = ws["numba"]["import_to_result_s"] if "numba" in ws else None
    wbase = ws["baseline"]["import_to_result_s"]
    L.append(f"| warm start: import → first result (cache hit), ms | {wpj * 1e3:.1f} | {wbase * 1e3:.1f}¹ | "
             f"{nb_txt(f'{wnb * 1e3:.1f}' if wnb else None)} | "
             + (f"prepjit {wnb / wpj:.2f}× faster than numba cache=True" if wnb else na) + " |")
    ppj = ws["prepjit"]["process_wall_s"]
    pnb = ws["numba"]["process_wall_s"] if "numba" in ws else None
    pbase = ws["baseline"]["process_wall_s"]
    L.append(f"| warm start: whole process wall, ms | {ppj * 1e3:.1f} | {pbase * 1e3:.1f}¹ | "
             f"{nb_txt(f'{pnb * 1e3:.1f}' if pnb else None)} | "
             + (f"prepjit {pnb / ppj:.2f}× faster than numba cache=True" if pnb else na) + " |")
    opj, onp = o["prepjit"]["min"], o["numpy"]["min"]
    onb = o["numba"]["min"] if "numba" in o else None
    L.append(f"| per-call, {ov['size']} elements, µs | {opj * 1e6:.2f} | {onp * 1e6:.2f} | "
             f"{nb_txt(f'{onb * 1e6:.2f}' if onb else None)} | prepjit {onp / opj:.2f}× faster than numpy"
             + (f", {onb / opj:.2f}× vs numba" if onb else "") + " |")
    L.append("")
    L.append("¹ numpy column for warm start: a process that only imports numpy (interpreter + numpy start-up).\n"
             "Ratios > 1× mean prepjit is faster.\n")

    # --- targets ---
    L.append("## Targets (informational)\n")
    targets = [
        ("≥3× faster than NumPy (throughput)", base_np / pjt >= 3, f"{base_np / pjt:.2f}×"),
        ("faster than numba @njit (throughput)", None if nbt is None else pjt < nbt,
         "numba not installed" if nbt is None else f"{nbt / pjt:.2f}×"),
        ("≤2× memory floor (throughput)", pjt / floor <= 2, f"{pjt / floor:.2f}× floor"),
        ("cold compile ≤300 ms", cpj <= 0.300, f"{cpj * 1e3:.1f} ms"),
        ("warm start faster than numba cache=True", None if wnb is None else wpj < wnb,
         "numba not installed" if wnb is None else f"{wpj * 1e3:.1f} ms vs {wnb * 1e3:.1f} ms"),
    ]
    for name, ok, detail in targets:
        tag = "SKIP" if ok is None else ("PASS" if ok else "FAIL")
        L.append(f"- **{tag}** {name}: {detail}")
    res["targets"] = {name: {"pass": ok, "detail": detail} for name, ok, detail in targets}
    L.append("")
    if problems:
        L.append("## Problems\n")
        for p in problems:
            L.append(f"- {p}")
        L.append("")
    return "\n".join(L)


def _numba_svml():
    if not HAVE_NUMBA:
        return None
    try:
        from numba.core import config
        return bool(config.USING_SVML)
    except Exception:
        return None


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=None, help="elements for the throughput benchmark (default 10_000_000)")
    ap.add_argument("--repeat", type=int, default=None, help="timed repeats for in-process benchmarks (default 10)")
    ap.add_argument("--procs", type=int, default=None, help="fresh processes per cold/warm measurement (default 5)")
    ap.add_argument("--tiny", type=int, default=16, help="elements for the per-call overhead benchmark")
    ap.add_argument("--quick", action="store_true", help="small smoke run")
    ap.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    a = ap.parse_args(argv)
    n = a.n if a.n is not None else (200_000 if a.quick else 10_000_000)
    repeat = a.repeat if a.repeat is not None else (3 if a.quick else 10)
    procs = a.procs if a.procs is not None else (2 if a.quick else 5)

    t_start = time.perf_counter()
    res: dict = {"config": {"n": n, "repeat": repeat, "procs": procs, "tiny": a.tiny, "quick": a.quick,
                            "python": platform.python_version(), "numpy": np.__version__,
                            "numba": numba.__version__ if HAVE_NUMBA else None, "numba_svml": _numba_svml(),
                            "prepjit": pj.__version__,
                            "cpus": os.cpu_count(), "platform": platform.platform()}}
    problems: list = []
    if not HAVE_NUMBA:
        log("numba is not installed: numba rows are skipped")
    bench_throughput(n, repeat, res, problems)
    with tempfile.TemporaryDirectory(prefix="prepjit_bench_") as tmp:
        bench_cold(procs, tmp, res, problems)
        bench_warm(procs, tmp, res, problems)
    bench_overhead(a.tiny, max(repeat, 5), res, problems)
    res["problems"] = problems
    res["total_seconds"] = time.perf_counter() - t_start
    print(report(res, problems))
    log(f"done in {res['total_seconds']:.1f} s")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=2, default=str)
    mismatch = [p for p in problems if "match" in p]
    return 1 if mismatch else 0


if __name__ == "__main__":
    sys.exit(main())
