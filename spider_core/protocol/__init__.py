"""The contract between the pool and its executor processes, in one place.

Everything both sides must agree on lives in this package, and nowhere else, one module per
part of the contract, every public name re-exported here:

- **the messages and their codec** (:mod:`~spider_core.protocol.messages`): :class:`Execute`
  and :class:`Shutdown` (pool to executor), :class:`Ready` and :class:`Result` (executor to
  pool), each as a msgpack-ready array, its class name, then its fields in declaration order
  (as rmp-serde writes a struct). :func:`decode_request`, :func:`decode_result` and
  :func:`decode_ready` give the verdict on what arrives: each tries the hand-written fast path
  first and falls back to the strict, field-by-field path, which names what is wrong;
- **the framing interface** (:mod:`~spider_core.protocol.framing`) that turns those arrays into
  bytes on the pipes (:class:`Framing`, :class:`FrameDecoder`, :class:`FramingError`), provided
  by the ``spider_framing`` hook, and the pipe I/O that moves frames;
- **the executor protocol interface** (:mod:`~spider_core.protocol.conversation`,
  :class:`ExecutorProtocol`): everything the pool assumes about the conversation with an
  executor (encoding, framing, handshake, matching replies to requests, how to ask it to stop),
  provided by the ``spider_protocol`` hook. :class:`CoreProtocol` is spider-core's own (the
  messages above in a :class:`Framing`); another protocol lets the pool drive a different
  executor, such as spider's Rust ``spider-task-executor``;
- **the executor process contract** (:mod:`~spider_core.protocol.process`): the environment
  the pool sets (``ENV_*``), the exit statuses the executor uses (``EXIT_*``) and
  :func:`die_with_parent`.

The pool (:mod:`spider_core.pool`) and the executor (:mod:`spider_core.executor`) both import
this package; neither imports the other. It imports nothing else of spider-core.
"""

from spider_core.protocol.conversation import (
    CORE_PROTOCOL,
    CoreProtocol,
    ExecutorProtocol,
)
from spider_core.protocol.framing import (
    DEFAULT_MAX_FRAME_SIZE,
    READ_SIZE,
    Frame,
    FrameDecoder,
    Framing,
    FramingError,
    LengthDelimitedDecoder,
    frame_size,
    frame_views,
    join_frames,
    read_into,
    widen_pipe,
    write_all,
    write_some,
)
from spider_core.protocol.messages import (
    Execute,
    Message,
    ProtocolError,
    Ready,
    Request,
    Response,
    Result,
    Shutdown,
    decode_ready,
    decode_request,
    decode_result,
    execute_fields,
    execute_primitive,
    message_from_primitive,
    message_to_primitive,
    result_fields,
    result_primitive,
)
from spider_core.protocol.process import (
    ENV_FORK_SERVER,
    ENV_INSTALLED_PACKAGES,
    ENV_LOG_LEVEL,
    ENV_MAX_FRAME_SIZE,
    ENV_PACKAGE_DIR,
    ENV_PARENT_PID,
    ENV_SPIN_US,
    EXIT_OK,
    EXIT_PROTOCOL_ERROR,
    EXIT_SETUP_ERROR,
    die_with_parent,
    executor_environment,
)

__all__ = [
    "decode_ready",
    "decode_request",
    "decode_result",
    "Execute",
    "execute_fields",
    "execute_primitive",
    "Message",
    "message_from_primitive",
    "message_to_primitive",
    "ProtocolError",
    "Ready",
    "Request",
    "Response",
    "Result",
    "result_fields",
    "result_primitive",
    "Shutdown",
    "DEFAULT_MAX_FRAME_SIZE",
    "Frame",
    "frame_size",
    "frame_views",
    "FrameDecoder",
    "Framing",
    "FramingError",
    "join_frames",
    "LengthDelimitedDecoder",
    "read_into",
    "READ_SIZE",
    "widen_pipe",
    "write_all",
    "write_some",
    "CORE_PROTOCOL",
    "CoreProtocol",
    "ExecutorProtocol",
    "die_with_parent",
    "ENV_FORK_SERVER",
    "ENV_INSTALLED_PACKAGES",
    "ENV_LOG_LEVEL",
    "ENV_MAX_FRAME_SIZE",
    "ENV_PACKAGE_DIR",
    "ENV_PARENT_PID",
    "ENV_SPIN_US",
    "executor_environment",
    "EXIT_OK",
    "EXIT_PROTOCOL_ERROR",
    "EXIT_SETUP_ERROR",
]
