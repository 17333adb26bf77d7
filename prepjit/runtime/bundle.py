"""Portable bundles: ``fn.save(path)`` / ``prepjit.load(path)``.

A bundle is a directory that runs without the original Python source::

    manifest.json        format, versions, the host the objects were built for, specializations, checksums
    ir/<i>.mlir          traced IR text of specialization i (constants included: the program's data)
    objects/<target>/<i>.o   object code of specialization i for that target
    objects/fixed/<name>.o   object code of the shipped kernels the prologues call (resize weight tables)
    tables/              host-side data tables (reserved: no current op has tables outside its IR)

``load`` checks every file against the manifest (size and sha256) before using anything, so a truncated or
tampered bundle raises ``BundleError`` naming the file; it never reaches native code. The bundled objects are
used when this machine computes the same cache key from the bundled IR (same CPU features, LLVM, prepjit and
codegen flags); otherwise the function is recompiled from the IR (through the disk cache) with a
``BundleWarning`` saying what differs.
"""
from __future__ import annotations

import hashlib
import json
import os
import pathlib
import secrets
import shutil
import time

from prepjit.errors import BundleError

FORMAT = "prepjit-bundle"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _object_code(fn, c) -> bytes:
    """Object code for compiled specialization ``c`` of ``fn``: in memory, in the bundle, in the cache, or built."""
    from prepjit.compiler.driver import compile_native

    if c.object_code is not None:
        return c.object_code
    obj = fn._bundled_object(c)
    if obj is None and fn.cache:
        from prepjit.runtime.cache import get_cache

        entry = get_cache().load(c.key)
        obj = entry.payload if entry is not None else None
    return obj if obj is not None else compile_native(c)


