//! The routing plane: the BGP speaker (crate::bgp) run as part of the mesh.
//!
//! - [`member`]: a member's routing facts from its certificate (router id, addresses,
//!   authorised prefixes);
//! - [`plan`]: the iBGP sessions, listen addresses and own routes for a membership;
//! - [`authority`]: which member may announce which prefix (the speaker's import guard);
//! - [`exits`]: which exit a default route and each `[[exit.route]]` destination uses;
//! - [`igp_cost`]: the cost of a member's next hop from the RTT of the tunnel carrying it;
//! - [`multipath`]: what is said when a prefix's equal-cost group changes;
//! - [`view`]: what `meshd routes` shows of the speaker;
//! - [`shell`]: the tokio side, which starts the speaker, follows the membership and feeds the
//!   best routes into the peer set (crate::peerset), the one owner of data-plane peers and
//!   kernel routes.
//!
//! All but [`shell`] are pure.

pub mod authority;
pub mod exits;
pub mod igp_cost;
pub mod member;
pub mod multipath;
pub mod plan;
pub mod shell;
pub mod view;

pub use shell::{RoutingPlane, RoutingSettings};
