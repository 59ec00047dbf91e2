"""The real NRM stack for end-to-end tests: `nrm up` as a subprocess, once per test module.

Every NRM_*_PORT is a free port, NRM_DATA_DIR is a fresh temp
directory (embedded PostgreSQL, Temporal dev server SQLite, key ring), the test waits for /readyz on every
service and for the supervisor's "[6/6] ready", mints tokens with shared.auth.mint_token and the key ring
`nrm up` created in the data directory, and at the end sends SIGTERM to the supervisor and checks that
nothing of the stack is left running (PostgreSQL, Temporal, services, workers, ports).

Synchronous on purpose: a module-scoped fixture starts it once and the tests talk to it with httpx."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from nrm.cli import status_report
from nrm.embedded import pid_alive, port_open, postgres_pid
from shared.config import REPO_ROOT, SERVICE_NAMES, Settings
from shared.crypto import KeyRing, load_keyring
from shared.domain import AgencyRole, Role
from tests.helpers.tokens import bearer

READY_TIMEOUT = 150.0
STOP_TIMEOUT = 120.0
PORT_VARS = (
    "NRM_TEMPORAL_PORT",
    "NRM_TEMPORAL_UI_PORT",
    "NRM_INTAKE_PORT",
    "NRM_VERIFICATION_PORT",
    "NRM_SUPPORT_PORT",
    "NRM_OVERSIGHT_PORT",
    "NRM_CODEC_PORT",
    "NRM_CONSOLE_PORT",
    "NRM_NOTIFICATIONS_PORT",
    "NRM_MAIL_SINK_PORT",
)
PROVINCE = "01"  # Hà Nội: every token and case of these tests is in this province


def free_ports(n: int) -> list[int]:
    """Distinct ports nobody listens on now, from 20000-31999: below the kernel's ephemeral range
    (32768+), where other servers' "random free port" picks would race with ours. The Temporal port's +10
    and +11 (its HTTP API and metrics) are kept free too."""
    rng = random.Random()
    chosen: list[int] = []
    while len(chosen) < n:
        port = rng.randrange(20000, 31990)
        if any(abs(port - c) <= 11 for c in chosen) or not all(
            _bindable(p) for p in (port, port + 10, port + 11)
        ):
            continue
        chosen.append(port)
    return chosen


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


@dataclass
class RunningStack:
    data_dir: Path
    env: dict[str, str]
    ports: dict[str, int]
    proc: subprocess.Popen[bytes] | None = None
    _ring: KeyRing | None = field(default=None, repr=False)

    # ---- addresses and tokens --------------------------------------------------------------
    @property
    def temporal_address(self) -> str:
        return f"127.0.0.1:{self.ports['NRM_TEMPORAL_PORT']}"

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.ports[f'NRM_{service.upper()}_PORT']}"

    def client(self, service: str, timeout: float = 60.0) -> httpx.Client:
        return httpx.Client(base_url=self.url(service), timeout=timeout)

    def async_client(self, service: str, timeout: float = 60.0) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.url(service), timeout=timeout)

    @property
    def ring(self) -> KeyRing:
        if self._ring is None:
            self._ring = load_keyring(self.data_dir / "keyring.json")
        return self._ring

    def auth(
        self, agency: AgencyRole, *roles: Role, user: str | None = None, province: str = PROVINCE
    ) -> dict[str, str]:
        """Bearer header for a user of `agency` (caseworker unless other roles are given), signed with the
        stack's own key ring so the running services accept it."""
        return bearer(
            self.ring,
            agency,
            *roles,
            user=user,
            province=province,
            display_name=user or agency.value,
        )

    def state(self) -> dict[str, Any]:
        return dict(json.loads((self.data_dir / "state.json").read_text()))

    def settings(self) -> Settings:
        """This stack's settings, as its `nrm` commands see them (data dir and ports from its environment)."""
        return Settings.model_validate(
            {
                "data_dir": self.data_dir,
                **{var.removeprefix("NRM_").lower(): port for var, port in self.ports.items()},
            }
        )

    def status(self) -> dict[str, Any]:
        """What `nrm status --json` reports, computed in this process (no interpreter start per poll)."""
        from services.notifications.settings import NotificationSettings

        ports = {var.removeprefix("NRM_").lower(): port for var, port in self.ports.items()}
        own = NotificationSettings.model_validate(
            {k: v for k, v in ports.items() if k in NotificationSettings.model_fields}
        )
        return status_report(self.settings(), own)

    def nrm(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """An `nrm` command against this stack."""
        return subprocess.run(  # noqa: S603 (our own command line)
            [sys.executable, "-m", "nrm.cli", *args],
            cwd=REPO_ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def diagnostics(self) -> str:
        """The supervisor's output and the tail of every log, for a failing assertion's message."""
        parts = []
        for path in [self.data_dir / "up.out", *sorted((self.data_dir / "logs").glob("*.log"))]:
            if path.exists():
                parts.append(
                    f"--- {path.name} ---\n"
                    + "\n".join(path.read_text(errors="replace").splitlines()[-30:])
                )
        return "\n".join(parts)

    # ---- lifecycle ---------------------------------------------------------------------------
    def up(self) -> None:
        with open(
            self.data_dir / "up.out", "ab"
        ) as out:  # the child keeps its own copy of the descriptor
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "nrm.cli", "up"],
                cwd=REPO_ROOT,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def wait_ready(self) -> None:
        """Every service's /readyz answers 200, then the supervisor reports ready."""
        assert self.proc is not None
        deadline = time.monotonic() + READY_TIMEOUT
        pending = {name: self.url(name) for name in SERVICE_NAMES}
        with httpx.Client(timeout=2.0) as http:
            while pending:
                assert self.proc.poll() is None, (
                    f"nrm up exited with {self.proc.returncode}\n{self.diagnostics()}"
                )
                assert time.monotonic() < deadline, (
                    f"not ready within {READY_TIMEOUT}s: {pending}\n{self.diagnostics()}"
                )
                for name, url in list(pending.items()):
                    try:
                        if http.get(f"{url}/readyz").status_code == 200:
                            del pending[name]
                    except httpx.HTTPError:
                        pass
                time.sleep(0.5)
        while b"[6/6] ready" not in (self.data_dir / "up.out").read_bytes():
            assert self.proc.poll() is None, (
                f"nrm up exited with {self.proc.returncode}\n{self.diagnostics()}"
            )
            assert time.monotonic() < deadline, (
                f"supervisor never reported ready\n{self.diagnostics()}"
            )
            time.sleep(0.2)

    def stop(self) -> None:
        """SIGTERM to the supervisor (what Ctrl-C / `nrm down` do), then check nothing is left running."""
        state = self.state() if (self.data_dir / "state.json").exists() else None
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                code = self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                code = None
            assert code == 0, (
                f"nrm up did not stop cleanly on SIGTERM (exit {code})\n{self.diagnostics()}"
            )
        if state is not None:
            self.assert_all_stopped(state)

    def assert_all_stopped(self, state: dict[str, Any]) -> None:
        diag = self.diagnostics()
        assert postgres_pid(self.data_dir) is None, f"PostgreSQL still running\n{diag}"
        assert not (self.data_dir / "postgres" / "postmaster.pid").exists()
        for var, port in self.ports.items():
            assert not port_open("127.0.0.1", port), f"{var}={port} still listening\n{diag}"
        for name, pid in state["children"].items():
            assert not pid_alive(int(pid)), f"{name} (pid {pid}) still running\n{diag}"
        if state.get("temporal_pid"):
            assert not pid_alive(int(state["temporal_pid"])), f"Temporal still running\n{diag}"
        assert not (self.data_dir / "state.json").exists(), (
            "the supervisor left its state file behind"
        )

    def down(self) -> subprocess.CompletedProcess[str]:
        """`nrm down` against this stack's data directory."""
        return subprocess.run(
            [sys.executable, "-m", "nrm.cli", "down"],
            cwd=REPO_ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )

    def force_down(self) -> None:
        """Last resort after a failure: `nrm down` cleans up whatever the state file still names, then the
        supervisor's own process group (only ours: it was started in a new session)."""
        self.down()
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(30)


def policy_copy(data_dir: Path, change: Callable[[dict[str, Any]], None]) -> Path:
    """shared/policy.yaml, changed by `change`, written into the data dir (for NRM_POLICY_FILE)."""
    raw = yaml.safe_load((REPO_ROOT / "shared" / "policy.yaml").read_text(encoding="utf-8"))
    change(raw)
    path = data_dir / "policy.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return path


def new_stack() -> RunningStack:
    """A stack not started yet: free ports, a fresh temp data directory, no NRM_* setting of the developer's."""
    # Not pytest's tmp_path: as root the embedded PostgreSQL runs as `pgserver`, and each new pytest
    # session (anyone's) resets /tmp/pytest-of-root to 0700, which would lock it out of its data dir.
    data_dir = Path(tempfile.mkdtemp(prefix="nrm-e2e-"))
    ports = dict(zip(PORT_VARS, free_ports(len(PORT_VARS)), strict=True))
    env = {k: v for k, v in os.environ.items() if not k.startswith("NRM_")}
    env.update({"NRM_DATA_DIR": str(data_dir), "PYTHONUNBUFFERED": "1"})
    env.update({k: str(v) for k, v in ports.items()})
    return RunningStack(data_dir, env, ports)


@contextmanager
def running_stack(
    policy_change: Callable[[dict[str, Any]], None] | None = None,
) -> Iterator[RunningStack]:
    """Start `nrm up` on free ports and a temp data dir; yield it ready; stop it with SIGTERM and check that
    nothing is left running. Whatever happens, no server is left behind and the temp dir is removed."""
    stack = new_stack()
    data_dir = stack.data_dir
    if policy_change is not None:
        stack.env["NRM_POLICY_FILE"] = str(policy_copy(data_dir, policy_change))
    stopped = False
    try:
        stack.up()
        stack.wait_ready()
        yield stack
        stack.stop()
        stopped = True
    finally:
        if not stopped:
            stack.force_down()
        shutil.rmtree(data_dir, ignore_errors=True)
