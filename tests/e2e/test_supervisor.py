"""The supervisor's restart policy with real processes (no stack): a part that keeps crashing is given up
on, loudly, while the others keep running; crashes while a dependency is down are not held against a part;
every exit is logged with its status or signal."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from nrm.supervisor import CRASH_LIMIT, ProcessPart, Supervisor

pytestmark = pytest.mark.e2e

CRASHER = [sys.executable, "-c", "import sys; sys.exit(3)"]
SLEEPER = [sys.executable, "-c", "import time; time.sleep(600)"]


def supervisor(tmp_path: Path, *parts: ProcessPart) -> tuple[Supervisor, list[str]]:
    said: list[str] = []
    return Supervisor(
        parts,
        {"supervisor_pid": os.getpid()},
        tmp_path / "state.json",
        tmp_path / "supervisor.log",
        said.append,
    ), said


def run_until(sup: Supervisor, done: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not done() and time.monotonic() < deadline:
        sup.tick()
        time.sleep(0.05)


def events(tmp_path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in (tmp_path / "supervisor.log").read_text().splitlines()]


def test_a_crash_looping_part_is_given_up_and_the_others_keep_running(tmp_path: Path) -> None:
    crasher = ProcessPart("crasher", command=CRASHER, log_file=tmp_path / "crasher.log")
    steady = ProcessPart("steady", command=SLEEPER, log_file=tmp_path / "steady.log")
    sup, said = supervisor(tmp_path, crasher, steady)
    sup.start_all(["crasher", "steady"])
    try:
        run_until(sup, lambda: crasher.state == "failed")
        assert crasher.state == "failed"
        assert steady.state == "up" and steady.exit_status() is None, "the other part keeps running"
        exits = [e for e in events(tmp_path) if e["event"] == "exited"]
        assert len(exits) == CRASH_LIMIT - 1 and all(e["status"] == "exit code 3" for e in exits)
        assert [e["delay_s"] for e in exits] == [
            0.2 * 2**i for i in range(CRASH_LIMIT - 1)
        ]  # backoff doubles
        [gave_up] = [e for e in events(tmp_path) if e["event"] == "gave_up"]
        assert (
            gave_up["part"] == "crasher"
            and gave_up["level"] == "error"
            and gave_up["crashes"] == CRASH_LIMIT
        )
        assert any(line.startswith("[supervisor] GAVE UP on crasher: exit code 3") for line in said)
        recorded = json.loads((tmp_path / "state.json").read_text())["parts"]
        assert (
            recorded["crasher"]["state"] == "failed"
            and recorded["crasher"]["last_exit"] == "exit code 3"
        )
        assert recorded["steady"]["state"] == "up"
        # given up means given up: no further start
        time.sleep(0.5)
        sup.tick()
        assert crasher.state == "failed" and crasher.restarts == CRASH_LIMIT - 1
    finally:
        sup.stop_group(["crasher", "steady"])


def test_a_killed_part_is_restarted_with_its_signal_logged(tmp_path: Path) -> None:
    part = ProcessPart("sleeper", command=SLEEPER, log_file=tmp_path / "sleeper.log")
    sup, said = supervisor(tmp_path, part)
    sup.start(part)
    try:
        run_until(sup, lambda: part.state == "up")
        first = part.pid
        assert first is not None
        os.kill(first, signal.SIGKILL)
        run_until(sup, lambda: part.state == "up" and part.pid != first)
        assert part.state == "up" and part.pid != first and part.exit_status() is None
        assert part.last_exit == "killed by SIGKILL" and part.restarts == 1
        kinds = [(e["event"], e.get("status")) for e in events(tmp_path)]
        assert kinds[:3] == [
            ("exited", "killed by SIGKILL"),
            ("restarted", None),
            ("ready_again", None),
        ]
        assert (
            f"[supervisor] sleeper (pid {first}) exited: killed by SIGKILL; restarting in 0.2s"
            in said
        )
    finally:
        assert sup.stop_group(["sleeper"]) == []
    assert part.exit_status() is not None


def test_crashes_while_a_dependency_is_down_are_not_counted(tmp_path: Path) -> None:
    dependency = ProcessPart("database", command=SLEEPER, log_file=tmp_path / "db.log")
    dependent = ProcessPart(
        "service", depends_on=("database",), command=CRASHER, log_file=tmp_path / "svc.log"
    )
    sup, _ = supervisor(tmp_path, dependency, dependent)
    dependency.state = "backoff"  # as while the database restarts
    dependency.next_start_at = float("inf")
    sup.start(dependent)
    try:
        run_until(sup, lambda: dependent.restarts >= CRASH_LIMIT + 1)
        assert dependent.state != "failed" and dependent.restarts >= CRASH_LIMIT + 1
        assert not dependent.crashes, "none of these crashes is the service's own"
        assert all(e["counted"] is False for e in events(tmp_path) if e["event"] == "exited")
    finally:
        sup.stop_group(["service"])
