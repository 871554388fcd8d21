//! The RFC 4271 §8 session state machine, pure: the shell feeds it [`Event`]s with the current
//! time and carries out the [`Action`]s it returns. It owns the three session timers as
//! deadlines; [`Fsm::next_deadline`] tells the shell when to send [`Event::Tick`].
//!
//! One machine drives one connection at a time. Connection collisions (RFC 4271 §6.8) are
//! resolved by the speaker core ([`crate::speaker`]), which compares BGP identifiers and, when
//! the other connection wins, tells the machine with [`Event::ConnectionReplaced`]. The
//! optional DelayOpen and damping attributes of RFC 4271 §8.1 are not modelled.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use super::packet::{
    AS_TRANS, Capability, CodecOptions, DecodeError, ExtendedNextHopEntry, Family, Message,
    Notification, Open, RouteRefresh, Update, cease_subcodes, codes, fsm_subcodes, open_subcodes,
};

/// Hold time used until the OPENs are exchanged (RFC 4271 §8.2.2 suggests 4 minutes).
const LARGE_HOLD_TIME: Duration = Duration::from_secs(240);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionConfig {
    pub local_asn: u32,
    pub remote_asn: u32,
    pub bgp_id: Ipv4Addr,
    /// Hold time we propose in our OPEN: 0 (no keepalives) or at least 3 seconds.
    pub hold_time: u16,
    pub connect_retry: Duration,
    /// Wait for the peer to connect instead of connecting out.
    pub passive: bool,
    pub families: Vec<Family>,
}

impl SessionConfig {
    pub fn is_internal(&self) -> bool {
        self.local_asn == self.remote_asn
    }

    /// The OPEN this session sends: multiprotocol for each family, route refresh, 4-octet AS,
    /// and IPv4 routes over IPv6 next hops (RFC 8950) when both families are spoken.
    pub fn open(&self) -> Open {
        let mut caps: Vec<Capability> = self
            .families
            .iter()
            .map(|f| Capability::Multiprotocol {
                afi: f.afi(),
                safi: f.safi(),
            })
            .collect();
        caps.push(Capability::RouteRefresh);
        if self.families.contains(&Family::Ipv4Unicast)
            && self.families.contains(&Family::Ipv6Unicast)
        {
            caps.push(Capability::ExtendedNextHop(vec![ExtendedNextHopEntry {
                afi: 1,
                safi: 1,
                next_hop_afi: 2,
            }]));
        }
        Open::new(self.local_asn, self.hold_time, self.bgp_id, caps)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    Idle,
    Connect,
    Active,
    OpenSent,
    OpenConfirm,
    Established,
}

/// What both OPENs agreed on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    pub peer_asn: u32,
    pub peer_id: Ipv4Addr,
    /// 0 means no hold timer and no keepalives.
    pub hold_time: u16,
    pub families: Vec<Family>,
    pub four_octet_as: bool,
    pub route_refresh: bool,
    /// The peer accepts IPv4 routes with an IPv6 next hop (RFC 8950) and so do we.
    pub ipv4_over_ipv6: bool,
}

impl Negotiated {
    pub fn codec(&self) -> CodecOptions {
        CodecOptions {
            four_octet_as: self.four_octet_as,
        }
    }
}

/// Inputs of the machine. Most events carry a message, so boxing it would only add an allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// Start the session (RFC 4271 ManualStart; the passive flag gives ManualStart_with_PassiveTcpEstablishment).
    Start,
    /// Stop it and stay down until the next Start.
    Stop,
    /// A TCP connection to the peer is up (ours or one it opened).
    TcpConnected,
    /// Connecting failed, or the connection closed.
    TcpFailed,
    Message(Message),
    /// A message that could not be decoded.
    BadMessage(DecodeError),
    /// Time passed: deadlines at or before `now` fire.
    Tick,
    /// The shell resolved a connection collision (RFC 4271 §6.8) in favour of the peer's other
    /// connection and closed this one (having sent Cease/7 on it): start over on the new one,
    /// which a [`Event::TcpConnected`] follows at once.
    ConnectionReplaced,
}

