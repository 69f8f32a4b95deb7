"""spider_rustexec: drive spider's own Rust executor, ``spider-task-executor``, in its bincode
protocol (:class:`RustProtocol`). It is selected with ``PoolConfig(protocol="spider-rust",
executor_command=("/path/to/spider-task-executor",))`` (or ``spider run --executor PATH``) and
inactive otherwise.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from spider_core.plugin import (
    FramingError,
    LengthDelimitedDecoder,
    PluginError,
    ProtocolError,
    execute_fields,
    hookimpl,
)

if TYPE_CHECKING:  # the executor loads this plugin too: it needs no models
    from spider_core.plugin import PoolConfig

from spider_rustexec.bincode import (
    MAX_FRAME_SIZE,
    SHUTDOWN_BODY,
    BincodeError,
    decode_result,
    encode_execute,
    frame,
)

__all__ = ["PROTOCOL", "RustDecoder", "RustProtocol"]

#: The name ``PoolConfig.protocol`` selects this plugin by.
PROTOCOL = "spider-rust"

_STDOUT_HINT = "the executor's stdout is its protocol channel: did a task write to stdout?"

#: ``PoolConfig.executor_log_level`` as a ``RUST_LOG`` filter.
_RUST_LOG_LEVELS = {"debug": "debug", "info": "info", "warning": "warn", "error": "error"}


class RustDecoder(LengthDelimitedDecoder):
    """Reads ``Response`` frames: yields ``(ok, payload, elapsed_us)`` tuples."""

    oversize_hint = f"; {_STDOUT_HINT}"

    def next_message(self) -> tuple[bool, bytes, int] | None:
        body = self.next_body()
        if body is None:
            return None
        if self.pending():  # one request, one reply: anything after it is not the executor's
            raise FramingError(f"{self.pending()} more bytes came with a reply; {_STDOUT_HINT}")
        try:
            return decode_result(body)
        except BincodeError as e:
            raise FramingError(f"not a spider executor Response: {e}; {_STDOUT_HINT}") from None


class RustProtocol:
    """spider's ``spider-task-executor`` protocol. It swaps the whole conversation, not just
    the framing: spider's executor reads bincode ``Request`` frames on its stdin and writes one
    bincode ``Response`` frame per request on its stdout (:mod:`spider_rustexec.bincode`). It
    sends no greeting and no sequence numbers (a slot has one request in flight, so a reply
    answers the request last sent), stops on ``Request::Shutdown`` or end of input, and logs
    ``tracing`` JSON lines on its stderr, at the level ``RUST_LOG`` sets. Its stdout *is* the
    protocol channel: bytes a task writes there make the next reply undecodable, which the pool
    turns into ``ExecutorCrash``."""

    name = PROTOCOL
    handshake = False
    pipelined = False  # a reply does not say which request it answers

    def __init__(self, max_frame_size: int = MAX_FRAME_SIZE, rust_log: str = "info") -> None:
        # The executor's codec refuses anything over 8 MiB whatever the pool allows.
        self.max_frame_size = min(max_frame_size, MAX_FRAME_SIZE)
        # Without RUST_LOG, spider's binary logs errors only.
        self.environment = {"RUST_LOG": rust_log}
        self._in_flight = 0  # the seq of the last request encoded: the one a reply answers

    def encode_request(self, message: list[Any]) -> bytes:
        fields = execute_fields(message)
        if fields is None:
            raise FramingError(f"not an Execute request: {message!r:.60}")
        seq, package, task, raw_ctx, raw_inputs, _soft_timeout_us = fields  # no soft timeouts in spider's executor
        try:
            data = frame(encode_execute(package, task, raw_ctx, raw_inputs), self.max_frame_size)
        except BincodeError as e:
            raise FramingError(f"{e} (spider-task-executor accepts at most {self.max_frame_size} bytes)") from None
        self._in_flight = seq
        return data

    def encode_shutdown(self) -> bytes:
        return frame(SHUTDOWN_BODY)

    def decoder(self) -> RustDecoder:
        return RustDecoder(self.max_frame_size)

    def check_ready(self, message: Any) -> None:
        raise ProtocolError("spider's executor sends no greeting")  # never called: handshake is False

    def result_fields(self, message: Any) -> tuple[int, bool, bytes, int] | None:
        if type(message) is tuple and len(message) == 3:
            ok, payload, elapsed_us = message
            return self._in_flight, ok, payload, elapsed_us
        return None

    def decode_result(self, message: Any, seq: int) -> tuple[int, bool, bytes, int]:
        fields = self.result_fields(message)
        if fields is None:
            raise ProtocolError(f"the executor sent something that is not a Response: {message!r:.60}")
        if fields[0] != seq:
            raise ProtocolError(f"expected the result of request {seq}, got the result of request {fields[0]}")
        return fields


@hookimpl(trylast=True)
def spider_protocol(name: str, config: PoolConfig) -> RustProtocol | None:
    if name != PROTOCOL:
        return None
    if not config.executor_command:
        raise PluginError(
            f"protocol {PROTOCOL!r} drives spider's Rust executor: set PoolConfig.executor_command to the path "
            "of spider-task-executor (spider run --executor PATH)"
        )
    # RUST_LOG: the parent's, as spider's own pool forwards it; else PoolConfig.executor_log_level
    rust_log = os.environ.get("RUST_LOG") or _RUST_LOG_LEVELS.get(config.executor_log_level, "info")
    return RustProtocol(config.max_frame_size, rust_log)


@hookimpl
def spider_protocol_names() -> list[str]:
    return [PROTOCOL]
