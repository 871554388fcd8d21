//! The command-line contract (docs: /work/shared/BRIEF.md, "Command-line contract"). Tests,
//! scripts and packaging rely on these names, so they change only together with the brief.
//!
//! This module only describes and parses arguments; [`crate::commands`] does the work.

use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgGroup, Args, Parser, Subcommand};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use mesh_config::{Endpoint, Role};

use crate::state::DEFAULT_STATE_DIR;

/// Where the config lives unless `--config` says otherwise.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/meshd/meshd.toml";
/// How long an invitation stays valid unless `--ttl` says otherwise.
pub const DEFAULT_INVITE_TTL: &str = "24h";
/// The longest `--ttl` accepted: a token is a secret that admits a node, so it should not be
/// able to outlive a forgotten e-mail for long.
pub const MAX_INVITE_TTL: Duration = Duration::from_secs(30 * 24 * 3600);

/// The end of `meshd --help` and of meshd(1): how to start, the files, the environment.
const AFTER_LONG_HELP: &str = "\
Getting started:
  On the first router, which holds the mesh CA:
    meshd init --name alpha --endpoint vpn.example.net:51820
    systemctl start meshd
  On the CA holder, once per new router:
    meshd invite beta --role spoke --route 192.168.42.0/24
  On the new router, with the token that printed:
    meshd join TOKEN
    systemctl start meshd
  Then, on any node: meshd status, meshd peers, meshd routes.

Files:
  /etc/meshd/meshd.toml
      The configuration, written by `meshd init` or `meshd join`. Every setting is
      described in the commented example /usr/share/doc/meshd/examples/meshd.toml.
  /var/lib/meshd/
      The node's state: WireGuard and certificate keys (mode 0600), certificates, the
      allocation (node.json) and, on the CA holder, the mesh CA (ca/). Back it up; on the
      CA holder, also keep a `meshd ca backup FILE` off the machine.
  /run/meshd/meshd.sock
      The running daemon's control socket, used by status, peers, routes and client add.

Environment:
  RUST_LOG
      Log filter for `meshd run` (e.g. debug, or info,meshd::bgp=debug); overrides
      --log-level and [log] level.
  NOTIFY_SOCKET, JOURNAL_STREAM
      Set by systemd: `meshd run` reports readiness and logs to the journal.

Exit status: 0 on success, 1 on an error (the message says what and where), 2 for a usage
error.";

/// Private, encrypted, routed mesh of WireGuard tunnels between routers
///
/// meshd joins this router to a private, encrypted, routed mesh: WireGuard tunnels among
/// core routers, spokes behind them, a built-in CA that admits routers with one-time tokens and
/// hands out their address blocks, and iBGP over the tunnels so every router learns every LAN.
/// One binary is both the command-line tool and the daemon (`meshd run`).
#[derive(Debug, Parser)]
#[command(
    name = "meshd",
    version,
    propagate_version = true,
    max_term_width = 100,
    after_long_help = AFTER_LONG_HELP
)]
pub struct Cli {
    /// The node's config file (written by `meshd init` / `meshd join` if absent).
    #[arg(long, global = true, value_name = "FILE", default_value = DEFAULT_CONFIG_PATH)]
    pub config: PathBuf,

    /// The node's state directory: keys, certificates and, on the CA holder, the mesh CA.
    #[arg(long, global = true, value_name = "DIR", default_value = DEFAULT_STATE_DIR)]
    pub state_dir: PathBuf,

