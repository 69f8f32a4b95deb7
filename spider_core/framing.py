"""The framing interface: how protocol messages become bytes on the executor's pipes.

A framing turns *primitives* (the arrays :func:`spider_core.converter.message_to_primitive`
makes of the protocol messages in :mod:`spider_core.models`) into frames and back; it never sees model classes. Plugins provide one through the
``spider_framing`` hook, called once per pool and once per executor process; each framing is
used from one thread only, so it may keep state (buffers, a reusable packer).
"""

from __future__ import annotations

from typing import Any, Protocol

#: The smallest maximum frame size a framing must accept (task inputs and outputs of
#: several MiB must fit).
DEFAULT_MAX_FRAME_SIZE = 64 * 1024 * 1024


class FramingError(Exception):
    """A frame that is oversized, truncated or undecodable."""


class FrameDecoder(Protocol):
    def feed(self, data: bytes) -> None:
        """Append bytes read from the pipe."""

    def next_message(self) -> Any | None:
        """The next complete message, or None until more bytes arrive.

        :raises FramingError: the buffered bytes can never form a valid message.
        """

    def pending(self) -> int:
        """Bytes buffered that do not yet form a complete message."""

    def wanted(self) -> int:
        """How many more bytes the current frame needs (a hint for the read size)."""


class Framing(Protocol):
    name: str
    max_frame_size: int

    def encode(self, message: Any) -> bytes:
        """One complete frame holding ``message``.

        :raises FramingError: the message cannot be encoded or is over the size limit.
        """

    def decoder(self) -> FrameDecoder:
        """A fresh incremental decoder for one byte stream."""
