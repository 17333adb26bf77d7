"""A small, strict loader for the x86-64 ELF relocatable objects prepjit caches (no LLVM needed).

Why: a warm process only has to map cached object code and call it, but linking through llvmlite's LLJIT means
loading libllvmlite, initializing the target and creating the JIT — tens of milliseconds, most of a warm first
call. What LLVM emits for prepjit's kernels is simple: code, read-only constants (maybe writable data/bss),
RELA relocations of a few types against symbols of the object itself or of the process (``memcpy``). This file
maps exactly that with ``mmap`` and ``mprotect``, and refuses everything else by raising :class:`Unsupported`, on
which :func:`prepjit.runtime.native.load_object` falls back to LLJIT. It never guesses: every offset, size and
index read from the file is checked against the file or the mapping before use, so a truncated or malformed
object raises ``Unsupported`` and cannot make the loader write outside its mapping.

Layout: one anonymous mapping in up to three page-aligned parts — [code + call stubs] [read-only data + GOT]
[writable data] — filled and relocated while read+write, then made R+X / R / R+W. Calls to process symbols go
through 14-byte stubs (``jmp *[rip]``; libc can be more than 2 GiB away), GOT-relative loads through GOT slots
in the mapping.
"""
from __future__ import annotations

import ctypes
import mmap
import struct

__all__ = ["Unsupported", "LoadedObject", "load"]


class Unsupported(Exception):
    """The object uses something this loader does not handle (or is malformed): use LLJIT instead."""


_EHDR = struct.Struct("<16sHHIQQQIHHHHHH")
_SHDR = struct.Struct("<IIQQQQIIQQ")
_SYM = struct.Struct("<IBBHQQ")
_RELA = struct.Struct("<QQq")
SHT_PROGBITS, SHT_SYMTAB, SHT_STRTAB, SHT_RELA, SHT_NOBITS, SHT_REL = 1, 2, 3, 4, 8, 9
SHT_X86_64_UNWIND = 0x70000001  # LLVM's type for .eh_frame: plain data for us (we never unwind through it)
SHF_WRITE, SHF_ALLOC, SHF_EXECINSTR, SHF_TLS = 0x1, 0x2, 0x4, 0x400
SHN_UNDEF, SHN_LORESERVE, SHN_ABS = 0, 0xFF00, 0xFFF1
R_64, R_PC32, R_PLT32, R_GOTPCREL, R_32, R_32S, R_PC64, R_GOTPCRELX, R_REX_GOTPCRELX = 1, 2, 4, 9, 10, 11, 24, 41, 42
_GOT_TYPES = (R_GOTPCREL, R_GOTPCRELX, R_REX_GOTPCRELX)
_INIT_SECTIONS = (".ctors", ".dtors", ".init", ".fini", ".preinit_array", ".tdata", ".tbss")  # code to run at load
_STUB = b"\xff\x25\x00\x00\x00\x00"  # jmp *0(%rip): the 8-byte target address follows
_STUB_SIZE = 16
PAGE = mmap.PAGESIZE


def _check(cond, what):
    if not cond:
        raise Unsupported(what)


def _cstr(tab: bytes, off: int) -> str:
    _check(0 <= off < len(tab), "string offset out of range")
    end = tab.find(b"\0", off)
    _check(end >= 0, "unterminated string")
    return tab[off:end].decode("ascii", "strict")


_libc = None


def _process():
    global _libc
    if _libc is None:
        lib = ctypes.CDLL(None, use_errno=True)
        lib.mprotect.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
        lib.mprotect.restype = ctypes.c_int
        _libc = lib
    return _libc


def _process_symbol(name: str) -> int:
    """Address of a symbol exported by the process (libc, libm, ...), as LLJIT's current-process generator does."""
    try:
        addr = ctypes.cast(getattr(_process(), name), ctypes.c_void_p).value
    except AttributeError:
        addr = None
    _check(addr, f"unresolved symbol {name!r}")
    return addr


class LoadedObject:
    """A mapped, relocated object. Keep it referenced as long as its code may run (unmapped when collected)."""

    __slots__ = ("_map", "_anchor", "base", "symbols")

    def __init__(self, m, anchor, base, symbols):
        self._map, self._anchor, self.base, self.symbols = m, anchor, base, symbols


