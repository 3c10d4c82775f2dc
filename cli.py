"""What every command-line tool shares: its exit on SIGTERM, Ctrl-C and a closed pipe (run),
and the durations of its progress lines.
"""
import contextlib
import os


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
