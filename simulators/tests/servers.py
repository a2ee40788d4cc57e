"""Serve a simulator over real HTTP for a test: in a thread, or in a separate process.

The separate process stands in for a second gunicorn worker: its own interpreter, its own
connections, the same SQLite file.
"""

import multiprocessing
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from flask import Flask
from werkzeug.serving import make_server

from simulators import payments, warehouse

APPS = {"payments": payments.create_app, "warehouse": warehouse.create_app}


@contextmanager
def serve(app: Flask) -> Iterator[str]:
    """The base URL of app served on an ephemeral port until the block ends."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    # A short poll interval makes shutdown() quick: it waits for the loop to look up.
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join()
        server.server_close()


def _serve_in_child(kind: str, db_path: str, ports: multiprocessing.Queue) -> None:
    server = make_server("127.0.0.1", 0, APPS[kind](db_path), threaded=True)
    ports.put(server.server_port)  # the socket listens already: requests may start now
    server.serve_forever()


@contextmanager
def serve_in_process(kind: str, db_path: str) -> Iterator[str]:
    """The base URL of a simulator ("payments" or "warehouse") run by a child process."""
    context = multiprocessing.get_context("spawn")
    ports = context.Queue()
    process = context.Process(target=_serve_in_child, args=(kind, db_path, ports), daemon=True)
    process.start()
    try:
        yield f"http://127.0.0.1:{ports.get(timeout=60)}"
    finally:
        process.terminate()
        process.join(timeout=10)
