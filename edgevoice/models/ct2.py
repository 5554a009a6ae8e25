"""Reader for CTranslate2's model.bin: named tensors, scalar config values and aliases.

Layout (little-endian): u32 format version; the spec name; u32 spec revision; u32 variable
count; per variable its name, u8 rank, u32 dims, u8 dtype, u32 byte count and the raw data;
then u32 alias count and (alias, target) name pairs. Strings are a u16 length that counts a
trailing NUL, then the bytes and the NUL.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np
import numpy.typing as npt

from edgevoice.errors import ModelError

SUPPORTED_VERSIONS = frozenset({5, 6})

# CTranslate2's DataType enumeration, in file order.
_DTYPES: dict[int, np.dtype[np.generic] | None] = {
    0: np.dtype("<f4"),
    1: np.dtype("i1"),
    2: np.dtype("<i2"),
    3: np.dtype("<i4"),
    4: np.dtype("<f2"),
    5: None,  # bfloat16: widened to float32 by hand, numpy has no such dtype
}


@dataclass
class Ct2Model:
    """The contents of one model.bin."""

    spec: str
    revision: int
    variables: dict[str, npt.NDArray[np.generic]] = field(default_factory=dict)
    aliases: dict[str, str] = field(default_factory=dict)

    def scalar(self, name: str) -> int:
        """A rank-0 variable (a config value such as num_heads) as an int."""
        value = self.variables.get(name)
        if value is None or value.ndim != 0:
            raise ModelError(f"CTranslate2 model has no scalar {name!r}")
        return int(value)

    def tensor(self, name: str) -> npt.NDArray[np.generic]:
        target = self.aliases.get(name, name)
        try:
            return self.variables[target]
        except KeyError:
            raise ModelError(f"CTranslate2 model has no variable {name!r}") from None


class _Reader:
    def __init__(self, stream: BinaryIO, path: Path) -> None:
        self._stream = stream
        self._path = path

    def take(self, size: int) -> bytes:
        data = self._stream.read(size)
        if len(data) != size:
            raise ModelError(f"{self._path}: truncated CTranslate2 file (wanted {size} more bytes)")
        return data

    def u8(self) -> int:
        return self.take(1)[0]

    def u16(self) -> int:
        value: int = struct.unpack("<H", self.take(2))[0]
        return value

    def u32(self) -> int:
        value: int = struct.unpack("<I", self.take(4))[0]
        return value

    def string(self) -> str:
        raw = self.take(self.u16())
        if not raw.endswith(b"\0"):
            raise ModelError(f"{self._path}: malformed string in CTranslate2 file")
        try:
            return raw[:-1].decode("utf-8")
        except UnicodeDecodeError:
            raise ModelError(f"{self._path}: malformed string in CTranslate2 file") from None


def _decode(raw: bytes, dtype_code: int, dims: list[int], path: Path, name: str) -> npt.NDArray[np.generic]:
    if dtype_code not in _DTYPES:
        raise ModelError(f"{path}: variable {name!r} has unknown dtype code {dtype_code}")
    dtype = _DTYPES[dtype_code]
    if dtype is None:
        halves = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16
        array: npt.NDArray[np.generic] = halves.view(np.float32)
    else:
        array = np.frombuffer(raw, dtype=dtype)
    expected = int(np.prod(dims)) if dims else 1
    if array.size != expected:
        raise ModelError(f"{path}: variable {name!r} holds {array.size} values, its shape {dims} needs {expected}")
    return array.reshape(dims)


def read_ct2(path: Path) -> Ct2Model:
    """Read a CTranslate2 model.bin; raise ModelError naming what is wrong with it."""
    try:
        stream = path.open("rb")
    except OSError as err:
        raise ModelError(f"cannot open CTranslate2 model {path}: {err.strerror}") from None
    with stream:
        reader = _Reader(stream, path)
        version = reader.u32()
        if version not in SUPPORTED_VERSIONS:
            raise ModelError(f"{path}: not a CTranslate2 model.bin this reader knows (format version {version})")
        model = Ct2Model(spec=reader.string(), revision=reader.u32())
        for _ in range(reader.u32()):
            name = reader.string()
            dims = [reader.u32() for _ in range(reader.u8())]
            dtype_code = reader.u8()
            raw = reader.take(reader.u32())
            model.variables[name] = _decode(raw, dtype_code, dims, path, name)
        for _ in range(reader.u32()):
            alias = reader.string()
            model.aliases[alias] = reader.string()
        if stream.read(1):
            raise ModelError(f"{path}: trailing bytes after the CTranslate2 alias table")
    return model
