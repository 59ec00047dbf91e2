"""SQL of the notifications schema (asyncpg only)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg

from shared.db import Conn

ERROR_MAX = 300  # a provider's answer, cut: never the message body


async def preferences(conn: Conn | asyncpg.Pool, ids: list[str]) -> dict[str, asyncpg.Record]:
    rows = await conn.fetch("SELECT * FROM notifications.preferences WHERE user_id = ANY($1)", ids)
    return {r["user_id"]: r for r in rows}


async def set_preferences(
    conn: Conn | asyncpg.Pool,
    user_id: str,
    channel: str,
    language: str | None,
    quiet_start: Any,
    quiet_end: Any,
) -> asyncpg.Record:
    row = await conn.fetchrow(
        """INSERT INTO notifications.preferences (user_id, channel, language, quiet_start, quiet_end)
           VALUES ($1, $2, $3, $4, $5)
           ON CONFLICT (user_id) DO UPDATE SET channel = EXCLUDED.channel, language = EXCLUDED.language,
               quiet_start = EXCLUDED.quiet_start, quiet_end = EXCLUDED.quiet_end, updated_at = now()
           RETURNING *""",
        user_id,
        channel,
        language,
        quiet_start,
        quiet_end,
    )
    assert row is not None
    return row


async def insert_delivery(conn: Conn, d: dict[str, Any]) -> None:
    await conn.execute(
        """INSERT INTO notifications.deliveries (delivery_id, notification_ids, case_ids, digest, recipient_id,
               recipient_group, province, channel, address, language, max_level, subject, body, short_text, not_before)
           VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15) ON CONFLICT (delivery_id) DO NOTHING""",
        d["delivery_id"],
        d["notification_ids"],
        d["case_ids"],
        d["digest"],
        d["recipient_id"],
        d["recipient_group"],
        d["province"],
        d["channel"],
        d["address"],
        d["language"],
        d["max_level"],
        d["subject"],
        d["body"],
        d["short_text"],
        d["not_before"],
    )


async def insert_inbox(conn: Conn, item: dict[str, Any]) -> None:
    await conn.execute(
        """INSERT INTO notifications.inbox (item_id, recipient_id, recipient_group, province, notification_id,
               case_id, kind, level, stage, due_at, created_at)
           VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11) ON CONFLICT (item_id) DO NOTHING""",
        item["item_id"],
        item["recipient_id"],
        item["recipient_group"],
        item["province"],
        item["notification_id"],
        item["case_id"],
        item["kind"],
        item["level"],
        item["stage"],
        item["due_at"],
        item["created_at"],
    )


async def add_digest_item(conn: Conn, c: dict[str, Any], n: dict[str, Any]) -> bool:
    status = await conn.execute(
        """INSERT INTO notifications.digest_items (recipient_id, channel, recipient_group, province, address,
               language, notification_id, case_id, kind, level, stage, due_at)
           VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12) ON CONFLICT DO NOTHING""",
        c["recipient_id"],
        c["channel"],
        c["recipient_group"],
        c["province"],
        c["address"],
        c["language"],
        n["notification_id"],
        n["case_id"],
        n["kind"],
        n["level"],
        n["stage"],
        n["due_at"],
    )
    return bool(status.endswith(" 1"))


async def take_digest_items(
    conn: Conn, recipient_id: str, channel: str, delivery_id: str
) -> list[asyncpg.Record]:
    return list(
        await conn.fetch(
            """UPDATE notifications.digest_items SET delivery_id = $3
           WHERE (recipient_id, channel, notification_id) IN (
               SELECT recipient_id, channel, notification_id FROM notifications.digest_items
               WHERE recipient_id = $1 AND channel = $2 AND delivery_id IS NULL FOR UPDATE)
           RETURNING *""",
            recipient_id,
            channel,
            delivery_id,
        )
    )


async def get_delivery(conn: Conn | asyncpg.Pool, delivery_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT * FROM notifications.deliveries WHERE delivery_id = $1", delivery_id
    )


async def log(
    conn: Conn | asyncpg.Pool,
    delivery_id: str,
    outcome: str,
    attempt: int | None,
    detail: str | None,
) -> None:
    await conn.execute(
        "INSERT INTO notifications.delivery_log (delivery_id, outcome, attempt, detail) "
        "VALUES ($1, $2, $3, $4)",
        delivery_id,
        outcome,
        attempt,
        (detail or "")[:ERROR_MAX] or None,
    )


async def mark_sent(pool: asyncpg.Pool, delivery_id: str, attempt: int, provider_ref: str) -> None:
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(
            """UPDATE notifications.deliveries SET status = 'sent', sent_at = now(), provider_ref = $2,
                   attempts = attempts + 1, last_error = NULL WHERE delivery_id = $1""",
            delivery_id,
            provider_ref,
        )
        await log(conn, delivery_id, "sent", attempt, provider_ref)


async def mark_failed(pool: asyncpg.Pool, delivery_id: str, attempt: int, why: str) -> None:
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(
            "UPDATE notifications.deliveries SET attempts = attempts + 1, last_error = $2 "
            "WHERE delivery_id = $1",
            delivery_id,
            why[:ERROR_MAX],
        )
        await log(conn, delivery_id, "failed", attempt, why)


async def mark_dead(pool: asyncpg.Pool, delivery_id: str, why: str) -> bool:
    async with pool.acquire() as conn, conn.transaction():
        status = await conn.execute(
            """UPDATE notifications.deliveries SET status = 'dead', dead_at = now(),
                   last_error = coalesce($2, last_error) WHERE delivery_id = $1 AND status = 'pending'""",
            delivery_id,
            why[:ERROR_MAX] if why else None,
        )
        if status.endswith(" 1"):
            await log(conn, delivery_id, "dead", None, why)
            return True
        return False


async def reopen_dead(pool: asyncpg.Pool, delivery_id: str, by_user: str) -> int | None:
    """A dead letter back to pending for a resend; returns its resend number, None if it is not dead."""
    async with pool.acquire() as conn, conn.transaction():
        resent = await conn.fetchval(
            """UPDATE notifications.deliveries SET status = 'pending', dead_at = NULL, resent = resent + 1,
                   not_before = NULL WHERE delivery_id = $1 AND status = 'dead' RETURNING resent""",
            delivery_id,
        )
        if resent is not None:
            await log(conn, delivery_id, "resend", None, f"by {by_user}")
        return int(resent) if resent is not None else None


async def dead_letters(
    pool: asyncpg.Pool, province: str | None, limit: int, offset: int
) -> list[asyncpg.Record]:
    return list(
        await pool.fetch(
            """SELECT * FROM notifications.deliveries WHERE status = 'dead' AND ($1::text IS NULL OR province = $1)
           ORDER BY dead_at DESC, delivery_id LIMIT $2 OFFSET $3""",
            province,
            limit,
            offset,
        )
    )


async def delivery_log(pool: asyncpg.Pool, delivery_id: str) -> list[asyncpg.Record]:
    return list(
        await pool.fetch(
            "SELECT * FROM notifications.delivery_log WHERE delivery_id = $1 ORDER BY id",
            delivery_id,
        )
    )


async def inbox(
    pool: asyncpg.Pool, user_id: str, groups: list[str], unread_only: bool, limit: int, offset: int
) -> tuple[list[asyncpg.Record], int]:
    where = "(recipient_id = $1 OR recipient_group = ANY($2))" + (
        " AND read_at IS NULL" if unread_only else ""
    )
    rows = await pool.fetch(
        f"SELECT * FROM notifications.inbox WHERE {where} ORDER BY created_at DESC, item_id "
        "LIMIT $3 OFFSET $4",
        user_id,
        groups,
        limit,
        offset,
    )
    unread = await pool.fetchval(
        "SELECT count(*) FROM notifications.inbox WHERE (recipient_id = $1 OR "
        "recipient_group = ANY($2)) AND read_at IS NULL",
        user_id,
        groups,
    )
    return list(rows), int(unread)


async def mark_read(
    pool: asyncpg.Pool, item_id: str, user_id: str, groups: list[str], at: datetime
) -> bool:
    status = await pool.execute(
        """UPDATE notifications.inbox SET read_at = coalesce(read_at, $4)
           WHERE item_id = $1 AND (recipient_id = $2 OR recipient_group = ANY($3))""",
        item_id,
        user_id,
        groups,
        at,
    )
    return bool(status.endswith(" 1"))
