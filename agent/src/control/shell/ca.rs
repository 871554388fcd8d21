//! What this node answers as the CA holder: join requests and members' renewal requests, each
//! worked out off the hub's task (the CA database is read and written under its lock).

use std::time::Instant;

use pki::NodeCertificate;
use time::OffsetDateTime;
use tokio::sync::oneshot;

use super::gate::left_out;
use super::hub::Hub;
use crate::control::admission::{MeshFacts, RenewalTerms, admit, renew};
use crate::control::message::{JoinRequest, Message, RenewRequest};

impl Hub {
    /// A join request: admitted or refused at the CA, answered on `reply`.
    pub(super) fn answer_join(
        &self,
        request: Box<JoinRequest>,
        reply: oneshot::Sender<Message>,
        now: OffsetDateTime,
    ) {
        let facts = MeshFacts {
            asn: self.settings.asn,
            certificate_validity: self.settings.certificate_validity,
            members: self.membership.records(),
            crl: self.membership.crl().map(|c| c.der().to_vec()),
        };
        let state = self.settings.state.clone();
        let throttle = self.join_refusals.clone();
        tokio::task::spawn_blocking(move || {
            let answer = match admit(&state, &request, facts, now) {
                Ok(accepted) => Message::JoinAccepted(Box::new(accepted)),
                Err(refusal) => {
                    // Anyone may send a well-formed request with a made-up token:
                    // one line a window (the joiner gets the reason either way).
                    let admitted = throttle
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .admit(Instant::now());
                    if let Some(more) = admitted {
                        tracing::warn!(node = %request.name, reason = %refusal,
                            "join refused{}", left_out(more, "refused"));
                    }
                    Message::JoinRefused { reason: refusal.0 }
                }
            };
            let _ = reply.send(answer);
        });
    }

    /// A member asks (us, the CA holder) for a new certificate: answered on `reply`.
    pub(super) fn answer_renewal(
        &self,
        current: Box<NodeCertificate>,
        request: RenewRequest,
        reply: oneshot::Sender<Message>,
        now: OffsetDateTime,
    ) {
        let state = self.settings.state.clone();
        let terms = self.renewal_terms();
        tokio::task::spawn_blocking(move || {
            let name = &current.identity.name;
            let answer = match renew(&state, &current, &request.csr_pem, now, terms) {
                Ok(issued) => Message::RenewAccepted {
                    certificate_pem: issued.pem,
                },
                Err(refusal) => {
                    tracing::warn!(node = %name, reason = %refusal, "certificate renewal refused");
                    Message::RenewRefused { reason: refusal.0 }
                }
            };
            let _ = reply.send(answer);
        });
    }

    /// What a renewal at this node's CA is issued for.
    pub(super) fn renewal_terms(&self) -> RenewalTerms {
        RenewalTerms {
            validity: self.settings.certificate_validity,
            grace: self.settings.renewal_grace,
        }
    }
}
