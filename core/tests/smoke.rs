mod common;
use common::*;
use std::time::Duration;

#[test]
fn smoke_ik_ping() {
    let mut p = Pair::new();
    let (sa, _sb) = p.establish();
    let id = p.a.ping(p.now, sa).unwrap();
    assert!(p.run_until(Duration::from_secs(5), |p| p.pongs(Side::A).contains(&id)));
}
