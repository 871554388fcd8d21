//! Renewal dispatch: starting the renewals that are due, this node's own
//! ([`crate::control::renewal`] decides when) and its hosted routers', at the local CA on the
//! CA holder or over a renewal connection to it, and taking in what comes back.

use std::time::Duration;

use pki::NodeCertificate;
use time::OffsetDateTime;
use tokio_rustls::TlsConnector;

use super::dialer::dial;
use super::hub::{Event, Hub};
use crate::control::admission::renew;
use crate::control::frame::{read_message, write_message};
use crate::control::message::{Message, RenewRequest};
use crate::control::renewal::RenewalAction;
use crate::control::renewal_targets::{renew_at_first, renewal_targets};
use crate::control::tls::{OwnCertificate, renewal_client_config};

/// Limit for a whole renewal exchange with the CA holder (connect, handshake, answer).
const RENEWAL_TIMEOUT: Duration = Duration::from_secs(30);

impl Hub {
    /// The operator asks for a renewal now (`meshd renew`).
    pub(super) fn renew_now(&mut self, now: OffsetDateTime) {
        if self.own.renewal.request_now(now) {
            tracing::info!("certificate renewal asked for by the operator");
            self.poll_renewal(now);
        } else {
            tracing::info!("certificate renewal asked for; one is under way already");
        }
    }

    pub(super) fn poll_renewal(&mut self, now: OffsetDateTime) {
        for action in self.own.renewal.poll(now) {
            match action {
                RenewalAction::Request => self.start_renewal(now),
                RenewalAction::Warn(text) => tracing::warn!("{text}"),
            }
        }
    }

    /// Asks for a new certificate: from the local CA on the CA holder, else from the CA
    /// holder over a renewal connection. Always ends in [`Event::RenewalDone`].
    fn start_renewal(&mut self, now: OffsetDateTime) {
        let csr = match self.own.key.csr(&self.own.identity.name) {
            Ok(csr) => csr,
            Err(error) => {
                let why = format!("cannot make a certificate request: {error}");
                self.own.renewal.failed(now, &why);
                tracing::warn!(reason = %why, "certificate renewal failed");
                return;
            }
        };
        tracing::info!(ca_holder = %self.own.ca_holder, "renewing the node certificate");
        let done = |result, holder| Event::RenewalDone { result, holder };
        if self.settings.state.is_ca_holder() {
            let current = NodeCertificate::parse(&self.own.certificate.certificate_der())
                .map_err(|error| format!("the certificate in use does not parse: {error}"));
            self.renew_locally(current, csr, now, done);
            return;
        }
        self.renew_remotely(self.own.renewal_connector.clone(), csr, done);
    }

    /// Starts the renewals of hosted routers' certificates that are due: at the local CA
    /// when this node holds it, else at the CA holder over TLS with the router's certificate
    /// (which is what the CA checks a renewal against).
    pub(super) fn poll_hosted_renewals(&mut self, now: OffsetDateTime) {
        let (jobs, warnings) = self.hosted.poll_renewals(now);
        for warning in warnings {
            tracing::warn!("{warning}");
        }
        for job in jobs {
            let name = job.name.clone();
            tracing::info!(router = %name, ca_holder = %self.own.ca_holder, "renewing a hosted router's certificate");
            let done = {
                let name = name.clone();
                move |result, _| Event::HostedRenewalDone { name, result }
            };
            if self.settings.state.is_ca_holder() {
                self.renew_locally(Ok(job.current), job.csr_pem, now, done);
                continue;
            }
            let connector = OwnCertificate::new(
                job.current.der.clone(),
                self.trust.ca_der().to_vec(),
                job.key_pkcs8.clone(),
            )
            .and_then(|own| renewal_client_config(self.trust.clone(), own))
            .map(TlsConnector::from);
            let connector = match connector {
                Ok(connector) => connector,
                Err(error) => {
                    let why = format!("cannot present its certificate: {error}");
                    self.hosted.renewal_failed(&name, now, &why);
                    tracing::warn!(router = %name, reason = %why, "router certificate renewal failed");
                    continue;
                }
            };
            self.renew_remotely(connector, job.csr_pem, done);
        }
    }

