//! Reloading `meshd.toml` while the daemon runs (SIGHUP, `systemctl reload meshd`).
//!
//! The file is read and validated first; a file with errors is reported and the running
//! configuration stays. Otherwise [`diff::plan`] sorts the differences: `[[peer]]` changes go
//! to the peer set (peers whose key stays keep their sessions, so unchanged tunnels carry on),
//! the metrics listener and log filter follow, and settings that need a restart are logged as
//! such and kept. The configuration that then runs is published ([`Reloader::config`]) for
//! the planes that derive state from it: the routing plane is to follow it for `[routing]
//! lan_prefixes` and `[bgp]` (comparing with [`NamedChanges::between`] or [`diff::plan`]).
//! While nothing subscribes, those changes are reported as needing a restart instead.

pub mod diff;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use mesh_config::{Config, ConfigError};
use tokio::sync::watch;

pub use diff::{FixedChange, NamedChanges, ReloadPlan, plan};

use crate::api::configured_nodes;
use crate::dataplane::DataplaneError;
use crate::dns::Resolver;
use crate::logging::LogFilterSetter;
use crate::peerset::{DataplaneControl, PeerSet, configured_peer, resolve_peer};
use crate::state::StateDir;
use mesh_config::path_settings::PathsSection;

/// Why a reload changed nothing.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("{0}")]
    Config(#[from] ConfigError),
    #[error("the data plane refused the new peers: {0}")]
    Dataplane(#[from] DataplaneError),
}

/// What a reload acts on.
pub struct Reloader<'a, D> {
    path: PathBuf,
    state: StateDir,
    running: watch::Sender<Arc<Config>>,
    peer_set: &'a PeerSet<'a, D>,
    metrics: &'a watch::Sender<Option<SocketAddr>>,
    log_filter: LogFilterSetter,
    /// Keeps the `[[peer]]` endpoint names current (crate::dns); `None` in a reloader without
    /// one, whose peers are resolved at start and at reloads only.
    resolver: Option<Resolver>,
    member_names: Option<
        watch::Receiver<std::collections::BTreeMap<String, std::collections::BTreeSet<String>>>,
    >,
    /// Hands `[paths]` changes to the data plane.
    path_policy: PathPolicySetter<'a>,
    /// Hands `[node] endpoints` changes to the control plane (`None` without one: the
    /// endpoints are only advertised in a membership record).
    endpoints: Option<EndpointsSetter<'a>>,
}

/// Advertises new `[node] endpoints` (the control plane re-signs the node's record).
pub type EndpointsSetter<'a> = Box<dyn Fn(Vec<String>) + Send + Sync + 'a>;

/// Applies new `[paths]` settings to the running data plane.
pub type PathPolicySetter<'a> = Box<dyn Fn(PathsSection) + Send + Sync + 'a>;

