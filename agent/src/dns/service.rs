//! The resolver task: hickory-resolver for the lookups, [`NameTable`] for when and what
//! changed. One task for the daemon; subscribers say which names they need and watch one
//! map of answers.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use mesh_config::DnsSection;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use super::table::{NameTable, Outcome};

/// Every watched name with its last good addresses (names that never resolved are absent).
pub type Answers = BTreeMap<String, Vec<IpAddr>>;

enum Command {
    Watch(&'static str, BTreeSet<String>),
    Refresh(String),
    Reconfigure(DnsSection),
}

/// A handle on the resolver task; dropping every handle stops it.
#[derive(Debug, Clone)]
pub struct Resolver {
    commands: mpsc::UnboundedSender<Command>,
    answers: watch::Receiver<Arc<Answers>>,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Command")
    }
}

/// A hickory resolver for `[dns]`: its servers, or the system's (`/etc/resolv.conf`, which
/// `ip netns exec` replaces by `/etc/netns/NS/resolv.conf`). Its own cache is bypassed by
/// the table's deadlines (clamped TTLs) and cleared on refresh.
pub fn build(settings: &DnsSection) -> Result<TokioResolver, String> {
    if settings.servers.is_empty() {
        return TokioResolver::builder_tokio()
            .map_err(|e| format!("cannot read the system's resolver configuration: {e}"))?
            .build()
            .map_err(|e| e.to_string());
    }
    let servers = settings
        .servers
        .iter()
        .map(|server| {
            let connections = [ConnectionConfig::udp(), ConnectionConfig::tcp()]
                .into_iter()
                .map(|mut c| {
                    c.port = server.0.port();
                    c
                })
                .collect();
            NameServerConfig::new(server.0.ip(), true, connections)
        })
        .collect();
    TokioResolver::builder_with_config(
        ResolverConfig::from_name_servers(servers),
        TokioRuntimeProvider::default(),
    )
    .build()
    .map_err(|e| e.to_string())
}

/// One lookup: the addresses and how long they are valid, or the error's text.
pub async fn lookup(
    resolver: &TokioResolver,
    name: &str,
) -> Result<(Vec<IpAddr>, Duration), String> {
    let answer = resolver.lookup_ip(name).await.map_err(|e| e.to_string())?;
    let ttl = answer
        .valid_until()
        .saturating_duration_since(Instant::now());
    Ok((answer.iter().collect(), ttl))
}

impl Resolver {
    /// Starts the task (inside a tokio runtime). A resolver that cannot be built (no usable
    /// resolv.conf) is logged; names then stay unresolved until a reload fixes `[dns]`.
    pub fn start(settings: &DnsSection) -> Resolver {
        let (commands, receiver) = mpsc::unbounded_channel();
        let (answers_tx, answers) = watch::channel(Arc::new(Answers::new()));
        let task = Task {
            resolver: built_or_warn(settings),
            table: NameTable::new(
                Duration::from_secs(settings.min_ttl.into()),
                Duration::from_secs(settings.max_ttl.into()),
            ),
            wanted: BTreeMap::new(),
            answers: answers_tx,
        };
        tokio::spawn(task.run(receiver));
        Resolver { commands, answers }
    }

    /// The names `owner` (one per subscriber: "membership", "peers") needs from now on;
    /// replaces its earlier set.
    pub fn watch_names(&self, owner: &'static str, names: BTreeSet<String>) {
        let _ = self.commands.send(Command::Watch(owner, names));
    }

    /// Asks for `name` again now (every path of a peer is down).
    pub fn refresh(&self, name: &str) {
        let _ = self.commands.send(Command::Refresh(name.to_owned()));
    }

    /// New `[dns]` settings (a reload): new servers, and every name asked again.
    pub fn reconfigure(&self, settings: DnsSection) {
        let _ = self.commands.send(Command::Reconfigure(settings));
    }

    /// The answers, changed whenever an address list changes.
    pub fn answers(&self) -> watch::Receiver<Arc<Answers>> {
        self.answers.clone()
    }
}

fn built_or_warn(settings: &DnsSection) -> Option<TokioResolver> {
    build(settings)
        .inspect_err(
            |error| tracing::warn!(%error, "no DNS resolver: endpoint names stay unresolved"),
        )
        .ok()
}

struct Task {
    resolver: Option<TokioResolver>,
    table: NameTable,
    wanted: BTreeMap<&'static str, BTreeSet<String>>,
    answers: watch::Sender<Arc<Answers>>,
}

type Lookup = (String, Result<(Vec<IpAddr>, Duration), String>);

impl Task {
    async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
        let mut lookups: JoinSet<Lookup> = JoinSet::new();
        loop {
            let now = Instant::now();
            for name in self.table.take_due(now) {
                match self.resolver.clone() {
                    Some(resolver) => {
                        lookups.spawn(async move {
                            let result = lookup(&resolver, &name).await;
                            (name, result)
                        });
                    }
                    None => {
                        let outcome =
                            self.table
                                .answered(&name, Err("no DNS resolver".to_owned()), now);
                        self.apply(&name, outcome);
                    }
                }
            }
            let sleep = self
                .table
                .next_deadline()
                .map(|at| at.saturating_duration_since(now))
                .unwrap_or(Duration::from_secs(3600));
            tokio::select! {
                command = commands.recv() => match command {
                    Some(command) => self.command(command),
                    None => return,
                },
                Some(Ok((name, result))) = lookups.join_next(), if !lookups.is_empty() => {
                    let outcome = self.table.answered(&name, result, Instant::now());
                    self.apply(&name, outcome);
                }
                () = tokio::time::sleep(sleep) => {}
            }
        }
    }

    fn command(&mut self, command: Command) {
        let now = Instant::now();
        match command {
            Command::Watch(owner, names) => {
                self.wanted.insert(owner, names);
                let all: BTreeSet<String> = self.wanted.values().flatten().cloned().collect();
                self.table.set_names(&all, now);
                self.answers.send_if_modified(|answers| {
                    let before = answers.len();
                    Arc::make_mut(answers).retain(|name, _| all.contains(name));
                    answers.len() != before
                });
            }
            Command::Refresh(name) => {
                if let Some(resolver) = &self.resolver {
                    resolver.clear_cache();
                }
                self.table.refresh(&name, now);
            }
            Command::Reconfigure(settings) => {
                self.resolver = built_or_warn(&settings);
                self.table.set_ttl_bounds(
                    Duration::from_secs(settings.min_ttl.into()),
                    Duration::from_secs(settings.max_ttl.into()),
                );
                self.table.refresh_all(now);
            }
        }
    }

    fn apply(&mut self, name: &str, outcome: Outcome) {
        match outcome {
            Outcome::Changed(addresses) => {
                tracing::info!(%name, ?addresses, "endpoint name resolved");
                self.answers.send_modify(|answers| {
                    Arc::make_mut(answers).insert(name.to_owned(), addresses);
                });
            }
            Outcome::Warn(error) => {
                let kept = self.table.addresses(name);
                tracing::warn!(%name, %error, ?kept, "cannot resolve an endpoint name; keeping its last addresses");
            }
            Outcome::Unchanged | Outcome::Quiet => {}
        }
    }
}
