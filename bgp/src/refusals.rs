//! Which received routes a session refused, and why: what the speaker logs about refusals and
//! counts of them. Pure.
//!
//! A refused route is logged once per session and prefix, with its reason; again only when the
//! reason changes, or when the route is accepted after all (a renewed certificate, a new path
//! the policy likes). A peer that sends the same refused route in every UPDATE, or again after
//! a ROUTE-REFRESH, is not news. A withdrawal does not forget the reason: a refused route that
//! the peer withdraws and announces again (a flapping link behind it) is still refused for the
//! same reason, and not logged again; with another reason it is. Everything is forgotten when
//! the session ends.
//!
//! A session may send a whole table the policy refuses (a transit feed behind a filter that
//! takes only a default route): past [`MAX_LINES`] lines a session's refusals are counted but
//! no longer logged one by one, and that is said once.

use std::collections::HashMap;
use std::fmt;

use ipnet::IpNet;

use crate::import::Refusal;
use crate::policy::Policy;

/// Log lines about refusals per session, after which they are only counted.
pub const MAX_LINES: usize = 100;

/// Why a received route was not taken.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Reason {
    /// The UPDATE's checks or the import policy ([`crate::import`]).
    Import(Refusal),
    /// The [`crate::guard::ImportGuard`] refused it (the mesh: the member's certificate does
    /// not allow it), with the guard's explanation.
    Guard(String),
}

/// The reasons, as counted and labelled (`meshd routes --json`, metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Malformed,
    FirstAsNotNeighbor,
    AsLoop,
    ReflectionLoop,
    Policy,
    Certificate,
}

impl Kind {
    pub const ALL: [Kind; 6] = [
        Kind::Malformed,
        Kind::FirstAsNotNeighbor,
        Kind::AsLoop,
        Kind::ReflectionLoop,
        Kind::Policy,
        Kind::Certificate,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Malformed => "malformed",
            Kind::FirstAsNotNeighbor => "first_as_not_neighbor",
            Kind::AsLoop => "as_loop",
            Kind::ReflectionLoop => "reflection_loop",
            Kind::Policy => "policy",
            Kind::Certificate => "certificate",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Reason {
    pub fn kind(&self) -> Kind {
        match self {
            Reason::Import(Refusal::Malformed) => Kind::Malformed,
            Reason::Import(Refusal::FirstAsNotNeighbor) => Kind::FirstAsNotNeighbor,
            Reason::Import(Refusal::AsLoop) => Kind::AsLoop,
            Reason::Import(Refusal::ReflectionLoop) => Kind::ReflectionLoop,
            Reason::Import(Refusal::Policy(_)) => Kind::Policy,
            Reason::Guard(_) => Kind::Certificate,
        }
    }

    /// For people; `import` is the session's import policy, whose terms a policy refusal
    /// names.
    pub fn describe(&self, import: &Policy) -> String {
        match self {
            Reason::Import(Refusal::Malformed) => {
                "malformed attributes (RFC 7606: treated as withdrawn)".to_owned()
            }
            Reason::Import(Refusal::FirstAsNotNeighbor) => {
                "the AS path does not start with the neighbour's AS".to_owned()
            }
            Reason::Import(Refusal::AsLoop) => {
                "AsLoop: this node's AS is in the AS path".to_owned()
            }
            Reason::Import(Refusal::ReflectionLoop) => {
                "reflection loop (RFC 4456: the route came back to this cluster or originator)"
                    .to_owned()
            }
            Reason::Import(Refusal::Policy(rejection)) => {
                format!("import {}", import.describe(*rejection))
            }
            Reason::Guard(why) => format!("not in the certificate: {why}"),
        }
    }
}

/// What to log about one refusal or acceptance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Note {
    /// Refused, and not refused before (in this session, or since it was accepted).
    Refused { reason: Reason },
    /// Refused again, for another reason than the one logged.
    Changed { previous: Reason, reason: Reason },
    /// Accepted after a refusal that was logged.
    Accepted { previous: Reason },
    /// [`MAX_LINES`] reached: from now on this session's refusals are only counted.
    Quiet,
}

#[derive(Debug, Clone)]
struct Entry {
    reason: Reason,
    /// The peer announces the prefix now (and we refuse it); false once it withdrew it.
    announced: bool,
    /// A line said this reason (it may not have, past [`MAX_LINES`]).
    logged: bool,
}

/// One session's refused routes. See the module documentation.
#[derive(Debug, Clone, Default)]
pub struct SessionRefusals {
    prefixes: HashMap<IpNet, Entry>,
    /// Prefixes announced and refused now, by [`Kind::index`].
    counts: [usize; Kind::ALL.len()],
    lines: usize,
    quiet: bool,
}

impl SessionRefusals {
    pub fn new() -> SessionRefusals {
        SessionRefusals::default()
    }