MAX_MAPPING = 1 << 28  # prepjit's objects are kilobytes; a larger layout means a malformed file


def load(obj: bytes) -> LoadedObject:
    """Map ``obj`` (an ELF64 x86-64 relocatable object) and return it with its defined global symbols."""
    try:
        return _load(bytes(obj))
    except (struct.error, IndexError, KeyError, ValueError, OverflowError, OSError) as e:  # malformed: refuse
        raise Unsupported(f"malformed object ({type(e).__name__}: {e})") from None


def _load(obj: bytes) -> LoadedObject:
    n = len(obj)
    _check(n >= _EHDR.size, "truncated ELF header")
    ident, e_type, machine, _, _, _, shoff, _, _, _, _, shentsize, shnum, shstrndx = _EHDR.unpack_from(obj)
    _check(ident[:4] == b"\x7fELF" and ident[4] == 2 and ident[5] == 1, "not a little-endian ELF64 file")
    _check(e_type == 1 and machine == 62, "not an x86-64 relocatable object")
    _check(shentsize == _SHDR.size and 0 < shnum < SHN_LORESERVE and shstrndx < shnum, "bad section table")
    _check(shoff + shnum * _SHDR.size <= n, "truncated section table")
    shdrs = [_SHDR.unpack_from(obj, shoff + i * _SHDR.size) for i in range(shnum)]

    def contents(i):
        _, typ, _, _, off, size = shdrs[i][:6]
        _check(typ != SHT_NOBITS and off + size <= n, f"section {i} outside the file")
        return obj[off:off + size]

    shstrtab = contents(shstrndx)
    # 1. layout of the allocated sections: exec | read-only | writable, each part page-aligned
    parts = {"x": 0, "r": 0, "w": 0}
    place = {}  # section index -> (part, offset in part)
    for i, (_, typ, flags, _, off, size, _, _, align, _) in enumerate(shdrs):
        if typ == SHT_REL:
            raise Unsupported("REL relocations")
        if not flags & SHF_ALLOC:
            continue
        name = _cstr(shstrtab, shdrs[i][0])
        _check(typ in (SHT_PROGBITS, SHT_NOBITS, SHT_X86_64_UNWIND) and not flags & SHF_TLS
               and not name.startswith(_INIT_SECTIONS), f"section {name} of type {typ:#x} flags {flags:#x}")
        _check(align <= PAGE and align & (align - 1) == 0, f"section {i} alignment {align}")
        if typ != SHT_NOBITS:
            _check(off + size <= n, f"section {i} outside the file")
        part = "x" if flags & SHF_EXECINSTR else "w" if flags & SHF_WRITE else "r"
        at = -(-parts[part] // max(align, 1)) * max(align, 1)
        place[i] = (part, at)
        parts[part] = at + size

    # 2. symbols and relocations (validated before anything is mapped)
    symtabs = [i for i, s in enumerate(shdrs) if s[1] == SHT_SYMTAB]
    _check(len(symtabs) <= 1, "several symbol tables")
    syms, strtab = [], b""
    if symtabs:
        st = symtabs[0]
        _check(shdrs[st][9] == _SYM.size and shdrs[st][6] < shnum, "bad symbol table")
        data, strtab = contents(st), contents(shdrs[st][6])
        syms = [_SYM.unpack_from(data, k) for k in range(0, len(data) - len(data) % _SYM.size, _SYM.size)]
    relas = []  # (target section, relocations)
    for i, (_, typ, _, _, _, _, link, info, _, entsize) in enumerate(shdrs):
        if typ != SHT_RELA or info not in place:
            continue  # relocations of non-allocated sections (debug info) are not needed to run
        _check(symtabs and link == symtabs[0] and entsize == _RELA.size, "bad relocation section")
        _check(shdrs[info][1] != SHT_NOBITS, "relocations in a NOBITS section")
        data = contents(i)
        relas.append((info, [_RELA.unpack_from(data, k) for k in range(0, len(data) - len(data) % _RELA.size,
                                                                          _RELA.size)]))
    externals, got = {}, {}
    for _, rs in relas:
        for _, info, _ in rs:
            sym = info >> 32
            _check(0 < sym < len(syms), "relocation symbol out of range")
            shndx = syms[sym][3]
            if shndx == SHN_UNDEF and sym not in externals:
                externals[sym] = _process_symbol(_cstr(strtab, syms[sym][0]))
            if info & 0xFFFFFFFF in _GOT_TYPES:
                got.setdefault(sym, len(got))
    stubs = {sym: k for k, sym in enumerate(externals)}
    stub_at = parts["x"] = -(-parts["x"] // 16) * 16
    parts["x"] += _STUB_SIZE * len(stubs)
    got_at = parts["r"] = -(-parts["r"] // 8) * 8
    parts["r"] += 8 * len(got)
    pages = {k: -(-v // PAGE) * PAGE for k, v in parts.items()}
    start = {"x": 0, "r": pages["x"], "w": pages["x"] + pages["r"]}
    total = start["w"] + pages["w"]
    _check(0 < total <= MAX_MAPPING, f"mapping of {total} bytes")

    # 3. map read+write, copy, relocate
    m = mmap.mmap(-1, total, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, prot=mmap.PROT_READ | mmap.PROT_WRITE)
    anchor = ctypes.c_char.from_buffer(m)
    base = ctypes.addressof(anchor)
    sec_addr = {i: base + start[p] + at for i, (p, at) in place.items()}
    for i, (p, at) in place.items():
        if shdrs[i][1] != SHT_NOBITS:  # NOBITS (.bss) stays zero, as the fresh mapping is
            data = contents(i)
            m[start[p] + at:start[p] + at + len(data)] = data

    def address(sym):
        _, info, _, shndx, value, _ = syms[sym]
        if shndx == SHN_UNDEF:
            return externals[sym]
        if shndx == SHN_ABS:
            return value
        _check(shndx in sec_addr and value <= shdrs[shndx][5], f"symbol {sym} outside the loaded sections")
        return sec_addr[shndx] + value

    for k, sym in enumerate(got):
        struct.pack_into("<Q", m, start["r"] + got_at + 8 * k, address(sym))
    for k, sym in enumerate(stubs):
        struct.pack_into("<6sQ", m, start["x"] + stub_at + _STUB_SIZE * k, _STUB, externals[sym])
    for target, rs in relas:
        p, at = place[target]
        size = shdrs[target][5]
        for off, info, addend in rs:
            typ, sym = info & 0xFFFFFFFF, info >> 32
            width = 8 if typ in (R_64, R_PC64) else 4
            _check(off + width <= size, "relocation outside its section")
            where = start[p] + at + off
            pc = base + where
            if typ == R_64:
                struct.pack_into("<Q", m, where, (address(sym) + addend) & (2**64 - 1))
                continue
            if typ == R_PC64:
                struct.pack_into("<q", m, where, address(sym) + addend - pc)
                continue
            if typ in _GOT_TYPES:
                value = base + start["r"] + got_at + 8 * got[sym] + addend - pc
            elif typ == R_PLT32 and sym in stubs:
                value = base + start["x"] + stub_at + _STUB_SIZE * stubs[sym] + addend - pc
            elif typ in (R_PC32, R_PLT32):
                value = address(sym) + addend - pc
            elif typ == R_32S:
                value = address(sym) + addend
            elif typ == R_32:
                value = address(sym) + addend
                _check(0 <= value < 2**32, "R_X86_64_32 out of range")
                struct.pack_into("<I", m, where, value)
                continue
            else:
                raise Unsupported(f"relocation type {typ}")
            _check(-2**31 <= value < 2**31, f"relocation type {typ} out of range")
            struct.pack_into("<i", m, where, value)

    # 4. protections: code R+X, constants and GOT R, data R+W (stays)
    for part, prot in (("x", mmap.PROT_READ | mmap.PROT_EXEC), ("r", mmap.PROT_READ)):
        if pages[part] and _process().mprotect(base + start[part], pages[part], prot) != 0:
            raise Unsupported(f"mprotect failed (errno {ctypes.get_errno()})")

    symbols = {}
    for name_off, info, _, shndx, value, _ in syms:
        if info >> 4 in (1, 2) and shndx in sec_addr:  # GLOBAL or WEAK, defined in a loaded section
            _check(value <= shdrs[shndx][5], "symbol outside its section")
            symbols[_cstr(strtab, name_off)] = sec_addr[shndx] + value
    return LoadedObject(m, anchor, base, symbols)
