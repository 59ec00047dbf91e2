-- Read-side indexes for the supervisor views (GET /stuck, GET /board) and the KPIs.
-- The predicates repeat 001's open-case predicate word for word so the planner matches them.

-- Stuck list, first page: open cases of a province ordered by the earliest due instant
-- (stage deadline or oldest handoff waiting for acceptance) = "most late first".
CREATE INDEX case_summary_stuck ON case_summary
    (province, (LEAST(deadline_at, oldest_handoff_accept_by)), case_id)
    INCLUDE (stage, owner_agency, escalation_level, last_event_at, is_child, is_abroad, open_handoffs)
    WHERE status <> 'Closed' AND status <> 'ClosedReferred';

-- Board: open cases by stage x agency with the overdue count, answered from the index alone.
CREATE INDEX case_summary_board_cover ON case_summary (province, stage, owner_agency)
    INCLUDE (deadline_at)
    WHERE status <> 'Closed' AND status <> 'ClosedReferred';

-- KPIs and reports: cases received in a jurisdiction and period.
CREATE INDEX case_summary_opened ON case_summary (province, opened_at);

-- KPIs: stage decisions and deliveries by time.
CREATE INDEX case_events_kind_time ON case_events (kind, occurred_at);
