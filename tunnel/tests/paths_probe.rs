//! Probe parser robustness: any datagram decodes to a probe or an error, never a panic, and
//! only untouched genuine probes verify.

use meshd_tunnel::path::probe::{self, PROBE_LEN, Probe, ProbeKey, sender_id};
use proptest::prelude::*;

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let key = ProbeKey::from_shared_secret(&[3; 32]);
        let _ = probe::peek(&bytes);
        prop_assert!(probe::decode(&bytes, &key).is_err() || bytes.len() == PROBE_LEN);
    }

    #[test]
    fn genuine_probes_round_trip_and_truncations_fail(
        seq in any::<u64>(), ts in any::<u64>(), path_id in any::<u32>(), cut in 0usize..PROBE_LEN,
    ) {
        let key = ProbeKey::from_shared_secret(&[9; 32]);
        let p = Probe::request(sender_id(&[1; 32]), seq, ts, path_id);
        let bytes = p.encode(&key);
        prop_assert_eq!(probe::decode(&bytes, &key), Ok(p));
        prop_assert!(probe::decode(&bytes[..cut], &key).is_err());
        let mut longer = bytes.to_vec();
        longer.push(0);
        prop_assert!(probe::decode(&longer, &key).is_err());
    }
}
