"""``SerializedTaskOutputs``: how spider stores a task's outputs (docs/abi.md §4.1).

The raw form is ``[option: u8][payload]``: option 0 holds the wire frame as is, option 1 the
frame compressed with zstd (level 0, one whole stream). Option 1 needs the ``zstd`` extra
(``pip install 'spider-core-pool[zstd]'``).
"""

from __future__ import annotations

import enum
from typing import Any

from attrs import frozen

from spider_core.tdl.errors import EncodingError
from spider_core.tdl.wire import decode_values


class OutputsOption(enum.IntEnum):
    Wire = 0
    ZstdWire = 1


def _zstandard() -> Any:
    try:
        import zstandard
    except ImportError:
        raise EncodingError(
            "zstd-compressed task outputs need the zstandard module; "
            "install it with: pip install 'spider-core-pool[zstd]'"
        ) from None
    return zstandard


@frozen
class SerializedTaskOutputs:
    """A task's outputs in spider's storage form; ``raw`` is what a commit context carries."""

    raw: bytes

    @classmethod
    def from_frame(cls, frame: bytes, *, compress: bool = False) -> SerializedTaskOutputs:
        """Store a wire frame, compressed with zstd when ``compress`` is true."""
        if compress:
            payload = _zstandard().ZstdCompressor(level=0).compress(frame)
            return cls(bytes([OutputsOption.ZstdWire]) + payload)
        return cls(bytes([OutputsOption.Wire]) + frame)

    @property
    def option(self) -> OutputsOption:
        if not self.raw:
            raise EncodingError("serialized task outputs are empty: expected an option byte")
        try:
            return OutputsOption(self.raw[0])
        except ValueError:
            raise EncodingError(
                f"unknown serialized task outputs option {self.raw[0]}; expected 0 (wire) or 1 (zstd)"
            ) from None

    def frame(self) -> bytes:
        """The wire frame, decompressed if needed."""
        if self.option is OutputsOption.Wire:
            return self.raw[1:]
        try:
            frame: bytes = _zstandard().ZstdDecompressor().decompressobj().decompress(self.raw[1:])
            return frame
        except EncodingError:
            raise
        except Exception as e:
            raise EncodingError(f"zstd-compressed task outputs are corrupt: {e}") from None

    def values(self) -> list[Any]:
        return decode_values(self.frame())
