//! The resolver service (agent `dns`) against a real DNS server: dnsmasq on 127.0.0.77 with a
//! 1-second TTL. A record changed while the resolver runs is picked up at the next (clamped)
//! TTL expiry, without anyone asking; a name that does not resolve changes nothing.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mesh_config::DnsSection;
use meshd::dns::{Answers, Resolver};
use netns_tests::{Dnsmasq, require_root};
use tokio::sync::watch;

const NAME: &str = "peer.mesh.test";

async fn wait_for(
    answers: &mut watch::Receiver<Arc<Answers>>,
    what: &str,
    want: impl Fn(&Answers) -> bool,
) {
    let waited = tokio::time::timeout(Duration::from_secs(10), async {
        while !want(&answers.borrow_and_update()) {
            answers.changed().await.expect("the resolver task runs");
        }
    })
    .await;
    assert!(waited.is_ok(), "{what}: answers are {:?}", answers.borrow());
}

#[tokio::test]
async fn a_changed_record_reaches_subscribers_without_a_restart() {
    if !require_root("a_changed_record_reaches_subscribers_without_a_restart") {
        return;
    }
    let first: IpAddr = "198.51.100.2".parse().unwrap();
    let second: IpAddr = "203.0.113.2".parse().unwrap();
    let listen = "127.0.0.77:5354".parse().unwrap();
    let mut dnsmasq = Dnsmasq::start("resolver", listen, 1, &[(NAME, first)], None);
    std::thread::sleep(Duration::from_millis(300));

    let settings = DnsSection {
        servers: vec![mesh_config::DnsServer(listen)],
        min_ttl: 1,
        max_ttl: 3600,
    };
    let resolver = Resolver::start(&settings);
    let mut answers = resolver.answers();
    let names: BTreeSet<String> = [NAME.to_owned(), "missing.mesh.test".to_owned()].into();
    resolver.watch_names("test", names);
    wait_for(&mut answers, "first answer", |a| {
        a.get(NAME) == Some(&vec![first])
    })
    .await;

    dnsmasq.set_records(&[(NAME, second)]);
    let changed_at = Instant::now();
    wait_for(&mut answers, "changed record", |a| {
        a.get(NAME) == Some(&vec![second])
    })
    .await;
    let took = changed_at.elapsed();
    eprintln!("new address seen {took:?} after the record changed");
    assert!(took < Duration::from_secs(5), "{took:?}\n{}", dnsmasq.log());
    assert!(!answers.borrow().contains_key("missing.mesh.test"));
}
