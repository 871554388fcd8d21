//! Standing in for foreign routers ([`HostedRouters`]): loading them, taking their renewed
//! certificates into use, forgetting the revoked ones.

use time::OffsetDateTime;

use super::hub::Hub;
use crate::control::hosted::HostedRouters;
use crate::control::membership::{Action, Membership};
use crate::state::StateDir;

/// Loads the foreign routers of `state` that `hosted` does not stand in for yet, and
/// publishes their records. Problems are logged (a router that cannot be stood in for must
/// not keep the node from starting).
pub(super) fn stand_in(
    hosted: &mut HostedRouters,
    membership: &mut Membership,
    state: &StateDir,
    own_name: &str,
    now: OffsetDateTime,
) -> Vec<Action> {
    let files = match state.read_hosted() {
        Ok(files) => files,
        Err(error) => {
            tracing::warn!(%error, "cannot read the foreign routers this node stands in for");
            return Vec::new();
        }
    };
    let loaded = hosted.load(
        files,
        own_name,
        |name| membership.member(name).map(|m| m.version),
        now,
    );
    for problem in loaded.problems {
        tracing::warn!("{problem}");
    }
    let mut actions = Vec::new();
    for record in loaded.records {
        actions.extend(membership.set_hosted_record(record, now));
    }
    actions
}

impl Hub {
    /// `meshd router add` stored a foreign router: stand in for it.
    pub(super) fn load_routers(&mut self, now: OffsetDateTime) {
        let actions = stand_in(
            &mut self.hosted,
            &mut self.membership,
            &self.settings.state,
            &self.own.identity.name,
            now,
        );
        self.apply(actions);
    }

    /// A revoked hosted router is stood in for no more, and its files go (its key can never
    /// be used again), so that its name, once freed (`meshd ca free-name`), can be admitted
    /// anew with `meshd router add`.
    pub(super) fn forget_revoked_routers(&mut self) {
        let Some(crl) = self.membership.crl() else {
            return;
        };
        for name in self.hosted.drop_revoked(crl) {
            match self.settings.state.remove_hosted(&name) {
                Ok(()) => {
                    tracing::info!(router = %name, "hosted router revoked: no longer standing in for it, its files removed")
                }
                Err(error) => {
                    tracing::warn!(router = %name, %error, "hosted router revoked, but its files could not be removed")
                }
            }
        }
    }

    /// Takes a hosted router's renewed certificate into use: checked, stored, spread in a new
    /// record.
    pub(super) fn install_hosted_certificate(
        &mut self,
        name: &str,
        pem: &str,
        now: OffsetDateTime,
    ) -> Result<(), String> {
        let cert = self.verify_renewed(pem, now)?;
        let (serial, not_after) = (cert.serial.clone(), cert.not_after);
        // Checked against the router before anything is written: `renewed` refuses another
        // router's or key's certificate, and signs nothing then.
        let record = self.hosted.renewed(name, cert, now)?;
        self.settings
            .state
            .replace_hosted_certificate(name, pem)
            .map_err(|e| format!("cannot store it: {e}"))?;
        let actions = self.membership.set_hosted_record(record, now);
        self.apply(actions);
        let next = self.hosted.renewal_due(name);
        tracing::info!(router = %name, %serial, %not_after, next_renewal = ?next, "hosted router's certificate renewed");
        Ok(())
    }
}
