"""`nrm up`'s process manager: every part of the stack is watched and restarted when it dies.

A part is the embedded PostgreSQL, the embedded Temporal dev server, a service, the workflow worker or
the codec server. When one exits (whatever its exit code: none of them ever ends by itself) it is started
again on the same data directory and ports after a backoff of 0.2 s, doubling up to 10 s while it keeps
crashing. A part that crashes CRASH_LIMIT times within CRASH_WINDOW seconds while its dependencies were up
is given up on: it is marked `failed`, the supervisor says so loudly (stdout and logs/supervisor.log) and
keeps the other parts serving, as systemd does with a unit past its StartLimitBurst. Crashes while a
dependency is down (the workflow worker cannot connect while Temporal restarts) are not held against the
part: they are restarted with the same backoff but never given up on.

Every exit and restart is logged with the part's name and its exit status or signal. The state file
(`<data dir>/state.json`) holds each part's state for `nrm status`."""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import select
import signal
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from nrm.embedded import pid_alive, postgres_pid, start_postgres

CRASH_LIMIT = 5  # crashes ...
CRASH_WINDOW = 60.0  # ... within this many seconds, and the part is given up on
BACKOFF_FIRST = 0.2  # as systemd's RestartSec default (100 ms), give or take
BACKOFF_MAX = 10.0
STABLE_AFTER = (
    30.0  # up this long after a restart: the next crash starts the backoff from the beginning
)
PR_SET_CHILD_SUBREAPER = 36
# A (re)starting part runs at this niceness until it is ready, then back at 0: on a busy machine the
# import and connect of a restarted service otherwise queue behind the load it is meant to serve (what
# systemd's StartupCPUWeight does for boot). Needs CAP_SYS_NICE; without it parts start at normal priority.
STARTUP_NICE = -10


def set_niceness(pid: int, nice: int) -> bool:
    """Every thread of `pid` (Linux niceness is per thread; threads inherit their creator's)."""
    try:
        tids = [int(t) for t in os.listdir(f"/proc/{pid}/task")]
    except OSError:
        return False
    done = False
    for tid in tids:
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, tid, nice)
            done = True
    return done


def describe_status(status: int) -> str:
    """A wait status as an operator reads it: "exit code 1" or "killed by SIGKILL"."""
    if os.WIFSIGNALED(status):
        return f"killed by {_signal_name(os.WTERMSIG(status))}"
    if os.WIFEXITED(status):
        return f"exit code {os.WEXITSTATUS(status)}"
    return f"wait status {status}"


def describe_returncode(code: int) -> str:
    return f"killed by {_signal_name(-code)}" if code < 0 else f"exit code {code}"


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def become_subreaper() -> bool:
    """Ask Linux to make this process the parent of its orphaned descendants. pg_ctl starts the postmaster
    and exits, so the postmaster would otherwise be adopted by init and its exit status lost to us."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0)
    except (OSError, AttributeError):
        return False


def children_of(parent: int) -> list[int]:
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                fields = Path(entry.path, "stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if fields[1] == str(parent):
                found.append(int(entry.name))
    return found


def reap_strays(keep: set[int]) -> int:
    """Collect the exit status of adopted orphans that are not parts (backends of a killed postmaster):
    without this they stay zombies. Parts' pids are left to their own wait, which reports their status."""
    me = str(os.getpid())
    reaped = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) in keep:
            continue
        try:
            fields = Path(entry.path, "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[0] == "Z" and fields[1] == me:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(int(entry.name), os.WNOHANG)
                reaped += 1
    return reaped


def child_exit_status(pid: int) -> str | None:
    """For a process this one waits for (a Popen child or an adopted orphan): None while it runs, then its
    exit status. A pid that is not our child is judged by whether it is still alive."""
    try:
        done, status = os.waitpid(pid, os.WNOHANG)
    except (
        ChildProcessError
    ):  # not ours (e.g. a server left running by an earlier nrm up), or reaped
        return None if pid_alive(pid) else "exit status unknown (not a child of nrm up)"
    return describe_status(status) if done else None


class Zygote:
    """The client side of nrm/zygote.py: a warm process that forks ready-imported parts."""

    def __init__(self, env: dict[str, str], log_file: Path, timeout: float) -> None:
        with open(log_file, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "nrm.zygote"],
                env=env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                start_new_session=True,
            )
        if self._line(timeout) != "ready":
            self.close()
            raise RuntimeError(f"the zygote did not start; see {log_file}")

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def _line(self, timeout: float) -> str:
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        return self.proc.stdout.readline().decode().strip() if ready else ""

    def spawn(self, part: str, log_file: Path) -> int:
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"{part} {log_file}\n".encode())
        self.proc.stdin.flush()
        answer = self._line(30)
        if not answer.isdigit():
            raise RuntimeError(f"zygote could not fork {part}: {answer or 'no answer'}")
        return int(answer)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


