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

-- ─── State literals ───────────────────────────────────────────────────────
--
-- Validators for the named CHECK constraints on state columns. They are
-- PL/pgSQL on purpose: PostgreSQL re-reads the stored expression of every
-- CHECK constraint of a table on each INSERT or UPDATE, and an
-- `IN ('a', 'b', ...)` list is stored as an array constant that costs more to
-- read back than to test; measured on the claim → complete path, plain
-- IN-lists cost about 30% of its throughput. A PL/pgSQL body is compiled once
-- per session. STRICT: a NULL passes, as it would an IN-list check.

CREATE FUNCTION ff_is_lane_state(v text) RETURNS boolean
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE
AS $$ BEGIN RETURN v IN ('active', 'paused', 'draining', 'disabled'); END $$;

CREATE FUNCTION ff_is_public_flow_state(v text) RETURNS boolean
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE
AS $$ BEGIN RETURN v IN ('open', 'running', 'blocked', 'cancelled', 'completed', 'failed'); END $$;

CREATE FUNCTION ff_is_edge_state(v text) RETURNS boolean
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE
AS $$ BEGIN RETURN v IN ('pending', 'satisfied', 'unsatisfiable', 'skipped', 'cancelled'); END $$;

CREATE FUNCTION ff_is_edge_group_state(v text) RETURNS boolean
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE
AS $$ BEGIN RETURN v IN ('pending', 'satisfied', 'impossible', 'cancelled'); END $$;

CREATE FUNCTION ff_is_waitpoint_state(v text) RETURNS boolean
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE
AS $$ BEGIN RETURN v IN ('pending', 'active', 'closed', 'expired'); END $$;

CREATE FUNCTION ff_is_frame_kind(v text) RETURNS boolean
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE
AS $$ BEGIN RETURN v IN ('stdout', 'stderr', 'event', 'blob'); END $$;

CREATE FUNCTION ff_is_stream_mode(v text) RETURNS boolean
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE
AS $$ BEGIN RETURN v IN ('durable', 'summary', 'best_effort'); END $$;

CREATE FUNCTION ff_is_patch_kind(v text) RETURNS boolean
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE
AS $$ BEGIN RETURN v IN ('json_merge_patch'); END $$;

CREATE FUNCTION ff_is_completion_outcome(v text) RETURNS boolean
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE
AS $$ BEGIN RETURN v IN ('success', 'failure', 'cancelled', 'expired', 'skipped'); END $$;

CREATE FUNCTION ff_is_lease_event_kind(v text) RETURNS boolean
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE
AS $$ BEGIN RETURN v IN ('acquired', 'renewed', 'released', 'expired', 'reclaimed', 'revoked'); END $$;

CREATE FUNCTION ff_is_signal_effect(v text) RETURNS boolean
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE
AS $$ BEGIN RETURN v IN ('satisfied', 'buffered', 'deduped'); END $$;


-- The state vector of an execution: every column one of ff-core's literals,
-- and the columns consistent with each other. One function for the whole row
-- because each CHECK constraint costs a call on every write of the row; the
-- error names the offending column.
CREATE FUNCTION ff_exec_state_valid(
    lifecycle_phase text, ownership_state text, eligibility_state text, blocking_reason text,
    terminal_outcome text, attempt_state text, public_state text, eligible_at_ms bigint)
RETURNS boolean
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
AS $$
DECLARE
    problem text;
    -- public_state as ff_core::state::StateVector::derive_public_state derives
    -- it; a statement that forgets to keep public_state true fails here.
    derived text := CASE lifecycle_phase
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
        ELSE 'waiting' END;
