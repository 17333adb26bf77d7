"""The native resize weight tables (``kernels/resample_tables.py``, built through ``image_tables._table``) against
the NumPy spec (``kernels/resample.resize_weights``, itself checked against torch in test_resample.py): every
array and the fixed-point precision must be identical, for every mode, antialias flag and dtype path."""
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from prepjit.ir.image import RESAMPLE_MODES
from prepjit.kernels import image_tables as IT

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
N = len(RESAMPLE_MODES)
# (mode index, antialias, dtype path): mode + N is torch's channels-last nearest kernel
VARIANTS = [(m, aa, p) for m in range(2 * N) for aa in (False, True) for p in range(3)]
EDGES = [(1, 1), (1, 5), (5, 1), (2, 3), (3, 2), (7, 7), (100, 37), (37, 100), (4000, 16), (16, 4000), (500, 341),
         (375, 256), (1, 224), (224, 1), (999, 998), (256, 257), (3, 1024), (1024, 3), (640, 213)]


def native(in_size, out_size, mode, aa, path):
    return IT.native_table(in_size, out_size, mode, aa, path)


def assert_same(in_size, out_size, mode, aa, path):
    want = IT._spec_table(in_size, out_size, mode, aa, path)
    got = native(in_size, out_size, mode, aa, path)
    label = f"{IT.variant(mode, aa, path)} {in_size} -> {out_size}"
    for name, w, g in zip(("size", "index", "weights"), want[:3], got[:3]):
        assert g.dtype == w.dtype and g.shape == w.shape, (label, name, g.dtype, g.shape, w.dtype, w.shape)
        # bit patterns, so a float weight differing only in the sign of a zero fails too
        assert np.array_equal(g.view(f"u{g.itemsize}"), w.view(f"u{w.itemsize}")), (label, name)
    assert got[3] == want[3], (label, "precision", got[3], want[3])


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: "-".join(map(str, IT.variant(*v))))
def test_native_tables_equal_the_spec_on_edge_sizes(variant):
    for in_size, out_size in EDGES:
        assert_same(in_size, out_size, *variant)


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(VARIANTS), st.integers(1, 3000), st.integers(1, 3000))
def test_native_tables_equal_the_spec(variant, in_size, out_size):
    assert_same(in_size, out_size, *variant)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(VARIANTS), st.integers(1, 40), st.integers(1, 40))
def test_native_tables_equal_the_spec_small(variant, in_size, out_size):
    assert_same(in_size, out_size, *variant)


def test_spec_path_switch(monkeypatch):
    """``PREPJIT_NATIVE_TABLES=0`` (read at import) runs the spec: the switch used to compare the two."""
    calls = []
    monkeypatch.setattr(IT, "native_table", lambda *a: calls.append(a))
    assert IT._table.__wrapped__(500, 341, 0, True, 0) is None and calls == [(500, 341, 0, True, 0)]
    monkeypatch.setattr(IT, "_NATIVE", False)
    got = IT._table.__wrapped__(500, 341, 0, True, 0)
    want = IT._spec_table(500, 341, 0, True, 0)
    assert all(np.array_equal(a, b) for a, b in zip(got[:3], want[:3])) and got[3] == want[3] and len(calls) == 1


def test_table_kernels_come_from_the_disk_cache(tmp_path):
    """A second process loads the compiled table kernel from the cache instead of compiling it."""
    script = textwrap.dedent("""
        import sys
        from prepjit.kernels import image_tables as IT
        from prepjit.runtime import native
        compiled = []
        real = native.compile_object
        native.compile_object = lambda ir: compiled.append(1) or real(ir)
        t = IT._table.__wrapped__(480, 123, 0, True, 0)
        print(len(compiled), int(t[1].sum()), t[3])
    """)
    env = dict(os.environ, PYTHONPATH=ROOT, PREPJIT_CACHE_DIR=str(tmp_path / "c"))
    runs = [subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
            for _ in range(2)]
    for r in runs:
        assert r.returncode == 0, r.stderr
    first, second = (r.stdout.split() for r in runs)
    assert first[0] == "1" and second[0] == "0"
    assert first[1:] == second[1:]
