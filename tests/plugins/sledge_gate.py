"""
A test plugin for `allennlp serve --include-package sledge_gate` (with tests/plugins on PYTHONPATH): it
tells a test which requests the server accepted, and holds the model while the test says so. Two file
descriptors inherited from the test, named by environment variables:

- `SLEDGE_GATE_EVENTS` (written): one `+` for every request the scheduler accepted (`Scheduler.submit`
  returned), and `c` once the gate is closed.
- `SLEDGE_GATE_CONTROL` (read): `c` closes the gate, `o` opens it. While it is closed, every model pass
  (the encoder's `embed`, where every batch starts) waits.
"""

import os
import threading

from sledge.nn.encoder import LayerwiseEncoder
from sledge.serving.scheduler import Scheduler

EVENTS = int(os.environ["SLEDGE_GATE_EVENTS"])
CONTROL = int(os.environ["SLEDGE_GATE_CONTROL"])
_open = threading.Event()
_open.set()
_submit, _embed = Scheduler.submit, LayerwiseEncoder.embed


def _control() -> None:
    while byte := os.read(CONTROL, 1):
        if byte == b"c":
            _open.clear()
            os.write(EVENTS, b"c")
        else:
            _open.set()


def submit(self, job):
    future = _submit(self, job)
    os.write(EVENTS, b"+")
    return future


def embed(self, *args, **kwargs):
    _open.wait()
    return _embed(self, *args, **kwargs)


Scheduler.submit = submit
LayerwiseEncoder.embed = embed
threading.Thread(target=_control, name="sledge-gate", daemon=True).start()
