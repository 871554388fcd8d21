use super::*;

fn cand(local: &str, remote: &str, preference: u8) -> PathCandidate {
    PathCandidate {
        path: Path {
            local: Some(local.parse().unwrap()),
            remote: remote.parse().unwrap(),
        },
        preference,
        source: PathSource::Configured {
            name: remote.into(),
        },
    }
}

#[test]
fn first_path_then_probes_then_switch_when_active_dies() {
    let t0 = Instant::now();
    let mut p = PathProber::new(ProberConfig::default(), 1000);
    let a = cand("198.51.100.1", "203.0.113.2:51820", 0);
    let b = cand("198.51.100.9", "203.0.113.2:51820", 1);
    p.set_candidates(vec![a.clone(), b.clone()], t0);
    let acts = p.poll(t0);
    assert!(matches!(
        &acts[0],
        PathAction::Switched { from: None, to: Some(to), reason: SwitchReason::FirstPath } if *to == a.path
    ));
    let probes: Vec<_> = acts
        .iter()
        .filter_map(|x| match x {
            PathAction::SendProbe { path_id, seq, .. } => Some((*path_id, *seq)),
            _ => None,
        })
        .collect();
    assert_eq!(probes.len(), 2);
    for (id, seq) in &probes {
        assert!(p.probe_reply(*id, *seq, t0 + Duration::from_millis(10)));
        assert!(!p.probe_reply(*id, *seq, t0 + Duration::from_millis(11)));
    }
    assert!(p.path_stats().iter().all(|s| s.state == PathState::Up));
    // Traffic flows, a's probes go unanswered, b's are answered.
    let mut now = t0 + Duration::from_millis(10);
    let mut switched = None;
    while now < t0 + Duration::from_secs(2) && switched.is_none() {
        p.traffic_sent(now);
        now = p.next_deadline().unwrap().max(now);
        for act in p.poll(now) {
            match act {
                PathAction::SendProbe { path, path_id, seq } if path == b.path => {
                    p.probe_reply(path_id, seq, now);
                }
                PathAction::Switched { to, reason, .. } => switched = Some((now, to, reason)),
                _ => {}
            }
        }
    }
    let (at, to, reason) = switched.expect("switched");
    assert_eq!(to, Some(b.path));
    assert_eq!(reason, SwitchReason::ProbesLost(3));
    assert!(at - t0 < Duration::from_secs(1), "{:?}", at - t0);
    assert_eq!(p.active_path(), Some(b.path));
}