    /// The peer announced `prefix` and it was refused for `reason`.
    pub fn refused(&mut self, prefix: IpNet, reason: Reason) -> Option<Note> {
        let kind = reason.kind();
        match self.prefixes.get_mut(&prefix) {
            Some(entry) if entry.reason == reason => {
                if !entry.announced {
                    entry.announced = true;
                    self.counts[kind.index()] += 1;
                }
                None
            }
            Some(entry) => {
                if entry.announced {
                    self.counts[entry.reason.kind().index()] -= 1;
                }
                self.counts[kind.index()] += 1;
                entry.announced = true;
                let previous = std::mem::replace(&mut entry.reason, reason.clone());
                let note = if entry.logged {
                    Note::Changed { previous, reason }
                } else {
                    Note::Refused { reason }
                };
                let note = Self::line(&mut self.lines, &mut self.quiet, note);
                entry.logged = matches!(note, Some(Note::Changed { .. } | Note::Refused { .. }));
                note
            }
            None => {
                self.counts[kind.index()] += 1;
                let note = Self::line(
                    &mut self.lines,
                    &mut self.quiet,
                    Note::Refused {
                        reason: reason.clone(),
                    },
                );
                let logged = matches!(note, Some(Note::Refused { .. }));
                self.prefixes.insert(
                    prefix,
                    Entry {
                        reason,
                        announced: true,
                        logged,
                    },
                );
                note
            }
        }
    }

    /// The peer announced `prefix` and it was accepted.
    pub fn accepted(&mut self, prefix: IpNet) -> Option<Note> {
        if self.prefixes.is_empty() {
            return None; // the common case: nothing refused, no lookup per route
        }
        let entry = self.prefixes.remove(&prefix)?;
        if entry.announced {
            self.counts[entry.reason.kind().index()] -= 1;
        }
        if !entry.logged {
            return None;
        }
        Self::line(
            &mut self.lines,
            &mut self.quiet,
            Note::Accepted {
                previous: entry.reason,
            },
        )
    }

    /// The peer withdrew `prefix`. Its refusal, if any, is no longer counted but remembered.
    pub fn withdrawn(&mut self, prefix: IpNet) {
        if let Some(entry) = self.prefixes.get_mut(&prefix)
            && entry.announced
        {
            entry.announced = false;
            self.counts[entry.reason.kind().index()] -= 1;
        }
    }

    /// Prefixes the peer announces that are refused now.
    pub fn total(&self) -> usize {
        self.counts.iter().sum()
    }

    /// [`Self::total`] by kind, the kinds with none left out.
    pub fn by_kind(&self) -> Vec<(Kind, usize)> {
        Kind::ALL
            .iter()
            .map(|k| (*k, self.counts[k.index()]))
            .filter(|(_, n)| *n > 0)
            .collect()
    }

