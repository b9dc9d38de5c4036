//! The speculative step every drafting decoder runs, and what it is made of.
//!
//! - [`drafter`]: the [`Drafter`] trait: propose drafts within a budget, observe what was
//!   committed, optionally add lookahead rows of its own to the step.
//! - [`policy`]: how a decoder's drafters make one step's drafts ([`DraftPolicy`]).
//! - [`tree`]: the step's rows and tree mask ([`StepTree`]).
//! - [`step`]: [`speculative_step`]: one forward pass, verification, accepted rows kept.
//! - [`verify`](mod@verify): sample-and-match verification of the drafts.
//! - [`backend`]: where the rows run: one model or the replicas of a device group.

pub mod backend;
pub mod drafter;
pub mod policy;
pub mod step;
pub mod tree;
pub mod verify;

pub use backend::{OneModel, Partition, Replicas, SplitStats, StepBackend, StepPlan};
pub use drafter::{Budget, Draft, Drafter};
pub use policy::{Contender, DraftPolicy, Source, StepDrafts};
pub use step::{speculative_step, Accepted};
pub use tree::{LookaheadRows, StepTree};
pub use verify::{verify, Verdict};
