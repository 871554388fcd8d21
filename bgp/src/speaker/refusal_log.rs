//! The log lines about refused routes (which ones are worth a line is
//! [`crate::refusals`]'s decision).

use ipnet::IpNet;

use crate::refusals::{Kind as RefusalKind, MAX_LINES, Note};

/// Says what [`SessionRefusals`] found worth saying about a route of `peer`. A member's route
/// its certificate does not allow, or a broken UPDATE, is a warning; a route an import policy
/// or a loop check keeps out is what they are for, so it is information.
pub(super) fn log_refusal(peer: &str, import: &crate::policy::Policy, prefix: IpNet, note: &Note) {
    let (reason, previous) = match note {
        Note::Refused { reason } => (reason, None),
        Note::Changed { previous, reason } => (reason, Some(previous.describe(import))),
        Note::Accepted { previous } => {
            let previous = previous.describe(import);
            tracing::info!(%peer, %prefix, %previous, "BGP route accepted, refused before");
            return;
        }
        Note::Quiet => {
            tracing::warn!(
                %peer,
                lines = MAX_LINES,
                "more BGP routes refused from this neighbour than are logged one by one: the \
                 others are only counted until the session restarts (`meshd routes` shows them)"
            );
            return;
        }
    };
    let kind = reason.kind();
    let serious = matches!(
        kind,
        RefusalKind::Certificate | RefusalKind::Malformed | RefusalKind::FirstAsNotNeighbor
    );
    let reason = reason.describe(import);
    match (serious, previous) {
        (true, None) => tracing::warn!(%peer, %prefix, %reason, %kind, "BGP route refused"),
        (false, None) => tracing::info!(%peer, %prefix, %reason, %kind, "BGP route refused"),
        (true, Some(previous)) => tracing::warn!(
            %peer, %prefix, %reason, %kind, %previous, "BGP route refused, for another reason now"
        ),
        (false, Some(previous)) => tracing::info!(
            %peer, %prefix, %reason, %kind, %previous, "BGP route refused, for another reason now"
        ),
    }
}