    /// The running daemon's local control socket [default: /run/meshd/meshd.sock; with
    /// another --state-dir, meshd.sock inside it].
    #[arg(long, global = true, value_name = "PATH")]
    pub socket: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a new mesh: its CA, and this node as its first core.
    Init(InitArgs),
    /// Admit a new node: print a one-time token for `meshd join` (run on the CA holder).
    ///
    /// `meshd invite NAME --role ...` prints the token. `--list` shows the invitations nobody
    /// has used or cancelled yet; `--cancel NAME` takes one back, so its token is refused from
    /// then on and the name may be invited again.
    Invite(InviteArgs),
    /// Join a mesh with a token from `meshd invite`.
    Join(JoinArgs),
    /// Run the daemon in the foreground (what the systemd unit starts).
    ///
    /// Creates the TUN device, its addresses and routes, starts the data and control planes
    /// and runs until SIGINT or SIGTERM, then removes what it set up. SIGHUP re-reads the
    /// configuration and applies what can change at run time (peers, metrics, log level);
    /// tunnels that did not change keep running. Prometheus metrics are served on
    /// http://127.0.0.1:9474/metrics unless `[metrics]` says otherwise. Under systemd it
    /// reports readiness (Type=notify) and logs to the journal; elsewhere it logs to stderr.
    Run(RunArgs),
    /// Show the running daemon's state.
    Status(OutputArgs),
    /// List the mesh peers the running daemon knows and their paths.
    Peers(OutputArgs),
    /// List the routes the running daemon has selected.
    Routes(OutputArgs),
    /// Manage end-user devices with a standard WireGuard app.
    #[command(subcommand)]
    Client(ClientCommand),
    /// Foreign routers this core stands in for: routers that cannot run meshd (MikroTik
    /// RouterOS, wg-quick with BIRD or FRR) but speak WireGuard and BGP.
    #[command(subcommand)]
    Router(RouterCommand),
    /// Print a foreign router's configuration, ready to paste (run on its core).
    ///
    /// FORMAT is `routeros` (RouterOS 7), `wg-quick` (Linux, OpenWrt), `bird` (BIRD 2) or
    /// `frr`. The output holds no private key.
    Export(ExportArgs),
    /// Revoke a node or a client (run on the CA holder).
    Revoke(RevokeArgs),
    /// Ask the running daemon to renew this node's certificate now.
    ///
    /// Certificates renew themselves at about two thirds of their lifetime. After the CA
    /// holder changed what this node's certificate should say (`meshd ca approve`), this
    /// brings the new certificate at once; the log says `node certificate renewed`.
    Renew,
    /// Ask the running daemon for new WireGuard sessions now: with PEER, or with every peer.
    ///
    /// Sessions renew themselves every two minutes while traffic flows. This starts the
    /// handshake at once, e.g. when a session key may have leaked or to test rekeying under
    /// load; traffic keeps using the current session until the new one is confirmed.
    /// `meshd peers` shows the new handshake. An unknown PEER, or one without an endpoint
    /// yet, is an error.
    Rekey(RekeyArgs),
    /// Manage the mesh CA: its registry, backups, and moving it to another core.
    #[command(subcommand)]
    Ca(CaCommand),
    /// Print this node's WireGuard public key (base64, like `wg pubkey`).
    Pubkey,
    /// Write the man pages and shell completions (used to build the package).
    #[command(hide = true)]
    GenerateDocs(GenerateDocsArgs),
}

/// `meshd run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// How much to log [default: `[log] level` in meshd.toml, else info]; `RUST_LOG`, if set,
    /// takes precedence (any tracing filter).
    #[arg(long, value_name = "LEVEL", value_parser = crate::logging::LEVELS)]
    pub log_level: Option<String>,
}

/// `meshd generate-docs` (hidden).
#[derive(Debug, Args)]
pub struct GenerateDocsArgs {
    /// Directory to write `man/*.1` and `completions/{meshd.bash,_meshd,meshd.fish}` into.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

/// `meshd init`.
#[derive(Debug, Args)]
pub struct InitArgs {
    /// This node's name: a lowercase DNS label (a-z, 0-9, '-').
    #[arg(long, value_name = "NAME")]
    pub name: String,

    /// Where other nodes reach this one (repeat for several ISPs).
    #[arg(long = "endpoint", value_name = "HOST:PORT", required = true)]
    pub endpoints: Vec<Endpoint>,

    /// The mesh IPv4 pool each node's /16 is carved from [default: 10.0.0.0/8].
    #[arg(long, value_name = "CIDR")]
    pub pool4: Option<Ipv4Net>,

    /// The mesh IPv6 /48 [default: a random RFC 4193 ULA /48].
    #[arg(long, value_name = "CIDR")]
    pub pool6: Option<Ipv6Net>,

    /// The mesh's private AS number for iBGP [default: 64512].
    #[arg(long, value_name = "N")]
    pub asn: Option<u32>,
}

/// `meshd invite`: `NAME --role ...` invites, `--list` shows the open invitations,
/// `--cancel NAME` takes one back.
#[derive(Debug, Args)]
#[command(
    group(ArgGroup::new("what").args(["name", "list", "cancel"]).required(true)),
    override_usage = "meshd invite NAME --role core|spoke [--core NAME] [--route CIDR]... \
                      [--exit [ipv4|ipv6|both]] [--anycast CIDR]... [--ttl DURATION]\n       \
                      meshd invite --list [--json]\n       \
                      meshd invite --cancel NAME"
)]
pub struct InviteArgs {
    /// The new node's name: a lowercase DNS label, unique in the mesh.
    #[arg(value_name = "NAME")]
    pub name: Option<String>,

