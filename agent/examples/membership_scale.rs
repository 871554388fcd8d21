//! The membership scale benchmark (issue #4): grows a simulated mesh to 50 and then 200 nodes,
//! lets one more node join (a core, then a spoke) and one core change its address, and prints
//! a markdown section with the time until every node knows, the messages and bytes exchanged,
//! the background anti-entropy cost and the memory per node.
//!
//! Everything runs in one process on a virtual clock (`meshd::control::sim`): no sockets.
//! `scripts/bench-membership.sh` runs it in release mode and puts the output into
//! docs/benchmarks.md.
//!
//! Usage: `membership_scale [--sizes 50,200] [--trials 5] [--seed 1]`

use std::process::ExitCode;
use std::time::Instant;

use meshd::control::membership::Membership;
use meshd::control::message::Gossip;
use meshd::control::sim::{ChangeOutcome, Mesh, MeshShape, SimError, Traffic};
use time::{Duration, OffsetDateTime};

/// How long to measure the idle mesh's background traffic.
const BACKGROUND_WINDOW: Duration = Duration::seconds(60);

struct Options {
    sizes: Vec<usize>,
    trials: usize,
    seed: u64,
}

fn parse_options() -> Result<Options, String> {
    let mut options = Options {
        sizes: vec![50, 200],
        trials: 5,
        seed: 1,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--sizes" => {
                options.sizes = value()?
                    .split(',')
                    .map(|s| {
                        s.trim()
                            .parse::<usize>()
                            .ok()
                            .filter(|n| *n >= 2)
                            .ok_or_else(|| {
                                format!("--sizes: {s:?} is not a node count of 2 or more")
                            })
                    })
                    .collect::<Result<_, _>>()?;
            }
            "--trials" => {
                options.trials = value()?
                    .parse()
                    .ok()
                    .filter(|n| *n >= 1)
                    .ok_or("--trials needs a number of 1 or more")?;
            }
            "--seed" => {
                options.seed = value()?.parse().map_err(|_| "--seed needs a number")?;
            }
            other => {
                return Err(format!(
                    "unknown argument {other:?} (see the file's header)"
                ));
            }
        }
    }
    Ok(options)
}

/// One kind of change measured `trials` times on one mesh size.
struct Row {
    nodes: usize,
    shape: MeshShape,
    change: &'static str,
    outcomes: Vec<ChangeOutcome>,
}

struct SizeResult {
    shape: MeshShape,
    rows: Vec<Row>,
    background: Traffic,
    rss_per_node: Option<u64>,
    records_per_node: u64,
    build_seconds: f64,
}

fn main() -> ExitCode {
    let options = match parse_options() {
        Ok(options) => options,
        Err(message) => {
            eprintln!("membership_scale: {message}");
            return ExitCode::from(2);
        }
    };
    let start = OffsetDateTime::now_utc();
    let mut results = Vec::new();
    for &size in &options.sizes {
        match measure_size(size, &options, start) {
            Ok(result) => results.push(result),
            Err(error) => {
                eprintln!("membership_scale: mesh of {size} nodes: {error}");
                return ExitCode::FAILURE;
            }
        }
    }
    print!("{}", render(&results, &options, start));
    ExitCode::SUCCESS
}

