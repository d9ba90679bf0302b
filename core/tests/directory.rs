//! Nodes with a rendezvous server, end to end in virtual time: registration, beacon, resolve,
//! relay-first sessions, private nodes, trust requests and decisions, revocation.

mod common;

use std::time::Duration;

use common::net::Net;
use tern_core::rendezvous::msg::{ErrorCode, Query, Registration, Request, Response};
use tern_core::rendezvous::{Push, ServerConfig};
use tern_core::{CloseReason, Config, Event, IncomingPolicy, PathInfo, RendezvousConfig};

const SERVER: u8 = 9;

fn server(net: &mut Net) -> usize {
    let mut c = Config::default();
    c.rendezvous_server = Some(ServerConfig::default());
    net.add(SERVER, c, 1) // two addresses: the beacon's second observation point
}

fn client(net: &mut Net, n: u8, s: usize, hostname: &str, public: bool) -> usize {
    let key = net.id(s);
    let reg = Registration {
        hostname: Some(hostname.into()),
        tags: vec!["mcp".into()],
        public,
        ..Registration::default()
    };
    let mut rc = RendezvousConfig::new(net.addr(s, 0), key, reg);
    rc.beacon = Some(net.addr(s, 1));
    let mut c = Config::default();
    c.rendezvous = Some(rc);
    if !public {
        c.incoming = IncomingPolicy::TrustedOnly;
    }
    net.add(n, c, 0)
}

fn ask(net: &mut Net, i: usize, body: Request) -> Response {
    let now = net.now;
    let id = net.nodes[i].node.rendezvous_request(now, body).unwrap();
    net.run_for(Duration::from_millis(200));
    assert!(net.has_event(
        i,
        |e| matches!(e, Event::RendezvousResponse { req_id } if *req_id == id)
    ));
    net.nodes[i].node.take_rendezvous_response(id).unwrap()
}

#[test]
fn registration_beacon_resolve_and_a_relayed_session() {
    let mut net = Net::new();
    let s = server(&mut net);
    let a = client(&mut net, 1, s, "alpha", true);
    let b = client(&mut net, 2, s, "bravo", true);
    net.run_for(Duration::from_secs(1));
    for i in [a, b] {
        assert!(
            net.has_event(i, |e| matches!(e, Event::Registered { .. })),
            "{:?}",
            net.nodes[i].events
        );
        let st = net.nodes[i].node.rendezvous_status().unwrap();
        assert!(st.connected);
        let addr = net.addr(i, 0);
        assert_eq!(
            st.observed,
            [Some(addr), Some(addr)],
            "both server addresses saw us"
        );
        assert_eq!(st.endpoint_dependent_mapping(), Some(false));
        // The rendezvous machinery stays out of the application's events.
        assert!(!net.has_event(i, |e| matches!(
            e,
            Event::SessionEstablished { .. } | Event::StreamOpened { .. }
        )));
    }
    let Response::Resolved(entry) = ask(
        &mut net,
        a,
        Request::Resolve(Query::Hostname("bravo".into())),
    ) else {
        panic!()
    };
    let bravo = net.id(b);
    assert_eq!(entry.record.peer, bravo);
    let now = net.now;
    let sa = net.nodes[a].node.connect_peer(now, bravo).unwrap();
    // Relay-first: established after one relayed handshake (4 hops of 5 ms), before any
    // hole punching.
    while net.established(a, bravo).is_none() {
        net.run_for(Duration::from_millis(1));
        assert!(net.now - now < Duration::from_millis(100), "no session");
    }
    assert!(
        net.now - now <= Duration::from_millis(30),
        "first byte after {:?}",
        net.now - now
    );
    assert_eq!(net.established(a, bravo), Some(sa));
    assert_eq!(
        net.nodes[a].node.session_info(sa).unwrap().path,
        PathInfo::Relayed { relay: net.id(s) }
    );
    assert!(net.ping(a, sa));
    let server_stats = net.nodes[s].node.rendezvous_server().unwrap().stats();
    assert!(server_stats.relayed > 0);
}

