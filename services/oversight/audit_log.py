"""The audit log's write side and its chain check.

Each case's events form a chain: hash_n = HMAC(audit key, canonical(event_n) || hash_{n-1}). The key
lives in the key ring, not in the database, so a database administrator who edits or deletes a row
cannot recompute a valid chain. `verify_chain` reports the first broken link, and also a missing tail:
the number of events must reach what the workflow emitted (the case_summary projection's
last_event_seq, and an independent count from Temporal or the history exported at closure).

Free text (the event's `reason`, and the typed parts of `data` and `state`: reasons, justifications,
referrals, measures) is what people type, so names can appear in it. Since hash format 2 it is stored
encrypted (`free_text`, bound to the event's row) and the chain hashes a keyed digest of it; the
columns hold markers where the text was. `erase_case_free_text` removes the texts of a closed case
(retention) and keeps the digests, so the chain still verifies. Events written before (format 1) hash
their text in clear; erasing them reseals them (see migration 003)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from shared import case_index
from shared.contract import CaseEvent, CaseState, Notification
from shared.crypto import CryptoError, KeyRing
from shared.db import Conn

GENESIS = "0" * 64
OPEN_STATUSES = ("Active", "FollowUp")
SYSTEM_ACTOR = (
    "system"  # timers, retention: their reasons are written by the code, not typed by people
)
HASH_V1 = 1  # HMAC over the event with its free text in clear (events written before migration 003)
HASH_V2 = 2  # free text encrypted in `free_text`; the chain hashes its keyed digest
FREE_TEXT_COLUMN = "oversight.case_events.free_text"
ERASED = "[erased]"
# keys whose string values (or lists of strings) are typed by people, wherever they sit in data/state
TEXT_KEYS = frozenset(
    {
        "reason",
        "referred_elsewhere",
        "measures",
        "justification",
        "consent_override_reason",
        "override_reason",
    }
)
_MARKER = re.compile(r"^\u27e6text (\d+)\u27e7$")


def _marker(i: int) -> str:
    return f"\u27e6text {i}\u27e7"  # ⟦text i⟧


def _ts(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def canonical(fields: dict[str, Any]) -> bytes:
    return json.dumps(
        fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str
    ).encode()


def event_fields(
    *,
    event_id: str,
    case_id: str,
    seq: int,
    occurred_at: datetime,
    kind: str,
    actor_user_id: str,
    actor_agency: str | None,
    stage: str,
    reason: str | None,
    request_id: str | None,
    policy_version: str,
    data: Any,
    state: Any,
    free_text_digest: str | None = None,
    hash_version: int = HASH_V1,
) -> dict[str, Any]:
    fields = {
        "event_id": event_id,
        "case_id": case_id,
        "seq": seq,
        "occurred_at": _ts(occurred_at),
        "kind": kind,
        "actor_user_id": actor_user_id,
        "actor_agency": actor_agency,
        "stage": stage,
        "reason": reason,
        "request_id": request_id,
        "policy_version": policy_version,
        "data": data,
        "state": state,
    }
    if (
        hash_version >= HASH_V2
    ):  # format 1 is exactly the fields above, so old chains verify unchanged
        fields["hash_version"] = hash_version
        fields["free_text_digest"] = free_text_digest
    return fields


def chain_hash(ring: KeyRing, fields: dict[str, Any], prev_hash: str) -> str:
    return ring.audit_mac(canonical(fields) + prev_hash.encode())


# ---- free text ------------------------------------------------------------------------------
def _split(value: Any, texts: list[str], in_text: bool = False) -> Any:
    if in_text and isinstance(value, str):
        texts.append(value)
        return _marker(len(texts) - 1)
    if isinstance(value, dict):
        return {k: _split(v, texts, k in TEXT_KEYS) for k, v in value.items()}
    if isinstance(value, list):
        return [_split(v, texts, in_text) for v in value]
    return value


def _join(value: Any, texts: list[str] | None, in_text: bool = False) -> Any:
    if in_text and isinstance(value, str):
        m = _MARKER.match(value)
        if m is None:
            return value
        i = int(m.group(1))
        return texts[i] if texts is not None and i < len(texts) else ERASED
    if isinstance(value, dict):
        return {k: _join(v, texts, k in TEXT_KEYS) for k, v in value.items()}
    if isinstance(value, list):
        return [_join(v, texts, in_text) for v in value]
    return value


def split_free_text(
    reason: str | None, data: Any, state: Any, *, reason_is_text: bool = True
) -> tuple[str | None, Any, Any, list[str]]:
    """(reason, data, state) with markers where free text was, and the texts in marker order."""
    texts: list[str] = []
    r = _split(reason, texts, reason_is_text) if reason is not None else None
    return r, _split(data, texts), _split(state, texts), texts


def join_free_text(value: Any, texts: list[str] | None) -> Any:
    """Markers back to their texts (or "[erased]" when the texts were erased, texts=None)."""
    return _join(value, texts)


def free_text_digest(ring: KeyRing, event_id: str, texts: list[str]) -> str:
    """Keyed, so a short text (a name) cannot be found by hashing guesses without the audit key."""
    return ring.audit_mac(
        b"free-text\x00" + event_id.encode() + b"\x00" + canonical({"texts": texts})
    )


def _reseal(ring: KeyRing, fields: dict[str, Any], digest: str, chain: str) -> str:
    """Seal of a format-1 event after its free text was erased: its redacted content, the digest of the
    erased text and its (unchanged) chain hash."""
    return ring.audit_mac(
        b"reseal-v1\x00" + canonical(fields | {"free_text_digest": digest}) + chain.encode()
    )


def _as_json(v: Any) -> Any:
    return json.loads(v) if isinstance(v, str) else v


def decrypt_texts(ring: KeyRing, row: Any) -> list[str] | None:
    """The event's free texts, or None when they were erased (or never split out: format 1)."""
    if row["free_text"] is None:
        return (
            []
            if row["free_text_erased_at"] is None and row["free_text_digest"] is not None
            else None
        )
    return list(
        json.loads(
            ring.decrypt_field(row["free_text"], FREE_TEXT_COLUMN, row=row["event_id"]) or "[]"
        )
    )