/// Why a session went down.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DownReason {
    /// We sent this NOTIFICATION.
    Sent(Notification),
    /// The peer sent this NOTIFICATION.
    Received(Notification),
    ConnectionLost,
    Stopped,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Open a TCP connection to the peer.
    Connect,
    Send(Message),
    /// Close the TCP connection.
    Disconnect,
    /// The session reached Established.
    Up(Negotiated),
    /// The session left Established: forget every route it taught us.
    Down(DownReason),
    /// A session that never reached Established failed (for logs).
    Failed(DownReason),
    /// Routes from the peer, for the Adj-RIB-In.
    Update(Update),
    /// The peer asks for our routes of a family again (RFC 2918).
    RouteRefresh(Family),
}

#[derive(Debug)]
pub struct Fsm {
    config: SessionConfig,
    state: State,
    /// Set by Start, cleared by Stop: an Idle session restarts itself after a failure.
    enabled: bool,
    negotiated: Option<Negotiated>,
    connect_retry_at: Option<Instant>,
    hold_at: Option<Instant>,
    keepalive_at: Option<Instant>,
    /// When an enabled session that failed tries again.
    restart_at: Option<Instant>,
}

impl Fsm {
    pub fn new(config: SessionConfig) -> Fsm {
        Fsm {
            config,
            state: State::Idle,
            enabled: false,
            negotiated: None,
            connect_retry_at: None,
            hold_at: None,
            keepalive_at: None,
            restart_at: None,
        }
    }

    pub fn state(&self) -> State {
        self.state
    }

    pub fn config(&self) -> &SessionConfig {
        &self.config
    }

    /// Set once the OPENs are exchanged.
    pub fn negotiated(&self) -> Option<&Negotiated> {
        self.negotiated.as_ref()
    }

    /// How to decode the next message.
    pub fn codec(&self) -> CodecOptions {
        self.negotiated
            .as_ref()
            .map(Negotiated::codec)
            .unwrap_or_default()
    }

    /// Whether the session can take an incoming connection now (it has none of its own yet).
    pub fn accepts_connection(&self) -> bool {
        matches!(self.state, State::Connect | State::Active)
    }