#[test]
fn private_nodes_need_an_approved_trust_request() {
    let mut net = Net::new();
    let s = server(&mut net);
    let private = client(&mut net, 1, s, "private", false);
    let asker = client(&mut net, 2, s, "asker", true);
    net.run_for(Duration::from_secs(1));
    let (pk, ak) = (net.id(private), net.id(asker));
    // Not resolvable, and the relay will not carry a session to it.
    let r = ask(
        &mut net,
        asker,
        Request::Resolve(Query::Hostname("private".into())),
    );
    assert!(matches!(
        r,
        Response::Error {
            code: ErrorCode::NotAllowed,
            ..
        }
    ));
    let now = net.now;
    let s1 = net.nodes[asker].node.connect_peer(now, pk).unwrap();
    net.run_for(Duration::from_secs(20));
    assert!(net.has_event(asker, |e| *e
        == Event::SessionClosed {
            session: s1,
            peer: None,
            reason: CloseReason::HandshakeTimeout
        }));
    assert_eq!(net.established(private, ak), None);
    // Ask, approve, connect.
    assert_eq!(
        ask(
            &mut net,
            asker,
            Request::TrustRequest {
                target: Query::Hostname("private".into()),
                note: "hello".into()
            }
        ),
        Response::Ok
    );
    assert!(net.has_event(private, |e| *e == Event::RendezvousPush));
    let Some(Push::TrustRequested(req)) = net.nodes[private].node.take_rendezvous_push() else {
        panic!()
    };
    assert_eq!((req.from.peer, req.note.as_str()), (ak, "hello"));
    assert_eq!(
        ask(
            &mut net,
            private,
            Request::TrustDecision {
                requester: ak,
                approve: true
            }
        ),
        Response::Ok
    );
    assert!(
        net.nodes[private].node.is_trusted(&ak),
        "the decision applies locally too"
    );
    assert!(
        net.nodes[asker].node.is_trusted(&pk),
        "and the requester trusts back"
    );
    let now = net.now;
    let s2 = net.nodes[asker].node.connect_peer(now, pk).unwrap();
    net.run_for(Duration::from_millis(500));
    assert_eq!(net.established(asker, pk), Some(s2));
    assert!(net.ping(asker, s2));
    // Revocation cuts the session and the directory entry.
    assert_eq!(
        ask(&mut net, private, Request::Revoke { peer: ak }),
        Response::Ok
    );
    net.run_for(Duration::from_secs(1));
    assert!(net.has_event(
        asker,
        |e| matches!(e, Event::SessionClosed { session, .. } if *session == s2)
    ));
    assert!(!net.nodes[asker].node.is_trusted(&pk));
    let r = ask(
        &mut net,
        asker,
        Request::Resolve(Query::Hostname("private".into())),
    );
    assert!(matches!(
        r,
        Response::Error {
            code: ErrorCode::NotAllowed,
            ..
        }
    ));
}

#[test]
fn a_private_node_can_dial_a_public_one_through_the_relay() {
    let mut net = Net::new();
    let s = server(&mut net);
    let private = client(&mut net, 1, s, "private", false);
    let public = client(&mut net, 2, s, "public", true);
    net.run_for(Duration::from_secs(1));
    let pk = net.id(public);
    let now = net.now;
    let sp = net.nodes[private].node.connect_peer(now, pk).unwrap();
    net.run_for(Duration::from_millis(300));
    assert_eq!(
        net.established(private, pk),
        Some(sp),
        "{:?}",
        net.nodes[private].events
    );
    assert!(net.ping(private, sp));
}