def readable_event(ring: KeyRing, row: Any) -> dict[str, Any]:
    """reason, data and state of a stored event as an authorised reader sees them: free text decrypted,
    "[erased]" after retention. Format-1 events that were never erased are returned as stored."""
    reason, data, state = row["reason"], _as_json(row["data"]), _as_json(row.get("state"))
    if row["hash_version"] == HASH_V1 and row["free_text_erased_at"] is None:
        return {"reason": reason, "data": data, "state": state, "free_text_erased": False}
    texts = decrypt_texts(ring, row)
    return {
        "reason": _join(reason, texts, True) if reason is not None else None,
        "data": join_free_text(data, texts),
        "state": join_free_text(state, texts),
        "free_text_erased": row["free_text_erased_at"] is not None,
    }


async def append_event(conn: Conn, ring: KeyRing, event: CaseEvent) -> bool:
    """Insert one event (idempotent on event_id) and refresh the case_summary row (oversight's audit
    projection: the count the workflow emitted, the state for as-of and retention) and the floor's
    common.case_index row (the people's screens, shared/case_index.py). Returns False when the event was
    already recorded (a retried activity)."""
    async with conn.transaction():
        # one writer per case at a time, so the chain has no forks
        await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", event.case_id)
        if await conn.fetchval(
            "SELECT 1 FROM oversight.case_events WHERE event_id = $1", event.event_id
        ):
            return False
        prev = await conn.fetchrow(
            "SELECT seq, hash FROM oversight.case_events WHERE case_id = $1 ORDER BY seq DESC LIMIT 1",
            event.case_id,
        )
        expected_seq = (prev["seq"] if prev else 0) + 1
        if event.seq != expected_seq:
            raise ValueError(
                f"case {event.case_id}: event seq {event.seq} arrived, expected {expected_seq}"
            )
        prev_hash = prev["hash"] if prev else GENESIS
        reason, data, state, texts = split_free_text(
            event.reason,
            json.loads(json.dumps(event.data, default=str)),
            event.state.model_dump(mode="json"),
            reason_is_text=event.actor_user_id != SYSTEM_ACTOR,
        )  # the system writes its reasons, nobody types them
        digest = free_text_digest(ring, event.event_id, texts)
        fields = event_fields(
            event_id=event.event_id,
            case_id=event.case_id,
            seq=event.seq,
            occurred_at=event.occurred_at,
            kind=event.kind,
            actor_user_id=event.actor_user_id,
            actor_agency=event.actor_agency.value if event.actor_agency else None,
            stage=event.stage.value,
            reason=reason,
            request_id=event.request_id,
            policy_version=event.policy_version,
            data=data,
            state=state,
            free_text_digest=digest,
            hash_version=HASH_V2,
        )
        chain = chain_hash(ring, fields, prev_hash)
        sealed = (
            ring.encrypt_field(
                json.dumps(texts, ensure_ascii=False), FREE_TEXT_COLUMN, row=event.event_id
            )
            if texts
            else None
        )
        await conn.execute(
            """INSERT INTO oversight.case_events (event_id, case_id, seq, occurred_at, kind, actor_user_id,
                   actor_agency,
                   stage, reason, request_id, policy_version, data, state, prev_hash, hash, hash_version, free_text,
                   free_text_digest)
               VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17,$18)""",
            event.event_id,
            event.case_id,
            event.seq,
            event.occurred_at,
            event.kind,
            event.actor_user_id,
            fields["actor_agency"],
            event.stage.value,
            reason,
            event.request_id,
            event.policy_version,
            data,
            state,
            prev_hash,
            chain,
            HASH_V2,
            sealed,
            digest,
        )
        await upsert_summary(
            conn, event.state, event.occurred_at, seq=event.seq, stored_state=state
        )
        # the floor's read model (people's screens), in the same transaction: only a newer state wins, so
        # an API that already wrote this Update's state (or a newer one) is left as it is
        await case_index.upsert(conn, event.state, "audit")
        return True