    /// The earliest timer deadline; the shell sends [`Event::Tick`] then.
    pub fn next_deadline(&self) -> Option<Instant> {
        [
            self.connect_retry_at,
            self.hold_at,
            self.keepalive_at,
            self.restart_at,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    pub fn handle(&mut self, event: Event, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        match event {
            Event::Start => self.start(now, &mut out),
            Event::Stop => {
                self.enabled = false;
                self.restart_at = None;
                if matches!(
                    self.state,
                    State::OpenSent | State::OpenConfirm | State::Established
                ) {
                    let n = Notification::cease(cease_subcodes::ADMINISTRATIVE_SHUTDOWN);
                    out.push(Action::Send(Message::Notification(n)));
                }
                self.go_idle(DownReason::Stopped, now, &mut out);
            }
            Event::TcpConnected => self.connected(now, &mut out),
            Event::TcpFailed => self.connection_lost(now, &mut out),
            Event::BadMessage(e) => self.fail(e.notification(), now, &mut out),
            Event::Message(m) => self.message(m, now, &mut out),
            Event::Tick => self.tick(now, &mut out),
            Event::ConnectionReplaced => {
                if matches!(self.state, State::OpenSent | State::OpenConfirm) {
                    self.negotiated = None;
                    self.hold_at = None;
                    self.keepalive_at = None;
                    self.state = State::Active;
                }
            }
        }
        out
    }

    fn start(&mut self, now: Instant, out: &mut Vec<Action>) {
        self.enabled = true;
        self.restart_at = None;
        if self.state != State::Idle {
            return;
        }
        self.connect_retry_at = Some(now + self.config.connect_retry);
        if self.config.passive {
            self.state = State::Active;
        } else {
            self.state = State::Connect;
            out.push(Action::Connect);
        }
    }

    fn connected(&mut self, now: Instant, out: &mut Vec<Action>) {
        if !matches!(self.state, State::Connect | State::Active) {
            // Not expecting a connection: the shell should not have handed us one.
            out.push(Action::Disconnect);
            return;
        }
        self.connect_retry_at = None;
        out.push(Action::Send(Message::Open(self.config.open())));
        self.hold_at = Some(now + LARGE_HOLD_TIME);
        self.state = State::OpenSent;
    }

    fn connection_lost(&mut self, now: Instant, out: &mut Vec<Action>) {
        match self.state {
            State::Idle => {}
            // RFC 4271 §8.2.2: a failed connect or a connection lost before OPEN moves to
            // Active and waits for the connect retry timer.
            State::Connect | State::Active | State::OpenSent => {
                out.push(Action::Disconnect);
                self.hold_at = None;
                self.state = State::Active;
                self.connect_retry_at = Some(now + self.config.connect_retry);
            }
            State::OpenConfirm | State::Established => {
                self.go_idle(DownReason::ConnectionLost, now, out)
            }
        }
    }

    fn tick(&mut self, now: Instant, out: &mut Vec<Action>) {
        let due = |t: Option<Instant>| t.is_some_and(|t| t <= now);
        if due(self.restart_at) {
            self.restart_at = None;
            self.start(now, out);
            return;
        }
        if due(self.hold_at) {
            self.fail(Notification::new(codes::HOLD_TIMER_EXPIRED, 0), now, out);
            return;
        }
        if due(self.connect_retry_at) {
            self.connect_retry_at = Some(now + self.config.connect_retry);
            match self.state {
                State::Connect => {
                    // Give up on the attempt in flight and try again.
                    out.push(Action::Disconnect);
                    out.push(Action::Connect);
                }
                State::Active if !self.config.passive => {
                    self.state = State::Connect;
                    out.push(Action::Connect);
                }
                _ => {}
            }
        }
        if due(self.keepalive_at) {
            out.push(Action::Send(Message::Keepalive));
            self.keepalive_at = self.keepalive_interval().map(|i| now + i);
        }
    }

    fn keepalive_interval(&self) -> Option<Duration> {
        let hold = self.negotiated.as_ref()?.hold_time;
        (hold > 0).then(|| Duration::from_secs(u64::from(hold)) / 3)
    }

    fn restart_hold(&mut self, now: Instant) {
        if let Some(n) = &self.negotiated {
            self.hold_at =
                (n.hold_time > 0).then(|| now + Duration::from_secs(u64::from(n.hold_time)));
        }
    }

    fn message(&mut self, m: Message, now: Instant, out: &mut Vec<Action>) {
        if let Message::Notification(n) = m {
            // RFC 4271 §6.4: no answer to a NOTIFICATION, just close.
            self.go_idle(DownReason::Received(n), now, out);
            return;
        }
        match (self.state, m) {
            (State::OpenSent, Message::Open(open)) => match self.validate_open(&open) {
                Ok(negotiated) => {
                    self.negotiated = Some(negotiated);
                    out.push(Action::Send(Message::Keepalive));
                    self.restart_hold(now);
                    self.keepalive_at = self.keepalive_interval().map(|i| now + i);
                    self.state = State::OpenConfirm;
                }
                Err(n) => self.fail(n, now, out),
            },
            (State::OpenConfirm, Message::Keepalive) => {
                self.restart_hold(now);
                self.state = State::Established;
                if let Some(n) = &self.negotiated {
                    out.push(Action::Up(n.clone()));
                }
            }
            (State::Established, Message::Keepalive) => self.restart_hold(now),
            (State::Established, Message::Update(u)) => {
                self.restart_hold(now);
                out.push(Action::Update(u));
            }
            (State::Established, Message::RouteRefresh(RouteRefresh { afi, safi })) => {
                self.restart_hold(now);
                // RFC 2918 §4: a refresh for a family that was not negotiated is ignored.
                if let Some(f) = Family::from_afi_safi(afi, safi)
                    && self
                        .negotiated
                        .as_ref()
                        .is_some_and(|n| n.families.contains(&f))
                {
                    out.push(Action::RouteRefresh(f));
                }
            }
            (State::OpenSent, _) => self.fail(
                Notification::new(codes::FSM, fsm_subcodes::IN_OPEN_SENT),
                now,
                out,
            ),
            (State::OpenConfirm, _) => self.fail(
                Notification::new(codes::FSM, fsm_subcodes::IN_OPEN_CONFIRM),
                now,
                out,
            ),
            (State::Established, _) => self.fail(
                Notification::new(codes::FSM, fsm_subcodes::IN_ESTABLISHED),
                now,
                out,
            ),
            // Idle/Connect/Active have no connection that could deliver a message.
            (State::Idle | State::Connect | State::Active, _) => out.push(Action::Disconnect),
        }
    }

    /// RFC 4271 §6.2 checks, then capability negotiation.
    fn validate_open(&self, open: &Open) -> Result<Negotiated, Notification> {
        let peer_asn = open.asn();
        if peer_asn != self.config.remote_asn {
            let mut n = Notification::new(codes::OPEN, open_subcodes::BAD_PEER_AS);
            n.data = open.my_as.to_be_bytes().to_vec();
            return Err(n);
        }
        // A 2-octet speaker can only be AS_TRANS if it really is AS 23456, which is reserved.
        if open.four_octet_as().is_none() && open.my_as == AS_TRANS {
            return Err(Notification::new(codes::OPEN, open_subcodes::BAD_PEER_AS));
        }
        if open.hold_time == 1 || open.hold_time == 2 {
            return Err(Notification::new(
                codes::OPEN,
                open_subcodes::UNACCEPTABLE_HOLD_TIME,
            ));
        }
        let id_clash = self.config.is_internal() && open.bgp_id == self.config.bgp_id;
        if open.bgp_id.is_unspecified() || id_clash {
            return Err(Notification::new(
                codes::OPEN,
                open_subcodes::BAD_BGP_IDENTIFIER,
            ));
        }
        let theirs = open.families();
        let families: Vec<Family> = self
            .config
            .families
            .iter()
            .copied()
            .filter(|f| theirs.contains(f))
            .collect();
        if families.is_empty() {
            // RFC 5492 §5: nothing in common to exchange; the data names what we wanted.
            let mut n = Notification::new(codes::OPEN, open_subcodes::UNSUPPORTED_CAPABILITY);
            for f in &self.config.families {
                n.data.extend_from_slice(&[1, 4]);
                n.data.extend_from_slice(&f.afi().to_be_bytes());
                n.data.extend_from_slice(&[0, f.safi()]);
            }
            return Err(n);
        }
        let ours = self.config.open();
        Ok(Negotiated {
            peer_asn,
            peer_id: open.bgp_id,
            hold_time: self.config.hold_time.min(open.hold_time),
            four_octet_as: open.four_octet_as().is_some(),
            route_refresh: open.route_refresh(),
            ipv4_over_ipv6: open.ipv4_over_ipv6_next_hop() && ours.ipv4_over_ipv6_next_hop(),
            families,
        })
    }

    /// Sends `n`, closes, and goes Idle (the error paths of RFC 4271 §8.2.2).
    fn fail(&mut self, n: Notification, now: Instant, out: &mut Vec<Action>) {
        out.push(Action::Send(Message::Notification(n.clone())));
        self.go_idle(DownReason::Sent(n), now, out);
    }

    fn go_idle(&mut self, reason: DownReason, now: Instant, out: &mut Vec<Action>) {
        let was = self.state;
        if was != State::Idle {
            out.push(Action::Disconnect);
        }
        match was {
            State::Established => out.push(Action::Down(reason)),
            State::Idle => {}
            _ if reason != DownReason::Stopped => out.push(Action::Failed(reason)),
            _ => {}
        }
        self.state = State::Idle;
        self.negotiated = None;
        self.connect_retry_at = None;
        self.hold_at = None;
        self.keepalive_at = None;
        // An enabled session comes back on its own after the connect retry time, so a peer
        // that keeps failing is retried at that pace and no faster.
        self.restart_at = self.enabled.then(|| now + self.config.connect_retry);
    }
}