    /// `note` if the session still has lines left, [`Note::Quiet`] the first time it has not.
    fn line(lines: &mut usize, quiet: &mut bool, note: Note) -> Option<Note> {
        if *lines < MAX_LINES {
            *lines += 1;
            Some(note)
        } else if !*quiet {
            *quiet = true;
            Some(Note::Quiet)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Rejection;
    use mesh_config::{Match, Set, Term, TermAction};

    #[derive(Debug, Clone, Copy)]
    enum Event {
        Refused(&'static str, R),
        Accepted(&'static str),
        Withdrawn(&'static str),
    }

    #[derive(Debug, Clone, Copy)]
    enum R {
        AsLoop,
        Term(usize),
        Default,
        Guard(&'static str),
    }

    fn reason(r: R) -> Reason {
        match r {
            R::AsLoop => Reason::Import(Refusal::AsLoop),
            R::Term(i) => Reason::Import(Refusal::Policy(Rejection::Term(i))),
            R::Default => Reason::Import(Refusal::Policy(Rejection::Default)),
            R::Guard(why) => Reason::Guard(why.to_owned()),
        }
    }

    fn policy() -> Policy {
        let term = |name: Option<&str>| Term {
            name: name.map(str::to_owned),
            matches: Match::default(),
            set: Set::default(),
            action: TermAction::Reject,
        };
        Policy {
            terms: vec![term(Some("no-lab")), term(None)],
            default: mesh_config::PolicyAction::Reject,
        }
    }

    /// The lines `events` produce, as they would read, and the refused count after them.
    fn run(events: &[Event]) -> (Vec<String>, usize) {
        let mut session = SessionRefusals::new();
        let policy = policy();
        let mut lines = Vec::new();
        for event in events {
            let (prefix, note) = match *event {
                Event::Refused(p, r) => (p, session.refused(p.parse().unwrap(), reason(r))),
                Event::Accepted(p) => (p, session.accepted(p.parse().unwrap())),
                Event::Withdrawn(p) => {
                    session.withdrawn(p.parse().unwrap());
                    (p, None)
                }
            };
            lines.extend(note.map(|note| match note {
                Note::Refused { reason } => {
                    format!("{prefix} refused: {}", reason.describe(&policy))
                }
                Note::Changed { previous, reason } => format!(
                    "{prefix} refused: {} (was: {})",
                    reason.describe(&policy),
                    previous.describe(&policy)
                ),
                Note::Accepted { previous } => {
                    format!("{prefix} accepted (was: {})", previous.describe(&policy))
                }
                Note::Quiet => "quiet".to_owned(),
            }));
        }
        (lines, session.total())
    }

    const A: &str = "192.168.50.0/24";
    const B: &str = "192.168.51.0/24";

    #[test]
    fn each_refusal_is_logged_once_and_again_only_when_its_reason_changes() {
        use Event::*;
        let loop_a = format!("{A} refused: AsLoop: this node's AS is in the AS path");
        let lab_a = format!("{A} refused: import policy term \"no-lab\"");
        let cases: Vec<(&str, Vec<Event>, Vec<String>, usize)> = vec![
            (
                "the same reason ten times: one line",
                vec![Refused(A, R::AsLoop); 10],
                vec![loop_a.clone()],
                1,
            ),
            (
                "two prefixes, each once",
                vec![
                    Refused(A, R::AsLoop),
                    Refused(B, R::Term(0)),
                    Refused(A, R::AsLoop),
                    Refused(B, R::Term(0)),
                ],
                vec![
                    loop_a.clone(),
                    format!("{B} refused: import policy term \"no-lab\""),
                ],
                2,
            ),
            (
                "the reason changes: another line, and back: another",
                vec![
                    Refused(A, R::AsLoop),
                    Refused(A, R::Term(0)),
                    Refused(A, R::Term(0)),
                    Refused(A, R::AsLoop),
                ],
                vec![
                    loop_a.clone(),
                    format!("{lab_a} (was: AsLoop: this node's AS is in the AS path)"),
                    format!("{loop_a} (was: import policy term \"no-lab\")"),
                ],
                1,
            ),
            (
                "withdrawn, then refused again for the same reason: not again",
                vec![
                    Refused(A, R::AsLoop),
                    Withdrawn(A),
                    Refused(A, R::AsLoop),
                    Withdrawn(A),
                ],
                vec![loop_a.clone()],
                0,
            ),
            (
                "withdrawn, then refused for another reason: said",
                vec![Refused(A, R::AsLoop), Withdrawn(A), Refused(A, R::Term(0))],
                vec![
                    loop_a.clone(),
                    format!("{lab_a} (was: AsLoop: this node's AS is in the AS path)"),
                ],
                1,
            ),
            (
                "accepted after a refusal: said, and a new refusal is news",
                vec![
                    Refused(A, R::Guard("\"beta\" may not announce it")),
                    Accepted(A),
                    Accepted(A),
                    Refused(A, R::Guard("\"beta\" may not announce it")),
                ],
                vec![
                    format!("{A} refused: not in the certificate: \"beta\" may not announce it"),
                    format!(
                        "{A} accepted (was: not in the certificate: \"beta\" may not announce it)"
                    ),
                    format!("{A} refused: not in the certificate: \"beta\" may not announce it"),
                ],
                1,
            ),
            (
                "an unnamed term and the default are named by place",
                vec![Refused(A, R::Term(1)), Refused(B, R::Default)],
                vec![
                    format!("{A} refused: import policy term 2 (unnamed)"),
                    format!("{B} refused: import policy default (no term accepted it: reject)"),
                ],
                2,
            ),
            (
                "accepted routes alone say nothing",
                vec![Accepted(A), Withdrawn(A), Accepted(B)],
                vec![],
                0,
            ),
        ];
        for (what, events, expected, refused) in cases {
            let (lines, count) = run(&events);
            assert_eq!(lines, expected, "{what}");
            assert_eq!(count, refused, "{what}: refused count");
        }
    }

    #[test]
    fn counts_follow_what_is_announced_and_refused_now_by_kind() {
        let mut session = SessionRefusals::new();
        let a: IpNet = A.parse().unwrap();
        let b: IpNet = B.parse().unwrap();
        session.refused(a, reason(R::AsLoop));
        session.refused(b, reason(R::Term(0)));
        assert_eq!(session.by_kind(), [(Kind::AsLoop, 1), (Kind::Policy, 1)]);
        session.refused(b, reason(R::Guard("no")));
        assert_eq!(
            session.by_kind(),
            [(Kind::AsLoop, 1), (Kind::Certificate, 1)]
        );
        session.withdrawn(a);
        session.withdrawn(a);
        assert_eq!(session.by_kind(), [(Kind::Certificate, 1)]);
        session.accepted(b);
        assert_eq!((session.total(), session.by_kind()), (0, vec![]));
    }

    #[test]
    fn a_whole_table_refused_is_counted_and_said_in_few_lines() {
        let mut session = SessionRefusals::new();
        let mut notes = Vec::new();
        for i in 0..1000u32 {
            let prefix = IpNet::V4(ipnet::Ipv4Net::new((i << 8).into(), 24).unwrap());
            notes.extend(session.refused(prefix, reason(R::Default)));
        }
        assert_eq!(notes.len(), MAX_LINES + 1);
        assert_eq!(notes.last(), Some(&Note::Quiet));
        assert_eq!(session.total(), 1000);
    }
}
