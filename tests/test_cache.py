"""Tests for prepjit.runtime.cache (on-disk compile cache)."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import pathlib
import subprocess
import sys
import textwrap
import time
import warnings

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from prepjit.runtime import cache as cache_mod
from prepjit.runtime.cache import (
    MAGIC,
    CacheEntry,
    CacheWarning,
    CompileCache,
    default_cache_dir,
    parse_size,
)

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
KEY = "0123456789abcdef" * 2
KEY2 = "fedcba9876543210" * 2


def _key(i: int) -> str:
    return hashlib.sha256(str(i).encode()).hexdigest()


def _entry_path(cache: CompileCache, key: str) -> pathlib.Path:
    return cache.directory / "v1" / key[:2] / f"{key}.pjc"


def _subprocess_env(cache_dir) -> dict:
    env = dict(os.environ)
    env["PREPJIT_CACHE_DIR"] = str(cache_dir)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), env.get("PYTHONPATH", "")])
    return env


# --------------------------------------------------------------------------- basics


def test_round_trip(tmp_path):
    cache = CompileCache(tmp_path)
    meta = {"function": "normalize", "target": "x86_64-linux", "opt": 3, "shapes": [[1, 2], None]}
    payload = bytes(range(256)) * 10
    cache.store(KEY, payload, meta)
    entry = cache.load(KEY)
    assert entry == CacheEntry(payload=payload, meta=meta)
    assert isinstance(entry.payload, bytes)
    assert _entry_path(cache, KEY).is_file()
    assert not cache.in_memory
    # overwrite
    cache.store(KEY, b"new", {"function": "g"})
    assert cache.load(KEY) == CacheEntry(b"new", {"function": "g"})
    # bytearray / memoryview payloads are accepted
    cache.store(KEY2, bytearray(b"xyz"), {})
    assert cache.load(KEY2).payload == b"xyz"
    # no temp files left behind
    assert not list(tmp_path.rglob("*.tmp"))


def test_missing_key_returns_none(tmp_path):
    cache = CompileCache(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert cache.load(KEY) is None


def test_file_format_header(tmp_path):
    cache = CompileCache(tmp_path)
    cache.store(KEY, b"payload", {"function": "f"})
    data = _entry_path(cache, KEY).read_bytes()
    assert data.startswith(MAGIC)
    assert int.from_bytes(data[8:10], "little") == cache_mod.FORMAT_VERSION
    hlen = int.from_bytes(data[12:16], "little")
    header = json.loads(data[16 : 16 + hlen])
    assert header["key"] == KEY
    assert header["payload_size"] == 7
    assert header["payload_sha256"] == hashlib.sha256(b"payload").hexdigest()
    assert header["meta"] == {"function": "f"}
    assert data.endswith(b"payload")
    assert len(data) == 16 + hlen + 32 + 7


@pytest.mark.parametrize(
    "bad",
    ["", "abc", "0123456789ABCDEF", "g" * 16, "0" * 15, "0" * 129, "../" + "0" * 16, None, 123],
)
def test_bad_keys_raise(tmp_path, bad):
    cache = CompileCache(tmp_path)
    with pytest.raises(ValueError):
        cache.load(bad)
    with pytest.raises(ValueError):
        cache.store(bad, b"x", {})
    with pytest.raises(ValueError):
        with cache.lock(bad):
            pass


def test_bad_arguments_raise(tmp_path):
    cache = CompileCache(tmp_path)
    with pytest.raises(TypeError):
        cache.store(KEY, "not bytes", {})
    with pytest.raises(TypeError):
        cache.store(KEY, b"x", {"f": object()})
    with pytest.raises(TypeError):
        cache.store(KEY, b"x", ["not", "a", "dict"])
    with pytest.raises(ValueError):
        cache.prune(-1)
    assert cache.load(KEY) is None


def test_default_cache_dir_env(tmp_path, monkeypatch):
    monkeypatch.setenv("PREPJIT_CACHE_DIR", str(tmp_path / "envdir"))
    assert default_cache_dir() == tmp_path / "envdir"
    cache = CompileCache()
    assert cache.directory == tmp_path / "envdir"
    cache.store(KEY, b"abc", {})
    assert (tmp_path / "envdir" / "v1" / KEY[:2] / f"{KEY}.pjc").is_file()

    monkeypatch.delenv("PREPJIT_CACHE_DIR")
    import platformdirs

    assert default_cache_dir() == pathlib.Path(platformdirs.user_cache_dir("prepjit"))


def test_creates_missing_nested_directory(tmp_path):
    target = tmp_path / "a" / "b" / "c"
    cache = CompileCache(target)
    assert not cache.in_memory
    cache.store(KEY, b"x", {})
    assert cache.load(KEY).payload == b"x"


def test_fresh_process_sees_entry(tmp_path, monkeypatch):
    monkeypatch.setenv("PREPJIT_CACHE_DIR", str(tmp_path))
    CompileCache().store(KEY, b"\x00compiled\xff", {"function": "f", "target": "t"})
    code = textwrap.dedent(
        f"""
        import json
        from prepjit.runtime.cache import CompileCache
        e = CompileCache().load({KEY!r})
        print(json.dumps([e.payload.hex(), e.meta]))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        env=_subprocess_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    payload_hex, meta = json.loads(out.stdout)
    assert bytes.fromhex(payload_hex) == b"\x00compiled\xff"
    assert meta == {"function": "f", "target": "t"}


