//! This node's certificate and membership record: a renewed certificate taken into use, the
//! node that issued it recorded as the CA holder, the record signed again with new endpoints.

use time::OffsetDateTime;

use super::hub::Hub;
use super::pem_der;
use crate::control::record::{next_version, sign_record};
use crate::control::renewal::Validity;
use crate::state::Overwrite;

impl Hub {
    /// The node that renewed our certificate holds the CA: renewals go there from now on,
    /// also after a restart (`node.json`).
    pub(super) fn found_ca_holder(&mut self, holder: String) {
        if holder == self.own.ca_holder {
            return;
        }
        tracing::info!(previous = %self.own.ca_holder, ca_holder = %holder, "the mesh CA is held by another node now");
        let state = self.settings.state.clone();
        let recorded = holder.clone();
        // Under the state lock, which a command may hold for a second or two.
        tokio::task::spawn_blocking(move || {
            let written = state.lock().and_then(|_lock| {
                let mut record = state.read_node_record()?;
                record.ca_holder = Some(recorded);
                state.write_node_record(&record)
            });
            if let Err(error) = written {
                tracing::warn!(%error, "cannot record the new CA holder");
            }
        });
        self.own.ca_holder = holder;
    }

    /// A renewed certificate (this node's or a hosted router's) checked as every member's is:
    /// signed by the mesh CA, valid at `now`, not on the revocation list this node holds.
    pub(super) fn verify_renewed(
        &self,
        pem: &str,
        now: OffsetDateTime,
    ) -> Result<pki::NodeCertificate, String> {
        let der = pem_der(pem)?;
        let crl = self.membership.crl().map(|c| c.der().to_vec());
        pki::verify_node_certificate(&der, self.trust.ca_der(), crl.as_deref(), now)
            .map_err(|e| format!("the new certificate is not valid: {e}"))
    }

    /// Takes a renewed certificate into use: checked, written to `node.crt`, presented in
    /// handshakes, spread in a new membership record.
    pub(super) fn install_certificate(
        &mut self,
        pem: &str,
        now: OffsetDateTime,
    ) -> Result<(), String> {
        let cert = self.verify_renewed(pem, now)?;
        let own = &self.own.identity;
        if cert.identity.name != own.name || cert.identity.wireguard_key != own.wireguard_key {
            return Err("the new certificate is for another name or WireGuard key".into());
        }
        // Checked against our key before anything is written.
        let previous = self.own.certificate.certificate_der();
        self.own
            .certificate
            .replace(cert.der.clone())
            .map_err(|e| format!("the new certificate is not for this node's key: {e}"))?;
        let state = &self.settings.state;
        if let Err(error) =
            state.write_certificate(&state.node_cert_path(), pem, Overwrite::Replace)
        {
            let _ = self.own.certificate.replace(previous);
            return Err(format!("cannot store it: {error}"));
        }
        let version = next_version(Some(self.own.record_version), now);
        let record = sign_record(
            &self.own.key,
            &cert.der,
            self.settings.endpoints.clone(),
            version,
        )
        .map_err(|e| format!("cannot sign the membership record: {e}"))?;
        self.own.record_version = version;
        let identity_changed = cert.identity != self.own.identity;
        self.own.identity = cert.identity.clone();
        self.own.serial = cert.serial.clone();
        let actions = self.membership.set_own_record(record, now);
        self.apply(actions);
        if identity_changed {
            self.members_changed();
        }
        self.own
            .renewal
            .succeeded(Validity::of_certificate(cert.not_before, cert.not_after));
        if !self.own.last_known.records(|_| false).is_empty() {
            // Renewed after an expiry: the mesh forgot this node; dial it back in now.
            self.own.last_known.renewed();
            self.redial.clear();
            self.dial_missing();
        }
        tracing::info!(serial = %cert.serial, not_after = %cert.not_after, next_renewal = %self.own.renewal.due(), "node certificate renewed");
        Ok(())
    }

    /// Re-signs this node's record with `endpoints` (a new version, as after a renewal) and
    /// spreads it; members switch to the new endpoints, tunnels stay up.
    pub(super) fn set_endpoints(&mut self, endpoints: Vec<String>, now: OffsetDateTime) {
        if endpoints == self.settings.endpoints {
            return;
        }
        let version = next_version(Some(self.own.record_version), now);
        let der = self.own.certificate.certificate_der();
        match sign_record(&self.own.key, &der, endpoints.clone(), version) {
            Ok(record) => {
                self.own.record_version = version;
                tracing::info!(endpoints = ?endpoints, version, "advertising new node endpoints");
                self.settings.endpoints = endpoints;
                let actions = self.membership.set_own_record(record, now);
                self.apply(actions);
            }
            Err(error) => {
                tracing::warn!(%error, "cannot sign the membership record: endpoints not changed");
            }
        }
    }
}