impl<D> std::fmt::Debug for Reloader<'_, D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reloader")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl<'a, D: DataplaneControl> Reloader<'a, D> {
    /// `running` is the configuration the daemon started with, read from `path`.
    pub fn new(
        path: PathBuf,
        state: StateDir,
        running: Config,
        peer_set: &'a PeerSet<'a, D>,
        metrics: &'a watch::Sender<Option<SocketAddr>>,
        log_filter: LogFilterSetter,
        path_policy: impl Fn(PathsSection) + Send + Sync + 'a,
    ) -> Self {
        Self {
            path,
            state,
            running: watch::Sender::new(Arc::new(running)),
            peer_set,
            metrics,
            log_filter,
            resolver: None,
            member_names: None,
            endpoints: None,
            path_policy: Box::new(path_policy),
        }
    }

    /// Follows the `[[peer]]` endpoint names with `resolver` ([`Self::follow_names`]) and hands
    /// it `[dns]` changes.
    /// Where `[node] endpoints` changes go (the control plane's record).
    pub fn with_endpoints(mut self, setter: impl Fn(Vec<String>) + Send + Sync + 'a) -> Self {
        self.endpoints = Some(Box::new(setter));
        self
    }

    /// The members' endpoint names (from the control plane), refreshed like the
    /// `[[peer]]`s' when every path to that member fails.
    pub fn with_member_names(
        mut self,
        names: watch::Receiver<
            std::collections::BTreeMap<String, std::collections::BTreeSet<String>>,
        >,
    ) -> Self {
        self.member_names = Some(names);
        self
    }

    pub fn with_resolver(mut self, resolver: Resolver) -> Self {
        self.resolver = Some(resolver);
        self.watch_peer_names(&self.running.borrow().clone());
        self
    }

    fn watch_peer_names(&self, config: &Config) {
        if let Some(resolver) = &self.resolver {
            let names = crate::dns::names(config.peers.iter().flat_map(|p| &p.endpoints));
            resolver.watch_names("peers", names.collect());
        }
    }

    /// Re-derives the `[[peer]]`s whenever one of their endpoint names resolves to something
    /// new, so a peer that moved is reached at its new address without a reload; never
    /// returns (pending without a resolver).
    pub async fn follow_names(&self) -> Infallible {
        let Some(mut answers) = self.resolver.as_ref().map(Resolver::answers) else {
            return std::future::pending().await;
        };
        loop {
            if answers.changed().await.is_err() {
                return std::future::pending().await;
            }
            let current = answers.borrow_and_update().clone();
            let config = self.running.borrow().clone();
            let peers: Vec<_> = config
                .peers
                .iter()
                .map(|peer| {
                    let endpoints = peer
                        .endpoints
                        .iter()
                        .flat_map(|e| crate::dns::endpoint_addresses(e, &current))
                        .collect();
                    configured_peer(peer, endpoints)
                })
                .collect();
            if let Err(error) = self
                .peer_set
                .set_configured(configured_nodes(&self.state, &peers))
            {
                tracing::warn!(%error, "the data plane refused the re-resolved peer endpoints");
            }
        }
    }

    /// Asks DNS again, at once, for the endpoint names of the `[[peer]]`s whose every path
    /// failed (the data plane's prober says so through `requests`, polled each second): the
    /// peer may have moved before its record's TTL ran out. Never returns.
    pub async fn follow_path_resolves(&self, requests: impl Fn() -> Vec<String>) -> Infallible {
        let Some(resolver) = &self.resolver else {
            return std::future::pending().await;
        };
        let mut every = tokio::time::interval(std::time::Duration::from_secs(1));
        loop {
            every.tick().await;
            let stranded = requests();
            if stranded.is_empty() {
                continue;
            }
            let config = self.running.borrow().clone();
            for peer in config.peers.iter().filter(|p| stranded.contains(&p.name)) {
                for name in crate::dns::names(&peer.endpoints) {
                    tracing::debug!(peer = %peer.name, %name, "no path works: asking DNS again");
                    resolver.refresh(&name);
                }
            }
            if let Some(members) = &self.member_names {
                let members = members.borrow().clone();
                for (peer, names) in members.iter().filter(|(p, _)| stranded.contains(p)) {
                    for name in names {
                        tracing::debug!(%peer, %name, "no path works: asking DNS again");
                        resolver.refresh(name);
                    }
                }
            }
        }
    }

    /// The configuration that runs, replaced after every accepted reload.
    pub fn config(&self) -> watch::Receiver<Arc<Config>> {
        self.running.subscribe()
    }

    /// Re-reads the file and applies what changed. On error nothing changed.
    pub async fn reload(&self) -> Result<ReloadPlan, ReloadError> {
        let file = mesh_config::load(&self.path)?;
        let running = self.running.borrow().clone();
        let mut plan = plan(&running, &file);
        if self.running.receiver_count() == 0 {
            // Nobody follows the configuration: the routing plane reads it at start only.
            plan.defer_routing(&running);
        }
        for fixed in &plan.restart_needed {
            tracing::warn!("{fixed}");
        }
        if !plan.peers.is_empty() {
            let mut resolved = Vec::with_capacity(plan.effective.peers.len());
            for peer in &plan.effective.peers {
                resolved.push(resolve_peer(peer, &plan.effective.dns).await);
            }
            self.peer_set
                .set_configured(configured_nodes(&self.state, &resolved))?;
        }
        if let Some(address) = plan.metrics {
            self.metrics.send_replace(address);
        }
        if let Some(level) = &plan.log_level
            && let Err(reason) = (self.log_filter)(level)
        {
            tracing::warn!("[log] level {level:?} not applied: {reason}");
        }
        if let Some(paths) = &plan.paths {
            (self.path_policy)(paths.clone());
        }
        if let (Some(setter), Some(endpoints)) = (&self.endpoints, &plan.endpoints) {
            setter(endpoints.clone());
        }
        if let (Some(resolver), Some(dns)) = (&self.resolver, &plan.dns) {
            resolver.reconfigure(dns.clone());
        }
        self.watch_peer_names(&plan.effective);
        self.running.send_replace(Arc::new(plan.effective.clone()));
        Ok(plan)
    }

    /// Reloads on every SIGHUP, logging the outcome; never returns. `hangup` is the signal
    /// stream, installed by the caller as early as possible (SIGHUP's default action would
    /// end the process).
    pub async fn on_hangup(&self, mut hangup: tokio::signal::unix::Signal) -> Infallible {
        loop {
            if hangup.recv().await.is_none() {
                std::future::pending::<()>().await;
            }
            tracing::info!(config = %self.path.display(), "SIGHUP: reloading the configuration");
            match self.reload().await {
                Ok(plan) => tracing::info!("configuration reloaded: {}", plan.summary()),
                Err(error) => {
                    tracing::error!("reload refused, the running configuration stays:\n{error}")
                }
            }
        }
    }
}
