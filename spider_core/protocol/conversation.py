"""The executor protocol interface: everything the pool assumes about the conversation with
one kind of executor (:class:`ExecutorProtocol`, provided by the ``spider_protocol`` hook), and
:class:`CoreProtocol`, spider-core's own: the messages of :mod:`spider_core.protocol.messages`
in a :class:`~spider_core.protocol.framing.Framing`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from spider_core.protocol.framing import Frame, FrameDecoder, Framing
from spider_core.protocol.messages import Shutdown, decode_ready, decode_result, message_to_primitive, result_fields

#: The name of spider-core's own protocol, :class:`CoreProtocol` (``PoolConfig.protocol``).
CORE_PROTOCOL = "spider-core"


class ExecutorProtocol(Protocol):
    """Everything the pool assumes about the conversation with one kind of executor.

    The pool holds one protocol per slot (from the ``spider_protocol`` hook) and uses it from
    the event loop's thread only, so it may keep state. Each slot has at most one request in
    flight, so a protocol without sequence numbers matches a reply to the last request it
    encoded. What the pool still owns: the pipes (the executor's stdin and stdout; its stderr
    is its log), the hard timeout, killing, reaping and respawning.

    The pool calls, per executor: :meth:`decoder` when it spawns one; :meth:`check_ready` on
    the first message if :attr:`handshake` is true (within ``PoolConfig.spawn_timeout``); per
    call :meth:`encode_request`, then :meth:`result_fields` on the reply (the fast path) and,
    if that gives no plain answer, :meth:`decode_result`; and :meth:`encode_shutdown` to ask
    the executor to exit. A reply that cannot be decoded (:class:`FramingError` from the
    decoder, :class:`ProtocolError` from :meth:`decode_result`) means ``ExecutorCrash``.
    """

    #: The name ``PoolConfig.protocol`` selects it by.
    name: str
    #: Largest frame, in bytes, either side may send.
    max_frame_size: int
    #: Whether a new executor sends a first message (checked by :meth:`check_ready`) before it
    #: takes requests. Without one, an executor takes requests as soon as it is spawned.
    handshake: bool
    #: Whether several requests may be sent before their replies come (each reply names its
    #: request): ``map`` then sends an executor a batch in one write, and ``execute`` sends
    #: the requests of queued callers ahead. Without it (or if the attribute is missing), the
    #: pool sends one request at a time.
    pipelined: bool
    #: Environment variables every executor gets on top of what the pool sets (the
    #: ``spider_launcher`` hook sees them in its ``env``): settings in the executor's terms.
    environment: Mapping[str, str]

    def encode_request(self, message: list[Any]) -> Frame:
        """The frame that asks the executor to run a task: its bytes, or the buffers that form
        it (see :data:`Frame`).

        :param message: The request, as :func:`execute_primitive` builds it:
            ``["Execute", seq, package, task, raw_ctx, raw_inputs, soft_timeout_us]``
            (:func:`execute_fields` unpacks it). ``seq`` numbers the request; a protocol that
            cannot carry it remembers it for :meth:`result_fields`.
        :raises FramingError: the request cannot be encoded or is over the size limit (the
            caller gets ``EncodeTaskInputs``).
        """

    def encode_shutdown(self) -> Frame:
        """The frame that asks the executor to exit (sent when the pool closes or recycles it)."""

    def decoder(self) -> FrameDecoder:
        """A fresh incremental decoder for one executor's output: it yields the replies
        :meth:`result_fields` and :meth:`decode_result` read (and the greeting, with a
        handshake), and raises :class:`FramingError` for bytes that can never be one."""

    def check_ready(self, message: Any) -> None:
        """Accept the executor's first message (only called if :attr:`handshake`).

        :raises ProtocolError: it is not the expected greeting (the spawn fails).
        """

    def result_fields(self, message: Any) -> tuple[int, bool, bytes, int] | None:
        """``(seq, ok, payload, elapsed_us)`` of a well-formed result, or None to leave the
        verdict to :meth:`decode_result`. The hot path: keep it cheap. The pool also passes its
        own markers (a timeout, a lost channel) here: None for anything that is not a reply.

        ``seq`` is the number of the request the reply answers (a protocol without sequence
        numbers gives the one it last encoded); ``ok``: ``payload`` is the wire-format
        outputs, else a msgpack ``ExecutorError``; ``elapsed_us`` as the executor measured it.
        """

    def decode_result(self, message: Any, seq: int) -> tuple[int, bool, bytes, int]:
        """The fields of the result that answers request ``seq``, as :meth:`result_fields`.

        :raises ProtocolError: not a result, or the answer to another request (the executor
            is then treated as crashed).
        """

    # A protocol may also have ``close()``: the pool calls it once, when the slot's executors
    # are stopped for good (the pool closes), to free what the protocol holds (``spider_shm``:
    # its shared-memory regions).


class CoreProtocol:
    """spider-core's own protocol: :class:`Execute`, :class:`Result`, :class:`Ready` and
    :class:`Shutdown` as arrays, carried by a :class:`Framing` (the ``spider_framing`` hook's).
    The executor greets with ``Ready``; every result echoes its request's ``seq``."""

    name = CORE_PROTOCOL
    handshake = True
    pipelined = True
    environment: Mapping[str, str] = {}  # its settings are the pool's own (executor_environment)

    def __init__(self, framing: Framing) -> None:
        self.framing = framing
        self.max_frame_size = framing.max_frame_size
        # Bound once: the pool's per-call work is the framing's encode and result_fields,
        # exactly as without a protocol object in between.
        self.encode_request = framing.encode
        self.decoder = framing.decoder
        self._shutdown = framing.encode(message_to_primitive(Shutdown()))

    result_fields = staticmethod(result_fields)

    def encode_shutdown(self) -> Frame:
        return self._shutdown

    def check_ready(self, message: Any) -> None:
        decode_ready(message)

    def decode_result(self, message: Any, seq: int) -> tuple[int, bool, bytes, int]:
        return decode_result(message, seq)