# --------------------------------------------------------------------------- corruption


def _flip_payload_byte(data: bytes) -> bytes:
    return data[:-3] + bytes([data[-3] ^ 0x01]) + data[-2:]


def _tamper_header(data: bytes) -> bytes:
    # change a digit of the meta inside the JSON header without touching the digest
    i = data.index(b'"opt":7')
    return data[:i] + b'"opt":8' + data[i + 7 :]


def _tamper_header_and_payload_consistently(data: bytes) -> bytes:
    # swap the payload for another one of the same size and fix up payload_sha256,
    # but leave the header digest stale
    old = b"A" * 100
    new = b"B" * 100
    assert data.endswith(old)
    data = data.replace(
        hashlib.sha256(old).hexdigest().encode(), hashlib.sha256(new).hexdigest().encode()
    )
    return data[: -len(old)] + new


CORRUPTIONS = {
    "flipped_payload_byte": _flip_payload_byte,
    "truncated": lambda d: d[: len(d) // 2],
    "truncated_last_byte": lambda d: d[:-1],
    "truncated_in_prefix": lambda d: d[:5],
    "trailing_junk": lambda d: d + b"junk",
    "empty": lambda d: b"",
    "garbage": lambda d: os.urandom(len(d)),
    "wrong_magic": lambda d: b"NOTPJC\x00\x00" + d[8:],
    "wrong_version": lambda d: d[:8] + (99).to_bytes(2, "little") + d[10:],
    "huge_header_len": lambda d: d[:12] + (2**32 - 1).to_bytes(4, "little") + d[16:],
    "header_tampered": _tamper_header,
    "header_digest_stale": _tamper_header_and_payload_consistently,
}


@pytest.mark.parametrize("name", sorted(CORRUPTIONS))
def test_corrupt_entry_is_discarded(tmp_path, name):
    cache = CompileCache(tmp_path)
    cache.store(KEY, b"A" * 100, {"function": "f", "opt": 7})
    path = _entry_path(cache, KEY)
    path.write_bytes(CORRUPTIONS[name](path.read_bytes()))

    with pytest.warns(CacheWarning, match="corrupt"):
        assert cache.load(KEY) is None
    assert not path.exists()

    # the caller recompiles and stores again; that works normally
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cache.store(KEY, b"C" * 50, {"function": "f"})
        assert cache.load(KEY) == CacheEntry(b"C" * 50, {"function": "f"})


def test_entry_moved_to_wrong_key_is_rejected(tmp_path):
    cache = CompileCache(tmp_path)
    cache.store(KEY, b"payload", {})
    other = _entry_path(cache, KEY2)
    other.parent.mkdir(parents=True, exist_ok=True)
    os.replace(_entry_path(cache, KEY), other)
    with pytest.warns(CacheWarning):
        assert cache.load(KEY2) is None
    assert not other.exists()


# --------------------------------------------------------------------------- unwritable dirs


def _chmod_is_effective(directory: pathlib.Path) -> bool:
    """False when running as root (or similar) where mode bits don't stop writes."""
    probe = directory / "probe"
    try:
        probe.write_bytes(b"x")
    except OSError:
        return True
    probe.unlink()
    return False


def test_read_only_directory_falls_back_to_memory(tmp_path):
    root = tmp_path / "ro"
    writer = CompileCache(root)
    writer.store(KEY, b"on disk", {"function": "f"})
    dirs = [root, root / "v1", root / "v1" / KEY[:2]]
    for d in dirs:
        d.chmod(0o555)
    try:
        if not _chmod_is_effective(root / "v1"):
            pytest.skip("chmod does not restrict writes (running as root?)")
        with pytest.warns(CacheWarning) as record:
            cache = CompileCache(root)
        assert len([w for w in record if issubclass(w.category, CacheWarning)]) == 1
        assert cache.in_memory
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # warned only once, nothing raises
            # existing entries are still served from disk
            assert cache.load(KEY) == CacheEntry(b"on disk", {"function": "f"})
            cache.store(KEY2, b"in memory", {"function": "g"})
            assert cache.load(KEY2) == CacheEntry(b"in memory", {"function": "g"})
            with cache.lock(KEY2, timeout=0.5):
                pass
            assert cache.info()["in_memory"] is True
        assert not _entry_path(cache, KEY2).exists()
    finally:
        for d in dirs:
            d.chmod(0o755)


def test_read_only_directory_simulated(tmp_path, monkeypatch):
    """Same as above but simulating EACCES on file creation, so it also runs as root."""
    root = tmp_path / "ro"
    CompileCache(root).store(KEY, b"on disk", {"function": "f"})

    real_open = os.open

    def deny_create(path, flags, *args, **kwargs):
        if flags & os.O_CREAT and str(path).startswith(str(root)):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", deny_create)
    with pytest.warns(CacheWarning, match="not writable"):
        cache = CompileCache(root)
    assert cache.in_memory
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert cache.load(KEY) == CacheEntry(b"on disk", {"function": "f"})
        cache.store(KEY2, b"mem", {})
        assert cache.load(KEY2) == CacheEntry(b"mem", {})
        with cache.lock(KEY2, timeout=0.5) as acquired:
            assert acquired is False
    monkeypatch.undo()
    assert CompileCache(root).load(KEY2) is None  # never reached the disk


def test_store_failure_after_init_falls_back(tmp_path, monkeypatch):
    cache = CompileCache(tmp_path)
    assert not cache.in_memory

    def enospc(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", enospc)
    with pytest.warns(CacheWarning):
        cache.store(KEY, b"x", {})
    assert cache.in_memory
    assert cache.load(KEY) == CacheEntry(b"x", {})
    monkeypatch.undo()
    assert not list(tmp_path.rglob("*.tmp"))
    assert not list(tmp_path.rglob("*.pjc"))


def test_directory_under_regular_file(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("i am a file")
    with pytest.warns(CacheWarning, match="cannot create"):
        cache = CompileCache(blocker / "cache")
    assert cache.in_memory
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert cache.load(KEY) is None
        cache.store(KEY, b"payload", {"function": "f"})
        assert cache.load(KEY) == CacheEntry(b"payload", {"function": "f"})
        with cache.lock(KEY, timeout=0.5):
            pass
        info = cache.info()
    assert info["in_memory"] is True
    assert info["entries"] == 1
    assert info["by_function"] == {"f": {"entries": 1, "size_bytes": 7}}
    assert cache.clear() == 1
    assert cache.load(KEY) is None
    assert blocker.read_text() == "i am a file"


# --------------------------------------------------------------------------- concurrency


def _payload_for(writer: int) -> bytes:
    size = 1000 + writer * 37_003  # different sizes per writer
    return hashlib.sha256(bytes([writer])).digest() * (size // 32) + bytes([writer]) * (size % 32)


def _hammer(directory: str, key: str, writer: int, iterations: int, barrier, results) -> None:
    problems = []
    try:
        with warnings.catch_warnings(record=True) as record:
            warnings.simplefilter("always")
            cache = CompileCache(directory)
            barrier.wait(timeout=30)
            mine = _payload_for(writer)
            for i in range(iterations):
                if (i + writer) % 2:
                    cache.store(key, mine, {"writer": writer})
                entry = cache.load(key)
                if entry is not None and entry.payload != _payload_for(entry.meta["writer"]):
                    problems.append(f"mismatched payload from writer {entry.meta['writer']}")
            problems.extend(str(w.message) for w in record)
            if cache.in_memory:
                problems.append("fell back to memory")
    except BaseException as exc:  # noqa: BLE001 - report everything to the parent
        problems.append(f"exception: {exc!r}")
    results.put((writer, problems))


@pytest.mark.parametrize("nproc", [4, 8])
def test_concurrent_store_and_load(tmp_path, nproc):
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(nproc)
    results = ctx.Queue()
    procs = [
        ctx.Process(target=_hammer, args=(str(tmp_path), KEY, w, 50, barrier, results))
        for w in range(nproc)
    ]
    for p in procs:
        p.start()
    outcomes = dict(results.get(timeout=60) for _ in procs)
    for p in procs:
        p.join(timeout=30)
        assert p.exitcode == 0
    assert outcomes == {w: [] for w in range(nproc)}

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        entry = CompileCache(tmp_path).load(KEY)
    assert entry is not None
    assert entry.payload == _payload_for(entry.meta["writer"])
    assert not list(tmp_path.rglob("*.tmp"))


def _count_under_lock(directory: str, key: str, iterations: int, barrier, results) -> None:
    problems = []
    try:
        with warnings.catch_warnings(record=True) as record:
            warnings.simplefilter("always")
            cache = CompileCache(directory)
            counter = pathlib.Path(directory) / "counter"
            barrier.wait(timeout=30)
            for _ in range(iterations):
                with cache.lock(key, timeout=20) as acquired:
                    if not acquired:
                        problems.append("lock not acquired")
                    value = int(counter.read_text())
                    counter.write_text(str(value + 1))
            problems.extend(str(w.message) for w in record)
    except BaseException as exc:  # noqa: BLE001
        problems.append(f"exception: {exc!r}")
    results.put(problems)


def test_lock_is_exclusive_across_processes(tmp_path):
    nproc, iterations = 4, 50
    (tmp_path / "counter").write_text("0")
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(nproc)
    results = ctx.Queue()
    procs = [
        ctx.Process(target=_count_under_lock, args=(str(tmp_path), KEY, iterations, barrier, results))
        for _ in range(nproc)
    ]
    for p in procs:
        p.start()
    outcomes = [results.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=30)
    assert outcomes == [[]] * nproc
    assert int((tmp_path / "counter").read_text()) == nproc * iterations


def test_lock_survives_killed_holder(tmp_path):
    code = textwrap.dedent(
        f"""
        import sys, time
        from prepjit.runtime.cache import CompileCache
        with CompileCache({str(tmp_path)!r}).lock({KEY!r}, timeout=10) as acquired:
            print("locked" if acquired else "failed", flush=True)
            time.sleep(120)
        """
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", code],
        env=_subprocess_env(tmp_path),
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        cache = CompileCache(tmp_path)
        # held by the other process: times out, warns, but still runs the body
        t0 = time.monotonic()
        with pytest.warns(CacheWarning, match="lock"):
            with cache.lock(KEY, timeout=0.3) as acquired:
                assert acquired is False
        assert time.monotonic() - t0 < 5
        # a different key is independent
        with cache.lock(KEY2, timeout=1) as acquired:
            assert acquired is True
    finally:
        holder.kill()  # SIGKILL: no cleanup in the holder
        holder.wait(timeout=10)
        holder.stdout.close()
    t0 = time.monotonic()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with cache.lock(KEY, timeout=5) as acquired:
            assert acquired is True
    assert time.monotonic() - t0 < 5


def test_lock_is_reentrant_and_propagates_exceptions(tmp_path):
    cache = CompileCache(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with cache.lock(KEY, timeout=1) as outer:
            with CompileCache(tmp_path).lock(KEY, timeout=1) as inner:
                assert outer and inner
        with pytest.raises(RuntimeError, match="boom"):
            with cache.lock(KEY, timeout=1):
                raise RuntimeError("boom")
        with cache.lock(KEY, timeout=1) as again:  # released after the exception
            assert again
    with pytest.raises(ValueError):
        with cache.lock(KEY, timeout=-1):
            pass


# --------------------------------------------------------------------------- maintenance


def _populate(cache: CompileCache) -> dict[str, int]:
    """Store 4 entries with explicit, distinct last-used times; return key -> age rank."""
    now = time.time()
    specs = [
        (_key(0), b"a" * 1000, {"function": "f", "target": "cpu"}, now - 400),
        (_key(1), b"b" * 2000, {"function": "f", "target": "cpu"}, now - 100),
        (_key(2), b"c" * 3000, {"function": "g", "target": "cuda"}, now - 300),
        (_key(3), b"d" * 500, {"other": 1}, now - 200),
    ]
    for key, payload, meta, t in specs:
        cache.store(key, payload, meta)
        os.utime(_entry_path(cache, key), (t, t))
    return {key: t for key, _, _, t in specs}


def test_entries_and_info(tmp_path):
    cache = CompileCache(tmp_path)
    times = _populate(cache)
    entries = {e["key"]: e for e in cache.entries()}
    assert set(entries) == set(times)
    for key, e in entries.items():
        path = _entry_path(cache, key)
        assert e["size"] == path.stat().st_size
        assert e["last_used"] == pytest.approx(times[key], abs=1e-3)
        assert e["created"] == pytest.approx(time.time(), abs=60)
        assert e["valid"] is True
    assert entries[_key(0)]["function"] == "f"
    assert entries[_key(2)]["target"] == "cuda"
    assert entries[_key(3)]["function"] is None and entries[_key(3)]["target"] is None

    info = cache.info()
    assert info["directory"] == str(tmp_path)
    assert info["entries"] == 4
    assert info["size_bytes"] == sum(e["size"] for e in entries.values())
    assert info["in_memory"] is False
    f = info["by_function"]["f"]
    assert f["entries"] == 2
    assert f["size_bytes"] == entries[_key(0)]["size"] + entries[_key(1)]["size"]
    assert info["by_function"]["g"]["entries"] == 1
    assert sum(v["entries"] for v in info["by_function"].values()) == 4


def test_load_updates_last_used(tmp_path):
    cache = CompileCache(tmp_path)
    times = _populate(cache)
    cache.load(_key(0))  # oldest becomes newest
    entries = {e["key"]: e for e in cache.entries()}
    assert entries[_key(0)]["last_used"] > max(times.values())
    # so prune now evicts key 2 (next oldest) first
    total = sum(e["size"] for e in entries.values())
    assert cache.prune(total - 1) == 1
    assert cache.load(_key(2)) is None
    assert cache.load(_key(0)) is not None


def test_prune_lru_order(tmp_path):
    cache = CompileCache(tmp_path)
    _populate(cache)
    sizes = {e["key"]: e["size"] for e in cache.entries()}
    total = sum(sizes.values())

    assert cache.prune(total) == 0
    assert cache.info()["entries"] == 4

    # LRU order: key0 (oldest), key2, key3, key1 (newest)
    limit = total - sizes[_key(0)]
    assert cache.prune(limit) == 1
    assert {e["key"] for e in cache.entries()} == {_key(1), _key(2), _key(3)}

    limit = sizes[_key(1)] + sizes[_key(3)] - 1  # must drop key2 and key3
    assert cache.prune(limit) == 2
    assert [e["key"] for e in cache.entries()] == [_key(1)]
    assert cache.info()["size_bytes"] <= limit

    assert cache.prune(0) == 1
    assert cache.entries() == []
    assert cache.prune(0) == 0


def test_prune_removes_invalid_first(tmp_path):
    cache = CompileCache(tmp_path)
    times = _populate(cache)
    path = _entry_path(cache, _key(1))  # newest
    path.write_bytes(b"garbage" * 10)
    t = times[_key(1)]
    os.utime(path, (t, t))
    assert cache.prune(cache.info()["size_bytes"] - 1) == 1
    assert not path.exists()


def test_clear(tmp_path):
    cache = CompileCache(tmp_path)
    _populate(cache)
    with cache.lock(_key(0), timeout=1):
        pass
    shard = _entry_path(cache, _key(1)).parent
    (shard / f".{_key(1)}.123.abc.tmp").write_bytes(b"partial")
    assert cache.clear() == 4
    assert cache.entries() == []
    assert cache.info()["entries"] == 0
    leftovers = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert leftovers == []
    assert cache.clear() == 0
    cache.store(KEY, b"x", {})
    assert cache.load(KEY).payload == b"x"


def test_clear_keeps_held_lock(tmp_path):
    cache = CompileCache(tmp_path)
    lock_file = _entry_path(cache, KEY).with_suffix(".lock")
    with cache.lock(KEY, timeout=1) as acquired:
        assert acquired
        cache.clear()
        assert lock_file.exists()  # a held lock is never yanked from under its holder
    cache.clear()
    assert not lock_file.exists()


# --------------------------------------------------------------------------- parse_size


@pytest.mark.parametrize(
    "text, expected",
    [
        ("2000", 2000),
        ("0", 0),
        ("10k", 10_000),
        ("10K", 10_000),
        ("10kb", 10_000),
        ("10KiB", 10_240),
        ("10ki", 10_240),
        ("500MB", 500_000_000),
        ("500mb", 500_000_000),
        ("500 MiB", 500 * 2**20),
        ("1.5GiB", 3 * 2**29),
        ("1.5GB", 1_500_000_000),
        ("2T", 2 * 10**12),
        ("1TiB", 2**40),
        ("0.5k", 500),
        ("  7B ", 7),
        ("3.7", 3),
    ],
)
def test_parse_size(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize(
    "text", ["", "   ", "abc", "MB", "-5", "5 XB", "1.2.3", "1e3", "5 M B", "1,000", None, 1.5]
)
def test_parse_size_rejects_junk(text):
    with pytest.raises(ValueError):
        parse_size(text)


# --------------------------------------------------------------------------- property test

_json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
_json_values = st.recursive(
    _json_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    payload=st.binary(max_size=4096),
    meta=st.dictionaries(st.text(max_size=12), _json_values, max_size=5),
    key=st.text(alphabet="0123456789abcdef", min_size=16, max_size=128),
)
def test_property_round_trip(tmp_path_factory, payload, meta, key):
    directory = tmp_path_factory.mktemp("prop", numbered=True)
    cache = CompileCache(directory)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cache.store(key, payload, meta)
        entry = cache.load(key)
        assert entry == CacheEntry(payload=payload, meta=meta)
        # and from a fresh instance, i.e. truly from disk
        assert CompileCache(directory).load(key) == entry


def test_lock_is_exclusive_across_threads(tmp_path):
    import threading

    cache = CompileCache(tmp_path)
    counter = {"value": 0, "inside": 0, "overlap": False}

    def work():
        for _ in range(30):
            with cache.lock(KEY, timeout=20) as acquired:
                assert acquired
                counter["inside"] += 1
                if counter["inside"] > 1:
                    counter["overlap"] = True
                value = counter["value"]
                time.sleep(0.0005)
                counter["value"] = value + 1
                counter["inside"] -= 1

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert counter == {"value": 120, "inside": 0, "overlap": False}


def test_host_and_compiler_memos(tmp_path, monkeypatch):
    """native.host_cpu() and driver.compiler_hash() are memoized under v1/host/ (a warm process needs neither
    LLVM nor reading prepjit's sources for its cache key); clear() removes the memos."""
    from prepjit.compiler import driver
    from prepjit.runtime import native

    monkeypatch.setenv("PREPJIT_CACHE_DIR", str(tmp_path))
    real = native._host_info()
    fp = native._host_fingerprint()
    if fp is None:
        pytest.skip("no /proc/cpuinfo: host_cpu() asks LLVM every time")
    try:
        native._host_info.cache_clear()
        assert native._host_info() == real  # computed by LLVM, then written
        memo = tmp_path / "v1" / "host" / f"llvm-host-{fp}.json"
        assert json.loads(memo.read_text()) == list(real)
        memo.write_text(json.dumps(["t", "memo-cpu", "+f", "llvm x"]))
        native._host_info.cache_clear()
        assert native.host_cpu() == ("t", "memo-cpu", "+f") and native.llvm_version() == "llvm x"  # read, not asked
        memo.write_text("{not json")
        native._host_info.cache_clear()
        assert native._host_info() == real  # an unreadable memo is recomputed and rewritten
        assert json.loads(memo.read_text()) == list(real)

        h = driver.compiler_hash.__wrapped__()
        assert any(p.name.startswith("compiler-") for p in memo.parent.iterdir())
        assert driver.compiler_hash.__wrapped__() == h  # from the memo
        root = pathlib.Path(driver.__file__).resolve().parent.parent
        direct = hashlib.sha256()
        for p in driver._source_files(str(root)):
            direct.update(os.path.relpath(p, root).replace(os.sep, "/").encode())
            direct.update(pathlib.Path(p).read_bytes())
        assert h == direct.hexdigest()[:16]

        CompileCache(tmp_path).clear()
        assert list(memo.parent.iterdir()) == []
    finally:
        native._host_info.cache_clear()