@dataclass
class Part:
    """One supervised process. Subclasses say how to start it, whether it is gone and whether it is ready."""

    name: str
    depends_on: tuple[str, ...] = ()
    state: str = "stopped"  # starting | up | backoff | failed | stopped
    pid: int | None = None
    restarts: int = 0
    last_exit: str | None = None
    last_exit_at: float | None = None  # wall clock, for the state file
    started_at: float = 0.0  # monotonic
    next_start_at: float = 0.0
    backoff_step: int = 0
    exited_at: float | None = None  # monotonic, set on exit and cleared once ready again
    crashes: deque[float] = field(default_factory=deque)

    def spawn(self) -> None:
        raise NotImplementedError

    def exit_status(self) -> str | None:
        """None while running; once gone, its exit status or signal."""
        raise NotImplementedError

    def ready(self) -> bool:
        return True

    def terminate(self) -> None:
        raise NotImplementedError

    def wait(self, timeout: float) -> bool:
        """Wait for it to be gone after terminate(); True once it is."""
        raise NotImplementedError

    def kill(self) -> None:
        if self.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)

    def snapshot(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "pid": self.pid,
            "restarts": self.restarts,
            "last_exit": self.last_exit,
            "last_exit_at": (
                datetime.fromtimestamp(self.last_exit_at, UTC).isoformat()
                if self.last_exit_at
                else None
            ),
        }


@dataclass
class ProcessPart(Part):
    """A child process started with Popen (services, workers, codec server, Temporal dev server)."""

    command: list[str] = field(default_factory=list)
    env: dict[str, str] | None = None
    log_file: Path | None = None
    probe: Callable[[], bool] | None = None
    # a process without an endpoint is ready once its log says so after this start (the worker's
    # "workflow_worker_started" comes after it connected to Temporal)
    ready_marker: bytes | None = None
    spawner: Callable[[], subprocess.Popen[bytes]] | None = (
        None  # instead of command + env + log_file
    )
    zygote: Zygote | None = None  # fork it from here when it is alive (command is the fallback)
    proc: subprocess.Popen[bytes] | None = None
    _log_offset: int = 0

    def spawn(self) -> None:
        if self.log_file is not None:
            self._log_offset = self.log_file.stat().st_size if self.log_file.exists() else 0
        if self.zygote is not None and self.zygote.alive():
            assert self.log_file is not None
            self.proc = None
            self.pid = self.zygote.spawn(self.name, self.log_file)
            return
        if self.spawner is not None:
            self.proc = self.spawner()
        else:
            assert self.log_file is not None
            with open(self.log_file, "ab") as out:  # the child keeps its own copy of the descriptor
                self.proc = subprocess.Popen(  # noqa: S603 (our own command line)
                    self.command,
                    env=self.env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
        self.pid = self.proc.pid

    def exit_status(self) -> str | None:
        if self.proc is None:  # forked by the zygote and adopted by this process
            return "never started" if self.pid is None else child_exit_status(self.pid)
        code = self.proc.poll()
        return None if code is None else describe_returncode(code)

    def ready(self) -> bool:
        if self.ready_marker is not None and self.log_file is not None:
            with open(self.log_file, "rb") as log:
                log.seek(self._log_offset)
                return self.ready_marker in log.read()
        return self.probe() if self.probe is not None else True

    def terminate(self) -> None:
        if self.proc is None:
            if self.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.pid, signal.SIGTERM)
        elif self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def wait(self, timeout: float) -> bool:
        if self.proc is None:
            deadline = time.monotonic() + timeout
            while self.pid is not None and self.exit_status() is None:
                if time.monotonic() > deadline:
                    return False
                time.sleep(0.1)
            return True
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return False
        return True