BEGIN
    IF lifecycle_phase NOT IN ('submitted', 'runnable', 'active', 'suspended', 'terminal') THEN
        problem := format('lifecycle_phase %L is not a LifecyclePhase', lifecycle_phase);
    ELSIF ownership_state NOT IN ('unowned', 'leased', 'lease_expired_reclaimable', 'lease_revoked') THEN
        problem := format('ownership_state %L is not an OwnershipState', ownership_state);
    ELSIF eligibility_state NOT IN ('eligible_now', 'not_eligible_until_time', 'blocked_by_dependencies',
            'blocked_by_budget', 'blocked_by_quota', 'blocked_by_route', 'blocked_by_lane_state',
            'blocked_by_operator', 'not_applicable') THEN
        problem := format('eligibility_state %L is not an EligibilityState', eligibility_state);
    ELSIF blocking_reason NOT IN ('none', 'waiting_for_worker', 'waiting_for_retry_backoff', 'waiting_for_resume_delay',
            'waiting_for_delay', 'waiting_for_signal', 'waiting_for_approval',
            'waiting_for_callback', 'waiting_for_tool_result', 'waiting_for_children',
            'waiting_for_budget', 'waiting_for_quota', 'waiting_for_capable_worker',
            'waiting_for_locality_match', 'paused_by_operator', 'paused_by_policy',
            'paused_by_flow_cancel') THEN
        problem := format('blocking_reason %L is not a BlockingReason', blocking_reason);
    ELSIF terminal_outcome NOT IN ('none', 'success', 'failed', 'cancelled', 'expired', 'skipped') THEN
        problem := format('terminal_outcome %L is not a TerminalOutcome', terminal_outcome);
    ELSIF attempt_state NOT IN ('none', 'pending_first_attempt', 'running_attempt', 'attempt_interrupted',
            'pending_retry_attempt', 'pending_replay_attempt', 'attempt_terminal') THEN
        problem := format('attempt_state %L is not an AttemptState', attempt_state);
    ELSIF (lifecycle_phase = 'terminal') <> (terminal_outcome <> 'none') THEN
        problem := format('lifecycle_phase %L with terminal_outcome %L: a terminal execution has an outcome '
                          'and nothing else does', lifecycle_phase, terminal_outcome);
    ELSIF eligibility_state = 'not_eligible_until_time' AND eligible_at_ms IS NULL THEN
        problem := 'a delayed execution needs eligible_at_ms';
    ELSIF public_state IS DISTINCT FROM derived THEN
        problem := format('public_state %L is not derived from lifecycle_phase %L, eligibility_state %L, '
                          'terminal_outcome %L', public_state, lifecycle_phase, eligibility_state, terminal_outcome);
    END IF;
    IF problem IS NOT NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'check_violation', CONSTRAINT = 'ff_exec_core_state_check',
            MESSAGE = 'ff_exec_core: ' || problem;
    END IF;
    RETURN true;
END $$;

-- The same for an attempt.
CREATE FUNCTION ff_attempt_state_valid(
    attempt_type text, lifecycle text, lease_end_reason text, lease_expires_at_ms bigint)
RETURNS boolean
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
AS $$
DECLARE
    problem text;
BEGIN
    IF attempt_type NOT IN ('initial', 'retry', 'reclaim', 'replay', 'fallback') THEN
        problem := format('attempt_type %L is not an AttemptType', attempt_type);
    ELSIF lifecycle NOT IN ('created', 'started', 'suspended', 'ended_success', 'ended_failure', 'ended_cancelled',
            'interrupted_reclaimed') THEN
        problem := format('lifecycle %L is not an AttemptLifecycle', lifecycle);
    ELSIF lease_end_reason NOT IN ('completed', 'failed', 'cancelled', 'delayed', 'waiting_children', 'suspended',
            'expired', 'revoked') THEN
        problem := format('lease_end_reason %L is not known', lease_end_reason);
    ELSIF lease_expires_at_ms IS NOT NULL AND lifecycle <> 'started' THEN
        problem := format('an attempt in lifecycle %L holds a lease: only a started one may', lifecycle);
    END IF;
    IF problem IS NOT NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'check_violation', CONSTRAINT = 'ff_attempt_state_check',
            MESSAGE = 'ff_attempt: ' || problem;
    END IF;
    RETURN true;
END $$;

-- Does a worker offering `offered` satisfy `required`? Written as a call of
-- `arraycontained` (the function behind `<@`) on purpose: for the operator
-- on a bound array the planner assumes 0.5% of rows match and, on a large
-- lane, prefers sorting the whole lane over walking the claim index in
-- order; for a function call it assumes a third, which keeps the claim an
-- ordered index walk that stops at the first match. This SQL function is
-- inlined, so the call costs nothing.
CREATE FUNCTION ff_caps_satisfied(required text[], offered text[]) RETURNS boolean
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS $$ SELECT arraycontained(required, offered) $$;