#[test]
fn an_unreachable_server_is_reported_with_a_typed_reason() {
    // The server's address answers nothing (down, or UDP blocked on the way).
    let mut net = Net::new();
    let key = tern_core::Identity::from_secret([SERVER; 32]).peer_id();
    let mut rc = RendezvousConfig::new(
        "10.0.0.99:4000".parse().unwrap(),
        key,
        Registration::default(),
    );
    rc.beacon = Some("10.0.0.99:4001".parse().unwrap());
    let mut c = Config::default();
    c.rendezvous = Some(rc);
    let a = net.add(1, c, 0);
    net.run_for(Duration::from_secs(20));
    let problem = tern_core::RendezvousProblem::Unreachable;
    assert!(
        net.has_event(a, |e| *e == Event::RendezvousFailed { problem }),
        "{:?}",
        net.nodes[a].events
    );
    assert!(!net.has_event(a, |e| *e == Event::RendezvousDisconnected));
    let st = net.nodes[a].node.rendezvous_status().unwrap();
    assert!(!st.connected);
    assert_eq!(st.problem, Some(problem));
    assert!(st.failed_attempts >= 1);
    let now = net.now;
    assert_eq!(
        net.nodes[a].node.connect_peer(now, key),
        Err(tern_core::ConnectError::NoRelay)
    );
}

#[test]
fn a_taken_hostname_is_refused_with_a_reason() {
    let mut net = Net::new();
    let s = server(&mut net);
    let _a = client(&mut net, 1, s, "same", true);
    net.run_for(Duration::from_secs(1));
    let b = client(&mut net, 2, s, "same", true);
    net.run_for(Duration::from_secs(1));
    let Some(req_id) = net.nodes[b].events.iter().find_map(|e| match e {
        Event::RegistrationRefused { req_id } => Some(*req_id),
        _ => None,
    }) else {
        panic!("{:?}", net.nodes[b].events)
    };
    let r = net.nodes[b].node.take_rendezvous_response(req_id).unwrap();
    assert!(matches!(
        r,
        Response::Error {
            code: ErrorCode::HostnameTaken,
            ..
        }
    ));
}

#[test]
fn clients_reconnect_after_the_server_restarts() {
    let mut net = Net::new();
    let s = server(&mut net);
    let a = client(&mut net, 1, s, "alpha", true);
    net.run_for(Duration::from_secs(1));
    let addr = net.nodes[a]
        .node
        .rendezvous_status()
        .unwrap()
        .record
        .unwrap()
        .address;
    // The server restarts with its state persisted (same key, restored snapshot).
    let snap = net.nodes[s].node.rendezvous_server().unwrap().snapshot();
    let mut c = Config::default();
    c.rendezvous_server = Some(ServerConfig::default());
    let now = net.now;
    net.nodes[s].node = tern_core::Node::new(
        tern_core::Identity::from_secret([SERVER; 32]),
        c,
        [77; 32],
        now,
        Duration::from_secs(1_800_000_100),
    )
    .unwrap();
    net.nodes[s]
        .node
        .rendezvous_server_mut()
        .unwrap()
        .restore(snap);
    net.run_for(Duration::from_secs(120));
    assert!(net.has_event(a, |e| *e == Event::RendezvousDisconnected));
    let st = net.nodes[a].node.rendezvous_status().unwrap();
    assert!(st.connected, "reconnected");
    assert_eq!(
        st.record.unwrap().address,
        addr,
        "same address after the restart"
    );
}

