"""Parser for the textual IR written by ``prepjit.ir.printer``.

Result types in the text are read but not trusted: after parsing, types are re-inferred from the function's
argument types (input sizes become fresh symbols ``s0, s1, ...`` in order), exactly as after tracing.
"""
from __future__ import annotations

import json
import re

import numpy as np

from prepjit.errors import IRParseError
from prepjit.ir import dims as D
from prepjit.ir.core import OPS, Block, Function, Loc, Operation, Value
from prepjit.ir.types import BYTES, NAME_DTYPES, PyScalarType, TensorType, TextType

_TOKEN = re.compile(r"""
    (?P<ws>\s+)
  | (?P<loc>loc\("(?:[^"\\]|\\.)*":\d+\))
  | (?P<tensor>tensor<[^>]*>)
  | (?P<pytype>!py\.(?:int|float|bool)<[^>]*>|!py\.bytes|!text\.\w+)
  | (?P<dense>dense<"0x[0-9a-f]*">)
  | (?P<dim>\#dim<"[^"]*">)
  | (?P<string>"(?:[^"\\]|\\.)*")
  | (?P<value>%[\w.]+)
  | (?P<symbol>@[\w.]+)
  | (?P<label>\^bb)
  | (?P<arrow>->)
  | (?P<number>[-+]?(?:inf|nan|\d+\.\d*(?:e[-+]?\d+)?|\d+e[-+]?\d+|\d+))
  | (?P<ident>[A-Za-z_][\w.]*)
  | (?P<punct>[(){}\[\],:=])
""", re.VERBOSE)


def _tokenize(text: str):
    pos, out = 0, []
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m:
            line = text.count("\n", 0, pos) + 1
            raise IRParseError(f"line {line}: unexpected text {text[pos:pos + 20]!r}")
        if m.lastgroup != "ws":
            out.append((m.lastgroup, m.group(), text.count("\n", 0, pos) + 1))
        pos = m.end()
    out.append(("eof", "", text.count("\n") + 1))
    return out


_DIM_EXPR = re.compile(r"^[\w\s+*(),-]*$")


def parse_dim(expr: str):
    """Read a dim expression written by ``dims.to_attr`` (a tiny grammar, checked before evaluation)."""
    names = set(re.findall(r"[A-Za-z_]\w*", expr))
    if not _DIM_EXPR.match(expr) or not names <= set(D.PARSE_ENV) | {n for n in names if re.fullmatch(r"s\d+", n)}:
        raise IRParseError(f"bad dim expression {expr!r}")
    env = dict(D.PARSE_ENV, **{n: D.sym(n) for n in names if re.fullmatch(r"s\d+", n)})
    try:
        return eval(expr, {"__builtins__": {}}, env)  # noqa: S307 - names and characters checked above
    except Exception as e:
        raise IRParseError(f"bad dim expression {expr!r}: {e}") from None


def parse_tensor_type(tok: str, fresh=None) -> TensorType:
    body = tok[len("tensor<"):-1]
    parts = body.split("x")
    dt_name = parts[-1]
    if dt_name not in NAME_DTYPES:
        raise IRParseError(f"unknown element type {dt_name!r} in {tok}")
    shape = []
    for p in parts[:-1]:
        if p == "?":
            shape.append(fresh() if fresh else D.sym("?"))
        elif p.isdigit():
            shape.append(int(p))
        else:
            raise IRParseError(f"bad dimension {p!r} in {tok}")
    return TensorType(NAME_DTYPES[dt_name], tuple(shape))


def _scalar(text: str):
    if text in ("true", "false"):
        return text == "true"
    if re.fullmatch(r"[-+]?\d+", text):
        return int(text)
    return float(text)


def parse_py_type(tok: str):
    if tok == "!py.bytes":
        return BYTES
    if tok.startswith("!text."):
        return TextType(tok[len("!text."):])
    m = re.fullmatch(r"!py\.(int|float|bool)<(.*)>", tok)
    kind = {"int": int, "float": float, "bool": bool}[m.group(1)]
    return PyScalarType(kind, kind(_scalar(m.group(2))))


