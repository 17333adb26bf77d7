"""Layout ops against NumPy 2: basic indexing (ints, slices with any step, None, Ellipsis), reshape (-1,
dynamic sizes), transpose/.T/swapaxes/moveaxis, concatenate/stack/hstack/vstack (with dtype promotion),
squeeze/expand_dims, broadcast_to, flip, zeros_like/ones_like/full_like, and chains of them with
elementwise ops. Results must equal NumPy's exactly (values, dtype, shape).

prepjit compiles once per dtype and rank, so the index arithmetic must be right for every size: most tests
run one compiled function over many shapes.
"""
from __future__ import annotations

import numpy as np
import pytest
from _ops_helpers import DTYPES, any_array, arrays, check, dtypes, examples, jit, magnitude, shapes, special_values
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import prepjit as pj

SETTINGS = examples(30)


# -- basic indexing -----------------------------------------------------------------------------------------
@given(data=st.data())
@SETTINGS
def test_basic_indexing(data):
    """Indices drawn for the array's shape (ints, slices with any step, None, Ellipsis); one compile each."""
    x = data.draw(any_array(shape=shapes(max_dims=3)))
    keys = tuple(data.draw(hnp.basic_indices(x.shape, min_dims=0, allow_newaxis=True, allow_ellipsis=True))
                 for _ in range(3))

    def index(x):
        return tuple(x[k] for k in keys)

    check(index, x, key=("index", repr(keys)), what=f"{x.shape}{keys}")


def fixed_slices(x):
    return (x[1:], x[:-1], x[::2], x[::-1], x[::-3], x[1:-1:2], x[-2:], x[5:], x[:5:-2], x[-100:100], x[2:1],
            x[..., ::2], x[None], x[:, None], x[..., None], x[None, ..., None], x[0], x[-1], x[..., -1])


@given(x=any_array(shape=shapes(min_dims=2, max_dims=3, min_side=1)))
@examples(15)
def test_slices_for_every_size(x):
    """One compiled function per dtype/rank; every slice must be right for each drawn size."""
    check(fixed_slices, x, what=str(x.shape))


def first_and_fourth(x):
    return x[0], x[3]


def last_but_two(x):
    return x[-3]


def test_index_out_of_range_at_call_time():
    """Compiled for every size, the index is checked by the call prologue, before native code runs."""
    check(first_and_fourth, np.arange(5))
    check(last_but_two, np.arange(5))
    with pytest.raises(IndexError):
        first_and_fourth(np.arange(3))
    with pytest.raises(IndexError, match="index 3 is out of bounds for axis 0 with size 3") as e:
        jit(first_and_fourth)(np.arange(3))
    assert e.traceback[-1].frame.code.path.startswith("<prepjit prologue")
    with pytest.raises(IndexError, match="index -3 is out of bounds"):
        jit(last_but_two)(np.arange(2))
    with pytest.raises(IndexError):
        last_but_two(np.arange(2))


def test_indexing_errors_at_trace_time():
    def too_many(x):
        return x[0, 0]

    def two_ellipses(x):
        return x[..., ...]

    def bool_index(x):
        return x[x > 0]

    def array_index(x):
        return x[np.array([0, 1])]

    def zero_step(x):
        return x[::0]

    with pytest.raises(IndexError):
        jit(too_many)(np.ones(3))
    with pytest.raises(IndexError):
        jit(two_ellipses)(np.ones(3))
    with pytest.raises(ValueError):
        jit(zero_step)(np.ones(3))
    for f in (bool_index, array_index):
        with pytest.raises(pj.UnsupportedError, match="indexing"):
            jit(f)(np.ones(3))


# -- reshape ------------------------------------------------------------------------------------------------
@st.composite
def reshape_case(draw):
    x = draw(any_array(shape=shapes(max_dims=3)))
    n = x.size
    target = []
    rest = n
    for _ in range(draw(st.integers(0, 3))):
        divisors = [d for d in range(1, rest + 1) if rest % d == 0] if rest else [0, 1, 2]
        d = draw(st.sampled_from(divisors))
        target.append(d)
        rest = rest // d if d else 0
    if rest != 1 or not target:
        target.append(rest)
    target = draw(st.permutations(target))
    if n and draw(st.booleans()):
        target[draw(st.integers(0, len(target) - 1))] = -1
    return x, tuple(target)


