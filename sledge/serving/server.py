"""
The server process around the app: its listening socket, bound before the model loads (a busy port is an
error at once, not after the load), and how it stops. SIGINT or SIGTERM stop it gracefully: uvicorn stops
accepting, waits for the requests whose clients still wait (a request whose client left is given up),
the app drains its scheduler, and the process exits 0 (130 after SIGINT). A second SIGINT during that
answers the requests in flight 503 and ends the process at once; so does a stop while the model is still
loading. Either way no traceback, and no C++ abort from a thread still inside torch.
"""

import asyncio
import os
import signal
import socket
import sys

import uvicorn
from fastapi import FastAPI

from sledge.archival import remove_extracted
from sledge.errors import SledgeError


def listening_socket(host: str, port: int) -> socket.socket:
    """A socket bound to `host`:`port` (uvicorn listens on it); a `SledgeError` if that address is taken."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except socket.gaierror as error:
        raise SledgeError(f"--host {host}: not an address of this machine ({error.strerror})") from None
    listener = socket.socket(family, kind, proto)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind(address)
    except OSError as error:
        listener.close()
        raise SledgeError(
            f"--port {port}: cannot listen on {host}:{port} ({error.strerror}); another server may be "
            "running there: choose another --port"
        ) from None
    return listener


def run(app: FastAPI, listener: socket.socket) -> int:
    """Serve `app` on `listener` until a signal stops it; the exit status (0, or 130 after SIGINT)."""
    server = _Server(uvicorn_config(app, log_level="info"))
    app.state.stop_server = lambda: setattr(server, "should_exit", True)  # e.g. when the model fails to load
    # uvicorn stops gracefully on SIGINT or SIGTERM (a second SIGINT: at once), then hands each signal it
    # caught to the handler it found: here, one that only notes it, so that the exit is ours to make.
    received: list[int] = []
    for number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(number, lambda caught, _: received.append(caught))
    server.run(sockets=[listener])
    code = 130 if signal.SIGINT in received else 0
    app.state.loader.join(timeout=1.0)  # a failed load is ending (it stopped the server)
    if app.state.loader.is_alive():
        exit_now(code, "the model was still loading")
    return code


def uvicorn_config(app: FastAPI, **options) -> uvicorn.Config:
    """
    uvicorn's settings for `app`: h11, not httptools, because h11 bounds a request's headers (16 KiB)
    and httptools does not (one endless header would grow the process without end); uvloop (installed
    with sledge) runs the event loop.
    """
    return uvicorn.Config(app, http="h11", loop="uvloop", **options)


class _Server(uvicorn.Server):
    """uvicorn's server, whose forced stop (a second Ctrl-C during a graceful one) answers the requests in
    flight 503 and ends the process at once."""

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        await super().shutdown(sockets)
        if self.force_exit:
            tasks = [task for task in self.server_state.tasks if not task.done()]
            for task in tasks:  # each answers 503 (see `sledge.serving.app`)
                task.cancel()
            if tasks:
                await asyncio.wait(tasks, timeout=5.0)
            exit_now(130, "a second signal")


def exit_now(code: int, why: str) -> None:
    """
    End the process at once with `code`, leaving no extracted archive behind. The model thread, or the
    thread loading the model, may be inside torch, where the interpreter's own exit would abort it
    ("terminate called without an active exception"); so the interpreter is not wound down.
    """
    print(f"sledge serve: stopped at once ({why}); nothing more was answered", file=sys.stderr)
    remove_extracted()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
