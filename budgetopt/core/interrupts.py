"""Interruption: Ctrl-C (SIGINT) and SIGTERM end a budgetopt process at once, with one line and
exit code 130 / 143, wherever its main thread is — in an import, a compile, a device wait — and
never between an atomic write's temporary file and its rename.

Python's own handler raises KeyboardInterrupt at the next bytecode of the main thread. Measured
on the CLI (34 Ctrl-C's in its first second): it landed inside C-extension imports (reported as
an ImportError), in a garbage-collector callback that swallowed it (the sweep then ran to the
end and wrote its result), or unwound through XLA (SIGSEGV, SIGABRT). Here both signals are
blocked in every thread — ``route_signals`` runs before any thread exists, and threads inherit
the mask — and one thread waits for them with sigwait, then exits under ``EXIT_LOCK``. A
blocked signal is delivered to sigwait even when the process started with it ignored (a
background job of a shell), so ``kill -INT`` stops such a run too.
Standard library only, so it loads before anything that could be interrupted.
"""

from __future__ import annotations

import os
import signal
import sys
import threading

EXIT_INTERRUPTED, EXIT_TERMINATED = 130, 143

#: Held from a temporary file's creation to its rename (files.write_atomic); the signal thread
#: takes it before exiting.
EXIT_LOCK = threading.Lock()

_hint = [""]


def set_resume_hint(text: str) -> None:
    """What to say after "interrupted" (a sweep names its checkpoint)."""
    _hint[0] = text


def resume_hint() -> str:
    return _hint[0]


def route_signals() -> None:
    """Block SIGINT and SIGTERM in this and every later thread and exit cleanly when one
    arrives. Call first thing in a process's entry point, before other threads start."""
    codes = {signal.SIGINT: (EXIT_INTERRUPTED, "interrupted"), signal.SIGTERM: (EXIT_TERMINATED, "terminated")}
    signal.pthread_sigmask(signal.SIG_BLOCK, set(codes))

    def wait() -> None:
        code, word = codes[signal.sigwait(set(codes))]
        with EXIT_LOCK:
            print(f"{word}{_hint[0]}", file=sys.stderr)
            sys.stderr.flush()
            sys.stdout.flush()
            os._exit(code)

    threading.Thread(target=wait, name="budgetopt-signals", daemon=True).start()