    /// core: public endpoint, full mesh with the cores; spoke: behind one core.
    #[arg(long, value_name = "core|spoke", required_unless_present_any = ["list", "cancel"])]
    pub role: Option<Role>,

    /// List the invitations nobody has used or cancelled yet, expired ones marked, one line
    /// each, instead of inviting.
    #[arg(long, conflicts_with_all = INVITE_TERMS)]
    pub list: bool,

    /// Take back the invitation for NAME: its token is refused from now on, and the name may
    /// be invited again.
    #[arg(long, value_name = "NAME", conflicts_with_all = INVITE_TERMS)]
    pub cancel: Option<String>,

    /// With --list: print JSON for scripts instead of a table.
    #[arg(long, conflicts_with_all = ["name", "cancel"])]
    pub json: bool,

    /// The core a spoke attaches to [default: the only core, when there is one].
    #[arg(long, value_name = "NAME")]
    pub core: Option<String>,

    /// A LAN prefix the node may announce (repeat for several).
    #[arg(long = "route", value_name = "CIDR")]
    pub routes: Vec<IpNet>,

    /// Approve the node as an Internet exit: it may announce the default route of these
    /// families (`[exit] serve` on the node makes it one).
    #[arg(long, value_name = "ipv4|ipv6|both", num_args = 0..=1, default_missing_value = "both")]
    pub exit: Option<ExitFamilies>,

    /// A prefix the node shares with other nodes (anycast), such as a service address;
    /// approve the same prefix for each of them (repeat for several).
    #[arg(long = "anycast", value_name = "CIDR")]
    pub anycast: Vec<IpNet>,

    /// The node is a router that cannot run meshd (MikroTik RouterOS, wg-quick with BIRD or
    /// FRR): its core admits it with `meshd router add TOKEN`, runs its tunnel and BGP session,
    /// and `meshd export` on the core prints the router's configuration. Spokes only.
    #[arg(long)]
    pub foreign: bool,

    /// How long the token stays valid: 30m, 2h, 7d, ... (at most 30d).
    #[arg(long, value_name = "DURATION", default_value = DEFAULT_INVITE_TTL, value_parser = parse_ttl)]
    pub ttl: Duration,
}

/// The options of `meshd invite` that describe a new invitation, which `--list` and
/// `--cancel` refuse (`--ttl` too: clap does not count its default as given).
const INVITE_TERMS: [&str; 7] = [
    "role", "core", "routes", "exit", "anycast", "foreign", "ttl",
];

/// The families an exit serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExitFamilies {
    Ipv4,
    Ipv6,
    Both,
}

impl ExitFamilies {
    pub fn ipv4(self) -> bool {
        matches!(self, ExitFamilies::Ipv4 | ExitFamilies::Both)
    }

    pub fn ipv6(self) -> bool {
        matches!(self, ExitFamilies::Ipv6 | ExitFamilies::Both)
    }
}

impl std::fmt::Display for ExitFamilies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ExitFamilies::Ipv4 => "IPv4",
            ExitFamilies::Ipv6 => "IPv6",
            ExitFamilies::Both => "IPv4 and IPv6",
        })
    }
}

/// `meshd join`.
#[derive(Debug, Args)]
pub struct JoinArgs {
    /// The token printed by `meshd invite`.
    #[arg(value_name = "TOKEN")]
    pub token: String,

    /// The name this node expects to join as; refused if the token was issued for another.
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,

    /// Where other nodes reach this one (cores; repeat for several ISPs).
    #[arg(long = "endpoint", value_name = "HOST:PORT")]
    pub endpoints: Vec<Endpoint>,
}

/// Output options of the commands that ask the running daemon.
#[derive(Debug, Args)]
pub struct OutputArgs {
    /// Print JSON for scripts instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// `meshd rekey`.
#[derive(Debug, Args)]
pub struct RekeyArgs {
    /// The peer to rekey [default: every peer].
    #[arg(value_name = "PEER")]
    pub peer: Option<String>,

    /// Print JSON for scripts instead of a line per peer.
    #[arg(long)]
    pub json: bool,
}

/// `meshd client ...`.
#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// Create a client and print its wg-quick config.
    Add(ClientAddArgs),
}

/// `meshd client add`.
#[derive(Debug, Args)]
pub struct ClientAddArgs {
    /// The client's name (a lowercase DNS label).
    #[arg(value_name = "NAME")]
    pub name: String,