@given(case=reshape_case())
@SETTINGS
def test_reshape(case):
    x, target = case

    def reshape(x):
        return x.reshape(target), np.reshape(x, target), x.reshape(*target) if target else x.reshape(())

    check(reshape, x, key=("reshape", target), what=f"{x.shape} -> {target}")


def dynamic_reshapes(x):
    n = x.shape[0]
    return (x.reshape(-1), x.ravel(), x.flatten(), np.ravel(x), x.reshape(n, -1), x.reshape(-1, x.shape[-1]),
            x.reshape(1, -1, 1), x.reshape(x.shape[::-1]) if x.ndim == 1 else x.reshape(x.shape[0] * x.shape[1], -1))


@given(x=any_array(shape=shapes(min_dims=1, max_dims=3, min_side=1)))
@SETTINGS
def test_dynamic_reshape(x):
    """Reshapes whose target sizes are computed from the (symbolic) input sizes, incl. non-contiguous inputs."""
    check(dynamic_reshapes, x, what=str(x.shape))


def test_reshape_size_mismatch_at_call_time():
    def to_2x3(x):
        return x.reshape(2, 3)

    f = jit(to_2x3)
    check(to_2x3, np.arange(6))
    with pytest.raises(ValueError):
        f(np.arange(7))
    with pytest.raises(ValueError):
        to_2x3(np.arange(7))


# -- transposes ---------------------------------------------------------------------------------------------
@st.composite
def transpose_case(draw):
    x = draw(any_array(shape=shapes(min_dims=0, max_dims=4)))
    nd = x.ndim
    perm = tuple(draw(st.permutations(range(nd))))
    ax = st.integers(-nd, nd - 1) if nd else st.just(0)
    return x, perm, draw(ax), draw(ax), draw(ax), draw(ax)


@given(case=transpose_case())
@SETTINGS
def test_transposes(case):
    x, perm, a, b, s, d = case

    def transposes(x):
        out = (x.T, np.transpose(x), x.transpose(perm), np.transpose(x, perm), x.transpose(*perm) if perm else x.T)
        if x.ndim:
            out += (np.swapaxes(x, a, b), x.swapaxes(b, a), np.moveaxis(x, s, d))
        return out

    check(transposes, x, key=("transposes", perm, a, b, s, d), what=f"{x.shape} {perm} {a, b, s, d}")


# -- concatenate / stack ------------------------------------------------------------------------------------
@st.composite
def concat_case(draw):
    nd = draw(st.integers(1, 3))
    base = list(draw(shapes(min_dims=nd, max_dims=nd)))
    axis = draw(st.integers(-nd, nd - 1))
    k = draw(st.integers(1, 3))
    xs = []
    for _ in range(k):
        s = list(base)
        s[axis] = draw(st.sampled_from([0, 1, 2, 3]))
        xs.append(draw(arrays(draw(dtypes), s)))
    same = [draw(arrays(draw(dtypes), base)) for _ in range(k)]
    return xs, axis, same


@given(case=concat_case())
@examples(20)
def test_concatenate_and_stack(case):
    xs, axis, same = case
    k = len(xs)

    def concat(a0, a1, a2, b0, b1, b2):  # only the first k of each group are used
        a, b = (a0, a1, a2)[:k], (b0, b1, b2)[:k]
        return (np.concatenate(a, axis=axis), np.concatenate(a, axis=None), np.concatenate(b, axis=axis),
                np.stack(b, axis=axis), np.stack(b, axis=-1), np.hstack(b), np.vstack(b))

    pad = [np.zeros(1)] * (3 - k)
    check(concat, *xs, *pad, *same, *pad, key=("concat", k, axis), what=f"{[x.shape for x in xs]} axis={axis}")


def concat_two(x, y):
    return np.concatenate([x, y]), np.concatenate((x.T, y.T), axis=-1)


def test_concatenate_mismatch_at_call_time():
    f = jit(concat_two)
    check(concat_two, np.ones((2, 3)), np.zeros((1, 3), np.int8))
    with pytest.raises(ValueError):
        f(np.ones((2, 3)), np.zeros((1, 4), np.int8))
    with pytest.raises(ValueError):
        concat_two(np.ones((2, 3)), np.zeros((1, 4), np.int8))


