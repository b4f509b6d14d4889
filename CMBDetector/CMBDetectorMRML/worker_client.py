"""Start, feed, poll and stop the detector worker process (:mod:`.worker`); no Qt, no Slicer.

    client = WorkerClient()          # one per session: the worker stays warm between jobs
    client.submit(job)               # starts the worker if needed; returns at once
    for message in client.poll():    # never blocks: call it from a timer
        ...                          # Ready, Progress, Done or Failed (kind "crash" if it died)
    client.cancel()                  # kills the worker and its children, at once
    client.close()                   # at the end of the session

Two reader threads move the worker's stdout lines into a queue and keep the tail of its
stderr for crash messages; everything else happens on the caller's thread.
"""

from __future__ import annotations

import collections
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from CMBDetectorLib.errors import CMBDetectorError

from . import worker_protocol as protocol

MODULE_DIR = Path(__file__).resolve().parents[1]  # holds CMBDetectorLib and CMBDetectorMRML
STDERR_LINES = 40  # stderr lines kept for a crash message
CRASH_DETAIL_LINES = 6  # of which the crash message quotes the last ones


def _kill_tree(process: subprocess.Popen) -> None:
    """SIGKILL the worker's process group (POSIX) or its process tree (Windows), if it still runs."""
    if process.poll() is not None:  # gone and reaped: its id may belong to another process now
        return
    if os.name == "nt":
        subprocess.run(["taskkill", "/F", "/T", "/PID", str(process.pid)], capture_output=True)
        process.kill()
    else:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:  # already gone
            pass


def _exit_description(returncode: int | None) -> str:
    if returncode is None:
        return "closed its output"
    if returncode < 0:
        name = signal.Signals(-returncode).name if -returncode in signal.valid_signals() else str(-returncode)
        hint = " (out of memory, or killed from outside)" if -returncode == signal.SIGKILL else ""
        return f"was killed by signal {name}{hint}"
    return f"exited with code {returncode}"


class WorkerClient:
    """One detector worker process and the job it runs (at most one at a time)."""

    def __init__(self, python: str | None = None, command: Sequence[str] | None = None, env: dict | None = None):
        """``python``: interpreter for ``-m CMBDetectorMRML.worker`` (default: this one; in Slicer
        PythonSlicer); ``command``: a whole command line instead; ``env``: extra variables."""
        self.command = list(command) if command else [python or sys.executable, "-m", "CMBDetectorMRML.worker"]
        self._extra_env = dict(env or {})
        self._process: subprocess.Popen | None = None
        self._lines: queue.Queue = queue.Queue()
        self._stderr: collections.deque = collections.deque(maxlen=STDERR_LINES)
        self._stderr_reader: threading.Thread | None = None
        self._job: int | None = None
        self.ready = False  # the worker said Ready (libraries imported)

    @property
    def alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def busy(self) -> bool:
        """A job was submitted and has not finished, failed or been cancelled."""
        return self._job is not None

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    def start(self) -> None:
        """Launch the worker unless it runs; returns at once (it warms up in the background)."""
        if self.alive:
            return
        self._reset()
        env = {**os.environ, **self._extra_env, "PYTHONUNBUFFERED": "1"}
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(MODULE_DIR), env.get("PYTHONPATH", "")) if p)
        env.setdefault("YOLO_OFFLINE", "1")
        options = ({"creationflags": subprocess.CREATE_NO_WINDOW | subprocess.CREATE_NEW_PROCESS_GROUP}
                   if os.name == "nt" else {"start_new_session": True})
        try:
            self._process = subprocess.Popen(
                self.command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                text=True, encoding="utf-8", errors="replace", bufsize=1, env=env, **options)
        except OSError as exc:
            raise CMBDetectorError(f"Cannot start the detector process '{self.command[0]}': {exc}.") from exc
        threading.Thread(target=self._read_lines, args=(self._process.stdout, self._lines), daemon=True).start()
        self._stderr_reader = threading.Thread(target=self._read_stderr, args=(self._process.stderr, self._stderr),
                                               daemon=True)
        self._stderr_reader.start()

    @staticmethod
    def _read_lines(stream, lines: queue.Queue) -> None:
        for line in stream:
            lines.put(line)
        lines.put(None)  # end of output: the worker exited (or closed stdout)

    @staticmethod
    def _read_stderr(stream, tail: collections.deque) -> None:
        for line in stream:
            tail.append(line.rstrip())

    def submit(self, job: protocol.Job) -> None:
        """Send ``job`` to the worker (started if needed); its messages come from :meth:`poll`."""
        if self.busy:
            raise CMBDetectorError("A detection is already running; wait for it or cancel it.")
        self.start()
        self._job = job.job_id
        try:
            self._process.stdin.write(protocol.encode(job) + "\n")
            self._process.stdin.flush()
        except OSError:  # the worker already died: poll() reports it as a crash
            pass

    def poll(self) -> list[protocol.Message]:
        """Messages since the last call, without waiting. If the worker died during a job, the
        last message is a :class:`~.worker_protocol.Failed` of kind ``crash`` naming the cause."""
        messages: list[protocol.Message] = []
        ended = False
        while not ended:
            try:
                line = self._lines.get_nowait()
            except queue.Empty:
                break
            ended = line is None
            if not ended:
                self._handle(line, messages)
        if ended:
            returncode = self._ended()
            if self._job is not None:
                messages.append(protocol.Failed(self._job, self._crash_message(returncode), protocol.CRASH))
            self._reset()
        return messages

    def _handle(self, line: str, messages: list) -> None:
        try:
            message = protocol.decode(line)
        except CMBDetectorError:  # stray output: keep it for a crash message
            self._stderr.append(line.rstrip())
            return
        if isinstance(message, protocol.Ready):
            self.ready = True
        elif isinstance(message, (protocol.Done, protocol.Failed)) and message.job_id == self._job:
            self._job = None
        messages.append(message)

    def _ended(self) -> int | None:
        """Exit status of a worker whose output ended (killed if it lingers); stderr read to the end."""
        if self._process is None:
            return None
        try:
            self._process.wait(timeout=1.0)
        except subprocess.TimeoutExpired:
            _kill_tree(self._process)
            self._process.wait()
        self._stderr_reader.join(timeout=1.0)
        return self._process.returncode

    def _crash_message(self, returncode: int | None) -> str:
        detail = "\n".join(list(self._stderr)[-CRASH_DETAIL_LINES:])
        return (f"The detector process {_exit_description(returncode)} before finishing; "
                "the scene was not changed." + (f"\nLast output:\n{detail}" if detail else ""))

    def cancel(self) -> float:
        """Kill the worker and its children now; the running job gives no result. Returns the
        seconds until the process was gone. The next :meth:`submit` starts a fresh worker."""
        start = time.perf_counter()
        if self._process is not None:
            _kill_tree(self._process)
            self._process.wait()
        self._reset()
        return time.perf_counter() - start

    def close(self, timeout: float = 2.0) -> None:
        """End the worker: close its input and wait ``timeout`` s for it to leave, then kill it."""
        if self._process is not None:
            try:
                self._process.stdin.close()
                self._process.wait(timeout=timeout)
            except (OSError, subprocess.TimeoutExpired):
                pass
        self.cancel()

    def _reset(self) -> None:
        """Forget the process (its reader threads end at the end of its output)."""
        if self._process is not None:
            try:
                self._process.stdin.close()
            except OSError:
                pass
        self._process = None
        self._lines = queue.Queue()
        self._stderr = collections.deque(maxlen=STDERR_LINES)
        self._job = None
        self.ready = False
