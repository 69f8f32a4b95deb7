"""The executor's entry point and its serve loop: ``python -m spider_core.executor``.

It reads framed requests from its protocol channel, runs one task at a time and answers each
with a framed result. At start it moves the protocol off fds 0 and 1 onto private descriptors
and points fd 1 at stderr, so whatever a task prints only adds log lines. It dies with its
parent and exits 0 on ``Shutdown`` or end of input; an undecodable request is logged and makes
it exit with :data:`~spider_core.protocol.EXIT_PROTOCOL_ERROR`, which the pool treats as a
crash. What it reads, writes, expects in its environment and exits with is defined in
:mod:`spider_core.protocol`.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from spider_core.executor import logs
from spider_core.executor.channel import FORKED, Guard, Input, Output, take_protocol_fds
from spider_core.executor.runner import Executor
from spider_core.plugin.manager import PluginError, PluginSettings, SpiderPluginManager, get_plugin_manager
from spider_core.protocol import (
    DEFAULT_MAX_FRAME_SIZE,
    ENV_FORK_SERVER,
    ENV_INSTALLED_PACKAGES,
    ENV_MAX_FRAME_SIZE,
    ENV_PACKAGE_DIR,
    ENV_SPIN_US,
    EXIT_OK,
    EXIT_PROTOCOL_ERROR,
    EXIT_SETUP_ERROR,
    Frame,
    Framing,
    FramingError,
    ProtocolError,
    Ready,
    Shutdown,
    decode_request,
    die_with_parent,
    message_to_primitive,
    result_primitive,
)
from spider_core.tdl.errors import TaskError, TdlError, TdlErrorKind
from spider_core.tdl.version import HOST_VERSION


def _encode_result(framing: Framing, seq: int, ok: bool, payload: bytes | memoryview, elapsed_us: int) -> Frame:
    try:
        return framing.encode(result_primitive(seq, ok, payload, elapsed_us))
    except FramingError as e:
        error = TaskError(TdlError(TdlErrorKind.SerializationError, f"cannot send the task's outputs: {e}"))
        logs.log("result too large", logs.ERROR, seq=seq, error=str(e))
        return framing.encode(result_primitive(seq, False, error.encode(), elapsed_us))


def serve(channel: Input, output: Output, executor: Executor, framing: Framing, guard: Guard) -> int:
    """Answer requests until ``Shutdown`` or end of input; return the exit status."""
    decoder = framing.decoder()
    ready = Ready(pid=os.getpid(), abi_version=str(HOST_VERSION))
    output.write(framing.encode(message_to_primitive(ready)))
    debug = logs.debugging()
    while True:
        try:
            message = decoder.next_message()
        except FramingError as e:
            logs.log("bad request", logs.ERROR, error=str(e))
            return EXIT_PROTOCOL_ERROR
        if message is None:
            if not channel.read_into(decoder):
                if decoder.pending():
                    logs.log("truncated request", logs.ERROR, pending_bytes=decoder.pending())
                    return EXIT_PROTOCOL_ERROR
                logs.log("exit", reason="end of input")
                return EXIT_OK
            continue
        try:
            request = decode_request(message)
        except ProtocolError as e:
            logs.log("bad request", logs.ERROR, error=str(e))
            return EXIT_PROTOCOL_ERROR
        if request.__class__ is Shutdown:
            logs.log("exit", reason="shutdown")
            return EXIT_OK
        # not Shutdown: the fields of an Execute (mypy does not narrow on __class__)
        seq, package, task, raw_ctx, raw_inputs, soft_timeout_us = request  # type: ignore[misc]
        ok, payload, elapsed_us = executor.execute(package, task, raw_ctx, raw_inputs, soft_timeout_us)
        problem = guard.problem()
        if problem is not None:
            if problem == FORKED:
                os._exit(EXIT_OK)  # a forked copy of the executor returned from the task: vanish
            logs.log("protocol channel lost", logs.ERROR, error=problem, package=package, task=task)
            return EXIT_PROTOCOL_ERROR
        output.write(_encode_result(framing, seq, ok, payload, elapsed_us))
        if debug:
            # A line per task costs the pool a read and a write per call, hence debug level.
            # Logged after the reply, so the pool is woken by the result, not by this line.
            logs.log("task done", logs.DEBUG, seq=seq, package=package, task=task, ok=ok, elapsed_us=elapsed_us)


def _setup() -> tuple[SpiderPluginManager, Framing] | int:
    """The plugin manager and framing this executor (or fork server) works with; the exit
    status if they cannot be set up."""
    try:
        settings = PluginSettings.from_env()
        if settings.trace or settings.plugins is None or not all(r.default for r in settings.plugins):
            logs.setup_logging()  # hook traces, and plugins other than the defaults, may log from the start
        pm = get_plugin_manager(settings)
        logs.setup_logging_if_imported()
        max_frame_size = int(os.environ.get(ENV_MAX_FRAME_SIZE) or DEFAULT_MAX_FRAME_SIZE)
        framing = pm.call_required("spider_framing", max_frame_size=max_frame_size, environment=dict(os.environ))
    except (PluginError, ValueError) as e:  # ValueError: a malformed setting
        logs.log("exit", logs.ERROR, reason="setup failed", error=str(e))
        return EXIT_SETUP_ERROR
    return pm, framing


def main() -> int:
    control_fd = os.environ.pop(ENV_FORK_SERVER, None)
    if control_fd is not None:  # a fork server: set up once, then each fork is an executor
        die_with_parent()
        logs.read_log_level()
        setup = _setup()
        if isinstance(setup, int):
            return setup
        from spider_core.executor.forkserver import serve_forks

        serve_forks(int(control_fd))  # returns in each forked executor
    in_fd, out_fd = take_protocol_fds()
    die_with_parent()
    logs.read_log_level()
    logs.log("start", pid=os.getpid(), abi_version=str(HOST_VERSION), python=sys.version.split()[0])
    if control_fd is None:
        setup = _setup()
    if isinstance(setup, int):
        return setup
    pm, framing = setup
    package_dir = os.environ.get(ENV_PACKAGE_DIR)
    installed = os.environ.get(ENV_INSTALLED_PACKAGES, "1") != "0"
    executor = Executor(pm, Path(package_dir) if package_dir else None, installed)
    try:
        spin_us = int(os.environ.get(ENV_SPIN_US) or 0)
        return serve(Input(in_fd, spin_us), Output(out_fd), executor, framing, Guard(in_fd, out_fd))
    except BrokenPipeError:
        logs.log("exit", reason="protocol channel closed")
        return EXIT_OK