    /// Renews `current` at this node's CA, off the hub's task, and tells the hub what came of
    /// it in the event `done` makes (with no other holder).
    fn renew_locally(
        &self,
        current: Result<NodeCertificate, String>,
        csr: String,
        now: OffsetDateTime,
        done: impl FnOnce(Result<String, String>, Option<String>) -> Event + Send + 'static,
    ) {
        let events = self.events_tx.clone();
        let state = self.settings.state.clone();
        let terms = self.renewal_terms();
        tokio::task::spawn_blocking(move || {
            let result = current.and_then(|current| {
                renew(&state, &current, &csr, now, terms)
                    .map(|issued| issued.pem)
                    .map_err(|refusal| refusal.0)
            });
            let _ = events.blocking_send(done(result, None));
        });
    }

    /// Sends `csr` to the CA holder over a renewal connection made with `connector` (which
    /// presents the certificate to renew) and tells the hub what came of it, and which node
    /// answered, in the event `done` makes. The holder recorded first, then the other cores:
    /// the CA may have moved.
    fn renew_remotely(
        &self,
        connector: TlsConnector,
        csr: String,
        done: impl FnOnce(Result<String, String>, Option<String>) -> Event + Send + 'static,
    ) {
        let events = self.events_tx.clone();
        let ca_holder = self.own.ca_holder.clone();
        let targets = renewal_targets(
            &ca_holder,
            &self.own.identity.name,
            self.membership.members(),
            &self.own.last_known,
        );
        let fwmark = self.settings.fwmark;
        tokio::spawn(async move {
            let outcome = renew_at_first(&ca_holder, &targets, |name, endpoints| {
                let (connector, csr) = (connector.clone(), csr.clone());
                async move {
                    tokio::time::timeout(
                        RENEWAL_TIMEOUT,
                        request_renewal(&connector, fwmark, &name, &endpoints, csr),
                    )
                    .await
                    .unwrap_or_else(|_| {
                        Err(format!(
                            "the CA holder {name} did not answer within {RENEWAL_TIMEOUT:?}"
                        ))
                    })
                }
            })
            .await;
            let (result, holder) = match outcome {
                Ok((pem, holder)) => (Ok(pem), Some(holder)),
                Err(error) => (Err(error), None),
            };
            let _ = events.send(done(result, holder)).await;
        });
    }

    /// Our own renewal ended ([`Event::RenewalDone`]).
    pub(super) fn renewal_done(
        &mut self,
        result: Result<String, String>,
        holder: Option<String>,
        now: OffsetDateTime,
    ) {
        let installed = result.and_then(|pem| self.install_certificate(&pem, now));
        if installed.is_ok()
            && let Some(holder) = holder
        {
            self.found_ca_holder(holder);
        }
        let outcome = installed;
        if let Err(why) = outcome {
            self.own.renewal.failed(now, &why);
            tracing::warn!(reason = %why, retry_at = %self.own.renewal.due(), "certificate renewal failed");
        }
    }

    /// A hosted router's renewal ended ([`Event::HostedRenewalDone`]).
    pub(super) fn hosted_renewal_done(
        &mut self,
        name: String,
        result: Result<String, String>,
        now: OffsetDateTime,
    ) {
        let outcome = result.and_then(|pem| self.install_hosted_certificate(&name, &pem, now));
        if let Err(why) = outcome {
            self.hosted.renewal_failed(&name, now, &why);
            tracing::warn!(router = %name, reason = %why, "router certificate renewal failed");
        }
    }
}

/// One renewal exchange with the CA holder: the new certificate (PEM) or why not.
async fn request_renewal(
    connector: &TlsConnector,
    fwmark: Option<u32>,
    ca_holder: &str,
    endpoints: &[String],
    csr_pem: String,
) -> Result<String, String> {
    let mut tls = dial(connector, None, fwmark, ca_holder, endpoints)
        .await
        .map_err(|e| format!("cannot reach the CA holder {ca_holder}: {e}"))?;
    write_message(&mut tls, &Message::RenewRequest(RenewRequest { csr_pem }))
        .await
        .map_err(|e| format!("cannot send the request to the CA holder {ca_holder}: {e}"))?;
    match read_message::<_, Message>(&mut tls).await {
        Ok(Message::RenewAccepted { certificate_pem }) => Ok(certificate_pem),
        Ok(Message::RenewRefused { reason }) => {
            Err(format!("the CA holder {ca_holder} refused: {reason}"))
        }
        Ok(_) => Err(format!(
            "the CA holder {ca_holder} answered with something other than a certificate"
        )),
        // In TLS 1.3 the server checks our certificate after our side of the handshake is
        // done, so a refused (revoked, expired) certificate shows up here.
        Err(error) => Err(format!(
            "the CA holder {ca_holder} closed the connection without a certificate ({error}); \
             it refuses this node's certificate if it was revoked, or expired longer ago \
             than its renewal grace window"
        )),
    }
}
