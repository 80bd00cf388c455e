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


class JsonChild:
    """Runs ``script`` (``python -c``; ``isolated``: with ``-P``, the caller's folder not on its path).

    The script reads one JSON request per line from stdin and writes one JSON
    answer per line to its stdout; its stderr is dropped (it logs to files its
    requests name). ``lock`` serializes the requests of the caller's threads.
    """

    def __init__(self, script: str, *, isolated: bool = False):
        self.script = script
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
