"""On-disk cache of compiled artifacts (object code plus JSON metadata).

Layout::

    <directory>/v1/<key[:2]>/<key>.pjc      one entry
    <directory>/v1/<key[:2]>/<key>.lock     per-key inter-process lock (filelock)
    <directory>/v1/<key[:2]>/.<key>.*.tmp   in-flight writes (renamed atomically)

Entry file format (all integers little endian)::

    offset  size  field
    0       8     magic  b"PJCACHE\\x00"
    8       2     format version (uint16, FORMAT_VERSION)
    10      2     flags (uint16, must be 0)
    12      4     header length H (uint32)
    16      H     header: UTF-8 JSON object
                  {"key", "created", "payload_size", "payload_sha256", "meta"}
    16+H    32    sha256 digest of bytes [0, 16+H) (prefix + header)
    48+H    N     payload (N == header["payload_size"])

The header digest lets :meth:`CompileCache.entries` validate metadata without
reading payloads; the payload digest in the header covers the payload.  The
file size must equal ``48 + H + N`` exactly, so truncation and trailing junk
are both detected.

Robustness rules: nothing here raises on I/O problems.  Corrupt entries are
reported with :class:`CacheWarning`, deleted, and treated as misses.  An
unusable directory makes the instance fall back to an in-memory dict (reads
from a read-only directory still work).  Locks that cannot be taken in time
are skipped rather than waited on forever.  Only programmer errors (malformed
keys, non-bytes payloads, non-JSON metadata, negative sizes) raise.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import pathlib
import re
import struct
import sys
import threading
import time
import warnings
from dataclasses import dataclass
from typing import Any, Iterator

__all__ = [
    "CacheEntry",
    "CacheWarning",
    "CompileCache",
    "FORMAT_VERSION",
    "MAGIC",
    "default_cache_dir",
    "parse_size",
]

ENV_VAR = "PREPJIT_CACHE_DIR"
MAGIC = b"PJCACHE\x00"
FORMAT_VERSION = 1
VERSION_DIR = f"v{FORMAT_VERSION}"
ENTRY_SUFFIX = ".pjc"
LOCK_SUFFIX = ".lock"
TMP_SUFFIX = ".tmp"

def _sha256(data: bytes):
    from prepjit.runtime.native import sha256  # hashlib's sha256 without loading OpenSSL (warm start)

    return sha256(data)


_PREFIX = struct.Struct("<8sHHI")  # magic, version, flags, header length
_DIGEST_SIZE = 32  # sha256
_KEY_RE = re.compile(r"[0-9a-f]{16,128}")


class CacheWarning(UserWarning):
    """Something went wrong with the on-disk cache; prepjit carries on without it."""


@dataclass(frozen=True)
class CacheEntry:
    payload: bytes
    meta: dict


class _Corrupt(Exception):
    """Internal: an entry file failed validation."""


# --------------------------------------------------------------------------- helpers


def default_cache_dir() -> pathlib.Path:
    """``$PREPJIT_CACHE_DIR`` if set (and non-empty), else the platform user cache dir."""
    env = os.environ.get(ENV_VAR)
    if env:
        return pathlib.Path(env).expanduser()
    import platformdirs

    return pathlib.Path(platformdirs.user_cache_dir("prepjit"))


def _check_key(key: str) -> str:
    if not isinstance(key, str) or _KEY_RE.fullmatch(key) is None:
        raise ValueError(
            f"cache key must be a lowercase hex string of 16-128 characters, got {key!r}"
        )
    return key


def _encode_meta(meta: dict) -> Any:
    if not isinstance(meta, dict):
        raise TypeError(f"meta must be a dict, got {type(meta).__name__}")
    try:
        return json.loads(json.dumps(meta))
    except (TypeError, ValueError) as exc:
        raise TypeError(f"meta must be JSON-serializable: {exc}") from None


def _as_bytes(payload: Any) -> bytes:
    if isinstance(payload, bytes):
        return payload
    if isinstance(payload, (bytearray, memoryview)):
        return bytes(payload)
    raise TypeError(f"payload must be bytes-like, got {type(payload).__name__}")


def _encode_entry(key: str, payload: bytes, meta: dict, created: float) -> bytes:
    header = {
        "key": key,
        "created": created,
        "payload_size": len(payload),
        "payload_sha256": _sha256(payload).hexdigest(),
        "meta": meta,
    }
    header_bytes = json.dumps(header, separators=(",", ":")).encode("utf-8")
    prefix = _PREFIX.pack(MAGIC, FORMAT_VERSION, 0, len(header_bytes))
    digest = _sha256(prefix + header_bytes).digest()
    return b"".join((prefix, header_bytes, digest, payload))


def _decode_prefix(prefix: bytes, file_size: int) -> int:
    """Validate the fixed prefix; return the header length."""
    if len(prefix) < _PREFIX.size:
        raise _Corrupt(f"truncated ({file_size} bytes)")
    magic, version, flags, header_len = _PREFIX.unpack(prefix[: _PREFIX.size])
    if magic != MAGIC:
        raise _Corrupt("bad magic")
    if version != FORMAT_VERSION:
        raise _Corrupt(f"unsupported format version {version}")
    if flags != 0:
        raise _Corrupt(f"unknown flags {flags:#x}")
    if _PREFIX.size + header_len + _DIGEST_SIZE > file_size:
        raise _Corrupt("truncated header")
    return header_len


def _decode_header(data: bytes, header_len: int, key: str | None) -> dict:
    """Validate prefix+header+digest in ``data`` (which starts at offset 0)."""
    end = _PREFIX.size + header_len
    if len(data) < end + _DIGEST_SIZE:
        raise _Corrupt("truncated header")
    if _sha256(data[:end]).digest() != data[end : end + _DIGEST_SIZE]:
        raise _Corrupt("header checksum mismatch")
    try:
        header = json.loads(data[_PREFIX.size : end].decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise _Corrupt("unparseable header") from None
    if not isinstance(header, dict):
        raise _Corrupt("header is not an object")
    size = header.get("payload_size")
    if (
        not isinstance(size, int)
        or isinstance(size, bool)
        or size < 0
        or not isinstance(header.get("payload_sha256"), str)
        or not isinstance(header.get("meta"), dict)
        or not isinstance(header.get("key"), str)
    ):
        raise _Corrupt("malformed header")
    if key is not None and header["key"] != key:
        raise _Corrupt(f"entry belongs to key {header['key']!r}")
    return header


def _decode_entry(data: bytes, key: str) -> tuple[CacheEntry, dict]:
    header_len = _decode_prefix(data, len(data))
    header = _decode_header(data, header_len, key)
    start = _PREFIX.size + header_len + _DIGEST_SIZE
    expected = start + header["payload_size"]
    if len(data) != expected:
        kind = "truncated" if len(data) < expected else "trailing data in"
        raise _Corrupt(f"{kind} payload ({len(data)} bytes, expected {expected})")
    payload = data[start:]
    if _sha256(payload).hexdigest() != header["payload_sha256"]:
        raise _Corrupt("payload checksum mismatch")
    return CacheEntry(payload=payload, meta=header["meta"]), header


def _unlink_quietly(path: pathlib.Path | str) -> bool:
    try:
        os.unlink(path)
        return True
    except OSError:
        return False


def _fsync_dir(path: pathlib.Path) -> None:
    if sys.platform == "win32":  # pragma: no cover - directories can't be opened there
        return
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# Per-thread record of lock files this thread holds, so a nested lock(key) in the
# same thread is reentrant instead of waiting on itself until the timeout.
_held = threading.local()


def _held_counts() -> dict[str, int]:
    counts = getattr(_held, "counts", None)
    if counts is None:
        counts = _held.counts = {}
    return counts


# --------------------------------------------------------------------------- the cache


@dataclass
class _MemItem:
    entry: CacheEntry
    created: float
    last_used: float


class CompileCache:
    """Content-addressed store of compiled artifacts, safe across processes."""

    def __init__(self, directory: str | os.PathLike | None = None):
        if directory is None:
            directory = default_cache_dir()
        self.directory = pathlib.Path(directory).expanduser()
        self.in_memory = False
        self._root = self.directory / VERSION_DIR
        self._memory: dict[str, _MemItem] = {}
        self._mem_lock = threading.Lock()
        self._warned_fallback = False
        self._init_directory()

    def __repr__(self) -> str:
        mode = ", in_memory" if self.in_memory else ""
        return f"CompileCache({str(self.directory)!r}{mode})"

    # -- setup / fallback ------------------------------------------------------

    def _init_directory(self) -> None:
        try:
            self._root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            self._fall_back(f"cannot create cache directory {self._root}: {exc}")
            return
        # Probe writability: mkdir(exist_ok=True) succeeds on read-only dirs.
        probe = self._root / f".probe.{os.getpid()}.{os.urandom(6).hex()}{TMP_SUFFIX}"
        try:
            fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except OSError as exc:
            self._fall_back(f"cache directory {self._root} is not writable: {exc}")
            return
        os.close(fd)
        _unlink_quietly(probe)

    def _fall_back(self, reason: str) -> None:
        self.in_memory = True
        if not self._warned_fallback:
            self._warned_fallback = True
            warnings.warn(
                f"prepjit: {reason}; compiled code will be cached in memory only "
                f"for this process",
                CacheWarning,
                stacklevel=4,
            )

    # -- paths -----------------------------------------------------------------

    def _shard(self, key: str) -> pathlib.Path:
        return self._root / key[:2]

    def _entry_path(self, key: str) -> pathlib.Path:
        return self._shard(key) / f"{key}{ENTRY_SUFFIX}"

    def _lock_path(self, key: str) -> pathlib.Path:
        return self._shard(key) / f"{key}{LOCK_SUFFIX}"

    def _iter_files(self, suffix: str) -> Iterator[pathlib.Path]:
        try:
            shards = list(os.scandir(self._root))
        except OSError:
            return
        for shard in shards:
            try:
                if not shard.is_dir(follow_symlinks=False):
                    continue
                children = list(os.scandir(shard.path))
            except OSError:
                continue
            for child in children:
                if child.name.endswith(suffix):
                    yield pathlib.Path(child.path)

    # -- load / store ----------------------------------------------------------

    def load(self, key: str) -> CacheEntry | None:
        """Return the entry for ``key`` or None (missing, unreadable or corrupt)."""
        _check_key(key)
        with self._mem_lock:
            item = self._memory.get(key)
            if item is not None:
                item.last_used = time.time()
                return item.entry
        path = self._entry_path(key)
        try:
            with open(path, "rb") as f:
                data = f.read()
                ident = os.fstat(f.fileno())
        except FileNotFoundError:
            return None
        except OSError as exc:
            if not isinstance(exc, (NotADirectoryError, PermissionError)):
                warnings.warn(
                    f"prepjit: cannot read cache entry {path}: {exc}", CacheWarning, stacklevel=2
                )
            return None
        try:
            entry, _ = _decode_entry(data, key)
        except _Corrupt as exc:
            warnings.warn(
                f"prepjit: discarding corrupt cache entry {path} ({exc}); it will be recompiled",
                CacheWarning,
                stacklevel=2,
            )
            self._remove_if_same(path, ident)
            return None
        try:
            os.utime(path)  # last-used time for LRU pruning
        except OSError:
            pass
        return entry

    @staticmethod
    def _remove_if_same(path: pathlib.Path, ident: os.stat_result) -> None:
        # Only delete the file we actually read: a concurrent writer may have
        # already replaced it with a good one.
        try:
            st = os.stat(path)
        except OSError:
            return
        if (st.st_dev, st.st_ino) == (ident.st_dev, ident.st_ino):
            _unlink_quietly(path)

    def store(self, key: str, payload: bytes, meta: dict) -> None:
        """Store ``payload`` with JSON-serializable ``meta`` under ``key`` (atomic)."""
        _check_key(key)
        payload = _as_bytes(payload)
        meta = _encode_meta(meta)
        now = time.time()
        if not self.in_memory:
            err = self._write_entry(key, payload, meta, now)
            if err is None:
                with self._mem_lock:
                    self._memory.pop(key, None)
                return
            self._fall_back(f"cannot write cache entry {self._entry_path(key)}: {err}")
        with self._mem_lock:
            self._memory[key] = _MemItem(CacheEntry(payload, meta), now, now)

    def _write_entry(self, key: str, payload: bytes, meta: dict, created: float) -> OSError | None:
        blob = _encode_entry(key, payload, meta, created)
        shard = self._shard(key)
        final = self._entry_path(key)
        last_err: OSError | None = None
        for _attempt in range(3):
            tmp = shard / f".{key}.{os.getpid()}.{os.urandom(6).hex()}{TMP_SUFFIX}"
            try:
                shard.mkdir(parents=True, exist_ok=True)
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o644)
            except FileNotFoundError as exc:  # directory removed under us: retry
                last_err = exc
                continue
            except OSError as exc:
                return exc
            try:
                try:
                    view = memoryview(blob)
                    while view:
                        n = os.write(fd, view)
                        view = view[n:]
                    os.fsync(fd)
                finally:
                    os.close(fd)
                self._replace(tmp, final)
            except OSError as exc:
                _unlink_quietly(tmp)
                if isinstance(exc, FileNotFoundError):
                    last_err = exc
                    continue
                return exc
            _fsync_dir(shard)
            return None
        return last_err

    @staticmethod
    def _replace(src: pathlib.Path, dst: pathlib.Path) -> None:
        # On Windows os.replace fails while another process has dst open; retry briefly.
        delay = 0.005
        for _ in range(8 if sys.platform == "win32" else 1):
            try:
                os.replace(src, dst)
                return
            except PermissionError:
                if sys.platform != "win32":
                    raise
                time.sleep(delay)
                delay *= 2
        os.replace(src, dst)

    # -- locking ---------------------------------------------------------------

    @contextlib.contextmanager
    def lock(self, key: str, timeout: float = 60.0) -> Iterator[bool]:
        """Per-key inter-process lock.  Yields True if the lock was taken.

        If the lock cannot be acquired within ``timeout`` seconds, or the lock
        file cannot be created, the body runs anyway (yielding False): a slow or
        broken peer must never stall compilation.  Reentrant within a thread.
        """
        _check_key(key)
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or math.isnan(timeout) or timeout < 0:
            raise ValueError(f"timeout must be a non-negative number, got {timeout!r}")
        path = str(self._lock_path(key))
        counts = _held_counts()
        if counts.get(path):
            counts[path] += 1
            try:
                yield True
            finally:
                counts[path] -= 1
            return
        flock = self._acquire(key, path, float(timeout))
        if flock is None:
            yield False
            return
        counts[path] = 1
        try:
            yield True
        finally:
            counts.pop(path, None)
            try:
                flock.release()
            except Exception:
                pass

    def _acquire(self, key: str, path: str, timeout: float) -> Any:
        try:
            import filelock

            self._shard(key).mkdir(parents=True, exist_ok=True)
            flock = filelock.FileLock(path, timeout=timeout)
        except Exception:
            return None
        try:
            flock.acquire(timeout=timeout)
        except filelock.Timeout:
            warnings.warn(
                f"prepjit: could not acquire cache lock {path} within {timeout:g}s; "
                f"proceeding without it",
                CacheWarning,
                stacklevel=4,
            )
            return None
        except Exception:
            return None
        return flock

    # -- introspection / maintenance -------------------------------------------

    def _disk_entries(self) -> list[dict]:
        out = []
        for path in self._iter_files(ENTRY_SUFFIX):
            key = path.name[: -len(ENTRY_SUFFIX)]
            try:
                with open(path, "rb") as f:
                    st = os.fstat(f.fileno())
                    prefix = f.read(_PREFIX.size)
                    try:
                        header_len = _decode_prefix(prefix, st.st_size)
                        header = _decode_header(
                            prefix + f.read(header_len + _DIGEST_SIZE), header_len, key
                        )
                    except _Corrupt:
                        header = None
            except OSError:
                continue
            meta = header["meta"] if header else {}
            valid = header is not None and st.st_size == (
                _PREFIX.size + header_len + _DIGEST_SIZE + header["payload_size"]
            )
            created = header.get("created") if header else None
            if not isinstance(created, (int, float)) or isinstance(created, bool):
                created = None
            out.append(
                {
                    "key": key,
                    "size": st.st_size,
                    "function": meta.get("function"),
                    "target": meta.get("target"),
                    "created": created,
                    "last_used": st.st_mtime,
                    "path": str(path),
                    "valid": valid,
                    "in_memory": False,
                    "meta": meta,
                }
            )
        return out

    def _memory_entries(self) -> list[dict]:
        with self._mem_lock:
            items = list(self._memory.items())
        return [
            {
                "key": key,
                "size": len(item.entry.payload),
                "function": item.entry.meta.get("function"),
                "target": item.entry.meta.get("target"),
                "created": item.created,
                "last_used": item.last_used,
                "path": None,
                "valid": True,
                "in_memory": True,
                "meta": item.entry.meta,
            }
            for key, item in items
        ]

    def entries(self) -> list[dict]:
        """One dict per entry (on disk, then in-memory), sorted by key.

        Keys: key, size, function, target, created, last_used, plus path (None
        for in-memory entries), valid (header intact and size consistent; the
        payload checksum is only checked by load), in_memory and meta (the
        entry's metadata; ``{}`` when the header is invalid).
        """
        out = self._disk_entries() + self._memory_entries()
        out.sort(key=lambda e: (e["key"], e["in_memory"]))
        return out

    def info(self) -> dict:
        entries = self.entries()
        by_function: dict[str, dict[str, int]] = {}
        for e in entries:
            name = e["function"] if e["function"] is not None else "<unknown>"
            slot = by_function.setdefault(str(name), {"entries": 0, "size_bytes": 0})
            slot["entries"] += 1
            slot["size_bytes"] += e["size"]
        return {
            "directory": str(self.directory),
            "entries": len(entries),
            "size_bytes": sum(e["size"] for e in entries),
            "by_function": by_function,
            "in_memory": self.in_memory,
        }

    def _remove(self, e: dict) -> bool:
        if e["in_memory"]:
            with self._mem_lock:
                return self._memory.pop(e["key"], None) is not None
        return _unlink_quietly(e["path"])

    def clear(self) -> int:
        """Remove every entry (disk and memory) plus stale temp and lock files.

        Returns the number of entries removed.
        """
        removed = 0
        for e in self.entries():
            removed += self._remove(e)
        # In-flight writers whose temp file disappears just fail their rename
        # quietly; lock files are removed only while we hold them, so no holder
        # is disturbed (filelock re-opens a lock file that was unlinked).
        for tmp in self._iter_files(TMP_SUFFIX):
            _unlink_quietly(tmp)
        for lock_file in self._iter_files(LOCK_SUFFIX):
            self._remove_lock_file(lock_file)
        try:  # memos of the host's LLVM identity and the compiler hash (prepjit.runtime.native): rebuilt on demand
            memos = list(os.scandir(self._root / "host"))
        except OSError:
            memos = []
        for m in memos:
            if m.name.endswith(".json"):
                _unlink_quietly(m.path)
        return removed

    @staticmethod
    def _remove_lock_file(path: pathlib.Path) -> None:
        try:
            import filelock

            flock = filelock.FileLock(str(path), timeout=0)
            flock.acquire(timeout=0)
        except Exception:
            return
        try:
            _unlink_quietly(path)
        finally:
            try:
                flock.release()
            except Exception:
                pass

    def prune(self, max_bytes: int) -> int:
        """Remove least-recently-used entries until the total size is ≤ ``max_bytes``.

        Entries whose header is invalid go first.  Returns the number removed.
        """
        if isinstance(max_bytes, bool) or not isinstance(max_bytes, int):
            raise TypeError(f"max_bytes must be an int, got {type(max_bytes).__name__}")
        if max_bytes < 0:
            raise ValueError(f"max_bytes must be >= 0, got {max_bytes}")
        entries = self.entries()
        total = sum(e["size"] for e in entries)
        entries.sort(key=lambda e: (e["valid"], e["last_used"], e["key"]))
        removed = 0
        for e in entries:
            if total <= max_bytes:
                break
            if self._remove(e):
                removed += 1
            total -= e["size"]  # gone either way (or vanished under us)
        return removed


# --------------------------------------------------------------------------- sizes

_UNITS = {"": 1, "b": 1}
for _i, _p in enumerate("kmgtpe", start=1):
    _UNITS[_p] = _UNITS[_p + "b"] = 1000**_i
    _UNITS[_p + "i"] = _UNITS[_p + "ib"] = 1024**_i
del _i, _p

_SIZE_RE = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([a-z]*)\s*", re.IGNORECASE)


def parse_size(text: str) -> int:
    """Parse a human size: ``"500MB"``, ``"1.5GiB"``, ``"2000"``, ``"10k"`` → bytes.

    SI suffixes (k, M, G, T, P, E; optional B) are powers of 1000, IEC suffixes
    (Ki, Mi, ...; optional B) powers of 1024; case-insensitive.  Fractions are
    rounded down to whole bytes.  Raises ValueError on anything else.
    """
    if isinstance(text, int) and not isinstance(text, bool):
        if text < 0:
            raise ValueError(f"size must be >= 0, got {text}")
        return text
    if not isinstance(text, str):
        raise ValueError(f"cannot parse size from {text!r}")
    m = _SIZE_RE.fullmatch(text)
    if m is None:
        raise ValueError(f"invalid size {text!r}")
    number, unit = m.groups()
    mult = _UNITS.get(unit.lower())
    if mult is None:
        raise ValueError(f"invalid size unit {unit!r} in {text!r}")
    from fractions import Fraction

    return int(Fraction(number) * mult)


_caches: dict = {}
_caches_lock = threading.Lock()


def get_cache() -> CompileCache:
    """The process-wide cache for the current ``PREPJIT_CACHE_DIR`` (re-read on every call, so tests and tools
    that change the variable get the matching directory)."""
    directory = default_cache_dir()
    with _caches_lock:
        c = _caches.get(directory)
        if c is None:
            c = _caches[directory] = CompileCache(directory)
        return c