fn measure_size(
    size: usize,
    options: &Options,
    start: OffsetDateTime,
) -> Result<SizeResult, SimError> {
    let shape = MeshShape::with_nodes(size);
    eprintln!(
        "building a mesh of {} cores and {} spokes",
        shape.cores, shape.spokes
    );
    let clock = Instant::now();
    let mut mesh = Mesh::build(shape, options.seed ^ size as u64, start)?;
    let build_seconds = clock.elapsed().as_secs_f64();
    let background = mesh.background(BACKGROUND_WINDOW);
    let (rss_per_node, records_per_node) = memory_per_node(&mesh);

    let mut rows = Vec::new();
    // Each trial grows the mesh by one node; measure core joins, then spoke joins, then
    // endpoint changes, with some idle time between so the changes do not overlap.
    type Change = fn(&mut Mesh, usize) -> Result<ChangeOutcome, SimError>;
    let changes: [(&'static str, Change); 3] = [
        ("a core joins", |mesh, _| mesh.join_core()),
        ("a spoke joins", |mesh, _| mesh.join_spoke()),
        ("a core changes its address", |mesh, trial| {
            mesh.move_core(trial)
        }),
    ];
    for (change, run) in changes {
        let mut outcomes = Vec::new();
        let nodes = mesh.net.len();
        let before = MeshShape {
            cores: mesh.cores.len(),
            spokes: mesh.spokes.len(),
        };
        for trial in 0..options.trials {
            eprintln!("{size} nodes: {change} ({}/{})", trial + 1, options.trials);
            let outcome = run(&mut mesh, trial)?;
            if let Some(warning) = outcome.warnings.first() {
                return Err(SimError::Refused(warning.clone()));
            }
            outcomes.push(outcome);
            mesh.idle(Duration::seconds(5));
        }
        rows.push(Row {
            nodes,
            shape: before,
            change,
            outcomes,
        });
    }
    Ok(SizeResult {
        shape,
        rows,
        background,
        rss_per_node,
        records_per_node,
        build_seconds,
    })
}

/// Memory of one node's membership state: the growth of the resident set while `count`
/// fresh machines each take in the whole membership (what a node holds), divided by the
/// count; and, as a lower bound, the size of the records themselves as stored.
fn memory_per_node(mesh: &Mesh) -> (Option<u64>, u64) {
    let records = mesh.net.membership(0).records();
    let stored = serde_json::to_vec(&records).map_or(0, |v| v.len() as u64);
    let ca = mesh.fleet.ca_der().to_vec();
    let now = mesh.net.now();
    let count = mesh.net.len();
    let before = resident_bytes();
    let machines: Vec<Membership> = (0..count)
        .map(|i| {
            let mut m = Membership::new(mesh.net.name(i), ca.clone(), i as u64);
            m.receive(
                "the state directory",
                Gossip::Records {
                    records: records.clone(),
                },
                now,
            );
            m
        })
        .collect();
    let after = resident_bytes();
    let per_node = before
        .zip(after)
        .map(|(b, a)| a.saturating_sub(b) / machines.len() as u64);
    drop(machines);
    (per_node, stored)
}

/// The resident set size of this process (Linux `/proc/self/statm`, in pages of 4 KiB).
fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

fn max(values: &[f64]) -> f64 {
    values.iter().copied().fold(f64::MIN, f64::max)
}

fn seconds(d: Option<Duration>) -> f64 {
    d.map_or(f64::NAN, |d| d.as_seconds_f64())
}

fn render(results: &[SizeResult], options: &Options, start: OffsetDateTime) -> String {
    let mut out = String::new();
    let date = format!(
        "{:04}-{:02}-{:02} {:02}:{:02} UTC",
        start.year(),
        u8::from(start.month()),
        start.day(),
        start.hour(),
        start.minute()
    );
    out.push_str("## Membership scale\n\n");
    out.push_str(
        "Written by `scripts/bench-membership.sh` (`cargo run --release --example membership_scale`); \
         rerun it to refresh this section.\n\n",
    );
    out.push_str(&format!(
        "- date: {date}; {} trials per change, seed {}\n",
        options.trials, options.seed
    ));
    out.push_str(
        "- model: the real membership state machine (`control::membership`) on every node, real \
         certificates and signed records, on a virtual clock (`control::sim`). Cores form a full \
         mesh of control connections, each spoke connects to its core; one core per four spokes. \
         One-way latency 5-40 ms between cores, 2-20 ms from a spoke to its core; a new \
         connection takes two round trips (TCP, TLS 1.3). The shell ticks every 0.5 s, \
         anti-entropy runs every 10 s per node (a 32-byte summary hash to one random peer, the full digest only when the hashes differ); a core pushes news from itself or its spokes to every core, and every core passes news on to its spokes. Bandwidth and CPU time are not \
         modelled.\n",
    );
    out.push_str(
        "- a joining node starts with the membership the CA holder gave it at `meshd join` and \
         connects to every core (a core) or to its core (a spoke); the time runs from the start \
         of its daemon until every node holds its record and every node holds all records.\n\n",
    );

    out.push_str(
        "| mesh (cores + spokes) | change | all cores know (median / max, s) | all nodes know (median / max, s) | messages for the change (median) | per node | KiB for the change (median) | anti-entropy messages meanwhile (median) |\n",
    );
    out.push_str("|---|---|---:|---:|---:|---:|---:|---:|\n");
    for result in results {
        for row in &result.rows {
            let cores: Vec<f64> = row.outcomes.iter().map(|o| seconds(o.cores_done)).collect();
            let all: Vec<f64> = row.outcomes.iter().map(|o| seconds(o.all_done())).collect();
            let messages = median(
                row.outcomes
                    .iter()
                    .map(|o| o.change.messages as f64)
                    .collect(),
            );
            let kib = median(
                row.outcomes
                    .iter()
                    .map(|o| o.change.bytes as f64 / 1024.0)
                    .collect(),
            );
            let background = median(
                row.outcomes
                    .iter()
                    .map(|o| o.anti_entropy.messages as f64)
                    .collect(),
            );
            out.push_str(&format!(
                "| {} ({} + {}) | {} | {:.2} / {:.2} | {:.2} / {:.2} | {:.0} | {:.1} | {:.0} | {:.0} |\n",
                row.nodes,
                row.shape.cores,
                row.shape.spokes,
                row.change,
                median(cores.clone()),
                max(&cores),
                median(all.clone()),
                max(&all),
                messages,
                messages / row.nodes as f64,
                kib,
                background,
            ));
        }
    }

    out.push_str("\n| mesh | background anti-entropy (messages/s) | background (KiB/s, whole mesh) | background per node (bytes/s) | memory per node, resident (KiB) | records held per node (KiB, JSON) | simulated in (s, build) |\n");
    out.push_str("|---|---:|---:|---:|---:|---:|---:|\n");
    for result in results {
        out.push_str(&format!(
            "| {} ({} + {}) | {} | {:.2} | {:.0} | {} | {:.0} | {:.1} |\n",
            result.shape.nodes(),
            result.shape.cores,
            result.shape.spokes,
            result.background.messages,
            result.background.bytes as f64 / 1024.0,
            result.background.bytes as f64 / result.shape.nodes() as f64,
            result
                .rss_per_node
                .map_or("n/a".to_owned(), |b| format!("{:.0}", b as f64 / 1024.0)),
            result.records_per_node as f64 / 1024.0,
            result.build_seconds,
        ));
    }

    if let [small, .., large] = results {
        let per_change = |r: &SizeResult| {
            median(
                r.rows
                    .iter()
                    .flat_map(|row| row.outcomes.iter().map(|o| o.change.messages as f64))
                    .collect(),
            )
        };
        let nodes = large.shape.nodes() as f64 / small.shape.nodes() as f64;
        out.push_str(&format!(
            "\nGrowth from {} to {} nodes ({nodes:.0}x): messages per change {:.2}x (linear would be {nodes:.0}x, \
             quadratic {:.0}x).\n",
            small.shape.nodes(),
            large.shape.nodes(),
            per_change(large) / per_change(small),
            nodes * nodes,
        ));
    }
    out.push_str(
        "\nMemory per node is the growth of the benchmark's resident set while one membership \
         machine per node takes in the whole membership, divided by the number of machines \
         (glibc malloc; it includes the parsed identities and the allocator's overhead). \
         \"Records held\" is the size of the same records as JSON, the state's payload.\n",
    );
    out
}
