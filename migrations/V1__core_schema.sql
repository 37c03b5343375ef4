-- FlowFabric PostgreSQL backend: the whole schema of the EngineBackend trait.
--
-- Conventions (checked by tests/schema_conventions.rs):
--   * Executions and flows are identified by a bare uuid plus `partition_key`,
--     the N of the `{fp:N}:<uuid>` execution id (read from the id, never
--     recomputed). `partition_key` leads every primary key of execution- and
--     flow-scoped tables, so the schema can be distributed by that column
--     (Citus) without change. On one server the tables stay plain: no hash
--     partitioning, indexes shaped for the hot queries instead.
--   * State columns hold the snake_case literals of `ff_core::state`, each
--     guarded by a named CHECK constraint.
--   * Times are `*_ms bigint` Unix milliseconds from the database clock
--     (`ff_now_ms()`), unless a caller injects `now` explicitly.
--   * Every constraint and index is named explicitly; error mapping in
--     `src/error.rs` matches on these names.

-- The one clock. `statement_timestamp()` is stable within a statement, so a
-- comparison against it can use an index.
CREATE FUNCTION ff_now_ms() RETURNS bigint
LANGUAGE sql STABLE PARALLEL SAFE
AS $$ SELECT (extract(epoch FROM statement_timestamp()) * 1000)::bigint $$;

-- Does a worker offering `offered` satisfy `required`? Deliberately opaque to
-- the planner (PL/pgSQL is never inlined): for a bare `<@` on a bound array the
-- planner assumes 0.5% of rows match and, on a large lane, prefers sorting
-- the whole lane over walking the claim index in order. An opaque function
-- is assumed to match a third of the rows, which keeps the claim an ordered
-- index walk that stops at the first match.
CREATE FUNCTION ff_caps_satisfied(required text[], offered text[]) RETURNS boolean
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE
AS $$ BEGIN RETURN required <@ offered; END $$;

-- ─── Lanes ────────────────────────────────────────────────────────────────

CREATE TABLE ff_lane_registry (
    lane_id          text   NOT NULL,
    lane_state       text   NOT NULL DEFAULT 'active',
    registered_at_ms bigint NOT NULL DEFAULT ff_now_ms(),
    CONSTRAINT ff_lane_registry_pkey PRIMARY KEY (lane_id),
    CONSTRAINT ff_lane_registry_lane_state_check
        CHECK (lane_state IN ('active', 'paused', 'draining', 'disabled'))
);
COMMENT ON TABLE ff_lane_registry IS
    'Every lane an execution was ever created on; lanes are global, not partitioned.';

-- ─── Flows ────────────────────────────────────────────────────────────────

CREATE TABLE ff_flow_core (
    partition_key       smallint NOT NULL,
    flow_id             uuid     NOT NULL,
    flow_kind           text     NOT NULL DEFAULT '',
    namespace           text     NOT NULL DEFAULT '',
    public_flow_state   text     NOT NULL DEFAULT 'open',
    graph_revision      bigint   NOT NULL DEFAULT 0,
    node_count          integer  NOT NULL DEFAULT 0,
    edge_count          integer  NOT NULL DEFAULT 0,
    created_at_ms       bigint   NOT NULL DEFAULT ff_now_ms(),
    last_mutation_at_ms bigint   NOT NULL DEFAULT ff_now_ms(),
    cancelled_at_ms     bigint,
    cancel_reason       text,
    cancellation_policy text,
    tags                jsonb    NOT NULL DEFAULT '{}'::jsonb,
    CONSTRAINT ff_flow_core_pkey PRIMARY KEY (partition_key, flow_id),
    CONSTRAINT ff_flow_core_partition_key_check CHECK (partition_key >= 0),
    CONSTRAINT ff_flow_core_public_flow_state_check
        CHECK (public_flow_state IN ('open', 'running', 'blocked', 'cancelled', 'completed', 'failed'))
);

-- ─── Executions ───────────────────────────────────────────────────────────

