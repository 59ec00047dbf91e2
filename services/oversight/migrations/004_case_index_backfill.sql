-- common.case_index (shared/migrations/003) is the floor's read model for the people's screens. The
-- audit activity writes it in the transaction of each audit event from now on; this fills it once from
-- this schema's case_summary projection for the cases recorded before (an existing data directory).
-- Rows already there (a newer state written by an API) are kept.
INSERT INTO common.case_index AS ci (
    case_id, province, commune, stage, status, outcome, owner_agency, participants, pending_to, pending_handoffs,
    oldest_handoff_accept_by, assignee, deadline_at, reminder_at, escalation_level, categories, is_child, is_abroad,
    channel, age_band, trafficking_status, version, last_event_seq, stage_entered_at, opened_at, updated_at,
    closed_at, written_by)
SELECT s.case_id, s.province, s.commune, s.stage, s.status, s.outcome, s.owner_agency,
       coalesce(ARRAY(SELECT jsonb_array_elements_text(s.state->'participants') ORDER BY 1), '{}'),
       coalesce(ARRAY(SELECT DISTINCT h->>'to_agency' FROM jsonb_array_elements(s.state->'handoffs') h
                      WHERE h->>'state' = 'requested' ORDER BY 1), '{}'),
       coalesce((SELECT jsonb_agg(jsonb_build_object('handoff_id', h->>'handoff_id', 'to_agency', h->>'to_agency',
                                                     'kind', h->>'kind', 'accept_by', h->>'accept_by',
                                                     'escalation_level', coalesce((h->>'escalation_level')::int, 0))
                                  ORDER BY (h->>'accept_by')::timestamptz)
                 FROM jsonb_array_elements(s.state->'handoffs') h WHERE h->>'state' = 'requested'), '[]'::jsonb),
       s.oldest_handoff_accept_by, s.assignee, s.deadline_at,
       CASE WHEN s.deadline_at IS NOT NULL THEN (s.state->'deadline'->>'reminder_at')::timestamptz END,
       s.escalation_level,
       ARRAY[CASE WHEN s.is_child THEN 'child' ELSE 'adult' END, CASE WHEN s.is_abroad THEN 'abroad' ELSE 'domestic' END]
         || CASE WHEN s.age_band = 'under_16' THEN ARRAY['under_16'] ELSE '{}'::text[] END
         || CASE WHEN (s.state->'facts'->>'foreign_national')::boolean THEN ARRAY['foreign'] ELSE '{}'::text[] END,
       s.is_child, s.is_abroad, s.channel, s.age_band, s.trafficking_status, s.version, s.last_event_seq,
       s.stage_entered_at, s.opened_at, coalesce((s.state->>'updated_at')::timestamptz, s.last_event_at),
       s.closed_at, 'audit'
FROM case_summary s
ON CONFLICT (case_id) DO UPDATE SET
    province = EXCLUDED.province, commune = EXCLUDED.commune, stage = EXCLUDED.stage, status = EXCLUDED.status,
    outcome = EXCLUDED.outcome, owner_agency = EXCLUDED.owner_agency, participants = EXCLUDED.participants,
    pending_to = EXCLUDED.pending_to, pending_handoffs = EXCLUDED.pending_handoffs,
    oldest_handoff_accept_by = EXCLUDED.oldest_handoff_accept_by, assignee = EXCLUDED.assignee,
    deadline_at = EXCLUDED.deadline_at, reminder_at = EXCLUDED.reminder_at,
    escalation_level = EXCLUDED.escalation_level, categories = EXCLUDED.categories, is_child = EXCLUDED.is_child,
    is_abroad = EXCLUDED.is_abroad, channel = EXCLUDED.channel, age_band = EXCLUDED.age_band,
    trafficking_status = EXCLUDED.trafficking_status, version = EXCLUDED.version,
    last_event_seq = EXCLUDED.last_event_seq, stage_entered_at = EXCLUDED.stage_entered_at,
    opened_at = EXCLUDED.opened_at, updated_at = EXCLUDED.updated_at, closed_at = EXCLUDED.closed_at,
    written_by = EXCLUDED.written_by, indexed_at = now()
WHERE (ci.version, ci.last_event_seq) < (EXCLUDED.version, EXCLUDED.last_event_seq);
