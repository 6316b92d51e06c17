"""Reading a numpy archive (.npz) header first, so that its size is known before its data.

``numpy.load`` decompresses a member before anyone can look at its size: a small file can
declare arrays of gigabytes (a zip bomb), and a header declaring a (10⁶, 10⁶) array makes
it allocate terabytes. An :class:`Archive` instead reads every member's ``.npy`` header
(dtype and shape: :class:`Declared`) first, so that its caller can refuse what it does not
allow, and then reads the data of a member only on request and only as many bytes as its
header declares. Members the caller does not name are never read, and a zip directory
larger than :data:`MAX_DIRECTORY_BYTES` is refused before zipfile parses it (it holds an
entry per member, and a file of entries would fill memory). Nothing is unpickled: a
member of Python objects is refused from its header.

Every problem is an :class:`ArchiveError` whose message says what is wrong but not which
file; the caller names the file.
"""
from __future__ import annotations

import struct
import zipfile
import zlib
from dataclasses import dataclass
from typing import BinaryIO, Iterable

import numpy as np
from numpy.lib import format as npy

# About ten thousand members; gradviz's capture.npz has some fifty.
MAX_DIRECTORY_BYTES = 2**20
_CHUNK = 2**24               # data is read into its array this many bytes at a time
_END = b"PK\x05\x06"         # the zip's end-of-directory record
_ZIP64_LOCATOR = b"PK\x06\x07"
# What zipfile, zlib and the .npy header parser raise for damaged bytes (RuntimeError:
# an "encrypted" flag; NotImplementedError: an unknown compression method; the others:
# a header whose text is not a valid dictionary of dtype and shape).
_DAMAGED = (OSError, EOFError, RuntimeError, NotImplementedError, ValueError, TypeError,
            KeyError, SyntaxError, RecursionError, struct.error, zipfile.BadZipFile, zlib.error)


class ArchiveError(Exception):
    """The archive is damaged, or holds what this reader refuses; the message says which."""


@dataclass(frozen=True)
class Declared:
    """What a member's ``.npy`` header declares."""
    shape: tuple[int, ...]
    dtype: np.dtype
    fortran_order: bool

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def nbytes(self) -> int:
        n = self.dtype.itemsize
        for size in self.shape:
            n *= size
        return n


class Archive:
    """An open .npz on ``handle`` (seekable, ``size`` bytes long); close it, or use it in a
    ``with`` block. :meth:`names` lists the members, :meth:`headers` reads their headers,
    :meth:`read` reads one."""

    def __init__(self, handle: BinaryIO, size: int):
        try:
            _check_directory(handle, size)
            self._zip = zipfile.ZipFile(handle)
        except _DAMAGED:
            raise ArchiveError("damaged or not a numpy archive") from None
        self._members: dict[str, tuple[zipfile.ZipInfo, Declared]] = {}

    def __enter__(self) -> "Archive":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._zip.close()

    def names(self) -> list[str]:
        """The names of all members (without ".npy"); nothing is read."""
        return [info.filename.removesuffix(".npy") for info in self._zip.infolist()]

    def headers(self, names: Iterable[str]) -> dict[str, Declared]:
        """What the members called ``names`` (with or without ".npy") declare; members of
        other names are left unread."""
        wanted = set(names)
        for info in self._zip.infolist():
            name = info.filename.removesuffix(".npy")
            if name in wanted:
                self._members[name] = (info, self._header(name, info))
        return {name: declared for name, (_, declared) in self._members.items()}

    def _header(self, name: str, info: zipfile.ZipInfo) -> Declared:
        try:
            with self._zip.open(info) as stream:
                return _parse_header(name, stream)
        except _DAMAGED as exc:
            raise ArchiveError(f"damaged or truncated ({str(exc) or type(exc).__name__})") \
                from None

    def read(self, name: str) -> np.ndarray:
        """The array of a member listed by :meth:`headers`: as many bytes as its header
        declares, never more."""
        info, declared = self._members[name]
        try:
            with self._zip.open(info) as stream:
                _parse_header(name, stream)
                buffer = np.empty(declared.nbytes, np.uint8)
                view, got = memoryview(buffer), 0
                while got < declared.nbytes:
                    n = stream.readinto(view[got:got + _CHUNK])
                    if not n:
                        raise ArchiveError(f"damaged or truncated (member '{name}' ends "
                                           f"{declared.nbytes - got} bytes early)")
                    got += n
        except _DAMAGED as exc:
            raise ArchiveError(f"damaged or truncated ({str(exc) or type(exc).__name__})") \
                from None
        if declared.dtype.itemsize == 0:
            return np.empty(declared.shape, declared.dtype)
        flat = buffer.view(declared.dtype)
        if declared.fortran_order:
            return flat.reshape(declared.shape[::-1]).transpose()
        return flat.reshape(declared.shape)


def _check_directory(handle: BinaryIO, size: int) -> None:
    """Refuse a zip whose directory is larger than MAX_DIRECTORY_BYTES, or a ZIP64 one
    (which gradviz, whose files stay under 2 GiB, never writes), from its end record."""
    tail = min(size, 22 + 65535)        # the record, then a comment of at most 64 KiB
    handle.seek(size - tail)
    data = handle.read(tail)
    at = data.rfind(_END)
    if at < 0 or len(data) - at < 22:
        raise ArchiveError("damaged or not a numpy archive")
    if data[max(0, at - 20):at - 16] == _ZIP64_LOCATOR:
        raise ArchiveError("a ZIP64 archive, which gradviz never writes")
    (directory,) = struct.unpack_from("<L", data, at + 12)
    if directory > MAX_DIRECTORY_BYTES:
        raise ArchiveError(f"its zip directory is {directory} bytes, more than gradviz reads "
                           f"({MAX_DIRECTORY_BYTES} bytes)")
    handle.seek(0)


def _parse_header(name: str, stream: BinaryIO) -> Declared:
    try:
        version = npy.read_magic(stream)
    except ValueError:
        raise ArchiveError(f"member '{name}' is not a numpy array") from None
    if version == (1, 0):
        shape, fortran_order, dtype = npy.read_array_header_1_0(stream)
    elif version == (2, 0):
        shape, fortran_order, dtype = npy.read_array_header_2_0(stream)
    else:
        raise ArchiveError(f"member '{name}' is a .npy file of version {version[0]}."
                           f"{version[1]}, which gradviz never writes")
    if dtype.hasobject:
        raise ArchiveError("holds pickled (object) data, which gradviz never writes and will "
                           "not load")
    if any(size < 0 for size in shape):
        raise ArchiveError(f"member '{name}' declares the shape {shape}")
    return Declared(tuple(shape), dtype, bool(fortran_order))


__all__ = ["Archive", "ArchiveError", "Declared", "MAX_DIRECTORY_BYTES"]