    /// Also print the config as a QR code for a phone.
    #[arg(long)]
    pub qr: bool,

    /// Send all the client's traffic into the mesh (AllowedIPs 0.0.0.0/0, ::/0): its
    /// Internet traffic leaves through the exit this node uses (the nearest live one, or
    /// the one an `[[exit.route]]` names).
    #[arg(long)]
    pub exit: bool,
}

/// `meshd router ...`.
#[derive(Debug, Subcommand)]
pub enum RouterCommand {
    /// Admit a foreign router with the token from `meshd invite NAME --role spoke --core
    /// THIS-CORE --foreign`: this core then terminates its tunnel, runs its BGP session and
    /// publishes its membership record.
    Add(RouterAddArgs),
}

/// `meshd router add`.
#[derive(Debug, Args)]
pub struct RouterAddArgs {
    /// The token `meshd invite --foreign` printed on the CA holder.
    #[arg(
        value_name = "TOKEN",
        required_unless_present = "name",
        conflicts_with = "name"
    )]
    pub token: Option<String>,

    /// On a core that holds the CA: invite and admit the router in one step, under this
    /// name, instead of redeeming a token.
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,

    /// With --name: a LAN prefix the router may announce (repeatable), as `meshd invite
    /// --route`.
    #[arg(long = "route", value_name = "CIDR")]
    pub routes: Vec<IpNet>,

    /// The router's WireGuard public key (base64, as `wg pubkey` or RouterOS's
    /// `/interface wireguard print` shows it). Without it meshd makes a key pair and prints
    /// the private key once, for the router's configuration.
    #[arg(long, value_name = "PUBLIC_KEY")]
    pub wg_key: Option<String>,
}

/// `meshd export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// `routeros`, `wg-quick`, `bird` or `frr`.
    #[arg(value_name = "FORMAT")]
    pub format: String,

    /// The foreign router's name.
    #[arg(value_name = "NAME")]
    pub name: String,
}

/// `meshd revoke`.
#[derive(Debug, Args)]
pub struct RevokeArgs {
    /// The node or client to revoke.
    #[arg(value_name = "NAME")]
    pub name: String,
}

/// `meshd ca ...`.
#[derive(Debug, Subcommand)]
pub enum CaCommand {
    /// Let a revoked node's name be invited again.
    ///
    /// The names of revoked nodes are never handed out again on their own, so that nobody
    /// takes a newcomer for the node that was thrown out. This frees one on purpose (a router
    /// that was revoked and reinstalled). Its prefixes stay burnt: the new node gets new ones.
    FreeName(FreeNameArgs),
    /// Change what a member's certificate approves: Internet exit, shared (anycast) prefixes.
    ///
    /// Recorded in the CA registry; the member's next certificate carries it. Run `meshd
    /// renew` on the member to get it at once (else it comes with the automatic renewal).
    Approve(ApproveArgs),
    /// Write the mesh CA to one file, encrypted with a passphrase (run on the CA holder).
    ///
    /// The file holds everything needed to carry on as the CA: its key and certificate, the
    /// registry (allocations, issued certificates, revocations, invitations, approvals) and
    /// the newest revocation list. It is written 0600 and read back before the command ends.
    /// Keep it off this machine. `--move-to NAME` also hands the CA over: once the backup is
    /// written and checked, this node stops admitting, renewing and revoking, and its own
    /// renewals go to NAME; restore the file there with `meshd ca restore`.
    Backup(CaBackupArgs),
    /// Make this core the CA holder from a `meshd ca backup` file.
    ///
    /// Checks that the backup is this mesh's CA, that this node holds no CA yet and that the
    /// passphrase opens it, then installs the CA (all of it, or nothing) and teaches the
    /// registry everything the mesh admitted or revoked since the backup, from the membership
    /// and revocation list this node holds, so no prefix is handed out twice. A running meshd
    /// admits, renews and revokes at once; certificates already issued keep working.
    Restore(CaRestoreArgs),
    /// Make this standby the active CA holder, its holder being lost (run on the standby).
    ///
    /// The standby's registry first learns what this node's membership and revocation list
    /// say, then it holds the next term: it admits, renews and revokes at once (a running
    /// meshd spreads the new term's registry record), handing out only its own class of
    /// numbers. The old holder, if it comes back, steps down to standby when it hears of the
    /// new term. Refused unless the active holder has been silent for 10 minutes, as the
    /// meshd running here saw it (say `meshd peers`); `--force` skips that check.
    TakeOver(CaTakeOverArgs),
}