class _Parser:
    def __init__(self, text: str):
        self.toks = _tokenize(text)
        self.i = 0
        self.values: dict[str, Value] = {}

    # -- token helpers --------------------------------------------------------------------------------
    def peek(self, k=0):
        return self.toks[self.i + k]

    def next(self):
        t = self.toks[self.i]
        self.i += 1
        return t

    def expect(self, text):
        kind, val, line = self.next()
        if val != text:
            raise IRParseError(f"line {line}: expected {text!r}, found {val!r}")
        return val

    def accept(self, text) -> bool:
        if self.peek()[1] == text:
            self.i += 1
            return True
        return False

    def error(self, msg):
        raise IRParseError(f"line {self.peek()[2]}: {msg}")

    # -- grammar --------------------------------------------------------------------------------------
    def parse_type(self, fresh=None):
        kind, val, line = self.next()
        if kind == "tensor":
            return parse_tensor_type(val, fresh)
        if kind == "pytype":
            return parse_py_type(val)
        raise IRParseError(f"line {line}: expected a type, found {val!r}")

    def parse_type_list(self):
        self.expect("(")
        ts = []
        while not self.accept(")"):
            ts.append(self.parse_type())
            self.accept(",")
        return ts

    def parse_attr(self):
        kind, val, line = self.next()
        if kind == "number":
            return _scalar(val)
        if kind == "string":
            return json.loads(val)
        if kind == "dim":
            return parse_dim(val[len('#dim<"'):-2])
        if kind == "dense":
            hexdata = val[len('dense<"0x'):-2]
            self.expect(":")
            t = self.parse_type()
            return np.frombuffer(bytes.fromhex(hexdata), dtype=t.dtype).reshape(t.shape).copy()
        if kind == "ident":
            if val in ("true", "false"):
                return val == "true"
            if val == "none":
                return None
            if val in NAME_DTYPES:
                return NAME_DTYPES[val]
        if val == "[":
            items = []
            while not self.accept("]"):
                items.append(self.parse_attr())
                self.accept(",")
            return items
        raise IRParseError(f"line {line}: bad attribute value {val!r}")

    def use(self, name, line):
        if name not in self.values:
            raise IRParseError(f"line {line}: use of undefined value {name}")
        return self.values[name]

    def parse_op(self) -> Operation:
        results = []
        if self.peek()[0] == "value":
            while True:
                results.append(self.next()[1])
                if not self.accept(","):
                    break
            self.expect("=")
        kind, name, line = self.next()
        if name not in OPS:
            raise IRParseError(f"line {line}: unknown op {name!r}")
        operands = []
        while self.peek()[0] == "value":
            operands.append(self.use(self.next()[1], line))
            self.accept(",")
        attrs = {}
        if self.accept("{"):
            while not self.accept("}"):
                key = self.next()[1]
                self.expect("=")
                attrs[key] = self.parse_attr()
                self.accept(",")
        regions = []
        if self.peek()[1] == "(" and self.peek(1)[1] == "{":
            self.next(), self.next()
            regions.append(self.parse_block(label=True))
            self.expect("}")
            self.expect(")")
        self.expect(":")
        self.parse_type_list()
        self.expect("->")
        rtypes = self.parse_type_list() if self.peek()[1] == "(" else [self.parse_type()]
        loc = Loc("unknown", 0)
        if self.peek()[0] == "loc":
            m = re.fullmatch(r'loc\("((?:[^"\\]|\\.)*)":(\d+)\)', self.next()[1])
            loc = Loc(m.group(1), int(m.group(2)))
        if len(rtypes) != len(results):
            raise IRParseError(f"line {line}: {name} has {len(results)} result names but {len(rtypes)} types")
        op = Operation(name, operands, rtypes, attrs, loc, regions)
        for r, v in zip(results, op.results):
            self.values[r] = v
        return op

    def parse_block(self, label: bool) -> Block:
        args = []
        if label:
            self.expect("^bb")
            self.expect("(")
            while not self.accept(")"):
                n = self.next()[1]
                self.expect(":")
                v = Value(self.parse_type(), name=n[1:])
                self.values[n] = v
                args.append(v)
                self.accept(",")
            self.expect(":")
        block = Block(args)
        while True:
            op = self.parse_op()
            block.ops.append(op)
            if op.opdef.has("terminator"):
                return block

    def parse_function(self) -> Function:
        self.expect("func.func")
        kind, name, line = self.next()
        if kind != "symbol":
            raise IRParseError(f"line {line}: expected @name")
        self.expect("(")
        counter = iter(range(1 << 30))
        fresh = lambda: D.sym(f"s{next(counter)}")  # noqa: E731
        args = []
        while not self.accept(")"):
            n = self.next()[1]
            self.expect(":")
            v = Value(self.parse_type(fresh), name=n[1:])
            self.values[n] = v
            args.append(v)
            self.accept(",")
        self.expect("->")
        self.parse_type_list()
        self.expect("{")
        body = self.parse_block(label=False)
        body.args = args
        self.expect("}")
        if self.peek()[0] != "eof":
            self.error("trailing text after function")
        return Function(name[1:], body)


def parse_function(text: str) -> Function:
    """Parse one ``func.func``; types are then re-inferred (see module docstring)."""
    from prepjit.compiler.passes.infer_types import infer_types

    fn = _Parser(text).parse_function()
    infer_types(fn)
    return fn
