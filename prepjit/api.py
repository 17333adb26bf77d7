"""The user-facing decorator: ``@jit_preprocess`` and the ``JitFunction`` it returns."""
from __future__ import annotations

import contextlib
import functools
import inspect
import sys
import threading
import warnings
import weakref
from dataclasses import dataclass

import numpy as np

from prepjit.compiler.tracer import BYTES_SPEC, InputSpec
from prepjit.ir.types import DTYPE_NAMES, SUPPORTED_DTYPES, check_dtype
from prepjit.runtime import forksafe  # noqa: F401 - installs the at-fork handlers

TARGETS = ("cpu", "cuda")

_live_functions: "weakref.WeakSet[JitFunction]" = weakref.WeakSet()  # for the at-fork handler (runtime/forksafe.py)


@dataclass(frozen=True)
class TensorSpec:
    """A declared input: dtype and shape, ``None`` marking a dynamic dimension (``TensorSpec(np.float32, (None,))``)."""

    dtype: object
    shape: tuple

    def __post_init__(self):
        object.__setattr__(self, "dtype", check_dtype(self.dtype))
        shape = tuple(self.shape)
        for d in shape:
            if d is not None and (not isinstance(d, (int, np.integer)) or d < 0 or isinstance(d, bool)):
                raise TypeError(f"TensorSpec shape entries must be non-negative ints or None, got {d!r}")
        object.__setattr__(self, "shape", tuple(None if d is None else int(d) for d in shape))

    def describe(self) -> str:
        dims = ", ".join("?" if d is None else str(d) for d in self.shape)
        return f"{self.dtype} array of shape ({dims}{',' if len(self.shape) == 1 else ''})"

    def matches(self, a: np.ndarray) -> bool:
        return a.dtype == self.dtype and a.ndim == len(self.shape) and all(
            d is None or d == s for d, s in zip(self.shape, a.shape))


class _BytesSpec:
    """Signature entry for an encoded-bytes argument (``signature=(pj.BYTES,)``), decoded by image.decode."""

    def describe(self) -> str:
        return "encoded image bytes"

    def matches(self, a) -> bool:
        return isinstance(a, bytes)

    def __repr__(self):
        return "prepjit.BYTES"

    def __reduce__(self):  # unpickles as the singleton, so ``s is BYTES`` holds in other processes
        return "BYTES"


BYTES = _BytesSpec()
BYTES_KEY = ("bytes",)


def _input_spec(s) -> InputSpec:
    return BYTES_SPEC if s is BYTES else InputSpec(s.dtype, s.shape)


MAX_STATIC_CHANNELS = 4


def _channels(shape) -> int | None:
    """The channel count of an HWC image (rank 3, last axis <= 4): compiled as a constant, so per-pixel channel
    loops unroll and vectorize; other sizes stay symbolic."""
    c = shape[-1] if len(shape) == 3 else None
    return c if c is not None and c <= MAX_STATIC_CHANNELS else None


def _key(arrays) -> tuple:
    """Specialization key: (dtype, rank, channels) per array argument, a marker for encoded-bytes arguments."""
    return tuple(BYTES_KEY if isinstance(a, bytes) else (a.dtype, a.ndim, _channels(a.shape)) for a in arrays)


def _spec_key(s) -> tuple:
    return BYTES_KEY if s is BYTES else (s.dtype, len(s.shape), _channels(s.shape))


def _spec_accepts(s, key) -> bool:
    """Whether signature entry ``s`` covers arguments with specialization key ``key``."""
    k = _spec_key(s)
    return k == key or (k != BYTES_KEY and key != BYTES_KEY and k[:2] == key[:2] and k[2] is None)


def _array_spec(a) -> InputSpec:
    if isinstance(a, bytes):
        return BYTES_SPEC
    c = _channels(a.shape)
    return InputSpec(a.dtype, (None,) * a.ndim if c is None else (None, None, c))


