//! `meshd export`'s four formats for a spoke with two LANs and IPv6, against the files in
//! tests/data/export/ (`two-lans.routeros`, `.wg-quick`, `.bird`, `.frr`), and for the same
//! spoke sent only the default routes (`full-tunnel.*`). A change in what an
//! export says shows up as a diff of these files: look at it, then rewrite them with
//! `MESHD_BLESS=1 cargo test -p meshd --test export_golden`.
//! (export_syntax.rs runs the real parsers on the same files.)

use std::path::PathBuf;

use meshd::foreign::export::{Format, render};

mod export_support;
use export_support::{FULL_TUNNEL, TWO_LANS, full_tunnel, two_lans};

fn golden_path(name: &str, format: Format) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/export")
        .join(format!("{name}.{format}"))
}

#[test]
fn every_format_matches_its_golden_file() {
    let bless = std::env::var("MESHD_BLESS").as_deref() == Ok("1");
    let mut differ = Vec::new();
    let views = [(TWO_LANS, two_lans()), (FULL_TUNNEL, full_tunnel())];
    let cases = views
        .iter()
        .flat_map(|(name, view)| Format::ALL.map(|format| (*name, view, format)));
    for (name, view, format) in cases {
        let path = golden_path(name, format);
        let rendered = render(format, view);
        if bless {
            std::fs::write(&path, &rendered).unwrap();
            eprintln!("wrote {}", path.display());
            continue;
        }
        let golden = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "{}: {e} (MESHD_BLESS=1 writes it from the current output)",
                path.display()
            )
        });
        if golden != rendered {
            let first = golden
                .lines()
                .zip(rendered.lines())
                .position(|(a, b)| a != b)
                .unwrap_or_else(|| golden.lines().count().min(rendered.lines().count()));
            eprintln!(
                "{}: differs from line {} on:\n  golden:   {:?}\n  rendered: {:?}",
                path.display(),
                first + 1,
                golden.lines().nth(first),
                rendered.lines().nth(first)
            );
            differ.push(format!("{name}.{format}"));
        }
    }
    assert!(
        differ.is_empty(),
        "{differ:?} differ from their golden files (see above); if the change is meant, \
         rewrite them with MESHD_BLESS=1 and review the diff"
    );
}

#[test]
fn the_router_announces_its_allocation_and_lans_but_not_the_client_pool() {
    let view = two_lans();
    let announced: Vec<String> = view.announces().iter().map(ToString::to_string).collect();
    for lan in &view.router.lans {
        assert!(
            announced.contains(&lan.to_string()),
            "{lan} not in {announced:?}"
        );
    }
    assert!(announced.contains(&"fd12:3456:789a:1:1::/80".to_string()));
    assert!(!announced.contains(&"fd12:3456:789a:1:1:1::/96".to_string()));
    // And every format announces exactly that: each prefix where the format announces, the
    // /96 nowhere.
    for format in Format::ALL {
        let text = render(format, &view);
        assert!(!text.contains("fd12:3456:789a:1:1:1::/96"), "{format}");
        for prefix in &announced {
            let announcing = match format {
                Format::RouterOs => format!("add list=meshd-announce address={prefix} "),
                Format::Bird => format!("    route {prefix} blackhole;"),
                Format::Frr => format!("  network {prefix}\n"),
                // The tunnel carries everything; announcing is BGP's part.
                Format::WgQuick => continue,
            };
            assert!(text.contains(&announcing), "{format}: no {announcing:?}");
        }
    }
}
