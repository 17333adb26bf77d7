"""IR: printing/parsing round trips, the verifier, passes preserving meaning (checked by the interpreter)."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import prepjit as pj
from prepjit.compiler.driver import optimization_pipeline
from prepjit.compiler.tracer import InputSpec, trace
from prepjit.errors import IRParseError, VerificationError
from prepjit.ir import dims as D
from prepjit.ir.core import Operation, clone_function
from prepjit.ir.parser import parse_dim, parse_function
from prepjit.ir.printer import print_function
from prepjit.ir.verifier import verify
from prepjit.kernels.reference import interpret


def pipeline(x, y):
    z = x.reshape(-1, 2)[::-1, :].T + y[:, None]
    w = np.concatenate([x, x * 2])
    return {"a": z.sum(axis=1), "b": np.clip(w, 1, 5.5), "c": (z - z.mean()).astype(np.int32),
            "d": np.where(w > 3, np.sqrt(np.abs(w)), -w) ** 2}


def feat(x):
    y = np.clip((x - 3.0) / 2.0, -5.0, 5.0)
    return np.log1p(np.abs(y)) * np.sign(y) + np.where(x > 0, 1.0, 0.0)


SPECS = [InputSpec(np.dtype(np.float32), (None,)), InputSpec(np.dtype(np.float64), (None,))]


def _traced():
    return trace(pipeline, SPECS, ["x", "y"])


def _optimized():
    fn = clone_function(_traced())
    optimization_pipeline(verify_each=True).run(fn)
    return fn


@pytest.mark.parametrize("stage", ["traced", "optimized"])
def test_print_parse_round_trip(stage):
    fn = _traced() if stage == "traced" else _optimized()
    text = print_function(fn)
    again = parse_function(text)
    verify(again)
    assert print_function(again) == text


def test_round_trip_preserves_meaning():
    x = np.arange(8, dtype=np.float32)
    y = np.array([0.5, -2.0])
    ref = pipeline(x, y)
    for fn in (_traced(), _optimized(), parse_function(print_function(_optimized()))):
        out = interpret(fn, x, y)
        for k in ref:
            np.testing.assert_array_equal(out[k], ref[k])
            assert out[k].dtype == ref[k].dtype


def test_text_contains_locations_and_types():
    text = print_function(_traced())
    assert 'loc("' in text and "test_ir.py" in text
    assert "tensor<?xf32>" in text and "tensor.reshape" in text and "func.return" in text


def test_fusion_makes_one_kernel_for_elementwise_chain():
    fn = trace(feat, SPECS[:1], ["x"])
    optimization_pipeline(verify_each=True).run(fn)
    kernels = [op for op in fn.ops if op.name == "kernel.fused"]
    assert len(kernels) == 1
    jf = pj.jit_preprocess(feat)
    jf(np.ones(4, np.float32))
    lowered = jf.ir("lowered")
    assert lowered.count("kernel.func") == 1
    assert lowered.count("memref.store") == 2  # the unit-stride and the general version of the one loop


def test_same_shape_outputs_share_one_kernel():
    def two(x):
        return x + 1, x * 2

    fn = trace(two, SPECS[:1], ["x"])
    optimization_pipeline(verify_each=True).run(fn)
    assert sum(op.name == "kernel.fused" for op in fn.ops) == 1


def test_cse():
    def f(x):
        return (x + 1) * (x + 1) + np.exp(x) * np.exp(x)

    fn = trace(f, SPECS[1:], ["x"])
    optimization_pipeline(verify_each=True).run(fn)
    region = [op for op in fn.ops if op.name == "kernel.fused"][0].regions[0]
    names = [op.name for op in region.ops]
    assert names.count("tensor.add") == 2 and names.count("tensor.exp") == 1


def test_constant_folding_uses_numpy_reference():
    data = np.array([0.0, 1.0, 2.0])
    text = f"""func.func @f(%x: tensor<?xf64>) -> (tensor<?xf64>) {{
  %0 = tensor.constant {{value = dense<"0x{data.tobytes().hex()}"> : tensor<3xf64>}} : () -> tensor<3xf64>
  %1 = tensor.pyconst {{value = 2.0}} : () -> !py.float<2.0>
  %2 = tensor.multiply %0, %1 : (tensor<3xf64>, !py.float<2.0>) -> tensor<3xf64>
  %3 = tensor.sum %2 {{axes = [0], keepdims = false}} : (tensor<3xf64>) -> tensor<f64>
  %4 = tensor.add %x, %3 : (tensor<?xf64>, tensor<f64>) -> tensor<?xf64>
  func.return %4 {{tree = "single"}} : (tensor<?xf64>) -> ()
}}
"""
    fn = parse_function(text)
    optimization_pipeline(verify_each=True).run(fn)
    consts = [op.attrs["value"] for op in fn.ops if op.name == "tensor.constant"]
    assert len(consts) == 1 and consts[0].shape == () and consts[0] == 6.0
    assert not any(op.name in ("tensor.multiply", "tensor.sum") for op in fn.ops)
    np.testing.assert_array_equal(interpret(fn, np.array([1.0, -1.0])), [7.0, 5.0])


def test_numpy_scalars_are_zero_dim_constants():
    fn = trace(lambda x: x + np.float64(12.0), SPECS[1:], ["x"])
    const = next(op for op in fn.ops if op.name == "tensor.constant")
    assert const.result.type.shape == ()


def test_verifier_rejects_bad_ir():
    fn = _traced()
    verify(fn)
    # use before definition
    bad = clone_function(fn)
    bad.body.ops.reverse()
    with pytest.raises(VerificationError):
        verify(bad)
    # wrong result type
    bad = clone_function(fn)
    op = next(o for o in bad.body.ops if o.name == "tensor.add")
    op.results[0].type = op.operands[0].type
    with pytest.raises(VerificationError, match="differ from inferred"):
        verify(bad)
    # missing terminator
    bad = clone_function(fn)
    bad.body.ops.pop()
    with pytest.raises(VerificationError):
        verify(bad)
    # wrong operand count
    bad = clone_function(fn)
    op = next(o for o in bad.body.ops if o.name == "tensor.add")
    op.operands.append(op.operands[0])
    with pytest.raises(VerificationError, match="expects 2 operands"):
        verify(bad)
    # missing attribute
    bad = clone_function(fn)
    op = next(o for o in bad.body.ops if o.name == "tensor.reshape")
    del op.attrs["shape"]
    with pytest.raises(VerificationError, match="missing attribute"):
        verify(bad)


def test_parser_errors():
    with pytest.raises(IRParseError, match="unknown op"):
        parse_function("func.func @f(%x: tensor<?xf32>) -> (tensor<?xf32>) {\n  %0 = tensor.nope %x : "
                       "(tensor<?xf32>) -> tensor<?xf32>\n  func.return %0 {tree = \"single\"} : "
                       "(tensor<?xf32>) -> ()\n}\n")
    with pytest.raises(IRParseError, match="undefined value"):
        parse_function("func.func @f(%x: tensor<?xf32>) -> (tensor<?xf32>) {\n  %0 = tensor.exp %y : "
                       "(tensor<?xf32>) -> tensor<?xf32>\n  func.return %0 {tree = \"single\"} : "
                       "(tensor<?xf32>) -> ()\n}\n")
    with pytest.raises(IRParseError):
        parse_function("func.func @f(%x: tensor<?xf16>) -> () {}")
    with pytest.raises(IRParseError):
        parse_dim("__import__('os')")


dim_leaf = st.one_of(st.integers(-5, 9), st.sampled_from([D.sym("s0"), D.sym("s1"), D.sym("s2")]))


def _combine(children):
    return st.one_of(
        st.tuples(children, children).map(lambda t: D.add(*t)),
        st.tuples(children, children).map(lambda t: D.mul(*t)),
        st.tuples(children, st.integers(1, 4)).map(lambda t: D.floordiv(*t)),
        st.tuples(children, children).map(lambda t: D.maximum(*t)),
        st.tuples(children, children, children).map(lambda t: D.select_eq1(*t)),
    )


@given(st.recursive(dim_leaf, _combine, max_leaves=8), st.tuples(*[st.integers(0, 7)] * 3))
def test_dim_expressions_round_trip_and_evaluate(d, vals):
    env = {"s0": vals[0], "s1": vals[1], "s2": vals[2]}
    again = parse_dim(D.to_attr(d))
    assert D.evaluate(again, env) == D.evaluate(d, env)
    src = D.to_py(d)
    from prepjit.runtime.executable import _fdiv, _fmod, _ifone

    assert eval(src, {"_fdiv": _fdiv, "_fmod": _fmod, "_ifone": _ifone}, env) == D.evaluate(d, env)


def test_operation_textual_attrs_round_trip():
    fn = trace(lambda x: np.broadcast_to(x, (x.shape[0] + 1, 3, x.shape[0])) * np.float32(2),
               [InputSpec(np.dtype(np.float32), (None,))], ["x"])
    text = print_function(fn)
    assert "#dim<" in text
    assert print_function(parse_function(text)) == text
    assert isinstance(fn.ops[0], Operation)


# -- loop IR: tile transposition (For.transpose) ----------------------------------------------------------------
def _run_loop_kernel(body, src: np.ndarray, dst: np.ndarray, params: dict):
    """Render, compile and run one loop-IR kernel over byte buffers ``src`` (in) and ``dst`` (out)."""
    from prepjit.lowering.llvm import render_program
    from prepjit.lowering.loop_ir import Buffer, Kernel
    from prepjit.runtime import native

    k = Kernel("k0", [Buffer("src", np.dtype(np.uint8), 1, "in"), Buffer("dst", np.dtype(np.uint8), 1, "out")],
               list(params), body)
    text = render_program([k], ["src", "dst", *params])
    obj, _ = native.compile_object(text)
    fn = native.load_object(obj, "prepjit_entry")
    args = np.array([src.ctypes.data, dst.ctypes.data, *params.values()], np.int64)
    fn.cfunc(args.ctypes.data)
    return text


@pytest.mark.parametrize("direction", ["rows_to_lanes", "lanes_to_rows", "not_a_tile"])
@given(stride=st.integers(16, 40), offset=st.integers(0, 9), seed=st.integers(0, 2 ** 16))
def test_tile_transpose_renders_shuffles_and_matches_numpy(direction, stride, offset, seed):
    """A For(transpose=True) tile is rendered with vector shuffles when it is one, plain loops otherwise; the
    result is the same as the loops' (checked with NumPy), and nothing outside the tile is written."""
    from prepjit.lowering.loop_ir import Load, Param, Store, Var, idx, imul, tile_transpose

    r, q = Var("r"), Var("q")
    st_, off = Param("stride"), Param("offset")
    if direction == "rows_to_lanes":  # dst[q*16 + r] = src[offset + r*stride + q]
        store = Store("dst", (q, r), (idx(16), idx(1)), Load("src", (off, r, q), (idx(1), st_, idx(1)), np.dtype(np.uint8)))
    elif direction == "lanes_to_rows":  # dst[offset + r*stride + q] = src[q*16 + r]
        store = Store("dst", (off, r, q), (idx(1), st_, idx(1)), Load("src", (q, r), (idx(16), idx(1)), np.dtype(np.uint8)))
    else:  # every other byte of a row: no unit-stride side to read vectors from, must fall back to the loops
        store = Store("dst", (q, r), (idx(16), idx(1)), Load("src", (off, r, imul(q, idx(2))),
                                                            (idx(1), st_, idx(1)), np.dtype(np.uint8)))
    rng = np.random.default_rng(seed)
    src = rng.integers(0, 256, 64 * 64, dtype=np.uint8)
    dst = np.full(64 * 64, 7, np.uint8)
    text = _run_loop_kernel((tile_transpose("r", "q", store),), src, dst, {"stride": stride, "offset": offset})
    want = np.full(64 * 64, 7, np.uint8)
    rows = np.arange(16)[:, None]
    cols = np.arange(16)[None, :]
    if direction == "rows_to_lanes":
        want[cols * 16 + rows] = src[offset + rows * stride + cols]
    elif direction == "lanes_to_rows":
        want[offset + rows * stride + cols] = src[cols * 16 + rows]
    else:
        want[cols * 16 + rows] = src[offset + rows * stride + cols * 2]
    np.testing.assert_array_equal(dst, want)
    assert ("shufflevector" in text) == (direction != "not_a_tile")


def test_loop_ir_equality_of_separately_built_dags():
    """Expressions are DAGs; two copies built apart compare in time linear in their nodes (a path-by-path walk of
    this 200-level chain, each level using the one below twice, would never finish), and map_expr keeps the
    nodes it does not change, so a rewrite shares them with the original."""
    from prepjit.lowering.loop_ir import Load, Param, Var, const, map_expr, prim

    F32 = np.dtype(np.float32)

    def chain(leaf):
        e = Load("a", (Var("i"),), (Param("s"),), F32)
        for k in range(200):
            e = prim("add", prim("mul", e, const(1.5, F32)), e) if k % 2 else prim("sub", e, prim("neg", e))
        return prim("add", e, leaf)

    one, two, other = chain(const(1.0, F32)), chain(const(1.0, F32)), chain(const(2.0, F32))
    assert one is not two and one == two and hash(one) == hash(two)
    assert one != other
    renamed = map_expr(one, lambda n: Var("j") if n == Var("i") else n)
    assert renamed != one and map_expr(one, lambda n: n) is one
    kept = map_expr(one, lambda n: const(3.0, F32) if n == const(1.0, F32) else n)
    assert kept.args[0] is one.args[0] and kept.args[1] == const(3.0, F32)