def _signature_spec(s, key) -> InputSpec:
    """The spec compiled for signature entry ``s`` called with arguments of key ``key`` (channels filled in)."""
    spec = _input_spec(s)
    if s is not BYTES and key[2] is not None and s.shape[-1] is None:
        spec = InputSpec(s.dtype, s.shape[:-1] + (key[2],))
    return spec


def _is_torch_tensor(x) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


def _describe(a) -> str:
    if isinstance(a, np.ndarray) or _is_torch_tensor(a):
        return f"{a.dtype} array of shape {tuple(a.shape)}"
    return type(a).__name__


class JitFunction:
    """A traced-and-compiled preprocessing function. Call it like the original."""

    def __init__(self, fn, target: str = "cpu", cache: bool = True, signature=None):
        if target not in TARGETS:
            raise ValueError(f"unknown target {target!r}; supported: {', '.join(TARGETS)}")
        functools.update_wrapper(self, fn)
        self.fn = fn
        self.target = target
        self.cache = cache
        self.name = fn.__name__
        params = [p for p in inspect.signature(fn).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        self._sig = inspect.signature(fn)
        self.arg_names = [p.name for p in params if p.default is p.empty]
        if any(p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) for p in self._sig.parameters.values()):
            raise TypeError(f"@jit_preprocess: {self.name} must take a fixed list of array arguments (no *args/**kwargs)")
        self._nargs = len(self.arg_names)
        self.signature = None
        if signature is not None:
            sig = tuple(signature) if isinstance(signature, (tuple, list)) else (signature,)
            if sig and all(isinstance(s, (TensorSpec, _BytesSpec)) for s in sig):
                sig = (sig,)
            self.signature = [tuple(s) for s in sig]
            for s in self.signature:
                if len(s) != self._nargs or not all(isinstance(x, (TensorSpec, _BytesSpec)) for x in s):
                    raise TypeError(f"signature for {self.name} must give {self._nargs} TensorSpec(s) per entry")
        self._execs: dict = {}
        self._compiled: dict = {}
        self._compiled_elsewhere: dict = {}  # target → specs → Compiled, for source(target) and tools
        self._last = None
        self._lock = threading.RLock()
        self.stats = {"compiles": 0, "disk_hits": 0, "specializations": 0, "compile_seconds": 0.0}
        _live_functions.add(self)

    # -- processes: pickling, DataLoader, bundles (prepjit/runtime/portable.py, dataloader.py, bundle.py) -------
    def __reduce__(self):
        from prepjit.runtime.portable import reduce_function

        return reduce_function(self)

    def __copy__(self):  # like Python functions: copying returns the function itself (it shares its code)
        return self

    def __deepcopy__(self, memo):
        return self

    @property
    def collate(self):
        """A ready ``collate_fn`` for ``torch.utils.data.DataLoader``: raw samples → batched tensors via ``.batch``."""
        from prepjit.runtime.dataloader import Collate

        return Collate(self)

    def udf(self, columns=None, output: str | None = None, threads: int | None = None):
        """A batch UDF for columnar engines (Ray Data ``map_batches(..., batch_format="numpy")``): see batch_udf.py."""
        from prepjit.runtime.batch_udf import BatchUDF

        return BatchUDF(self, columns, output, threads)

    def save(self, path) -> str:
        """Write a self-contained bundle directory (IR, object code, manifest); ``prepjit.load(path)`` runs it."""
        from prepjit.runtime.bundle import save

        return save(self, path)

    def _bundled_object(self, c):
        """Object code shipped with this function for ``c.key`` (bundles), or None."""
        return None

    def __repr__(self):
        return f"<prepjit.JitFunction {self.name} target={self.target}>"

    def to(self, target: str) -> "JitFunction":
        """The same function compiled for another target ("cpu" or "cuda"); shares nothing but the cache."""
        return JitFunction(self.fn, target=target, cache=self.cache, signature=self.signature)

    # -- calling --------------------------------------------------------------------------------------------
    def __call__(self, *args, seed: int = 0, index: int = 0, **kwargs):
        """Run on one sample. ``seed`` and ``index`` key the random ops (``random_resized_crop``, ...): the
        same (seed, index) gives the same augmentation in any process, thread or batch."""
        if kwargs or len(args) != self._nargs:
            args = self._bind(args, kwargs)
        if self.target == "cuda":
            from prepjit.runtime import cuda

            return cuda.run(self, [args], single=True, seed=seed, index=index)
        torch_out = False
        arrays = []
        for i, a in enumerate(args):
            if type(a) is not np.ndarray:
                if type(a) is dict and len(args) == 1:  # a columnar batch: Ray Data map_batches(fn)
                    return self.udf()(a)
                if _is_torch_tensor(a):
                    torch_out = True
                a = self._to_numpy(a, i)
            arrays.append(a)
        key = _key(arrays)
        exe = self._execs.get(key)
        if exe is None:
            exe = self._specialize(arrays, key)
        out = exe.run(*arrays, _rng=(int(seed), int(index)))
        if torch_out:
            out = _to_torch(out, args)
        return out

    def batch(self, *columns, threads: int | None = None, seed: int = 0, index: int = 0, out=None):
        """Run on N samples: one list per argument (``fn.batch(imgs)``, ``fn.batch(col0, col1)``), or a stacked
        array whose rows are the samples (``fn.batch(cifar_data)`` for an (N, 32, 32, 3) array).

        Samples may differ in size (ragged images); their outputs must agree in shape and are stacked into
        arrays with a leading N axis (same structure as a single call). Samples of one shape skip the per-sample
        Python prologue (``runtime.batch.uniform_rows``). Samples are split over ``threads``
        worker threads (default: the CPUs this process may use) running native code in parallel. Errors name
        the sample index; a bad sample raises without touching the other outputs' memory safety. Random ops
        see sample ``i`` as ``index + i`` under ``seed``: pass the dataset index of the first sample, and any
        split of the data into batches, threads or workers gives every sample the same augmentation.
        ``out``: arrays (or CPU tensors) in the result's structure to write into instead of new ones — e.g. the
        same buffers batch after batch, or pinned memory; it is returned.
        """
        from prepjit.runtime import batch as native_batch, outputs
        from prepjit.runtime.executable import addr
        from prepjit.runtime.threads import available_cpus, pool

        if len(columns) != self._nargs:
            raise TypeError(f"{self.name}.batch() takes {self._nargs} column(s) (one list per argument), "
                            f"got {len(columns)}")
        cols = []
        for name, c in zip(self.arg_names, columns):
            if isinstance(c, np.ndarray) and c.ndim >= 2 and c.dtype.kind in "biufc":
                pass  # a stacked NumPy array, kept: its rows (views) are the samples, all of one shape
            elif isinstance(c, np.ndarray) or _is_torch_tensor(c) or hasattr(c, "__cuda_array_interface__"):
                c = list(c)  # a stacked array: its rows are the samples
            elif not isinstance(c, (list, tuple)):
                raise TypeError(f"{self.name}.batch(): argument {name!r} must be a list of samples, got "
                                f"{type(c).__name__}")
            cols.append(c)
        n = len(cols[0])
        if any(len(c) != n for c in cols):
            raise ValueError(f"{self.name}.batch(): columns have different lengths {[len(c) for c in cols]}")
        if n == 0:
            raise ValueError(f"{self.name}.batch(): empty batch")
        if self.target == "cuda":  # one launch for the whole batch (prepjit.runtime.cuda)
            from prepjit.runtime import cuda

            if out is not None:
                raise TypeError(f"{self.name}.batch(): out= is for CPU functions; a cuda function returns device "
                                "arrays")
            return cuda.run(self, list(zip(*cols)), single=False, seed=seed, index=index)
        if any(isinstance(c[0], (str, bytes)) for c in cols):  # text: one native pass over all samples
            from prepjit.text import batch_text

            result = batch_text(self, cols, threads)
            if result is not None:
                if out is not None:
                    raise TypeError(f"{self.name}.batch(): out= is not supported for text functions (their "
                                    "lengths are known only after tokenizing)")
                return result
        torch_out = any(_is_torch_tensor(c[0]) for c in cols)
        if torch_out:  # CPU tensors as arrays once (as each sample would be), so one shape takes uniform rows
            cols = [self._arrays(c, j) if any(map(_is_torch_tensor, c)) else c for j, c in enumerate(cols)]

        def sample(i):
            return [a if type(a) is np.ndarray else self._to_numpy(a, j) for j, a in enumerate(c[i] for c in cols)]

        execs = self._execs
        col0 = cols[0] if len(cols) == 1 else None

        def resolve(i):
            if col0 is not None:  # one argument, an array (the common case: this runs once per sample)
                a = col0[i]
                if type(a) is np.ndarray:
                    exe = execs.get(((a.dtype, a.ndim, _channels(a.shape)),))  # = _key([a])
                    if exe is not None:
                        return exe, [a]
            arrays = sample(i)
            key = _key(arrays)
            return self._execs.get(key) or self._specialize(arrays, key), arrays

        def named(i, e):
            if isinstance(e, (TypeError, ValueError, IndexError)):
                return type(e)(f"{self.name}.batch(): sample {i}: {e}")
            return e

        try:
            exe0, arrays0 = resolve(0)
            rng0 = (int(seed), int(index))
            native = native_batch.ENABLED and exe0.prep is not None
            if native:  # sample 0's prologue allocates one sample's outputs: their structure, shapes and dtypes
                first = exe0.prep(*arrays0, None, rng0, np.empty(exe0.nslots, np.int64), 0)[2]
            else:
                first = exe0.run(*arrays0, _rng=rng0)
        except Exception as e:  # noqa: BLE001
            raise named(0, e) from None
        leaves, rebuild = _flatten(first)
        if out is None:  # large outputs on recycled memory (prepjit.runtime.outputs)
            outs = [outputs.empty((n,) + x.shape, x.dtype) for x in leaves]
        else:
            outs = self._check_out(out, first, leaves, n)
        workers = max(1, min(threads or available_cpus(), n - 1 if not native else n))
        failures: list = []

        def run_here(i, exe, arrays):  # [i, ...]: a view even for 0-d outputs
            exe.run(*arrays, _out=[o[i, ...] for o in outs], _rng=(int(seed), int(index) + i))

        if native:
            # The caller prepares each sample's arguments; worker threads run them in one native loop each
            # (prepjit.runtime.batch), never taking the GIL between samples.
            rows = [(addr(o), o.strides[0]) for o in outs]  # C-contiguous: row i of each output at base + i * stride
            shapes = tuple(o.shape[1:] for o in outs)
            seed_, index_ = int(seed), int(index)
            one = rows[0] if len(rows) == 1 else None

            def row(i):
                exe, arrays = (exe0, arrays0) if i == 0 else resolve(i)
                at = (one[0] + i * one[1],) if one is not None else tuple(b + i * s for b, s in rows)
                return exe, arrays, (at, shapes), (seed_, index_ + i)

            # samples of one shape (a fixed-size dataset): all rows' slots at once from two probe rows
            bulk = native_batch.uniform_rows(exe0, cols, outs, rng0)
            native_batch.run(native_batch.sample_rows(row, run_here), 0, n, workers,
                             pool(workers - 1) if workers > 1 else None, failures, bulk=bulk)
        else:
            for o, x in zip(outs, leaves):
                o[0] = x

            self._run_threads(lambda i: run_here(i, *resolve(i)), n, workers, failures)
        failures = [(i, named(i, e)) for i, e in failures]
        if failures:
            raise min(failures, key=lambda f: f[0])[1] from None
        if out is not None:
            return out
        result = rebuild(outs)
        return _to_torch(result, ()) if torch_out else result

    def _arrays(self, column, j: int) -> list:
        """A column's samples as arrays (torch tensors: their memory), errors naming the sample."""
        out = []
        for i, a in enumerate(column):
            try:
                out.append(a if type(a) is np.ndarray else self._to_numpy(a, j))
            except (TypeError, ValueError) as e:
                raise type(e)(f"{self.name}.batch(): sample {i}: {e}") from None
        return out

    def _run_threads(self, run_one, n: int, workers: int, failures: list) -> None:
        """``.batch`` one sample at a time per thread (host ops such as decoding run in Python, in parallel)."""
        from prepjit.runtime.threads import pool

        # Every thread (the caller is one) claims the next sample until none is left: a thread the host slows
        # down, or a run of large images, does not hold the others up. next() on the shared range iterator is
        # atomic under the GIL. A thread stops at its first bad sample; the lowest bad index is reported.
        todo = iter(range(1, n))

        def work():
            for i in todo:
                try:
                    run_one(i)
                except Exception as e:  # noqa: BLE001 - re-raised by batch, once no thread writes any more
                    failures.append((i, e))
                    return

        if workers == 1 or n <= 2:
            work()
        else:
            futures = [pool(workers - 1).submit(work) for _ in range(workers - 1)]
            work()
            for f in futures:
                f.result()

    def _check_out(self, out, first, leaves: list, n: int) -> list:
        """The writable C-contiguous NumPy views of ``out``'s leaves, checked against the batch's result (whose
        first sample is ``first``)."""
        if isinstance(first, dict):
            if not isinstance(out, dict) or set(out) != set(first):
                raise TypeError(f"{self.name}.batch(): out= must be a dict with keys {sorted(first)}")
            given = [out[k] for k in first]
        else:
            given, _ = _flatten(out) if isinstance(first, (tuple, list)) else ([out], None)
        if len(given) != len(leaves):
            raise TypeError(f"{self.name}.batch(): out= has {len(given)} array(s), the result has {len(leaves)}")
        views = []
        for k, (o, x) in enumerate(zip(given, leaves)):
            what = f"{self.name}.batch(): out= array {k}"
            if _is_torch_tensor(o):
                if o.device.type != "cpu":
                    raise TypeError(f"{what} is on {o.device.type}; out= takes CPU arrays")
                o = o.detach().numpy()
            if not isinstance(o, np.ndarray):
                raise TypeError(f"{what} must be a NumPy array or a CPU tensor, got {type(o).__name__}")
            want = (n,) + x.shape
            if o.shape != want or o.dtype != x.dtype or not o.flags.c_contiguous or not o.flags.writeable:
                raise ValueError(f"{what}: expected a writable C-contiguous {x.dtype} array of shape {want}, got "
                                 f"{o.dtype} {o.shape}{'' if o.flags.c_contiguous else ' (not C-contiguous)'}"
                                 f"{'' if o.flags.writeable else ' (read-only)'}")
            views.append(o)
        return views

    def _bind(self, args, kwargs):
        try:
            bound = self._sig.bind(*args, **kwargs)
        except TypeError as e:
            raise TypeError(f"{self.name}(): {e}") from None
        return tuple(bound.arguments[n] for n in self.arg_names)  # bind() guarantees required ones

    def _to_numpy(self, a, i) -> np.ndarray:
        name = self.arg_names[i]
        if isinstance(a, (bytes, bytearray, memoryview)):  # encoded data for prepjit.image.decode
            return bytes(a)
        if isinstance(a, str):  # text for prepjit.text tokenizers: UTF-8 bytes
            try:
                return a.encode("utf-8")
            except UnicodeEncodeError as e:
                raise ValueError(f"{self.name}(): argument {name!r} is not valid Unicode text ({e.reason} at "
                                 f"index {e.start})") from None
        if _is_torch_tensor(a):
            if a.device.type != "cpu":
                raise TypeError(f"{self.name}(): argument {name!r} is a {a.device.type} tensor, but this function "
                                f"was compiled for target={self.target!r}; move it with .cpu()")
            a = a.detach()
            if not a.is_contiguous() and a.numel() and any(s < 0 for s in a.stride()):
                a = a.contiguous()
            try:
                return a.numpy()
            except TypeError:
                raise TypeError(f"{self.name}(): argument {name!r} has torch dtype {a.dtype}, which prepjit does "
                                f"not support") from None
        if isinstance(a, np.generic):
            return np.asarray(a)
        if isinstance(a, np.ndarray):  # subclass
            return np.asarray(a)
        raise TypeError(f"{self.name}(): argument {name!r} must be a numpy.ndarray or torch.Tensor, got "
                        f"{type(a).__name__}" + (" (wrap it with np.asarray)" if isinstance(a, (list, tuple, int, float)) else ""))

    def _specialize(self, arrays, key):
        with self._lock:  # threads racing on a first call compile once
            exe = self._execs.get(key)
            if exe is None:
                exe = self._specialize_locked(arrays, key)
            return exe

    def _specialize_locked(self, arrays, key):
        for i, a in enumerate(arrays):
            if isinstance(a, bytes):
                continue
            if a.dtype not in DTYPE_NAMES:
                supported = ", ".join(str(d) for d in SUPPORTED_DTYPES)
                raise TypeError(f"{self.name}(): argument {self.arg_names[i]!r} has dtype {a.dtype}, which prepjit "
                                f"does not support (supported: {supported})")
        if self.signature is not None:
            for spec in self.signature:
                if all(_spec_accepts(s, k) for s, k in zip(spec, key)):
                    specs = [_signature_spec(s, k) for s, k in zip(spec, key)]
                    break
            else:
                got = ", ".join(f"{n}: {_describe(a)}" for n, a in zip(self.arg_names, arrays))
                want = " | ".join("(" + ", ".join(s.describe() for s in spec) + ")" for spec in self.signature)
                raise TypeError(f"{self.name}(): arguments ({got}) match no declared signature; expected {want}")
        else:
            specs = [_array_spec(a) for a in arrays]
        exe = self._executable(tuple(specs))
        self._execs[key] = exe
        return exe

    # -- compiling ------------------------------------------------------------------------------------------
    def _build(self, specs, target=None):
        """The Compiled for ``specs``, memoized (for this function's target unless another is named: the lowering
        schedules loops for its target)."""
        target = target or self.target
        cache = self._compiled if target == self.target else self._compiled_elsewhere.setdefault(target, {})
        c = cache.get(specs)
        if c is None:
            c = cache[specs] = self._build_new(specs, target)
        if target == self.target:
            self._last = c
        return c

    def _build_new(self, specs, target):
        """Trace, optimize and lower (a function rebuilt from IR text parses it instead of tracing)."""
        from prepjit.compiler.driver import build

        return build(self.fn, list(specs), self.arg_names, self.name, target)

    def _executable(self, specs):
        """The Executable for ``specs``. Warm path (cache hit): trace, key, read the entry (object code, and the call
        prologue in its metadata), map the object: no passes, no lowering, no LLVM. Cold path: lower, compile,
        store both in one entry."""
        if self.target == "cuda":
            from prepjit.runtime import cuda

            with self._lock:
                return cuda.executable(self, specs)
        from prepjit.runtime import executable as X
        from prepjit.runtime import native

        with self._lock:
            c = self._build(specs)
            texts = [X.spec_text(t) for t in c.input_types]
            obj = self._bundled_object(c)
            store = entry = None
            if self.cache:
                from prepjit.runtime.cache import get_cache

                store = get_cache()
                if obj is None:
                    entry = store.load(c.key)
                    obj = entry.payload if entry is not None else None
            bad = None
            if obj is not None:
                try:
                    nat = native.load_object(obj, "prepjit_entry")
                    self.stats["disk_hits"] += 1
                    c.from_disk = True
                except Exception as e:  # a cached object that does not link: recompile, never crash
                    warnings.warn(f"prepjit: cached code for {self.name} could not be loaded ({e}); recompiling",
                                  stacklevel=3)
                    bad, obj, entry = obj, None, None
            if obj is None:
                lock = store.lock(c.key) if store is not None else contextlib.nullcontext()
                with lock:  # stored before the lock is released: concurrent processes compile each key once
                    entry = store.load(c.key) if store is not None else None
                    if entry is not None and entry.payload == bad:
                        entry = None  # compile again and overwrite it
                    if entry is None:
                        from prepjit.compiler.driver import compile_native

                        obj = compile_native(c)
                        self.stats["compiles"] += 1
                        self.stats["compile_seconds"] += c.compile_seconds
                        self.stats["specializations"] += 1
                        exe = X.Executable(c, native.load_object(obj, "prepjit_entry"), self.arg_names, texts)
                        _prebuild_fixed_kernels(c.program)
                        if store is not None:
                            from prepjit.runtime.portable import host_meta

                            self._store(store, c, obj, {"function": f"{self.__module__}.{self.__qualname__}",
                                                        "target": self.target, "specialization": texts,
                                                        **host_meta()}, exe.plan, texts)
                        return exe
                    obj = entry.payload
                    self.stats["disk_hits"] += 1
                nat = native.load_object(obj, "prepjit_entry")
            self.stats["specializations"] += 1
            plan = X.plan_from_meta(entry.meta, self._plan_id(c, texts)) if entry is not None else None
            if plan is not None:
                return X.Executable.from_plan(c, nat, plan)
            exe = X.Executable(c, nat, self.arg_names, texts)
            if entry is not None:  # an entry without this specialization's prologue (another function's, older)
                self._store(store, c, obj, dict(entry.meta), exe.plan, texts)
            return exe

    def _plan_id(self, c, texts) -> str:
        from prepjit.runtime import executable as X

        # the prologue embeds argument names and source locations (messages), which the cache key leaves out
        return X.plan_id(c.key, c.traced_text, self.arg_names, texts)

    def _store(self, store, c, obj, meta, plan, texts) -> None:
        """Store the object code with the call prologue in its metadata (when it pickles)."""
        from prepjit.runtime import executable as X

        pm = X.plan_meta(plan, self._plan_id(c, texts))
        if pm is not None:
            meta["prologue"] = pm
        elif "prologue" in meta:
            return  # nothing better to write
        store.store(c.key, obj, meta)

    def compile(self, *specs, arch=None):
        """Compile ahead of time for the given TensorSpecs (or every declared ``signature=`` entry).

        ``target="cuda"``: ``arch=["sm_80", "sm_90"]`` compiles cubins for those architectures into the cache
        without a GPU; without ``arch`` it compiles for the current device."""
        todo = [tuple(specs)] if specs else (self.signature or [])
        if not todo:
            raise ValueError(f"{self.name}: give TensorSpecs or declare signature= to compile ahead of time")
        if arch is not None:
            if self.target != "cuda":
                raise TypeError(f"{self.name}.compile(arch=...) is for target='cuda' functions")
            from prepjit.runtime import cuda

            cuda.compile_ahead(self, [tuple(_input_spec(s) for s in spec) for spec in todo], arch)
            return self
        for spec in todo:
            spec = tuple(spec)
            key = tuple(_spec_key(s) for s in spec)
            if key not in self._execs:
                self._execs[key] = self._executable(tuple(_input_spec(s) for s in spec))
        return self

    # -- introspection --------------------------------------------------------------------------------------
    def _compiled_for(self, example, target=None):
        if example is not None:
            arrays = [self._to_numpy(a, i) if type(a) is not np.ndarray else a for i, a in enumerate(example)]
            if self.signature is not None:
                key = _key(arrays)
                for spec in self.signature:
                    if all(s.matches(a) for s, a in zip(spec, arrays)):
                        return self._build(tuple(_signature_spec(s, k) for s, k in zip(spec, key)), target)
            return self._build(tuple(_array_spec(a) for a in arrays), target)
        if self._last is not None:
            if target in (None, self.target):
                return self._last
            return self._build(next(k for k, c in self._compiled.items() if c is self._last), target)
        if self.signature:
            return self._build(tuple(_input_spec(s) for s in self.signature[0]), target)
        raise ValueError(f"{self.name} has not been called yet: call it, or pass example=(arrays...), "
                         "or declare signature=")

    def ir(self, stage: str = "traced", example=None) -> str:
        """MLIR-like text of the last specialization: "traced", "optimized" or "lowered" (kernel level)."""
        from prepjit.ir.printer import print_function

        c = self._compiled_for(example)
        if stage == "traced":
            return c.traced_text
        if stage == "optimized":
            return print_function(c.optimized)
        if stage == "lowered":
            return c.lowered_text()
        raise ValueError(f"unknown IR stage {stage!r}; use 'traced', 'optimized' or 'lowered'")

    def source(self, target: str = "llvm", example=None, optimized: bool = True) -> str:
        """Generated code of the last specialization: target "llvm" (optimized by default) or "cuda" (CUDA C;
        needs no GPU)."""
        from prepjit.compiler.driver import render_llvm
        from prepjit.runtime import native

        if target == "cuda":
            from prepjit.runtime import cuda

            return cuda.render(self._compiled_for(example, "cuda")).text
        c = self._compiled_for(example)
        if target != "llvm":
            raise ValueError(f"unknown source target {target!r}; supported: 'llvm', 'cuda'")
        if not optimized:
            return render_llvm(c)
        if c.optimized_llvm_ir is None:
            c.optimized_llvm_ir = str(native.optimize(render_llvm(c)))
        return c.optimized_llvm_ir