@dataclass
class PostgresPart(Part):
    """The embedded PostgreSQL. pg_ctl daemonises the postmaster, so it is not a Popen child: its pid comes
    from postmaster.pid, and its exit status from waitpid as long as this process adopted it (subreaper)."""

    data_dir: Path = Path(".nrm")
    database_url: str | None = None

    def spawn(self) -> None:
        # pg_ctl forks the server from this thread: at startup priority, the server (and its crash recovery)
        # inherits it; this thread goes back to normal at once and the server once it is ready
        own = os.getpriority(os.PRIO_PROCESS, 0)
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, 0, STARTUP_NICE)
        try:
            self.database_url = start_postgres(
                self.data_dir
            )  # returns once the server accepts connections
        finally:
            with contextlib.suppress(OSError):
                os.setpriority(os.PRIO_PROCESS, 0, own)
        self.pid = postgres_pid(self.data_dir)

    def family(self) -> list[int]:
        """The postmaster and the processes it forked during startup (checkpointer, WAL writer ...)."""
        if self.pid is None:
            return []
        return [self.pid, *children_of(self.pid)]

    def exit_status(self) -> str | None:
        return "never started" if self.pid is None else child_exit_status(self.pid)

    def ready(self) -> bool:
        return postgres_pid(self.data_dir) is not None

    def terminate(self) -> None:
        if self.pid is not None:  # SIGINT: PostgreSQL's fast shutdown
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGINT)

    def wait(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while self.pid is not None and time.monotonic() < deadline:
            if self.exit_status() is not None:
                return True
            time.sleep(0.1)
        return self.pid is None or self.exit_status() is not None


class Supervisor:
    """Runs the parts, restarts the ones that die, and records their state for `nrm status`."""

    def __init__(
        self,
        parts: Iterable[Part],
        state: dict[str, Any],
        state_file: Path,
        log_file: Path,
        say: Callable[[str], None],
    ) -> None:
        self.parts: dict[str, Part] = {p.name: p for p in parts}
        self.state = state
        self.state_file = state_file
        self.log_file = log_file
        self.say = say
        self._last_reap = 0.0
        self.subreaper = become_subreaper()

    # ---- records -------------------------------------------------------------------------------
    def log(self, event: str, part: Part | None = None, message: str = "", **fields: Any) -> None:
        """One JSON line in logs/supervisor.log (no PII: names, pids, statuses) and one line on stdout."""
        record: dict[str, Any] = {
            "ts": datetime.now(UTC).isoformat(),
            "level": fields.pop("level", "info"),
            "event": event,
        }
        if part is not None:
            record.update(part=part.name, pid=part.pid)
        record.update(fields)
        with open(self.log_file, "a", encoding="utf-8") as out:
            out.write(json.dumps(record) + "\n")
        if message:
            self.say(f"[supervisor] {message}")

    def write_state(self) -> None:
        """Atomically: `nrm status` and `nrm down` may read it at any moment."""
        self.state["parts"] = {name: p.snapshot() for name, p in self.parts.items()}
        self.state["children"] = {
            name: p.pid
            for name, p in self.parts.items()
            if isinstance(p, ProcessPart) and name != "temporal" and p.pid is not None
        }
        temporal = self.parts.get("temporal")
        self.state["temporal_pid"] = temporal.pid if temporal is not None else None
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.state, indent=2))
        tmp.replace(self.state_file)

    def add(self, part: Part) -> Part:
        self.parts[part.name] = part
        return part

    # ---- starting ------------------------------------------------------------------------------
    def start(self, part: Part) -> None:
        """Start a part now; a failure to start counts as a crash."""
        part.state = "starting"
        part.started_at = time.monotonic()
        try:
            part.spawn()
        except (
            Exception
        ) as exc:  # a start that fails (port taken, pg_ctl error) is handled like a crash
            part.pid = None
            self._exited(part, f"failed to start: {type(exc).__name__}: {exc}")
            return
        if part.pid is not None:
            set_niceness(part.pid, STARTUP_NICE)
        if part.restarts:
            self.log(
                "restarted",
                part,
                f"{part.name} restarted (pid {part.pid}, restart {part.restarts})",
                restarts=part.restarts,
            )
        self.write_state()

    def _became_ready(self, part: Part) -> None:
        part.state = "up"
        pids = (
            part.family()
            if isinstance(part, PostgresPart)
            else [part.pid]
            if part.pid is not None
            else []
        )
        for pid in pids:
            set_niceness(pid, 0)

    def start_all(self, names: Iterable[str]) -> None:
        for name in names:
            self.start(self.parts[name])

    def wait_ready(self, names: Iterable[str], timeout: float) -> None:
        """Initial start: each named part ready within `timeout`, or a RuntimeError naming it."""
        pending = list(names)
        deadline = time.monotonic() + timeout
        while pending:
            for name in list(pending):
                part = self.parts[name]
                status = part.exit_status() if part.state == "starting" else part.last_exit
                if part.state != "starting" or status is not None:
                    raise RuntimeError(
                        f"{name} exited ({status}) during start; see its log in logs/"
                    )
                if part.ready():
                    self._became_ready(part)
                    pending.remove(name)
            if pending and time.monotonic() > deadline:
                raise TimeoutError(
                    f"not ready within {timeout:.0f}s: {', '.join(pending)}; see logs/"
                )
            time.sleep(0.2)
        self.write_state()

    # ---- watching ------------------------------------------------------------------------------
    def _deps_up(self, part: Part) -> bool:
        return all(self.parts[d].state == "up" for d in part.depends_on if d in self.parts)

    def _exited(self, part: Part, status: str) -> None:
        now = time.monotonic()
        blamed = self._deps_up(part)  # a crash while a dependency is away is not the part's own
        part.last_exit, part.last_exit_at = status, time.time()
        if part.exited_at is None:
            part.exited_at = now
        if part.state == "up" and now - part.started_at >= STABLE_AFTER:
            part.backoff_step = 0
        if blamed:
            part.crashes.append(now)
        while part.crashes and now - part.crashes[0] > CRASH_WINDOW:
            part.crashes.popleft()
        if len(part.crashes) >= CRASH_LIMIT:
            part.state = "failed"
            self.log(
                "gave_up",
                part,
                f"GAVE UP on {part.name}: {status}; it crashed {len(part.crashes)} times "
                f"within {CRASH_WINDOW:.0f}s. The other parts keep running; `nrm status` reports it failed. "
                "Fix the cause (see its log in logs/), then `nrm down && nrm up`.",
                level="error",
                status=status,
                crashes=len(part.crashes),
            )
        else:
            delay = min(BACKOFF_FIRST * 2**part.backoff_step, BACKOFF_MAX)
            part.backoff_step += 1
            part.state = "backoff"
            part.next_start_at = now + delay
            part.restarts += 1
            self.log(
                "exited",
                part,
                f"{part.name} (pid {part.pid}) exited: {status}; restarting in {delay:.1f}s",
                level="warning",
                status=status,
                delay_s=delay,
                counted=blamed,
            )
        self.write_state()

    def tick(self) -> None:
        """One round: notice exits, start what is due, notice parts that are ready again."""
        now = time.monotonic()
        for part in self.parts.values():
            if part.state in ("starting", "up"):
                status = part.exit_status()
                if status is not None:
                    self._exited(part, status)
                    continue
            if part.state == "backoff" and now >= part.next_start_at:
                self.start(part)
            if part.state == "starting" and part.ready():
                self._became_ready(part)
                if part.exited_at is not None:
                    down = (
                        time.monotonic() - part.exited_at
                    )  # not `now`: starting PostgreSQL blocks this round
                    self.log(
                        "ready_again",
                        part,
                        f"{part.name} is ready again, {down:.1f}s after it exited",
                        down_s=round(down, 2),
                    )
                part.exited_at = None
                self.write_state()
        if self.subreaper and now - self._last_reap > 2:
            self._last_reap = now
            reap_strays({p.pid for p in self.parts.values() if p.pid is not None})

    def run(self, interval: float = 0.25) -> None:
        """Supervise until interrupted (KeyboardInterrupt from Ctrl-C or the SIGTERM handler)."""
        while True:
            self.tick()
            time.sleep(interval)

    def stop(self, order: Iterable[str], timeout: float = 20) -> list[str]:
        """Stop the named parts in order, each SIGTERM then SIGKILL after `timeout`. Returns those that
        would not stop."""
        stuck = []
        for name in order:
            part = self.parts[name]
            # only running parts: the pid of one that exited (and was reaped) may belong to a stranger now
            if (
                part.state not in ("starting", "up")
                or part.pid is None
                or part.exit_status() is not None
            ):
                continue
            part.state = "stopping"
            part.terminate()
            if not part.wait(timeout):
                part.kill()
                if not part.wait(5):
                    stuck.append(name)
        return stuck

    def stop_group(self, names: list[str], timeout: float = 20) -> list[str]:
        """SIGTERM to all the named parts at once (they drain in parallel), then wait for each."""
        stopping = []
        for name in names:
            part = self.parts[name]
            # only running parts: the pid of one that exited (and was reaped) may belong to a stranger now
            if (
                part.state in ("starting", "up")
                and part.pid is not None
                and part.exit_status() is None
            ):
                part.state = "stopping"
                part.terminate()
                stopping.append(part)
        stuck = []
        deadline = time.monotonic() + timeout
        for part in stopping:
            name = part.name
            if not part.wait(max(deadline - time.monotonic(), 0.1)):
                part.kill()
                if not part.wait(5):
                    stuck.append(name)
        return stuck
