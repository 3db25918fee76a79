-- lib/protocol.lua: state, policy, strategy and answer codes, the packed formats and the key
-- contract. The Rust side names the same (crates/switchyard-redis/src/protocol.rs; its tests
-- read this file and lib/begin.lua).

-- KEYS: the NFIXED fixed keys (in the order lib/begin.lua binds them), then GROUP_KEYS keys per
-- queue a call names (lib/queues.lua: queue_of). Channels: the namespace's prefix, then CH_WAKE
-- and a worker id, CH_DONE and a task id, or CH_DUE (built by `channel`, lib/prelude.lua).
local NFIXED, GROUP_KEYS = 11, 11
local CH_WAKE, CH_DONE, CH_DUE = 'wake:', 'done:', 'due'

local S_SCHEDULED, S_READY, S_DISPATCHED, S_RUNNING = 0, 1, 2, 3
local S_RETRY, S_SUCCEEDED, S_DEAD, S_CANCELLED, S_EXPIRED = 4, 5, 6, 7, 8
-- A flow's task waiting for its children (lib/flows.lua): after the terminal states, not one.
local S_WAITING = 9
local P_FCFS, P_PRIO, P_PRIO_AGING, P_SJF, P_SJF_AGING, P_EDF = 0, 1, 2, 3, 4, 5
local T_RR, T_RANDOM, T_WEIGHTED, T_LL, T_AFFINITY, T_PULL = 0, 1, 2, 3, 4, 5
-- Task flags: a cancel requested, a caller awaits it, and a deadline follows the header
-- (records written before deadlines existed have no such bit and decode as before). Two more
-- above these, FLOWS.CHILD = 8 and FLOWS.PARENT = 16 (lib/flows.lua), mark a flow's tasks.
local F_CANCEL, F_AWAITED, F_DEADLINE = 1, 2, 4
local W_WAITING, W_DRAINING = 1, 2
-- What complete and fail answer for a lease, one table for both (src/protocol.rs: AckCode;
-- its last code, A_THROTTLED = 7, is named in throttle.lua, its one user: the library's main
-- chunk is at Lua's limit of 200 locals).
local A_SUCCEEDED, A_NOT_FOUND, A_NOT_RUNNING, A_STALE = 0, 1, 2, 3
local A_RETRYING, A_DEAD, A_CANCELLED = 4, 5, 6
local WEIGHT_SCALE, HALF_SCALE, RENORM_AT = 65536, 32768, 2^40
local MINSTD_M, MINSTD_A = 2147483647, 48271
local MAX_MS = 2^48 - 1
local HDR = '>BBHHHI4I4I6I6I6I6BHI4'
local HDR_LEN = 47
local CFG = '>BI4BHI4HI4I4I4BI6I6I6B'
local EVENT_CAP = 10000
-- How far a run-time sample may be above the learned average (backend::SAMPLE_CAP).
local SAMPLE_CAP = 4
local WREC = '>HHHI6I4I6BHI6I6I6'
local WREC_LEN = 43
local BAL = '>HI6I6'
local BAL_LEN = 14
-- A task argument of submit: group, cost given, priority, cost, run-at, delay, max attempts,
-- timeout, deadline (0: none); then the id (26 characters) and the body.
local TASK_ARG = '>HBHI4I6I6HI4I6'
local TASK_ARG_LEN = 59
local QDYN = '>I6I6I6I6I6'
-- A hand-off published on the worker's wake channel: HAND_TAG, then still parked 0|1, the
-- registration's instance token, token, attempt, max attempts, deadline, timeout, ready since,
-- queue name length; then id, queue, body. A plain wake-up is the message '1'.
local HAND = '>BI6I6I6I6I6I6I6H'
local HAND_TAG = 'h'
local QDYN_LEN = 30