/// `meshd ca take-over`.
#[derive(Debug, Args)]
pub struct CaTakeOverArgs {
    /// Take over even if the active holder was heard from in the last 10 minutes, or the
    /// meshd here cannot tell (not running): only when the holder is lost for good.
    #[arg(long)]
    pub force: bool,
}

/// `meshd ca backup`.
#[derive(Debug, Args)]
pub struct CaBackupArgs {
    /// The backup file to write (replaced if it exists).
    #[arg(value_name = "FILE")]
    pub file: PathBuf,

    /// Read the passphrase from this file (owner-only mode, one line) instead of asking on the
    /// terminal.
    #[arg(long, value_name = "PATH")]
    pub passphrase_file: Option<PathBuf>,

    /// Hand the CA over to core NAME: after the backup is written and checked, this node no
    /// longer holds the CA (its CA key and registry are removed).
    #[arg(long, value_name = "NAME")]
    pub move_to: Option<String>,

    /// Make the backup for a standby (`meshd ca restore --standby` on another core): the
    /// registry is split first, so that this node hands out only every other number from now
    /// on and the standby the others, and the two never give one number twice, even cut off
    /// from each other.
    #[arg(long, conflicts_with = "move_to")]
    pub standby: bool,

    /// The scrypt work factor (log2 N) instead of about one second's worth: for meshd's own
    /// tests, refused by a release build.
    #[arg(long, hide = true, value_name = "LOG2N", value_parser = clap::value_parser!(u8).range(1..=22))]
    pub test_work_factor: Option<u8>,
}

/// `meshd ca restore`.
#[derive(Debug, Args)]
pub struct CaRestoreArgs {
    /// The file `meshd ca backup` wrote.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,

    /// Read the passphrase from this file (owner-only mode, one line) instead of asking on the
    /// terminal.
    #[arg(long, value_name = "PATH")]
    pub passphrase_file: Option<PathBuf>,

    /// Keep the CA as a standby (the backup must come from `meshd ca backup --standby`): the
    /// key and the registry are installed, but this node admits, renews and revokes nothing
    /// until it takes over; joins and renewals here are refused naming the active holder.
    #[arg(long)]
    pub standby: bool,
}

/// `meshd ca approve`.
#[derive(Debug, Args)]
pub struct ApproveArgs {
    /// The member's name.
    #[arg(value_name = "NAME")]
    pub name: String,

    /// Approve the member as an Internet exit for these families (added to what it has).
    #[arg(long, value_name = "ipv4|ipv6|both", num_args = 0..=1, default_missing_value = "both",
          conflicts_with = "no_exit")]
    pub exit: Option<ExitFamilies>,

    /// Withdraw its exit approval (both families).
    #[arg(long)]
    pub no_exit: bool,

    /// Approve a shared (anycast) prefix for it (repeat for several).
    #[arg(long = "anycast", value_name = "CIDR")]
    pub anycast: Vec<IpNet>,

    /// Withdraw a shared prefix (repeat for several).
    #[arg(long = "no-anycast", value_name = "CIDR")]
    pub no_anycast: Vec<IpNet>,
}

/// `meshd ca free-name`.
#[derive(Debug, Args)]
pub struct FreeNameArgs {
    /// The revoked node's name.
    #[arg(value_name = "NAME")]
    pub name: String,
}