async def upsert_summary(
    conn: Conn,
    s: CaseState,
    event_at: datetime,
    *,
    seq: int | None = None,
    stored_state: dict[str, Any] | None = None,
) -> None:
    """The projection row after an event. `seq` is the event's sequence number (the count the workflow
    emitted so far, checked by verify_chain); `stored_state` the state with free text replaced by markers."""
    last_seq = max(seq or 0, s.last_event_seq)
    open_handoffs = [h for h in s.handoffs if h.state.value == "requested"]
    stage_entered = s.stages[-1].entered_at if s.stages and s.stage.value != "closed" else event_at
    await conn.execute(
        """INSERT INTO oversight.case_summary AS cs (case_id, province, commune, stage, status, outcome,
               owner_agency, assignee,
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
        s.case_id,
        s.province,
        s.facts.commune,
        s.stage.value,
        s.status.value,
        s.outcome.value if s.outcome else None,
        s.owner_agency.value,
        s.assignee,
        s.facts.channel.value,
        s.facts.age_band.value,
        s.facts.child,
        s.facts.abroad,
        s.trafficking_status.value,
        s.deadline.due_at if s.deadline and s.status.value in OPEN_STATUSES else None,
        s.escalation_level,
        len(open_handoffs),
        min((h.accept_by for h in open_handoffs), default=None),
        s.version,
        last_seq,
        event_at,
        stage_entered,
        s.opened_at or s.facts.opened_at,
        s.closed_at,
        s.policy_version,
        stored_state
        if stored_state is not None
        else split_free_text(None, {}, s.model_dump(mode="json"))[2],
    )


async def enqueue_notification(conn: Conn, n: Notification) -> None:
    await conn.execute(
        """INSERT INTO oversight.notification_outbox (notification_id, case_id, kind, level, recipients, stage, due_at,
               created_at) VALUES ($1,$2,$3,$4,$5,$6,$7,$8) ON CONFLICT (notification_id) DO NOTHING""",
        n.notification_id,
        n.case_id,
        n.kind,
        n.level,
        n.recipients,
        n.stage.value,
        n.due_at,
        n.created_at,
    )


@dataclass(frozen=True)
class ChainReport:
    case_id: str
    events: int
    ok: bool
    first_broken_seq: int | None = None
    problem: str | None = None
    expected_events: int | None = None
    expected_from: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "case_id": self.case_id,
            "events": self.events,
            "ok": self.ok,
            "first_broken_seq": self.first_broken_seq,
            "problem": self.problem,
            "expected_events": self.expected_events,
            "expected_from": self.expected_from,
        }


def _row_fields(r: Any) -> dict[str, Any]:
    return event_fields(
        event_id=r["event_id"],
        case_id=r["case_id"],
        seq=r["seq"],
        occurred_at=r["occurred_at"],
        kind=r["kind"],
        actor_user_id=r["actor_user_id"],
        actor_agency=r["actor_agency"],
        stage=r["stage"],
        reason=r["reason"],
        request_id=r["request_id"],
        policy_version=r["policy_version"],
        data=r["data"],
        state=r["state"],
        free_text_digest=r["free_text_digest"],
        hash_version=r["hash_version"],
    )


def _event_problem(ring: KeyRing, r: Any, prev_hash: str) -> str | None:
    """Why this stored event does not match its chain hash, or None."""
    if r["hash_version"] == HASH_V1 and r["reseal"] is not None:
        # free text erased from a format-1 event: the reseal vouches for the redacted content and the
        # digest of what was erased; the chain hash itself is unchanged, so the links still hold
        seal = _reseal(ring, _row_fields(r), r["free_text_digest"], r["hash"])
        return None if seal == r["reseal"] else "event content does not match its hash"
    if chain_hash(ring, _row_fields(r), prev_hash) != r["hash"]:
        return "event content does not match its hash"
    if r["hash_version"] >= HASH_V2 and r["free_text"] is not None:
        try:
            texts = decrypt_texts(ring, r) or []
        except CryptoError:
            return "free text does not decrypt for this event (tampered or moved from another row)"
        if free_text_digest(ring, r["event_id"], texts) != r["free_text_digest"]:
            return "free text does not match its digest"
    elif (
        r["hash_version"] >= HASH_V2
        and r["free_text_erased_at"] is None
        and r["free_text_digest"] != free_text_digest(ring, r["event_id"], [])
    ):
        return "free text is missing (removed without an erasure)"
    return None


async def verify_chain(
    conn: Conn, ring: KeyRing, case_id: str, expected: dict[str, int] | None = None
) -> ChainReport:
    """Check every link of the case's chain and that none is missing at the end: the events must reach
    the count the workflow emitted. The projection (case_summary.last_event_seq) is always consulted;
    `expected` adds independent counts ({source: last seq}, e.g. the live workflow's counter or the
    history exported at closure, see replay.independent_counts). A case known to any source but without
    events fails too."""
    rows = await conn.fetch(
        "SELECT * FROM oversight.case_events WHERE case_id = $1 ORDER BY seq", case_id
    )
    sources = dict(expected or {})
    summary = await conn.fetchrow(
        "SELECT last_event_seq, status FROM oversight.case_summary WHERE case_id = $1", case_id
    )
    if summary is not None:
        sources["projection"] = int(summary["last_event_seq"])
    case_open = summary is not None and summary["status"] in OPEN_STATUSES
    want_from: str | None = None
    want: int | None = None
    if sources:
        want_from, want = max(sources.items(), key=lambda kv: kv[1])

    def broken(seq: int, problem: str) -> ChainReport:
        return ChainReport(case_id, len(rows), False, seq, problem, want, want_from)

    prev_hash = GENESIS
    for expected_seq, r in enumerate(rows, start=1):
        if r["seq"] != expected_seq:
            return broken(expected_seq, f"event {expected_seq} is missing")
        if r["prev_hash"] != prev_hash:
            return broken(r["seq"], "prev_hash does not match the previous event")
        problem = _event_problem(ring, r, prev_hash)
        if problem is None and case_open and r["free_text_erased_at"] is not None:
            problem = "free text erased while the case is open (retention erases only closed cases)"
        if problem:
            return broken(r["seq"], problem)
        prev_hash = r["hash"]
    if want is not None and len(rows) < want:
        first = len(rows) + 1
        missing = f"event {want}" if first == want else f"events {first}..{want}"
        which = ", ".join(f"{k} {v}" for k, v in sorted(sources.items()))
        return broken(
            first,
            f"{missing} missing: the workflow emitted {want} ({which}), the log holds {len(rows)}",
        )
    if not rows:
        return broken(1, "no events")
    return ChainReport(case_id, len(rows), True, None, None, want, want_from)


async def append_system_event(
    conn: Conn,
    ring: KeyRing,
    case_id: str,
    kind: str,
    reason: str,
    data: dict[str, Any],
    now: datetime,
) -> bool:
    """Append an event after the case's workflow has ended (e.g. retention), continuing its chain with
    the last recorded state. Returns False when the case has no events."""
    last = await conn.fetchrow(
        "SELECT * FROM oversight.case_events WHERE case_id = $1 ORDER BY seq DESC LIMIT 1", case_id
    )
    if last is None:
        return False
    seq = last["seq"] + 1
    prior = readable_event(ring, last)[
        "state"
    ]  # markers of the last event resolved (or "[erased]")
    state = CaseState.model_validate(prior)  # the workflow's state is unchanged (its counter too)
    event = CaseEvent(
        event_id=f"{case_id}:{seq}",
        case_id=case_id,
        seq=seq,
        occurred_at=now,
        kind=kind,
        actor_user_id=SYSTEM_ACTOR,
        stage=last["stage"],
        reason=reason,
        policy_version=last["policy_version"],
        data=data,
        state=state,
    )
    return await append_event(conn, ring, event)


async def verify_case(conn: Conn, ring: KeyRing, case_id: str, client: Any = None) -> ChainReport:
    """verify_chain with the independent counts: the exported history and, with a Temporal `client`,
    the workflow itself (see replay.independent_counts)."""
    from services.oversight.replay import independent_counts  # replay imports this module's readers

    return await verify_chain(
        conn, ring, case_id, await independent_counts(client, conn, ring, case_id)
    )


async def erase_case_free_text(conn: Conn, case_id: str, ring: KeyRing | None = None) -> int:
    """Retention: remove the stored free text (reasons, typed parts of data and state) of a closed case's
    events, keeping their digests so the chain still verifies; the history then shows "[erased]".
    Idempotent: returns how many events lost text in this call (0 the second time). Also replaces the
    free text in the case_summary projection's state.

    Events written before hash format 2 (free text hashed in clear) are resealed, which needs the audit
    key: pass `ring` (ValueError without it when such events hold text). A format-1 event whose original
    hash does not verify is not resealed (its text is still removed; verification keeps reporting it)."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", case_id)
        status = await conn.fetchval(
            "SELECT status FROM oversight.case_summary WHERE case_id = $1", case_id
        )
        if status is not None and status in OPEN_STATUSES:
            raise ValueError(
                f"case {case_id} is open ({status}): its free text is erased only after closure"
            )
        await conn.execute("SET LOCAL nrm.audit_erasure = 'on'")
        erased = 0
        v2 = await conn.execute(
            """UPDATE oversight.case_events SET free_text = NULL, free_text_erased_at = now()
               WHERE case_id = $1 AND hash_version >= 2 AND free_text IS NOT NULL""",
            case_id,
        )
        erased += int(v2.split()[-1])
        legacy = await conn.fetch(
            """SELECT * FROM oversight.case_events WHERE case_id = $1 AND hash_version = 1
               AND free_text_erased_at IS NULL ORDER BY seq""",
            case_id,
        )
        prev_hashes = {r["seq"]: r["prev_hash"] for r in legacy}
        for r in legacy:
            reason, data, state, texts = split_free_text(
                r["reason"],
                r["data"],
                r["state"],
                reason_is_text=r["actor_user_id"] != SYSTEM_ACTOR,
            )
            if not texts:
                continue
            if ring is None:
                raise ValueError(
                    f"case {case_id}: event {r['seq']} was written before hash format 2; "
                    "pass ring= to erase its free text and reseal it"
                )
            intact = chain_hash(ring, _row_fields(r), prev_hashes[r["seq"]]) == r["hash"]
            digest = free_text_digest(ring, r["event_id"], texts)
            redacted = dict(r) | {
                "reason": reason,
                "data": data,
                "state": state,
                "free_text_digest": digest,
            }
            seal = _reseal(ring, _row_fields(redacted), digest, r["hash"]) if intact else None
            await conn.execute(
                """UPDATE oversight.case_events SET reason = $2, data = $3, state = $4, free_text_digest = $5,
                       reseal = $6, free_text = NULL, free_text_erased_at = now() WHERE event_id = $1""",
                r["event_id"],
                reason,
                data,
                state,
                digest,
                seal,
            )
            erased += 1
        summary = await conn.fetchval(
            "SELECT state FROM oversight.case_summary WHERE case_id = $1", case_id
        )
        if summary is not None:
            redacted_state = split_free_text(None, {}, summary)[2]
            if redacted_state != summary:
                await conn.execute(
                    "UPDATE oversight.case_summary SET state = $2 WHERE case_id = $1",
                    case_id,
                    redacted_state,
                )
        return erased