def save(fn, path) -> str:
    """Write ``fn``'s bundle to directory ``path`` (replacing an existing bundle there); returns the path."""
    import platform

    from prepjit import __version__
    from prepjit.api import _input_spec
    from prepjit.runtime.portable import host_meta, ir_state, spec_from_text, specializations

    path = pathlib.Path(path)
    if path.exists() and not (path / MANIFEST).is_file() and (not path.is_dir() or any(path.iterdir())):
        raise FileExistsError(f"{path} exists and is not a prepjit bundle; not overwriting it")
    if not specializations(fn):
        raise ValueError(f"{fn.name}: nothing to save; declare signature= or call the function first")
    from prepjit.api import _prebuild_fixed_kernels
    from prepjit.runtime import native

    state = ir_state(fn)
    files: dict[str, bytes] = {}
    specs_out = []
    shipped: dict = {}  # cache key -> name of the shipped kernels the prologues call (resize weight tables)
    for i, sp in enumerate(state["specializations"]):
        entry = tuple(spec_from_text(t) for t in sp["specs"])
        fn.compile(*entry)
        c = fn._build(tuple(_input_spec(s) for s in entry))
        ir_name, obj_name = f"ir/{i}.mlir", f"objects/{fn.target}/{i}.o"
        files[ir_name] = sp["ir"].encode()
        files[obj_name] = _object_code(fn, c)
        specs_out.append({"specs": sp["specs"], "ir": ir_name,
                          "objects": {fn.target: {"path": obj_name, "key": c.key}}})
        shipped.update(_prebuild_fixed_kernels(c.program))
    fixed = []
    for key, name in sorted(shipped.items()):
        obj = native.fixed_kernel_object(key)
        if obj is not None:
            files[f"objects/fixed/{name}.o"] = obj
            fixed.append({"name": name, "key": key, "path": f"objects/fixed/{name}.o"})
    import numpy

    manifest = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "created": time.time(),
        "name": state["name"], "module": state["module"], "qualname": state["qualname"],
        "arg_names": state["arg_names"], "target": state["target"],
        "versions": {"prepjit": __version__, "python": platform.python_version(), "numpy": numpy.__version__},
        "built_on": {fn.target: host_meta()},
        "specializations": specs_out,
        "fixed_kernels": fixed,
        "tables": {},
        "files": {name: {"size": len(data), "sha256": _sha(data)} for name, data in sorted(files.items())},
    }
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        for name, data in files.items():
            (tmp / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp / name).write_bytes(data)
        (tmp / "tables").mkdir(exist_ok=True)
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1))
        old = None
        if path.exists():
            old = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.old")
            os.replace(path, old)
        os.replace(tmp, path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return str(path)


def _read_manifest(path: pathlib.Path) -> dict:
    if not path.is_dir():
        raise BundleError(f"{path}: not a prepjit bundle (no such directory)")
    try:
        raw = (path / MANIFEST).read_bytes()
    except FileNotFoundError:
        raise BundleError(f"{path}: not a prepjit bundle (no {MANIFEST})") from None
    except OSError as e:
        raise BundleError(f"{path}: cannot read {MANIFEST}: {e}") from None
    try:
        m = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise BundleError(f"{path}: {MANIFEST} is corrupt or truncated ({e})") from None
    if not isinstance(m, dict) or m.get("format") != FORMAT:
        raise BundleError(f"{path}: {MANIFEST} is not a prepjit bundle manifest")
    if m.get("format_version") != FORMAT_VERSION:
        raise BundleError(f"{path}: bundle format version {m.get('format_version')!r}; this prepjit reads "
                          f"version {FORMAT_VERSION}")
    try:
        files = m["files"]
        assert isinstance(files, dict) and all(isinstance(v, dict) for v in files.values())
        assert isinstance(m["name"], str) and isinstance(m["target"], str)
        assert isinstance(m["arg_names"], list) and all(isinstance(a, str) for a in m["arg_names"])
        assert isinstance(m["specializations"], list) and m["specializations"]
        for sp in m["specializations"]:
            assert isinstance(sp["specs"], list) and sp["ir"] in files
            assert all(o["path"] in files and isinstance(o["key"], str) for o in sp.get("objects", {}).values())
        assert all(f["path"] in files and isinstance(f["key"], str) for f in m.get("fixed_kernels", []))
    except (KeyError, TypeError, AssertionError, AttributeError):
        raise BundleError(f"{path}: {MANIFEST} is malformed") from None
    return m


def _read_files(path: pathlib.Path, m: dict) -> dict[str, bytes]:
    root = path.resolve()
    for name in m["files"]:
        if root not in (path / name).resolve().parents:
            raise BundleError(f"{path}: manifest names a file outside the bundle: {name!r}")
    out = {}
    for name, info in m["files"].items():
        p = (path / name).resolve()
        try:
            data = p.read_bytes()
        except FileNotFoundError:
            raise BundleError(f"{path}: {name} is missing (incomplete bundle)") from None
        except OSError as e:
            raise BundleError(f"{path}: cannot read {name}: {e}") from None
        if len(data) != info.get("size"):
            kind = "truncated" if isinstance(info.get("size"), int) and len(data) < info["size"] else "wrong size"
            raise BundleError(f"{path}: {name} is {kind} ({len(data)} bytes, manifest says {info.get('size')})")
        if _sha(data) != info.get("sha256"):
            raise BundleError(f"{path}: {name} does not match its checksum (corrupt or tampered with)")
        out[name] = data
    return out


def _mismatch(built_on: dict | None, target: str) -> str | None:
    """Why bundled objects may not fit this machine (None when the recorded host matches)."""
    from prepjit.runtime.portable import host_meta

    if not isinstance(built_on, dict):
        return "the bundle records no build host"
    here = host_meta()
    diffs = []
    if built_on.get("host") != here["host"]:
        b = built_on.get("host") or {}
        diffs.append(f"its objects were built for {b.get('triple')} CPU {b.get('cpu')} (features "
                     f"{b.get('features_sha256')}), this machine is {here['host']['triple']} CPU "
                     f"{here['host']['cpu']} (features {here['host']['features_sha256']})")
    for k, what in (("llvm", "LLVM"), ("prepjit", "prepjit"), ("compiler", "prepjit compiler source")):
        if built_on.get(k) != here[k]:
            diffs.append(f"{what} {built_on.get(k)} vs {here[k]} here")
    return "; ".join(diffs) or None


def load(path):
    """Load a bundle written by ``fn.save(path)``: a callable JitFunction that needs no Python source."""
    from prepjit.errors import IRParseError
    from prepjit.ir.parser import parse_function
    from prepjit.runtime.portable import STATE_VERSION, IRFunction

    path = pathlib.Path(path)
    m = _read_manifest(path)
    data = _read_files(path, m)
    specs, objects = [], {}
    for sp in m["specializations"]:
        text = data[sp["ir"]].decode("utf-8", errors="replace")
        try:
            parse_function(text)
        except (IRParseError, ValueError, KeyError, TypeError) as e:
            raise BundleError(f"{path}: {sp['ir']} cannot be read by this prepjit ({e})") from None
        specs.append({"specs": sp["specs"], "ir": text})
        obj = sp.get("objects", {}).get(m["target"])
        if obj is not None:
            objects[obj["key"]] = data[obj["path"]]
    from prepjit.runtime import native

    for fk in m.get("fixed_kernels", []):  # found under their keys only where this machine computes the same ones
        native.provide_fixed_kernel(fk["key"], data[fk["path"]])
    state = {"version": STATE_VERSION, "name": m["name"], "module": m.get("module", "<bundle>"),
             "qualname": m.get("qualname", m["name"]), "arg_names": m["arg_names"], "target": m["target"],
             "cache": True, "specializations": specs}
    reason = _mismatch((m.get("built_on") or {}).get(m["target"]), m["target"])
    try:
        return IRFunction(state, objects=objects, origin=f"bundle {path}",
                          mismatch=f"bundle {path}: {reason}" if reason else
                          f"bundle {path}: its objects do not match this machine's cache keys")
    except (ValueError, TypeError) as e:
        raise BundleError(f"{path}: {e}") from None
