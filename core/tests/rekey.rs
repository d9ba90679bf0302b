//! Key updates by packet count and by time keep traffic flowing, with nothing lost, even
//! when packets from before an update arrive after it.

mod common;

use std::time::Duration;

use common::*;
use tern_core::{Config, DropReason};

fn config(packets: u64) -> Config {
    let mut c = Config::default();
    c.rekey_after_packets = packets;
    c
}

#[test]
fn pings_flow_across_many_packet_count_rekeys_with_reordering() {
    let mut p = Pair::with_configs(config(20), config(20));
    let (sa, sb) = p.establish();
    // Every 7th datagram is held back 25 ms, so it lands after packets sealed later (and
    // often after a key update).
    p.hook = Some(Box::new(|w| {
        if w.seq % 7 == 3 {
            Verdict::Delay(Duration::from_millis(25))
        } else {
            Verdict::Deliver
        }
    }));
    let mut ids = Vec::new();
    for i in 0..400 {
        let now = p.now;
        let side = if i % 2 == 0 { Side::A } else { Side::B };
        let s = if side == Side::A { sa } else { sb };
        ids.push((side, p.node(side).ping(now, s).unwrap()));
        // Key updates are at least max(3 PTO, 1 s) apart, so spread the pings over 6 s.
        p.run_for(Duration::from_millis(15));
    }
    p.run_for(Duration::from_secs(2));
    for (side, id) in &ids {
        assert!(p.pongs(*side).contains(id), "ping {id} from {side:?} lost");
    }
    let ga = p.a.session_info(sa).unwrap().key_generation;
    let gb = p.b.session_info(sb).unwrap().key_generation;
    assert!(ga >= 3 && gb >= 3, "only {ga}/{gb} key updates");
    assert_eq!(p.a.stats().drops.get(DropReason::DecryptFailed), 0);
    assert_eq!(p.b.stats().drops.get(DropReason::DecryptFailed), 0);
}

#[test]
fn keys_update_every_two_minutes_on_an_idle_session() {
    let mut p = Pair::new();
    let (sa, sb) = p.establish();
    let mut ids = Vec::new();
    for _ in 0..20 {
        p.run_for(Duration::from_secs(30));
        let now = p.now;
        ids.push(p.a.ping(now, sa).unwrap());
    }
    p.run_for(Duration::from_secs(1));
    for id in &ids {
        assert!(p.pongs(Side::A).contains(id), "ping {id} lost");
    }
    // 10 minutes at one update per 2 minutes (started by either side).
    let ga = p.a.session_info(sa).unwrap().key_generation;
    assert!((3..=6).contains(&ga), "{ga} key updates in 10 minutes");
    assert_eq!(ga, p.b.session_info(sb).unwrap().key_generation);
}