def test_concatenate_dtype_promotion():
    pairs = [(np.bool_, np.int8), (np.int8, np.uint8), (np.uint64, np.int64), (np.int32, np.float32),
             (np.uint16, np.float32), (np.float32, np.float64), (np.bool_, np.float32), (np.uint32, np.int8)]
    for a, b in pairs:
        x, y = special_values(a), special_values(b)
        check(concat_two, x[:, None], y[:, None])
        check(concat_two, y[:, None], x[:, None])


# -- squeeze / expand_dims / broadcast_to / flip ------------------------------------------------------------
@given(data=st.data())
@SETTINGS
def test_squeeze_and_expand_dims(data):
    x = data.draw(any_array(shape=shapes(max_dims=3)))
    ones = tuple(k for k, d in enumerate(x.shape) if d == 1)
    sq = data.draw(st.lists(st.sampled_from(ones), unique=True).map(tuple)) if ones else ()
    n_new = data.draw(st.integers(1, 2))
    nd_out = x.ndim + n_new
    ex = tuple(data.draw(st.lists(st.integers(-nd_out, nd_out - 1), min_size=n_new, max_size=n_new,
                                  unique_by=lambda a: a % nd_out)))
    ex1 = data.draw(st.integers(-x.ndim - 1, x.ndim))

    def squeeze_expand(x):
        out = (np.expand_dims(x, ex), np.expand_dims(x, ex1), x[None].squeeze(0), np.squeeze(x, axis=sq))
        if len(sq) == 1:
            out += (x.squeeze(sq[0]), x.squeeze(axis=sq))
        return out

    check(squeeze_expand, x, key=("squeeze", sq, ex, ex1), what=f"{x.shape} squeeze {sq} expand {ex} {ex1}")


def test_squeeze_errors():
    def squeeze0(x):
        return np.squeeze(x, axis=0)

    def squeeze_all(x):
        return x.squeeze()

    f = jit(squeeze0)
    check(squeeze0, np.ones((1, 3)))
    with pytest.raises(ValueError):
        f(np.ones((2, 3)))
    with pytest.raises(ValueError):
        squeeze0(np.ones((2, 3)))
    # which axes have size 1 is only known at run time: prepjit compiles once for every size
    with pytest.raises(pj.UnsupportedError, match="squeeze"):
        jit(squeeze_all)(np.ones((1, 3)))
    static = pj.jit_preprocess(squeeze_all, signature=(pj.TensorSpec(np.float64, (1, 4, 1)),))
    x = np.arange(4.0).reshape(1, 4, 1)
    np.testing.assert_array_equal(static(x), x.squeeze())
    assert static(x).shape == (4,)


@given(data=st.data())
@SETTINGS
def test_broadcast_to(data):
    x = data.draw(any_array(shape=shapes(max_dims=3)))
    target = data.draw(hnp.broadcastable_shapes(x.shape, min_dims=x.ndim, max_dims=4, min_side=0, max_side=4)
                       .filter(lambda s: np.broadcast_shapes(s, x.shape) == s))

    def bcast(x):
        return np.broadcast_to(x, target), np.broadcast_to(x, (2,) + x.shape), np.broadcast_to(x, target) + 1

    check(bcast, x, key=("bcast", target), what=f"{x.shape} -> {target}")


def test_broadcast_to_mismatch_at_call_time():
    def to_3x4(x):
        return np.broadcast_to(x, (3, 4))

    f = jit(to_3x4)
    check(to_3x4, np.ones(4))
    check(to_3x4, np.ones(1))
    with pytest.raises(ValueError):
        f(np.ones(3))
    with pytest.raises(ValueError):
        to_3x4(np.ones(3))


@given(data=st.data())
@SETTINGS
def test_flip(data):
    x = data.draw(any_array(shape=shapes(min_dims=1, max_dims=3)))
    axis = data.draw(st.integers(-x.ndim, x.ndim - 1))
    axes = tuple(data.draw(st.lists(st.integers(0, x.ndim - 1), unique=True)))

    def flips(x):
        return np.flip(x), np.flip(x, axis), np.flip(x, axes), x[::-1]

    check(flips, x, key=("flip", axis, axes), what=f"{x.shape} {axis} {axes}")


# -- *_like -------------------------------------------------------------------------------------------------
FILLS = [0, 1, -1, 7, 300, 2.7, -0.0, float("nan"), float("inf"), True, False, np.float32(1.5), np.int8(-3)]


