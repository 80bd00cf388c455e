"""A Python child process that answers JSON requests, one line each way, and outlives one request.

The TFLite backend converts and runs models in one (TensorFlow's converter
can abort its process), the SavedModel backend proves what it wrote in one
(TensorFlow must not load into a caller that did not import it). The child
stays for the next request, so its imports (seconds for TensorFlow) are paid
once; one that died is replaced at the next request.
"""

from __future__ import annotations

import atexit
import json
import os
import subprocess
import sys
import threading


#: Around a child's ``handle``: one JSON request a line on stdin, ``handle(request)``'s answer as one JSON line
#: on the original stdout; everything else the child prints, on either stream, goes to the request's ``log``.
_SERVE = """
import json, os, sys
answer = os.fdopen(os.dup(1), "w")
{handler}
for line in sys.stdin:
    request = json.loads(line)
    log = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(log)
    answer.write(json.dumps(handle(request)) + "\\n")
    answer.flush()
"""


class JsonChild:
    """Runs ``handler`` (Python source defining ``handle(request) -> dict``) in a child process (``python -c``;
    ``isolated``: with ``-P``, the caller's folder not on its path).

    Each request is a JSON object with a ``log`` path, which gets whatever the
    child prints; ``handle``'s answer comes back as JSON. ``lock`` serializes
    the requests of the caller's threads.
    """

    def __init__(self, handler: str, *, isolated: bool = False):
        self.script = _SERVE.format(handler=handler)
        self.isolated = isolated
        self.process: subprocess.Popen | None = None
        self.lock = threading.Lock()
        atexit.register(self.close)

    def start(self) -> None:
        """Starts the child unless it runs, and returns at once: its imports then overlap the caller's work."""
        with self.lock:
            self._start()

    def _start(self) -> None:
        if self.process is None or self.process.poll() is not None:
            env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
            flags = ["-P"] if self.isolated else []
            self.process = subprocess.Popen(
                [sys.executable, *flags, "-c", self.script], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL, text=True, env=env,
            )

    def ask(self, request: dict) -> dict | None:
        """The child's answer, or None when it died meanwhile (call it holding ``lock``)."""
        self._start()
        try:
            self.process.stdin.write(json.dumps(request) + "\n")
            self.process.stdin.flush()
            line = self.process.stdout.readline()
        except BrokenPipeError:
            line = ""
        if not line:
            self.process.wait()
            self.process = None
            return None
        return json.loads(line)

    def close(self) -> None:
        if self.process is not None:
            self.process.stdin.close()
            self.process.wait()
            self.process = None
