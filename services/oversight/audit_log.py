"""The audit log's write side and its chain check.

Each case's events form a chain: hash_n = HMAC(audit key, canonical(event_n) || hash_{n-1}). The key
lives in the key ring, not in the database, so a database administrator who edits or deletes a row
cannot recompute a valid chain. `verify_chain` reports the first broken link."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from shared.crypto import KeyRing
from shared.db import Conn
from workflows.models import CaseEvent, CaseState, Notification

GENESIS = "0" * 64
OPEN_STATUSES = ("Active", "FollowUp")


def _ts(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def canonical(fields: dict[str, Any]) -> bytes:
    return json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str).encode()


def event_fields(*, event_id: str, case_id: str, seq: int, occurred_at: datetime, kind: str, actor_user_id: str,
                 actor_agency: str | None, stage: str, reason: str | None, request_id: str | None,
                 policy_version: str, data: Any, state: Any) -> dict[str, Any]:
    return {"event_id": event_id, "case_id": case_id, "seq": seq, "occurred_at": _ts(occurred_at), "kind": kind,
            "actor_user_id": actor_user_id, "actor_agency": actor_agency, "stage": stage, "reason": reason,
            "request_id": request_id, "policy_version": policy_version, "data": data, "state": state}


def chain_hash(ring: KeyRing, fields: dict[str, Any], prev_hash: str) -> str:
    return ring.audit_mac(canonical(fields) + prev_hash.encode())


async def append_event(conn: Conn, ring: KeyRing, event: CaseEvent) -> bool:
    """Insert one event (idempotent on event_id) and refresh the case_summary row. Returns False when
    the event was already recorded (a retried activity)."""
    async with conn.transaction():
        # one writer per case at a time, so the chain has no forks
        await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", event.case_id)
        if await conn.fetchval("SELECT 1 FROM oversight.case_events WHERE event_id = $1", event.event_id):
            return False
        prev = await conn.fetchrow(
            "SELECT seq, hash FROM oversight.case_events WHERE case_id = $1 ORDER BY seq DESC LIMIT 1", event.case_id)
        expected_seq = (prev["seq"] if prev else 0) + 1
        if event.seq != expected_seq:
            raise ValueError(f"case {event.case_id}: event seq {event.seq} arrived, expected {expected_seq}")
        prev_hash = prev["hash"] if prev else GENESIS
        data = json.loads(json.dumps(event.data, default=str))
        state = event.state.model_dump(mode="json")
        fields = event_fields(
            event_id=event.event_id, case_id=event.case_id, seq=event.seq, occurred_at=event.occurred_at,
            kind=event.kind, actor_user_id=event.actor_user_id,
            actor_agency=event.actor_agency.value if event.actor_agency else None, stage=event.stage.value,
            reason=event.reason, request_id=event.request_id, policy_version=event.policy_version, data=data,
            state=state)
        digest = chain_hash(ring, fields, prev_hash)
        await conn.execute(
            """INSERT INTO oversight.case_events (event_id, case_id, seq, occurred_at, kind, actor_user_id, actor_agency,
                   stage, reason, request_id, policy_version, data, state, prev_hash, hash)
               VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15)""",
            event.event_id, event.case_id, event.seq, event.occurred_at, event.kind, event.actor_user_id,
            fields["actor_agency"], event.stage.value, event.reason, event.request_id, event.policy_version,
            data, state, prev_hash, digest)
        await upsert_summary(conn, event.state, event.occurred_at)
        return True


async def upsert_summary(conn: Conn, s: CaseState, event_at: datetime) -> None:
    open_handoffs = [h for h in s.handoffs if h.state.value == "requested"]
    stage_entered = s.stages[-1].entered_at if s.stages and s.stage.value != "closed" else event_at
    await conn.execute(
        """INSERT INTO oversight.case_summary AS cs (case_id, province, commune, stage, status, outcome, owner_agency, assignee,
               channel, age_band, is_child, is_abroad, trafficking_status, deadline_at, escalation_level,
               open_handoffs, oldest_handoff_accept_by, version, last_event_seq, last_event_at, stage_entered_at,
               opened_at, closed_at, policy_version, state)
           VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17,$18,$19,$20,$21,$22,$23,$24,$25)
           ON CONFLICT (case_id) DO UPDATE SET
               province = EXCLUDED.province, commune = EXCLUDED.commune, stage = EXCLUDED.stage,
               status = EXCLUDED.status, outcome = EXCLUDED.outcome, owner_agency = EXCLUDED.owner_agency,
               assignee = EXCLUDED.assignee, trafficking_status = EXCLUDED.trafficking_status,
               deadline_at = EXCLUDED.deadline_at, escalation_level = EXCLUDED.escalation_level,
               open_handoffs = EXCLUDED.open_handoffs, oldest_handoff_accept_by = EXCLUDED.oldest_handoff_accept_by,
               version = EXCLUDED.version, last_event_seq = EXCLUDED.last_event_seq,
               last_event_at = EXCLUDED.last_event_at, stage_entered_at = EXCLUDED.stage_entered_at,
               closed_at = EXCLUDED.closed_at, policy_version = EXCLUDED.policy_version, state = EXCLUDED.state
           WHERE cs.last_event_seq < EXCLUDED.last_event_seq""",
        s.case_id, s.province, s.facts.commune, s.stage.value, s.status.value,
        s.outcome.value if s.outcome else None, s.owner_agency.value, s.assignee, s.facts.channel.value,
        s.facts.age_band.value, s.facts.child, s.facts.abroad, s.trafficking_status.value,
        s.deadline.due_at if s.deadline and s.status.value in OPEN_STATUSES else None, s.escalation_level,
        len(open_handoffs), min((h.accept_by for h in open_handoffs), default=None), s.version, s.last_event_seq,
        event_at, stage_entered, s.opened_at or s.facts.opened_at, s.closed_at, s.policy_version,
        s.model_dump(mode="json"))


async def enqueue_notification(conn: Conn, n: Notification) -> None:
    await conn.execute(
        """INSERT INTO oversight.notification_outbox (notification_id, case_id, kind, level, recipients, stage, due_at,
               created_at) VALUES ($1,$2,$3,$4,$5,$6,$7,$8) ON CONFLICT (notification_id) DO NOTHING""",
        n.notification_id, n.case_id, n.kind, n.level, n.recipients, n.stage.value, n.due_at, n.created_at)


@dataclass(frozen=True)
class ChainReport:
    case_id: str
    events: int
    ok: bool
    first_broken_seq: int | None = None
    problem: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"case_id": self.case_id, "events": self.events, "ok": self.ok,
                "first_broken_seq": self.first_broken_seq, "problem": self.problem}


async def verify_chain(conn: Conn, ring: KeyRing, case_id: str) -> ChainReport:
    rows = await conn.fetch("SELECT * FROM oversight.case_events WHERE case_id = $1 ORDER BY seq", case_id)
    prev_hash = GENESIS
    for expected_seq, r in enumerate(rows, start=1):
        if r["seq"] != expected_seq:
            return ChainReport(case_id, len(rows), False, expected_seq, f"event {expected_seq} is missing")
        if r["prev_hash"] != prev_hash:
            return ChainReport(case_id, len(rows), False, r["seq"], "prev_hash does not match the previous event")
        fields = event_fields(
            event_id=r["event_id"], case_id=r["case_id"], seq=r["seq"], occurred_at=r["occurred_at"], kind=r["kind"],
            actor_user_id=r["actor_user_id"], actor_agency=r["actor_agency"], stage=r["stage"], reason=r["reason"],
            request_id=r["request_id"], policy_version=r["policy_version"], data=r["data"], state=r["state"])
        if chain_hash(ring, fields, prev_hash) != r["hash"]:
            return ChainReport(case_id, len(rows), False, r["seq"], "event content does not match its hash")
        prev_hash = r["hash"]
    return ChainReport(case_id, len(rows), True)


async def append_system_event(conn: Conn, ring: KeyRing, case_id: str, kind: str, reason: str,
                              data: dict[str, Any], now: datetime) -> bool:
    """Append an event after the case's workflow has ended (e.g. retention), continuing its chain with
    the last recorded state. Returns False when the case has no events."""
    last = await conn.fetchrow(
        "SELECT seq, stage, policy_version, state FROM oversight.case_events WHERE case_id = $1 "
        "ORDER BY seq DESC LIMIT 1", case_id)
    if last is None:
        return False
    state = CaseState.model_validate(last["state"])
    event = CaseEvent(event_id=f"{case_id}:{last['seq'] + 1}", case_id=case_id, seq=last["seq"] + 1, occurred_at=now,
                      kind=kind, actor_user_id="system", stage=last["stage"], reason=reason,
                      policy_version=last["policy_version"], data=data, state=state)
    return await append_event(conn, ring, event)