def _prebuild_fixed_kernels(program) -> dict:
    """The shipped kernels a freshly compiled program's prologue will call (resize weight tables), built now and
    cached with it, so a process using the cache afterwards needs no LLVM: {cache key: name}."""
    if any(b.kind == "table" for b in program.buffers.values()):
        from prepjit.kernels import image_tables

        return image_tables.prebuild(program)
    return {}


def _flatten(out):
    """Output structure → (leaves, rebuild(leaves))."""
    if isinstance(out, dict):
        keys = list(out)
        return [out[k] for k in keys], lambda xs: dict(zip(keys, xs))
    if isinstance(out, (tuple, list)):
        kind = type(out)
        return list(out), lambda xs: kind(xs)
    return [out], lambda xs: xs[0]


def _to_torch(out, args):
    import torch

    def conv(x):
        if isinstance(x, np.ndarray):
            for a in args:  # an input returned unchanged comes back as the caller's tensor
                if _is_torch_tensor(a) and a.numel() and x.size and x.__array_interface__["data"][0] == a.data_ptr() \
                        and x.shape == tuple(a.shape):
                    return a
            return torch.from_numpy(x)
        return x

    if isinstance(out, dict):
        return {k: conv(v) for k, v in out.items()}
    if isinstance(out, (tuple, list)):
        return type(out)(conv(v) for v in out)
    return conv(out)


def jit_preprocess(fn=None, *, target: str = "cpu", cache: bool = True, signature=None):
    """Decorator: trace ``fn`` into prepjit's IR, fuse and compile it to native code on first call per dtype/rank.

    Use bare (``@jit_preprocess``) or with options: ``target`` ("cpu" or "cuda"), ``cache`` (use the on-disk compile
    cache, default True) and ``signature`` (TensorSpecs declaring the accepted inputs; enables ahead-of-time
    compilation and makes other inputs a TypeError).
    """
    def wrap(f):
        return JitFunction(f, target=target, cache=cache, signature=signature)

    return wrap(fn) if fn is not None else wrap
