"""What every command-line tool shares: its exit on SIGTERM, Ctrl-C and a closed pipe (run),
the durations of its progress lines, and RunError, the one-line error a tool ends on.
"""
import contextlib
import os


class RunError(Exception):
    """An error a tool reports as one line and ends on with exit status `code` (train.py's
    codes: 1 failed, 2 refused, 3 numbers not finite, 4 folder held by another process)."""

    def __init__(self, message, code=1):
        super().__init__(message)
        self.code = code


def duration(seconds):
    """'45s', '12m 05s', '3h 07m': for progress lines and ETAs."""
    s = max(0, int(round(seconds)))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60:02d}s"
    return f"{s // 3600}h {s % 3600 // 60:02d}m"


# ----------------------------------------------------------------------------- every tool's entry

def run(main, tool):
    """Run `main()` as a command-line tool and return its exit status. SIGTERM ends like
    Ctrl-C (as train.py): one line and 130; every file is written atomically, so an interrupt
    leaves whole files behind. A reader that closed the pipe (`| head`) ends it quietly, 141
    (the shell's status of a process SIGPIPE ended)."""
    import signal
    import sys

    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        code = main()
        sys.stdout.flush()   # a closed pipe shows here, not at exit
        return code
    except KeyboardInterrupt:
        with contextlib.suppress(OSError):
            print(f"{tool}: interrupted; every file written so far is whole: run the same command "
                  f"again", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # nothing more reaches the reader; stdout must not be flushed again at exit
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