-- Who is waiting for notifications, so that statements notify only when
-- someone listens. (Statements notify themselves, in `notified` CTEs: work
-- on a lane becoming claimable on `ff_work` with the lane id, completions on
-- `ff_completion` with the event id. There are no triggers.) A NOTIFY makes its transaction take a cluster-wide lock
-- from before its commit record is flushed until after: notifying commits
-- are serialised and lose group commit. With this registry a busy system,
-- whose workers find work without waiting, sends no notifications at all.
-- Unlogged: the registry is ephemeral, and a crash empties it. Listeners
-- refresh `heartbeat_at_ms`; stale rows are ignored and swept.
CREATE UNLOGGED TABLE ff_listener (
    channel         text   NOT NULL,
    key             text   NOT NULL,
    listener_id     uuid   NOT NULL,
    heartbeat_at_ms bigint NOT NULL,
    CONSTRAINT ff_listener_pkey PRIMARY KEY (channel, key, listener_id)
);

-- Is anyone listening on `channel` for `key` (or for every key, '*')?
CREATE FUNCTION ff_has_listener(p_channel text, p_key text) RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT EXISTS (
        SELECT 1 FROM ff_listener
         WHERE channel = p_channel AND key IN (p_key, '*')
           AND heartbeat_at_ms > ff_now_ms() - 10000)
$$;

-- ─── Lanes ────────────────────────────────────────────────────────────────

CREATE TABLE ff_lane_registry (
    lane_id          text   NOT NULL,
    lane_state       text   NOT NULL DEFAULT 'active',
    registered_at_ms bigint NOT NULL DEFAULT ff_now_ms(),
    CONSTRAINT ff_lane_registry_pkey PRIMARY KEY (lane_id),
    CONSTRAINT ff_lane_registry_lane_state_check
        CHECK (ff_is_lane_state(lane_state))
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
        CHECK (ff_is_public_flow_state(public_flow_state))
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
    -- Every state column one of ff-core's literals, the columns consistent,
    -- public_state derived: see ff_exec_state_valid.
    CONSTRAINT ff_exec_core_state_check
        CHECK (ff_exec_state_valid(lifecycle_phase, ownership_state, eligibility_state, blocking_reason,
                                   terminal_outcome, attempt_state, public_state, eligible_at_ms)),
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

-- Executions holding a lease: the lease-expiry scanner's way in.
CREATE INDEX ff_exec_core_active_idx
    ON ff_exec_core (partition_key, execution_id)
    WHERE lifecycle_phase = 'active';

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
    -- Why the last lease ended (`completed`, `delayed`, `expired`, ...).
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
    CONSTRAINT ff_attempt_state_check
        CHECK (ff_attempt_state_valid(attempt_type, lifecycle, lease_end_reason, lease_expires_at_ms))
);
COMMENT ON TABLE ff_attempt IS
    'One row per attempt. An attempt survives lease interruptions (delay, expiry, suspension); a retry starts a new one.';

-- No index on the lease columns: renewals and lease ends then update
-- attempt rows in place (HOT), without touching an index. The lease-expiry
-- scanner finds leases through the active executions instead
-- (`ff_exec_core_active_idx`), of which there are as many as leases.

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
        CHECK (ff_is_edge_state(edge_state))
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
        CHECK (ff_is_edge_group_state(group_state))
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
        CHECK (ff_is_waitpoint_state(state))
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
    CONSTRAINT ff_signal_effect_check CHECK (ff_is_signal_effect(effect))
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
    CONSTRAINT ff_stream_frame_frame_kind_check CHECK (ff_is_frame_kind(frame_kind)),
    CONSTRAINT ff_stream_frame_mode_check CHECK (ff_is_stream_mode(mode))
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
    CONSTRAINT ff_stream_summary_patch_kind_check CHECK (ff_is_patch_kind(patch_kind))
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
        CHECK (ff_is_completion_outcome(outcome))
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
        CHECK (ff_is_lease_event_kind(event_kind))
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
    CONSTRAINT ff_signal_event_effect_check CHECK (ff_is_signal_effect(effect))
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