#[test]
fn relay_first_then_direct_after_hole_punching_and_back_when_it_dies() {
    let mut net = Net::new();
    let s = server(&mut net);
    let a = client(&mut net, 1, s, "alpha", true);
    let b = client(&mut net, 2, s, "bravo", true);
    net.run_for(Duration::from_secs(1));
    let bravo = net.id(b);
    let now = net.now;
    let sa = net.nodes[a].node.connect_peer(now, bravo).unwrap();
    net.run_for(Duration::from_secs(3));
    let sb = net.established(b, net.id(a)).unwrap();
    // Candidates were exchanged over the relayed session and a probe got through.
    let direct_b = PathInfo::Direct(net.addr(b, 0));
    assert!(
        net.has_event(a, |e| *e
            == Event::PathChanged {
                session: sa,
                path: direct_b
            }),
        "{:?}",
        net.nodes[a].events
    );
    assert_eq!(net.nodes[a].node.session_info(sa).unwrap().path, direct_b);
    assert_eq!(
        net.nodes[b].node.session_info(sb).unwrap().path,
        PathInfo::Direct(net.addr(a, 0))
    );
    assert!(net.ping(a, sa));
    // The direct path dies (both directions); traffic goes back through the relay.
    let (aa, ba) = (net.addr(a, 0), net.addr(b, 0));
    net.blocked = vec![(aa, ba), (ba, aa)];
    let tx = {
        net.nodes[b].node.listen(9000).unwrap();
        net.nodes[a].node.open_stream(sa, 9000).unwrap()
    };
    net.nodes[a]
        .node
        .stream(tx)
        .unwrap()
        .write(b"still there?")
        .unwrap();
    net.run_for(Duration::from_secs(20));
    let relayed = PathInfo::Relayed { relay: net.id(s) };
    assert_eq!(net.nodes[a].node.session_info(sa).unwrap().path, relayed);
    let rx = net.nodes[b].events.iter().find_map(|e| match e {
        Event::StreamOpened { stream, .. } => Some(*stream),
        _ => None,
    });
    let mut buf = [0u8; 64];
    let n = net.nodes[b]
        .node
        .stream(rx.expect("stream arrived through the relay"))
        .unwrap()
        .read(&mut buf)
        .unwrap();
    assert_eq!(n, Some(12));
    assert!(net.ping(a, sa));
    // When the direct path heals, the session upgrades again.
    net.blocked.clear();
    net.run_for(Duration::from_secs(60));
    assert_eq!(net.nodes[a].node.session_info(sa).unwrap().path, direct_b);
}

#[test]
fn s16_packets_for_unknown_sessions_cause_no_directory_traffic_and_only_bounded_replies() {
    // Pilot S16: every packet with an unknown id made the daemon query the registry from its
    // read loop. Here the packet path never talks to the directory: a burst of data for
    // unknown sessions and of garbage is answered at most by rate-limited resets, all to
    // the sender, and the rendezvous connection does not notice.
    let mut net = Net::new();
    let s = server(&mut net);
    let a = client(&mut net, 1, s, "alpha", true);
    net.run_for(Duration::from_secs(1));
    assert!(net.has_event(a, |e| matches!(e, Event::Registered { .. })));
    let attacker: std::net::SocketAddr = "10.0.0.66:6666".parse().unwrap();
    let now = net.now;
    let node = &mut net.nodes[a].node;
    let tx_before = node.stats().tx_datagrams;
    let mut x = 0x2545_f491_4f6c_dd1du64;
    for i in 0..2000u32 {
        let mut pkt = vec![0x10];
        pkt.extend_from_slice(&(0x4000_0000 + i).to_be_bytes());
        pkt.extend_from_slice(&[0u8; 40]);
        node.handle_datagram(now, attacker, &mut pkt);
        let mut junk = [0u8; 64];
        for b in &mut junk {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = x as u8;
        }
        node.handle_datagram(now, attacker, &mut junk[..(x % 64) as usize]);
    }
    let mut buf = [0u8; 2048];
    let mut replies = 0;
    while let Some(t) = node.poll_transmit(now, &mut buf) {
        assert_eq!(t.dst, attacker, "nothing but replies to the sender");
        assert_eq!(
            t.len, 21,
            "only stateless resets, smaller than their trigger"
        );
        replies += 1;
    }
    assert!(replies <= 64, "{replies} replies in one second");
    assert_eq!(node.stats().tx_datagrams - tx_before, replies);
    assert!(node.stats().drops.total() >= 2000);
    // The directory connection carries on.
    net.run_for(Duration::from_secs(1));
    assert!(net.nodes[a].node.rendezvous_status().unwrap().connected);
    let Response::Resolved(_) = ask(
        &mut net,
        a,
        Request::Resolve(Query::Hostname("alpha".into())),
    ) else {
        panic!("resolve failed after the flood")
    };
}