CREATE TABLE ff_exec_core (
    partition_key         smallint NOT NULL,
    execution_id          uuid     NOT NULL,
    flow_id               uuid,
    lane_id               text     NOT NULL,
    namespace             text     NOT NULL DEFAULT '',
    execution_kind        text     NOT NULL DEFAULT '',
    creator_identity      text     NOT NULL DEFAULT '',
    -- Tokens a worker must advertise to claim this execution (subset match).
    required_capabilities text[]   NOT NULL DEFAULT '{}',
    priority              integer  NOT NULL DEFAULT 0,
    -- Index of the current attempt, or of the next one while none runs.
    -- Attempt 0 is the first; a retry moves it on by one.
    attempt_index         integer  NOT NULL DEFAULT 0,
    retry_count           integer  NOT NULL DEFAULT 0,
    reclaim_count         integer  NOT NULL DEFAULT 0,
    lifecycle_phase       text     NOT NULL DEFAULT 'runnable',
    ownership_state       text     NOT NULL DEFAULT 'unowned',
    eligibility_state     text     NOT NULL DEFAULT 'eligible_now',
    blocking_reason       text     NOT NULL DEFAULT 'waiting_for_worker',
    blocking_detail       text,
    terminal_outcome      text     NOT NULL DEFAULT 'none',
    attempt_state         text     NOT NULL DEFAULT 'pending_first_attempt',
    public_state          text     NOT NULL DEFAULT 'waiting',
    -- When a delayed execution (eligibility `not_eligible_until_time`) is due.
    eligible_at_ms        bigint,
    deadline_at_ms        bigint,
    created_at_ms         bigint   NOT NULL DEFAULT ff_now_ms(),
    last_mutation_at_ms   bigint   NOT NULL DEFAULT ff_now_ms(),
    started_at_ms         bigint,
    completed_at_ms       bigint,
    progress_percent      smallint,
    progress_message      text,
    input_payload         bytea,
    payload_encoding      text,
    result_payload        bytea,
    failure_reason        text,
    cancel_reason         text,
    -- `ff_core::policy::ExecutionPolicy` as given at creation (serde JSON).
    policy                jsonb,
    tags                  jsonb    NOT NULL DEFAULT '{}'::jsonb,
    CONSTRAINT ff_exec_core_pkey PRIMARY KEY (partition_key, execution_id),
    CONSTRAINT ff_exec_core_partition_key_check CHECK (partition_key >= 0),
    CONSTRAINT ff_exec_core_lifecycle_phase_check
        CHECK (lifecycle_phase IN ('submitted', 'runnable', 'active', 'suspended', 'terminal')),
    CONSTRAINT ff_exec_core_ownership_state_check
        CHECK (ownership_state IN ('unowned', 'leased', 'lease_expired_reclaimable', 'lease_revoked')),
    CONSTRAINT ff_exec_core_eligibility_state_check
        CHECK (eligibility_state IN ('eligible_now', 'not_eligible_until_time', 'blocked_by_dependencies',
            'blocked_by_budget', 'blocked_by_quota', 'blocked_by_route', 'blocked_by_lane_state',
            'blocked_by_operator', 'not_applicable')),
    CONSTRAINT ff_exec_core_blocking_reason_check
        CHECK (blocking_reason IN ('none', 'waiting_for_worker', 'waiting_for_retry_backoff',
            'waiting_for_resume_delay', 'waiting_for_delay', 'waiting_for_signal', 'waiting_for_approval',
            'waiting_for_callback', 'waiting_for_tool_result', 'waiting_for_children', 'waiting_for_budget',
            'waiting_for_quota', 'waiting_for_capable_worker', 'waiting_for_locality_match',
            'paused_by_operator', 'paused_by_policy', 'paused_by_flow_cancel')),
    CONSTRAINT ff_exec_core_terminal_outcome_check
        CHECK (terminal_outcome IN ('none', 'success', 'failed', 'cancelled', 'expired', 'skipped')),
    CONSTRAINT ff_exec_core_attempt_state_check
        CHECK (attempt_state IN ('none', 'pending_first_attempt', 'running_attempt', 'attempt_interrupted',
            'pending_retry_attempt', 'pending_replay_attempt', 'attempt_terminal')),
    CONSTRAINT ff_exec_core_public_state_check
        CHECK (public_state IN ('waiting', 'delayed', 'rate_limited', 'waiting_children', 'active',
            'suspended', 'resumable', 'completed', 'failed', 'cancelled', 'expired', 'skipped')),
    -- A terminal execution has an outcome and nothing else does.
    CONSTRAINT ff_exec_core_terminal_has_outcome
        CHECK ((lifecycle_phase = 'terminal') = (terminal_outcome <> 'none')),
    -- public_state is derived, exactly as `ff_core::state::StateVector::derive_public_state`
    -- derives it; a statement that forgets to keep it true fails here.
    CONSTRAINT ff_exec_core_public_state_derived
        CHECK (public_state = CASE lifecycle_phase
            WHEN 'terminal' THEN CASE terminal_outcome
                WHEN 'success' THEN 'completed' WHEN 'cancelled' THEN 'cancelled'
                WHEN 'expired' THEN 'expired' WHEN 'skipped' THEN 'skipped' ELSE 'failed' END
            WHEN 'suspended' THEN 'suspended'
            WHEN 'active' THEN 'active'
            WHEN 'runnable' THEN CASE eligibility_state
                WHEN 'not_eligible_until_time' THEN 'delayed'
                WHEN 'blocked_by_dependencies' THEN 'waiting_children'
                WHEN 'blocked_by_budget' THEN 'rate_limited'
                WHEN 'blocked_by_quota' THEN 'rate_limited'
                ELSE 'waiting' END
            ELSE 'waiting' END),
    CONSTRAINT ff_exec_core_delay_has_time
        CHECK (eligibility_state <> 'not_eligible_until_time' OR eligible_at_ms IS NOT NULL),
    CONSTRAINT ff_exec_core_progress_percent_check
        CHECK (progress_percent IS NULL OR progress_percent BETWEEN 0 AND 100)
);
COMMENT ON TABLE ff_exec_core IS
    'One row per execution: its state vector, routing, payloads and policy.';