/// Parses `--ttl`: a positive duration such as `30m`, `2h`, `7d` or `1h30m`, at most 30 days.
pub fn parse_ttl(text: &str) -> Result<Duration, String> {
    let ttl = humantime::parse_duration(text)
        .map_err(|err| format!("{err}; write it like 30m, 2h or 7d"))?;
    if ttl < Duration::from_secs(60) {
        return Err(format!(
            "{text:?} is too short; an invitation must stay valid for at least a minute"
        ));
    }
    if ttl > MAX_INVITE_TTL {
        return Err(format!(
            "{text:?} is longer than the 30 days an invitation may last"
        ));
    }
    Ok(ttl)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn command_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn ttl_accepts_the_documented_forms() {
        assert_eq!(parse_ttl("30m"), Ok(Duration::from_secs(1800)));
        assert_eq!(parse_ttl("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_ttl("7d"), Ok(Duration::from_secs(7 * 86400)));
        assert_eq!(parse_ttl("1h30m"), Ok(Duration::from_secs(5400)));
        assert!(parse_ttl("0s").is_err());
        assert!(parse_ttl("31d").unwrap_err().contains("30 days"));
        assert!(parse_ttl("soon").unwrap_err().contains("30m"));
        assert!(parse_ttl("").is_err());
    }

    #[test]
    fn global_options_work_after_the_subcommand() {
        let cli = Cli::try_parse_from([
            "meshd",
            "pubkey",
            "--state-dir",
            "/tmp/x",
            "--config",
            "/tmp/c",
        ])
        .unwrap();
        assert_eq!(cli.state_dir, PathBuf::from("/tmp/x"));
        assert_eq!(cli.config, PathBuf::from("/tmp/c"));
    }

    #[test]
    fn defaults_follow_the_contract() {
        let cli = Cli::try_parse_from(["meshd", "run"]).unwrap();
        assert_eq!(cli.config, PathBuf::from("/etc/meshd/meshd.toml"));
        assert_eq!(cli.state_dir, PathBuf::from("/var/lib/meshd"));
    }

    #[test]
    fn init_needs_an_endpoint_and_validates_it() {
        assert!(Cli::try_parse_from(["meshd", "init", "--name", "alpha"]).is_err());
        assert!(
            Cli::try_parse_from(["meshd", "init", "--name", "a", "--endpoint", "no-port"]).is_err()
        );
        let cli = Cli::try_parse_from([
            "meshd",
            "init",
            "--name",
            "alpha",
            "--endpoint",
            "vpn.example.net:51820",
            "--endpoint",
            "[2001:db8::1]:51820",
            "--pool4",
            "10.0.0.0/8",
        ])
        .unwrap();
        let Command::Init(args) = cli.command else {
            panic!("not init")
        };
        assert_eq!(args.endpoints.len(), 2);
    }

    #[test]
    fn invite_parses_role_routes_and_ttl() {
        let cli = Cli::try_parse_from([
            "meshd",
            "invite",
            "beta",
            "--role",
            "spoke",
            "--route",
            "192.168.42.0/24",
            "--ttl",
            "2h",
        ])
        .unwrap();
        let Command::Invite(args) = cli.command else {
            panic!("not invite")
        };
        assert_eq!(args.role, Some(Role::Spoke));
        assert_eq!(
            args.routes,
            vec!["192.168.42.0/24".parse::<IpNet>().unwrap()]
        );
        assert_eq!(args.ttl, Duration::from_secs(7200));
        assert!(Cli::try_parse_from(["meshd", "invite", "beta", "--role", "hub"]).is_err());
        assert!(Cli::try_parse_from(["meshd", "invite", "beta"]).is_err());
        assert!(Cli::try_parse_from(["meshd", "invite", "--role", "core"]).is_err());
    }

    #[test]
    fn rekey_takes_an_optional_peer() {
        let rekey = |argv: &[&str]| {
            let mut all = vec!["meshd", "rekey"];
            all.extend(argv);
            Cli::try_parse_from(all).map(|cli| match cli.command {
                Command::Rekey(args) => args,
                _ => panic!("not rekey"),
            })
        };
        let every = rekey(&[]).unwrap();
        assert!(every.peer.is_none() && !every.json);
        let one = rekey(&["beta", "--json"]).unwrap();
        assert_eq!(one.peer.as_deref(), Some("beta"));
        assert!(one.json);
        assert!(rekey(&["beta", "gamma"]).is_err());
    }

    #[test]
    fn invite_lists_and_cancels_without_the_terms_of_a_new_invitation() {
        let invite = |argv: &[&str]| {
            let mut all = vec!["meshd", "invite"];
            all.extend(argv);
            Cli::try_parse_from(all).map(|cli| match cli.command {
                Command::Invite(args) => args,
                _ => panic!("not invite"),
            })
        };
        let list = invite(&["--list", "--json"]).unwrap();
        assert!(list.list && list.json && list.name.is_none() && list.role.is_none());
        let cancel = invite(&["--cancel", "beta"]).unwrap();
        assert_eq!(cancel.cancel.as_deref(), Some("beta"));
        for refused in [
            &["--list", "beta"][..],
            &["--list", "--cancel", "beta"],
            &["--cancel", "beta", "gamma"],
            &["--cancel", "beta", "--role", "core"],
            &["--list", "--ttl", "2h"],
            &["--list", "--route", "192.168.42.0/24"],
            &["beta", "--role", "core", "--json"],
            &[],
        ] {
            assert!(invite(refused).is_err(), "{refused:?} was accepted");
        }
    }
}