@given(x=any_array(), fill=st.sampled_from(FILLS), dt=st.one_of(st.none(), dtypes))
@SETTINGS
def test_like(x, fill, dt):
    def likes(x):
        return (np.zeros_like(x), np.ones_like(x), np.full_like(x, fill), np.zeros_like(x, dtype=dt),
                np.ones_like(x, dtype=dt), np.full_like(x, fill, dtype=dt))

    # full_like(uint8 array, -1) raises OverflowError in both
    check(likes, x, key=("like", type(fill), repr(fill), str(dt)), what=f"{x.dtype} fill={fill!r} dtype={dt}",
          allow_error=True)


# -- chains of layout and elementwise ops -------------------------------------------------------------------
def layout_chain(x, y):
    a = x.T[::-1] * 2                     # transposed, reversed
    b = np.concatenate([a, a[:1]], axis=0)  # concatenation of a view of itself
    c = b.reshape(-1)[1:]                  # flattened and sliced
    d = np.stack([y, y[::-1]], axis=1)     # stacked reversed copy
    return c + 1, d.swapaxes(0, 1)[..., None] - y.mean(), np.where(a > 0, a, x.T)


@given(data=st.data())
@examples(20)
def test_layout_chain(data):
    dt = data.draw(st.sampled_from(DTYPES[1:]))
    x = data.draw(arrays(dt, data.draw(shapes(min_dims=2, max_dims=2, min_side=1))))
    y = data.draw(arrays(dt, data.draw(shapes(min_dims=1, max_dims=1))))
    check(layout_chain, x, y, modes={1: {"sum_tol": (magnitude(y, mean=True), 8)}})


# -- inner loops walked as one range ------------------------------------------------------------------------
_scale_hwc = pj.jit_preprocess(lambda x: x * 2 + 1)
_per_channel = pj.jit_preprocess(lambda x: x * np.array([1, 2, 3], np.uint8))
_two_inputs = pj.jit_preprocess(lambda x, y: x - y)
_channel_mix = pj.jit_preprocess(lambda x: x[..., 0] // 2 + x[..., 2] // 4)  # reads the pixel's channels
_pixel_sums = pj.jit_preprocess(lambda x: x.sum(axis=2, keepdims=True, dtype=np.int64) + x.max())


@given(data=st.data())
@SETTINGS
def test_inner_loops_as_one_range_on_any_view(data):
    """An elementwise nest over (H, W, C) runs its two inner loops as one W * C loop when every access walks them
    contiguously (checked per call); views that do not (strided, reversed, channel-sliced) take the nested loops,
    and an op that depends on the channel never takes it. Equal to NumPy on every view."""
    h, w = data.draw(st.integers(1, 9)), data.draw(st.integers(1, 9))
    base = np.random.default_rng(data.draw(st.integers(0, 2 ** 32 - 1))).integers(0, 256, (h + 2, 2 * w + 1, 4),
                                                                                   dtype=np.uint8)
    views = [base[:h, :w, :3], np.ascontiguousarray(base[:h, :w, :3]), base[:h, ::2, :3], base[::-1, :w, :3],
             base[:h, ::-1, :3], base[:h, :w, 2::-1], base[1:h + 1, 1:w + 1, 1:4]]
    for v in views:
        for got, want in ((_scale_hwc(v), v * 2 + 1), (_per_channel(v), v * np.array([1, 2, 3], np.uint8)),
                          (_two_inputs(v, np.ascontiguousarray(v[::-1])), v - v[::-1]),
                          (_channel_mix(v), v[..., 0] // 2 + v[..., 2] // 4),
                          (_pixel_sums(v), v.sum(axis=2, keepdims=True, dtype=np.int64) + v.max())):
            assert got.dtype == want.dtype and got.shape == want.shape
            np.testing.assert_array_equal(got, want)


def test_inner_loops_as_one_range_in_the_lowered_kernel():
    x = np.zeros((4, 5, 3), np.uint8)
    assert "scf.for %i1i2" in _scale_hwc.ir("lowered", example=(x,))
    assert "scf.for %i1i2" not in _per_channel.ir("lowered", example=(x,))  # the channel picks the factor
    # a (H, W) result read from HWC pixels: rows as one range, the pixel stride folded to 3 (channel stride 1)
    low = _channel_mix.ir("lowered", example=(x,))
    assert "scf.for %i0i1" in low and "prim.eq %a0_st1, 3" in low and "prim.eq %a0_st2, 1" in low