-- The claim query: one lane, eligible rows only, highest priority then oldest.
-- The partial predicate keeps the index to the claimable backlog.
CREATE INDEX ff_exec_core_claim_idx
    ON ff_exec_core (lane_id, priority DESC, created_at_ms)
    WHERE lifecycle_phase = 'runnable' AND eligibility_state = 'eligible_now';

-- The promotion scanner: delayed and backed-off executions in due order.
CREATE INDEX ff_exec_core_due_idx
    ON ff_exec_core (eligible_at_ms)
    WHERE eligibility_state = 'not_eligible_until_time';

-- Flow membership (members share their flow's partition).
CREATE INDEX ff_exec_core_flow_idx
    ON ff_exec_core (partition_key, flow_id)
    WHERE flow_id IS NOT NULL;

-- Idempotent creation: a key maps to one execution for its dedup window.
CREATE TABLE ff_idempotency_key (
    partition_key   smallint NOT NULL,
    namespace       text     NOT NULL,
    idempotency_key text     NOT NULL,
    execution_id    uuid     NOT NULL,
    expires_at_ms   bigint   NOT NULL,
    CONSTRAINT ff_idempotency_key_pkey PRIMARY KEY (partition_key, namespace, idempotency_key)
);

-- ─── Attempts and leases ──────────────────────────────────────────────────

CREATE TABLE ff_attempt (
    partition_key        smallint NOT NULL,
    execution_id         uuid     NOT NULL,
    attempt_index        integer  NOT NULL,
    attempt_id           uuid     NOT NULL DEFAULT gen_random_uuid(),
    attempt_type         text     NOT NULL DEFAULT 'initial',
    lifecycle            text     NOT NULL DEFAULT 'started',
    -- The lease. `lease_expires_at_ms IS NULL` means no lease is held.
    -- `lease_epoch` counts the leases granted on this attempt (first claim = 1;
    -- every resume or reclaim adds one) and fences stale holders.
    lease_id             uuid,
    lease_epoch          bigint   NOT NULL DEFAULT 0,
    lease_expires_at_ms  bigint,
    lease_ttl_ms         bigint,
    worker_id            text,
    worker_instance_id   text,
    -- Why the last lease ended; read by the lease-event trigger.
    lease_end_reason     text,
    started_at_ms        bigint   NOT NULL DEFAULT ff_now_ms(),
    last_renewed_at_ms   bigint,
    ended_at_ms          bigint,
    failure_reason       text,
    failure_class        text,
    CONSTRAINT ff_attempt_pkey PRIMARY KEY (partition_key, execution_id, attempt_index),
    CONSTRAINT ff_attempt_exec_fkey FOREIGN KEY (partition_key, execution_id)
        REFERENCES ff_exec_core (partition_key, execution_id) ON DELETE CASCADE,
    CONSTRAINT ff_attempt_attempt_index_check CHECK (attempt_index >= 0),
    CONSTRAINT ff_attempt_attempt_type_check
        CHECK (attempt_type IN ('initial', 'retry', 'reclaim', 'replay', 'fallback')),
    CONSTRAINT ff_attempt_lifecycle_check
        CHECK (lifecycle IN ('created', 'started', 'suspended', 'ended_success', 'ended_failure',
            'ended_cancelled', 'interrupted_reclaimed')),
    CONSTRAINT ff_attempt_lease_end_reason_check
        CHECK (lease_end_reason IS NULL OR lease_end_reason IN ('completed', 'failed', 'cancelled',
            'delayed', 'waiting_children', 'suspended', 'expired', 'revoked')),
    -- Only a started attempt holds a lease.
    CONSTRAINT ff_attempt_lease_only_when_started
        CHECK (lease_expires_at_ms IS NULL OR lifecycle = 'started')
);
COMMENT ON TABLE ff_attempt IS
    'One row per attempt. An attempt survives lease interruptions (delay, expiry, suspension); a retry starts a new one.';

-- The lease-expiry scanner.
CREATE INDEX ff_attempt_lease_expiry_idx
    ON ff_attempt (lease_expires_at_ms)
    WHERE lease_expires_at_ms IS NOT NULL;

-- ─── Flow graph ───────────────────────────────────────────────────────────

CREATE TABLE ff_edge (
    partition_key           smallint NOT NULL,
    flow_id                 uuid     NOT NULL,
    edge_id                 uuid     NOT NULL,
    upstream_execution_id   uuid     NOT NULL,
    downstream_execution_id uuid     NOT NULL,
    dependency_kind         text     NOT NULL DEFAULT 'success_only',
    satisfaction_condition  text     NOT NULL DEFAULT 'all_required',
    data_passing_ref        text,
    edge_state              text     NOT NULL DEFAULT 'pending',
    created_at_ms           bigint   NOT NULL DEFAULT ff_now_ms(),
    created_by              text     NOT NULL DEFAULT '',
    CONSTRAINT ff_edge_pkey PRIMARY KEY (partition_key, flow_id, edge_id),
    CONSTRAINT ff_edge_flow_fkey FOREIGN KEY (partition_key, flow_id)
        REFERENCES ff_flow_core (partition_key, flow_id) ON DELETE CASCADE,
    CONSTRAINT ff_edge_endpoints_key
        UNIQUE (partition_key, flow_id, upstream_execution_id, downstream_execution_id),
    CONSTRAINT ff_edge_not_self CHECK (upstream_execution_id <> downstream_execution_id),
    CONSTRAINT ff_edge_edge_state_check
        CHECK (edge_state IN ('pending', 'satisfied', 'unsatisfiable', 'skipped', 'cancelled'))
);
CREATE INDEX ff_edge_downstream_idx ON ff_edge (partition_key, flow_id, downstream_execution_id);

CREATE TABLE ff_edge_group (
    partition_key           smallint NOT NULL,
    flow_id                 uuid     NOT NULL,
    downstream_execution_id uuid     NOT NULL,
    -- `ff_core::contracts::EdgeDependencyPolicy` (serde JSON).
    policy                  jsonb    NOT NULL DEFAULT '{"kind":"all_of"}'::jsonb,
    total_deps              integer  NOT NULL DEFAULT 0,
    satisfied_count         integer  NOT NULL DEFAULT 0,
    failed_count            integer  NOT NULL DEFAULT 0,
    skipped_count           integer  NOT NULL DEFAULT 0,
    running_count           integer  NOT NULL DEFAULT 0,
    group_state             text     NOT NULL DEFAULT 'pending',
    CONSTRAINT ff_edge_group_pkey PRIMARY KEY (partition_key, flow_id, downstream_execution_id),
    CONSTRAINT ff_edge_group_flow_fkey FOREIGN KEY (partition_key, flow_id)
        REFERENCES ff_flow_core (partition_key, flow_id) ON DELETE CASCADE,
    CONSTRAINT ff_edge_group_group_state_check
        CHECK (group_state IN ('pending', 'satisfied', 'impossible', 'cancelled'))
);

-- ─── Suspension, waitpoints, signals ──────────────────────────────────────

CREATE TABLE ff_suspension_current (
    partition_key        smallint NOT NULL,
    execution_id         uuid     NOT NULL,
    suspension_id        uuid     NOT NULL,
    attempt_index        integer  NOT NULL,
    resume_condition     jsonb    NOT NULL,
    resume_policy        jsonb    NOT NULL DEFAULT '{}'::jsonb,
    reason_code          text     NOT NULL DEFAULT '',
    requested_by         text     NOT NULL DEFAULT '',
    timeout_at_ms        bigint,
    timeout_behavior     text     NOT NULL DEFAULT 'fail',
    continuation_pointer text,
    idempotency_key      text,
    suspended_at_ms      bigint   NOT NULL DEFAULT ff_now_ms(),
    satisfied_at_ms      bigint,
    CONSTRAINT ff_suspension_current_pkey PRIMARY KEY (partition_key, execution_id),
    CONSTRAINT ff_suspension_current_exec_fkey FOREIGN KEY (partition_key, execution_id)
        REFERENCES ff_exec_core (partition_key, execution_id) ON DELETE CASCADE
);
CREATE INDEX ff_suspension_current_timeout_idx
    ON ff_suspension_current (timeout_at_ms)
    WHERE timeout_at_ms IS NOT NULL AND satisfied_at_ms IS NULL;

CREATE TABLE ff_waitpoint_pending (
    partition_key  smallint NOT NULL,
    waitpoint_id   uuid     NOT NULL,
    execution_id   uuid     NOT NULL,
    attempt_index  integer  NOT NULL,
    waitpoint_key  text     NOT NULL,
    state          text     NOT NULL DEFAULT 'pending',
    suspension_id  uuid,
    hmac_kid       text     NOT NULL,
    created_at_ms  bigint   NOT NULL DEFAULT ff_now_ms(),
    expires_at_ms  bigint,
    closed_at_ms   bigint,
    CONSTRAINT ff_waitpoint_pending_pkey PRIMARY KEY (partition_key, waitpoint_id),
    CONSTRAINT ff_waitpoint_pending_exec_fkey FOREIGN KEY (partition_key, execution_id)
        REFERENCES ff_exec_core (partition_key, execution_id) ON DELETE CASCADE,
    CONSTRAINT ff_waitpoint_pending_key_key UNIQUE (partition_key, execution_id, waitpoint_key),
    CONSTRAINT ff_waitpoint_pending_state_check
        CHECK (state IN ('pending', 'active', 'closed', 'expired'))
);
CREATE INDEX ff_waitpoint_pending_expiry_idx
    ON ff_waitpoint_pending (expires_at_ms)
    WHERE state = 'pending' AND expires_at_ms IS NOT NULL;

-- Signing keys for waitpoint tokens; `kid` is the key id embedded in tokens.
CREATE TABLE ff_waitpoint_hmac (
    kid            text   NOT NULL,
    secret         bytea  NOT NULL,
    is_current     boolean NOT NULL DEFAULT false,
    created_at_ms  bigint NOT NULL DEFAULT ff_now_ms(),
    -- A rotated-out key verifies tokens until then.
    verify_until_ms bigint,
    CONSTRAINT ff_waitpoint_hmac_pkey PRIMARY KEY (kid),
    CONSTRAINT ff_waitpoint_hmac_kid_check CHECK (kid <> '' AND strpos(kid, '.') = 0)
);
CREATE UNIQUE INDEX ff_waitpoint_hmac_one_current ON ff_waitpoint_hmac (is_current) WHERE is_current;

CREATE TABLE ff_signal (
    partition_key    smallint NOT NULL,
    execution_id     uuid     NOT NULL,
    signal_id        uuid     NOT NULL,
    waitpoint_id     uuid,
    signal_name      text     NOT NULL,
    signal_category  text     NOT NULL DEFAULT '',
    source_type      text     NOT NULL DEFAULT '',
    source_identity  text     NOT NULL DEFAULT '',
    correlation_id   text,
    idempotency_key  text,
    payload          bytea,
    payload_encoding text,
    effect           text     NOT NULL DEFAULT 'buffered',
    accepted_at_ms   bigint   NOT NULL DEFAULT ff_now_ms(),
    CONSTRAINT ff_signal_pkey PRIMARY KEY (partition_key, execution_id, signal_id),
    CONSTRAINT ff_signal_exec_fkey FOREIGN KEY (partition_key, execution_id)
        REFERENCES ff_exec_core (partition_key, execution_id) ON DELETE CASCADE,
    CONSTRAINT ff_signal_effect_check CHECK (effect IN ('satisfied', 'buffered', 'deduped'))
);
CREATE UNIQUE INDEX ff_signal_idempotency_key
    ON ff_signal (partition_key, execution_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;

-- ─── Streams ──────────────────────────────────────────────────────────────

CREATE TABLE ff_stream_frame (
    partition_key  smallint NOT NULL,
    execution_id   uuid     NOT NULL,
    attempt_index  integer  NOT NULL,
    seq            bigint   NOT NULL,
    frame_kind     text     NOT NULL,
    frame_type     text     NOT NULL DEFAULT '',
    correlation_id text,
    mode           text     NOT NULL DEFAULT 'durable',
    payload        bytea    NOT NULL,
    created_at_ms  bigint   NOT NULL DEFAULT ff_now_ms(),
    -- Best-effort frames age out at this time.
    expires_at_ms  bigint,
    CONSTRAINT ff_stream_frame_pkey PRIMARY KEY (partition_key, execution_id, attempt_index, seq),
    CONSTRAINT ff_stream_frame_exec_fkey FOREIGN KEY (partition_key, execution_id)
        REFERENCES ff_exec_core (partition_key, execution_id) ON DELETE CASCADE,
    CONSTRAINT ff_stream_frame_frame_kind_check CHECK (frame_kind IN ('stdout', 'stderr', 'event', 'blob')),
    CONSTRAINT ff_stream_frame_mode_check CHECK (mode IN ('durable', 'summary', 'best_effort'))
);

CREATE TABLE ff_stream_summary (
    partition_key    smallint NOT NULL,
    execution_id     uuid     NOT NULL,
    attempt_index    integer  NOT NULL,
    document         jsonb    NOT NULL DEFAULT '{}'::jsonb,
    version          bigint   NOT NULL DEFAULT 0,
    patch_kind       text     NOT NULL DEFAULT 'json_merge_patch',
    frame_count      bigint   NOT NULL DEFAULT 0,
    first_applied_ms bigint,
    last_updated_ms  bigint,
    closed_at_ms     bigint,
    CONSTRAINT ff_stream_summary_pkey PRIMARY KEY (partition_key, execution_id, attempt_index),
    CONSTRAINT ff_stream_summary_exec_fkey FOREIGN KEY (partition_key, execution_id)
        REFERENCES ff_exec_core (partition_key, execution_id) ON DELETE CASCADE,
    CONSTRAINT ff_stream_summary_patch_kind_check CHECK (patch_kind IN ('json_merge_patch'))
);

-- ─── Budgets and quotas (partitioned by `{b:N}` / `{q:N}`) ────────────────

CREATE TABLE ff_budget_policy (
    partition_key     smallint NOT NULL,
    budget_id         uuid     NOT NULL,
    scope_type        text     NOT NULL,
    scope_id          text     NOT NULL,
    enforcement_mode  text     NOT NULL,
    on_hard_limit     text     NOT NULL,
    on_soft_limit     text     NOT NULL,
    reset_interval_ms bigint   NOT NULL DEFAULT 0,
    -- {dimension: limit}
    hard_limits       jsonb    NOT NULL DEFAULT '{}'::jsonb,
    soft_limits       jsonb    NOT NULL DEFAULT '{}'::jsonb,
    breach_count      bigint   NOT NULL DEFAULT 0,
    soft_breach_count bigint   NOT NULL DEFAULT 0,
    last_breach_at_ms bigint,
    last_breach_dim   text,
    next_reset_at_ms  bigint,
    created_at_ms     bigint   NOT NULL DEFAULT ff_now_ms(),
    CONSTRAINT ff_budget_policy_pkey PRIMARY KEY (partition_key, budget_id)
);

CREATE TABLE ff_budget_usage (
    partition_key smallint NOT NULL,
    budget_id     uuid     NOT NULL,
    dimension     text     NOT NULL,
    current_usage bigint   NOT NULL DEFAULT 0,
    CONSTRAINT ff_budget_usage_pkey PRIMARY KEY (partition_key, budget_id, dimension),
    CONSTRAINT ff_budget_usage_budget_fkey FOREIGN KEY (partition_key, budget_id)
        REFERENCES ff_budget_policy (partition_key, budget_id) ON DELETE CASCADE,
    CONSTRAINT ff_budget_usage_current_usage_check CHECK (current_usage >= 0)
);

CREATE TABLE ff_budget_usage_dedup (
    partition_key smallint NOT NULL,
    budget_id     uuid     NOT NULL,
    dedup_key     text     NOT NULL,
    applied_at_ms bigint   NOT NULL DEFAULT ff_now_ms(),
    CONSTRAINT ff_budget_usage_dedup_pkey PRIMARY KEY (partition_key, budget_id, dedup_key),
    CONSTRAINT ff_budget_usage_dedup_budget_fkey FOREIGN KEY (partition_key, budget_id)
        REFERENCES ff_budget_policy (partition_key, budget_id) ON DELETE CASCADE
);

CREATE TABLE ff_quota_policy (
    partition_key           smallint NOT NULL,
    quota_policy_id         uuid     NOT NULL,
    window_seconds          bigint   NOT NULL,
    max_requests_per_window bigint   NOT NULL,
    max_concurrent          bigint   NOT NULL,
    created_at_ms           bigint   NOT NULL DEFAULT ff_now_ms(),
    CONSTRAINT ff_quota_policy_pkey PRIMARY KEY (partition_key, quota_policy_id),
    CONSTRAINT ff_quota_policy_window_check CHECK (window_seconds > 0)
);

-- ─── Outboxes ─────────────────────────────────────────────────────────────
--
-- Append-only event tables read by subscriptions. `event_id` grows
-- monotonically; `tx_id` lets a reader stop below the oldest transaction
-- still in flight, so an event whose id was allocated early but committed
-- late is never skipped. Notifications carry routing only (the event id).
-- Outboxes are keyed by `event_id` alone: a subscription reads them in one
-- global order across partitions.

CREATE TABLE ff_completion_event (
    event_id       bigint   GENERATED ALWAYS AS IDENTITY,
    partition_key  smallint NOT NULL,
    execution_id   uuid     NOT NULL,
    flow_id        uuid,
    lane_id        text     NOT NULL,
    namespace      text     NOT NULL,
    outcome        text     NOT NULL,
    attempt_index  integer  NOT NULL,
    occurred_at_ms bigint   NOT NULL,
    tx_id          xid8     NOT NULL DEFAULT pg_current_xact_id(),
    CONSTRAINT ff_completion_event_pkey PRIMARY KEY (event_id),
    CONSTRAINT ff_completion_event_outcome_check
        CHECK (outcome IN ('success', 'failure', 'cancelled', 'expired', 'skipped'))
);
CREATE INDEX ff_completion_event_exec_idx ON ff_completion_event (partition_key, execution_id);

CREATE TABLE ff_lease_event (
    event_id           bigint   GENERATED ALWAYS AS IDENTITY,
    partition_key      smallint NOT NULL,
    execution_id       uuid     NOT NULL,
    attempt_index      integer  NOT NULL,
    lease_id           uuid,
    lease_epoch        bigint   NOT NULL,
    event_kind         text     NOT NULL,
    worker_instance_id text,
    reason             text,
    occurred_at_ms     bigint   NOT NULL,
    tx_id              xid8     NOT NULL DEFAULT pg_current_xact_id(),
    CONSTRAINT ff_lease_event_pkey PRIMARY KEY (event_id),
    CONSTRAINT ff_lease_event_event_kind_check
        CHECK (event_kind IN ('acquired', 'renewed', 'released', 'expired', 'reclaimed', 'revoked'))
);
CREATE INDEX ff_lease_event_exec_idx ON ff_lease_event (partition_key, execution_id);

CREATE TABLE ff_signal_event (
    event_id        bigint   GENERATED ALWAYS AS IDENTITY,
    partition_key   smallint NOT NULL,
    execution_id    uuid     NOT NULL,
    signal_id       uuid     NOT NULL,
    waitpoint_id    uuid,
    source_identity text,
    effect          text     NOT NULL,
    occurred_at_ms  bigint   NOT NULL,
    tx_id           xid8     NOT NULL DEFAULT pg_current_xact_id(),
    CONSTRAINT ff_signal_event_pkey PRIMARY KEY (event_id),
    CONSTRAINT ff_signal_event_effect_check CHECK (effect IN ('satisfied', 'buffered', 'deduped'))
);

CREATE TABLE ff_operator_event (
    event_id       bigint   GENERATED ALWAYS AS IDENTITY,
    partition_key  smallint,
    execution_id   uuid,
    flow_id        uuid,
    action         text     NOT NULL,
    actor          text     NOT NULL DEFAULT '',
    detail         jsonb    NOT NULL DEFAULT '{}'::jsonb,
    occurred_at_ms bigint   NOT NULL,
    tx_id          xid8     NOT NULL DEFAULT pg_current_xact_id(),
    CONSTRAINT ff_operator_event_pkey PRIMARY KEY (event_id)
);

-- ─── Triggers: outbox rows and wake-ups that no code path can forget ─────

-- Exactly one completion event per transition into `terminal`, whichever
-- statement makes it (complete, fail, cancel, operator, flow cancel, expiry).
CREATE FUNCTION ff_exec_core_emit_completion() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    new_event_id bigint;
BEGIN
    INSERT INTO ff_completion_event (partition_key, execution_id, flow_id, lane_id, namespace,
                                     outcome, attempt_index, occurred_at_ms)
    VALUES (NEW.partition_key, NEW.execution_id, NEW.flow_id, NEW.lane_id, NEW.namespace,
            CASE NEW.terminal_outcome WHEN 'failed' THEN 'failure' ELSE NEW.terminal_outcome END,
            NEW.attempt_index, NEW.last_mutation_at_ms)
    RETURNING event_id INTO new_event_id;
    PERFORM pg_notify('ff_completion', new_event_id::text);
    RETURN NULL;
END $$;

CREATE TRIGGER ff_exec_core_completion_on_update
    AFTER UPDATE OF lifecycle_phase ON ff_exec_core
    FOR EACH ROW
    WHEN (NEW.lifecycle_phase = 'terminal' AND OLD.lifecycle_phase <> 'terminal')
    EXECUTE FUNCTION ff_exec_core_emit_completion();

-- Wake claimers waiting on a lane when work becomes claimable there.
CREATE FUNCTION ff_exec_core_notify_work() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('ff_work', NEW.lane_id);
    RETURN NULL;
END $$;

CREATE TRIGGER ff_exec_core_work_on_insert
    AFTER INSERT ON ff_exec_core
    FOR EACH ROW
    WHEN (NEW.lifecycle_phase = 'runnable' AND NEW.eligibility_state = 'eligible_now')
    EXECUTE FUNCTION ff_exec_core_notify_work();

CREATE TRIGGER ff_exec_core_work_on_update
    AFTER UPDATE OF lifecycle_phase, eligibility_state ON ff_exec_core
    FOR EACH ROW
    WHEN (NEW.lifecycle_phase = 'runnable' AND NEW.eligibility_state = 'eligible_now'
          AND (OLD.lifecycle_phase <> 'runnable' OR OLD.eligibility_state <> 'eligible_now'))
    EXECUTE FUNCTION ff_exec_core_notify_work();

-- One lease event per lease change: granted (insert, or an epoch bump over a
-- released lease), taken over (an epoch bump over a held lease), or ended.
-- Renewals only move the expiry and are not recorded.
CREATE FUNCTION ff_attempt_emit_lease_event() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    kind   text;
    why    text;
    lid    uuid := NEW.lease_id;
    holder text := NEW.worker_instance_id;
BEGIN
    IF TG_OP = 'INSERT' THEN
        kind := 'acquired';
    ELSIF NEW.lease_epoch <> OLD.lease_epoch THEN
        kind := CASE WHEN OLD.lease_expires_at_ms IS NULL THEN 'acquired' ELSE 'reclaimed' END;
    ELSE
        -- The lease ended: report the lease and holder that ended.
        why := NEW.lease_end_reason;
        kind := CASE why WHEN 'expired' THEN 'expired' WHEN 'revoked' THEN 'revoked' ELSE 'released' END;
        lid := OLD.lease_id;
        holder := OLD.worker_instance_id;
    END IF;
    INSERT INTO ff_lease_event (partition_key, execution_id, attempt_index, lease_id, lease_epoch,
                                event_kind, worker_instance_id, reason, occurred_at_ms)
    VALUES (NEW.partition_key, NEW.execution_id, NEW.attempt_index, lid, NEW.lease_epoch,
            kind, holder, why, ff_now_ms());
    RETURN NULL;
END $$;

CREATE TRIGGER ff_attempt_lease_on_insert
    AFTER INSERT ON ff_attempt
    FOR EACH ROW
    WHEN (NEW.lease_expires_at_ms IS NOT NULL)
    EXECUTE FUNCTION ff_attempt_emit_lease_event();

CREATE TRIGGER ff_attempt_lease_on_update
    AFTER UPDATE OF lease_epoch, lease_expires_at_ms ON ff_attempt
    FOR EACH ROW
    WHEN (NEW.lease_epoch <> OLD.lease_epoch
          OR (OLD.lease_expires_at_ms IS NOT NULL AND NEW.lease_expires_at_ms IS NULL))
    EXECUTE FUNCTION ff_attempt_emit_lease_event();
