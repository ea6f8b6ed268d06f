"""``--processes N``: a parent that forks the workers, replaces one that exits, and stops them all.

Tornado's ``fork_processes`` (used before; checked by hand) restarts a worker only when it dies
abnormally, so a worker sent SIGTERM, which drains and exits 0, was never replaced; and its parent
has no SIGTERM handler, so it died at once (exit status 143) with its workers still running.
``Workers`` instead:

  * forks a new worker with the same task id (its row of counters) whenever one exits while the
    server runs: SIGTERM to one worker restarts it gracefully, and the others' connections are
    untouched (every worker accepts on the same listening socket);
  * passes SIGTERM or SIGINT on to every worker and closes its own copy of the listening sockets
    (kept so far for the workers it forks: while it holds them, new connections would queue for a
    worker that never comes), waits until all have drained, and exits 0 (1 when one of them failed);
  * gives up after ``MAX_RESTARTS`` abnormal exits, as Tornado does;
  * has each worker ask the kernel for SIGTERM when the parent dies (PR_SET_PDEATHSIG, Linux), so
    no worker outlives a parent that was killed.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys

log = logging.getLogger("forge_ref.workers")

MAX_RESTARTS = 100  # abnormal exits before giving up (Tornado's default)
_STOP = (signal.SIGTERM, signal.SIGINT)


class Workers:
    def __init__(self, n: int, sockets: list[socket.socket]) -> None:
        self.n = n
        self.sockets = sockets
        self.parent = os.getpid()
        self.children: dict[int, int] = {}  # pid -> task id
        self.stopping = False
        self.failed = False

    def run(self) -> int:
        """Fork the workers and supervise them. Returns the task id in each worker; the parent exits."""
        for sig in _STOP:
            signal.signal(sig, self._stop)
        for task in range(self.n):
            if self._fork(task):
                return task
        restarts = 0
        while self.children:
            pid, status = os.wait()  # a signal runs its handler, then the wait resumes (PEP 475)
            task = self.children.pop(pid, None)
            if task is None:
                continue
            code = os.waitstatus_to_exitcode(status)
            if self.stopping:
                if code not in (0, -signal.SIGTERM):  # SIGTERM: it was still starting, nothing to drain
                    log.warning("worker %d (pid %d) ended with status %d while stopping", task, pid, code)
                    self.failed = True
                continue
            if code == 0:
                log.info("worker %d (pid %d) exited; starting a new one", task, pid)
            else:
                restarts += 1
                log.warning("worker %d (pid %d) ended with status %d; starting a new one", task, pid, code)
                if restarts > MAX_RESTARTS:
                    log.error("%d abnormal worker exits: giving up", restarts - 1)
                    self.failed = True
                    self._stop()
                    continue
            if self._fork(task):
                return task
        sys.exit(1 if self.failed else 0)

    def _fork(self, task: int) -> bool:
        """True in the new worker."""
        pid = os.fork()
        if pid == 0:
            for sig in _STOP:
                signal.signal(sig, signal.SIG_DFL)  # until the worker's event loop installs its own
            _die_with_parent(self.parent)
            return True
        self.children[pid] = task
        if self.stopping:  # the stop came while forking
            os.kill(pid, signal.SIGTERM)
        return False

    def _stop(self, signum: int = signal.SIGTERM, frame: object = None) -> None:
        if os.getpid() != self.parent:  # a worker got it before dropping this handler: act as it would have
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        self.stopping = True
        for sock in self.sockets:
            sock.close()
        for pid in list(self.children):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass  # exited already; the wait loop collects it


def _die_with_parent(parent: int) -> None:
    """Ask for SIGTERM (a drain) when the parent dies; not on Linux, stop workers by process group."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the parent died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)
