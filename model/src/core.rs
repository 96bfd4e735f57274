//! The protocol core contract shared by every state machine in `runnel-model`.
//!
//! A protocol is a deterministic state machine (the shape of etcd-io/raft):
//! the caller feeds it one input at a time — a message from a peer, a timer
//! firing, a client request, a persistence completion — and collects the
//! [`Effect`]s it asks for: send a message, set or cancel a timer, flush the
//! log, persist durable state, reply to a client. Executing effects (network,
//! disk, clock) is the caller's job, which is what lets the model checker and
//! the real node run the very same code.
//!
//! Ordering rule the caller must honour: a `Persist` or `FlushLog` effect is
//! completed (fsync) before any `Send` that follows it in the same batch of
//! effects is put on the wire, because protocols emit sends that depend on
//! durable state only after the effect that makes it durable.
//!
//! Durable state (what survives a crash) is always a separate type from the
//! volatile state a protocol keeps in memory, so that "restart from disk" is
//! an explicit constructor taking only durable state.

use serde::{Deserialize, Serialize};

/// Identifies a node (a broker, a coordinator, or both). Kafka's `broker.id`/`node.id`.
pub type NodeId = u32;
/// A position in a partition log.
pub type Offset = u64;
/// Kafka's leader epoch: bumped by the controller on every leader change.
pub type LeaderEpoch = u32;
/// Kafka's partition epoch: bumped by the controller on every change of the
/// partition registration (leader, ISR or replicas). Fences stale ISR proposals.
pub type PartitionEpoch = u32;
/// Kafka's broker epoch: assigned at each broker registration, fences zombies.
pub type BrokerEpoch = u64;
/// Caller-chosen identifier of a client request, echoed in its reply.
pub type RequestId = u64;

/// What a protocol asks its caller to do.
///
/// `M` message, `T` timer, `R` reply, `D` durable state.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Effect<M, T, R, D> {
    /// Put `message` on the wire to node `to`. Delivery is not guaranteed.
    Send { to: NodeId, message: M },
    /// Fire `timer` once, `after_ms` from now; setting a set timer re-arms it.
    SetTimer { timer: T, after_ms: u64 },
    /// Forget `timer` if it is set.
    CancelTimer { timer: T },
    /// Make the log durable at least up to `up_to` (exclusive) and report the
    /// new flushed offset back as a persistence completion.
    FlushLog { up_to: Offset },
    /// Write `state` durably (fsync) before executing any later effect.
    Persist(D),
    /// Answer a client request.
    Reply(R),
}

/// A bounded sink for effects: the caller drains it after every input.
///
/// The bound exists because every input does a bounded amount of work; a
/// protocol that emits more than `EFFECTS_MAX` effects for one input has a bug.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Effects<M, T, R, D> {
    effects: Vec<Effect<M, T, R, D>>,
}

/// Upper bound on effects produced by one input.
pub const EFFECTS_MAX: usize = 4096;

impl<M, T, R, D> Default for Effects<M, T, R, D> {
    fn default() -> Self {
        Self {
            effects: Vec::new(),
        }
    }
}

impl<M, T, R, D> Effects<M, T, R, D> {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&mut self, effect: Effect<M, T, R, D>) {
        assert!(
            self.effects.len() < EFFECTS_MAX,
            "one input produced too many effects"
        );
        self.effects.push(effect);
    }

    pub fn send(&mut self, to: NodeId, message: M) {
        self.push(Effect::Send { to, message });
    }

    pub fn set_timer(&mut self, timer: T, after_ms: u64) {
        self.push(Effect::SetTimer { timer, after_ms });
    }

    pub fn cancel_timer(&mut self, timer: T) {
        self.push(Effect::CancelTimer { timer });
    }

    pub fn flush_log(&mut self, up_to: Offset) {
        self.push(Effect::FlushLog { up_to });
    }

    pub fn persist(&mut self, state: D) {
        self.push(Effect::Persist(state));
    }

    pub fn reply(&mut self, reply: R) {
        self.push(Effect::Reply(reply));
    }

    pub fn is_empty(&self) -> bool {
        self.effects.is_empty()
    }

    pub fn len(&self) -> usize {
        self.effects.len()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Effect<M, T, R, D>> {
        self.effects.iter()
    }

    /// Hands the effects to the caller in the order they were emitted.
    pub fn drain(&mut self) -> std::vec::Drain<'_, Effect<M, T, R, D>> {
        self.effects.drain(..)
    }
}
