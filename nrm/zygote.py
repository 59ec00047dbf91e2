"""A warm parent for `nrm up`'s Python parts: it imports every service, the workflow worker and the codec
server once, then forks a ready-imported child whenever the supervisor asks for one. A restarted part
skips the second or two of CPU its imports cost, which on a busy machine is most of its recovery time,
and the children share the imported pages copy-on-write.

Protocol, one line each way on stdin/stdout: `<part> <log file>` in, `<pid>` (or `error <why>`) out.
Each child is forked twice so that it is adopted by the supervisor (a child subreaper), which then waits
for it and sees its exit status as for any other part. Only the supervisor talks to it."""

from __future__ import annotations

import asyncio
import importlib
import os
import sys
from collections.abc import Callable

PARTS = ("intake", "verification", "support", "oversight", "workflow-worker", "codec-server")


def _preload() -> None:
    for name in PARTS[:4]:
        importlib.import_module(f"services.{name}.api")
        importlib.import_module(f"services.{name}.activities")
    for module in ("nrm.service", "workflows.worker", "nrm.codec_server"):
        importlib.import_module(module)


def _entry(part: str) -> Callable[[], int]:
    if part == "workflow-worker":
        from workflows import worker

        def run_worker() -> int:
            asyncio.run(worker.run())
            return 0

        return run_worker
    if part == "codec-server":
        from nrm import codec_server

        return codec_server.main
    from nrm import service

    return lambda: service.main([part])


def _child(part: str, log_file: str) -> None:
    """In the grandchild: a session and stdio of its own, then the part's main. Never returns."""
    code = 70
    try:
        os.setsid()
        log = os.open(log_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.close(log)
        os.close(null)
        code = _entry(part)()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:  # the child must end here, never return into the zygote's loop
        import traceback

        traceback.print_exc()
        code = 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _spawn(part: str, log_file: str) -> int:
    """Fork twice: the middle process exits at once, so the grandchild is orphaned and adopted by the
    supervisor. Returns the grandchild's pid once that has happened."""
    read_end, write_end = os.pipe()
    sys.stdout.flush()
    middle = os.fork()
    if middle == 0:
        os.close(read_end)
        pid = os.fork()
        if pid == 0:
            os.close(write_end)
            _child(part, log_file)
        os.write(write_end, str(pid).encode())
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as r:
        data = r.read()
    os.waitpid(middle, 0)  # after this the grandchild's parent is the supervisor
    return int(data)


def main() -> int:
    _preload()
    print("ready", flush=True)
    for line in sys.stdin:
        part, _, log_file = line.strip().partition(" ")
        if part not in PARTS or not log_file:
            print(f"error unknown part {part!r}", flush=True)
            continue
        try:
            print(_spawn(part, log_file), flush=True)
        except OSError as exc:
            print(f"error {type(exc).__name__}: {exc}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
