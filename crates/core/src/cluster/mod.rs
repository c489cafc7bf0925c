//! The cluster's foundations (issue 6), independent of the sync engine: which worker runs which
//! mapping ([`assign`]), the workers, leases and assignments in the state database ([`store`]),
//! the active-coordinator lock ([`StandbyLock`]) and token checks ([`token`]).
//!
//! How the pieces fence a worker that lost its lease (DESIGN.md invariant 2): every reassignment
//! and every re-registration of a worker name gives the mapping a new owner epoch from one
//! cluster-wide sequence; the new owner's `state::claim` writes it to the target database, and from
//! then on the old owner's `state::fence` fails, whatever it still believes about its lease.

pub mod assign;
pub mod store;
pub mod token;

pub use assign::{assign, Assignment, ConnectionMappings, WorkerSlot};
pub use store::{
    ClusterError, ClusterStore, Lease, StandbyLock, StoredAssignment, TryLock, WorkerRecord,
    STANDBY_LOCK_KEY,
};
pub use token::{bearer_matches, tokens_equal};
