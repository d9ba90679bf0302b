//! The rendezvous server's state machine against the directory attacks that work on Pilot
//! (`pilot-reference.md` §6: S1–S4, S6–S9, S13), plus its normal behaviour.

use std::net::SocketAddr;

use tern_core::rendezvous::msg::{
    Endpoints, ErrorCode, Message, Query, Registration, Request, Response,
};
use tern_core::rendezvous::{Client, ClientEvent, Push, RelayDenied, Server, ServerConfig, Tool};
use tern_core::{Address, Identity, PeerId};

const T0: u64 = 1_800_000_000_000;

struct World {
    server: Server,
    now: u64,
}

struct Node {
    id: Identity,
    client: Client,
    addr: SocketAddr,
}

impl World {
    fn new() -> Self {
        Self::with(ServerConfig::default())
    }

    fn with(config: ServerConfig) -> Self {
        Self {
            server: Server::new(Identity::from_secret([200; 32]), config, [7; 32]),
            now: T0,
        }
    }

    fn node(&mut self, n: u8) -> Node {
        let id = Identity::from_secret([n; 32]);
        let addr: SocketAddr = format!("198.51.100.{n}:{}", 4000 + u16::from(n))
            .parse()
            .unwrap();
        self.server.connected(self.now, id.peer_id(), addr);
        Node {
            client: Client::new(self.server.peer_id(), [n; 32]),
            id,
            addr,
        }
    }

    fn ask(&mut self, node: &mut Node, body: Request) -> Response {
        let (_, raw) = node.client.request(&node.id, self.now, &body);
        let resp = self
            .server
            .handle(self.now, node.id.peer_id(), &raw)
            .expect("a request");
        match node.client.handle(self.now, &resp).expect("valid response") {
            ClientEvent::Response { body, .. } => body,
            other => panic!("{other:?}"),
        }
    }

    fn register(&mut self, node: &mut Node, hostname: &str, public: bool) -> Response {
        self.ask(
            node,
            Request::Register(Registration {
                hostname: Some(hostname.into()),
                tags: vec!["mcp".into()],
                tools: vec![],
                public,
                candidates: vec!["192.168.1.10:4000".parse().unwrap()],
            }),
        )
    }

    fn pushes_for(&mut self, peer: PeerId) -> Vec<Push> {
        let mut out = Vec::new();
        let mut rest = Vec::new();
        while let Some((to, raw)) = self.server.poll_push() {
            if to == peer {
                match Message::decode(&raw) {
                    Some(Message::Push(p)) => out.push(p),
                    other => panic!("{other:?}"),
                }
            } else {
                rest.push((to, raw));
            }
        }
        out
    }
}

fn code(r: &Response) -> Option<ErrorCode> {
    match r {
        Response::Error { code, .. } => Some(*code),
        _ => None,
    }
}

fn address_of(r: &Response) -> Address {
    match r {
        Response::Registered { record } => record.address,
        other => panic!("{other:?}"),
    }
}

#[test]
fn register_and_resolve_with_a_signed_record() {
    let mut w = World::new();
    let mut a = w.node(1);
    let mut b = w.node(2);
    let addr = address_of(&w.register(&mut a, "alpha", true));
    let Response::Resolved(e) = w.ask(&mut b, Request::Resolve(Query::Hostname("alpha".into())))
    else {
        panic!()
    };
    assert_eq!(e.record.peer, a.id.peer_id());
    assert_eq!(e.record.address, addr);
    assert!(e.record.verify(&w.server.peer_id(), w.now));
    assert!(e.online && e.public);
    assert_eq!(
        e.endpoints,
        Some(Endpoints {
            host: vec!["192.168.1.10:4000".parse().unwrap()],
            reflexive: vec![a.addr]
        })
    );
    // Re-registering keeps the address.
    assert_eq!(address_of(&w.register(&mut a, "alpha", true)), addr);
    // Lookup by address and by key too.
    assert!(matches!(
        w.ask(&mut b, Request::Resolve(Query::Address(addr))),
        Response::Resolved(_)
    ));
    assert!(matches!(
        w.ask(&mut b, Request::Resolve(Query::Peer(a.id.peer_id()))),
        Response::Resolved(_)
    ));
}

#[test]
fn s1_a_request_signed_by_another_key_is_refused() {
    // Pilot S1: registration with any public key, no proof of possession.
    let mut w = World::new();
    let mut victim = w.node(1);
    let addr = address_of(&w.register(&mut victim, "victim", true));
    let mut attacker = w.node(2);
    // The attacker replays/forges a request signed by the victim's... it cannot sign as the
    // victim, so it signs as itself but sends it as if from the victim's session: refused.
    let (_, raw) = attacker.client.request(
        &attacker.id,
        w.now,
        &Request::Register(Registration {
            hostname: Some("victim".into()),
            public: true,
            ..Registration::default()
        }),
    );
    let resp = w.server.handle(w.now, victim.id.peer_id(), &raw).unwrap();
    assert!(matches!(
        Message::decode(&resp),
        Some(Message::Response {
            body: Response::Error {
                code: ErrorCode::BadSignature,
                ..
            },
            ..
        })
    ));
    // The victim's record is untouched.
    let Response::Resolved(e) = w.ask(
        &mut attacker,
        Request::Resolve(Query::Hostname("victim".into())),
    ) else {
        panic!()
    };
    assert_eq!(e.record.peer, victim.id.peer_id());
    assert_eq!(e.record.address, addr);
}

#[test]
fn s2_a_hostname_belongs_to_its_first_key() {
    let mut w = World::new();
    let mut a = w.node(1);
    let mut b = w.node(2);
    w.register(&mut a, "alpha", true);
    assert_eq!(
        code(&w.register(&mut b, "alpha", true)),
        Some(ErrorCode::HostnameTaken)
    );
    // After the owner moves to another name, the old one is free.
    w.register(&mut a, "alpha2", true);
    assert!(matches!(
        w.register(&mut b, "alpha", true),
        Response::Registered { .. }
    ));
}

#[test]
fn s4_replayed_stale_or_retargeted_requests_are_refused() {
    let mut w = World::new();
    let mut a = w.node(1);
    w.register(&mut a, "alpha", true);
    let (_, raw) = a.client.request(&a.id, w.now, &Request::Deregister);
    let first = w.server.handle(w.now, a.id.peer_id(), &raw).unwrap();
    assert!(matches!(
        Message::decode(&first),
        Some(Message::Response {
            body: Response::Ok,
            ..
        })
    ));
    w.register(&mut a, "alpha", true);
    let again = w.server.handle(w.now + 1000, a.id.peer_id(), &raw).unwrap();
    assert!(
        matches!(
            Message::decode(&again),
            Some(Message::Response {
                body: Response::Error {
                    code: ErrorCode::BadSignature,
                    ..
                },
                ..
            })
        ),
        "replay accepted"
    );
    // A request from 10 minutes ago is stale even with a fresh nonce.
    let (_, old) = a
        .client
        .request(&a.id, w.now - 600_000, &Request::Deregister);
    let resp = w.server.handle(w.now, a.id.peer_id(), &old).unwrap();
    assert!(matches!(
        Message::decode(&resp),
        Some(Message::Response {
            body: Response::Error {
                code: ErrorCode::BadSignature,
                ..
            },
            ..
        })
    ));
    // A request signed for another server is refused here.
    let mut other = Client::new(Identity::from_secret([201; 32]).peer_id(), [1; 32]);
    let (_, foreign) = other.request(&a.id, w.now, &Request::Deregister);
    let resp = w.server.handle(w.now, a.id.peer_id(), &foreign).unwrap();
    assert!(matches!(
        Message::decode(&resp),
        Some(Message::Response {
            body: Response::Error {
                code: ErrorCode::BadSignature,
                ..
            },
            ..
        })
    ));
    // Still registered.
    let mut b = w.node(2);
    assert!(matches!(
        w.ask(&mut b, Request::Resolve(Query::Hostname("alpha".into()))),
        Response::Resolved(_)
    ));
    assert!(w.server.stats().bad_signatures >= 3);
}

#[test]
fn s3_s13_trust_cannot_be_self_granted() {
    let mut w = World::new();
    let mut private = w.node(1);
    let mut attacker = w.node(2);
    w.register(&mut private, "private", false);
    w.register(&mut attacker, "attacker", true);
    // The attacker "approves" itself on the private node's behalf: no pending request from
    // the attacker to itself exists; nothing changes.
    let r = w.ask(
        &mut attacker,
        Request::TrustDecision {
            requester: private.id.peer_id(),
            approve: true,
        },
    );
    assert_eq!(code(&r), Some(ErrorCode::NotFound));
    // It asks, then approves its own request: decisions are looked up under the decider.
    assert_eq!(
        w.ask(
            &mut attacker,
            Request::TrustRequest {
                target: Query::Hostname("private".into()),
                note: "let me in".into()
            }
        ),
        Response::Ok
    );
    let me = attacker.id.peer_id();
    let r = w.ask(
        &mut attacker,
        Request::TrustDecision {
            requester: me,
            approve: true,
        },
    );
    assert_eq!(code(&r), Some(ErrorCode::NotFound));
    assert!(
        !w.server
            .trusts(&private.id.peer_id(), &attacker.id.peer_id())
    );
    let r = w.ask(
        &mut attacker,
        Request::Resolve(Query::Hostname("private".into())),
    );
    assert_eq!(code(&r), Some(ErrorCode::NotAllowed));
    // The private node sees the request and rejects it.
    let pushes = w.pushes_for(private.id.peer_id());
    assert!(
        matches!(&pushes[..], [Push::TrustRequested(p)] if p.from.peer == attacker.id.peer_id() && p.note == "let me in")
    );
    assert_eq!(
        w.ask(
            &mut private,
            Request::TrustDecision {
                requester: attacker.id.peer_id(),
                approve: false
            }
        ),
        Response::Ok
    );
    assert_eq!(
        w.pushes_for(attacker.id.peer_id()),
        vec![Push::TrustDecided {
            by: private.id.peer_id(),
            approve: false
        }]
    );
    assert!(
        !w.server
            .trusts(&private.id.peer_id(), &attacker.id.peer_id())
    );
}

#[test]
fn approval_grants_mutual_trust_and_revocation_removes_it() {
    let mut w = World::new();
    let mut a = w.node(1);
    let mut b = w.node(2);
    w.register(&mut a, "alpha", false);
    w.register(&mut b, "bravo", false);
    assert_eq!(
        code(&w.ask(&mut a, Request::Resolve(Query::Hostname("bravo".into())))),
        Some(ErrorCode::NotAllowed)
    );
    w.ask(
        &mut a,
        Request::TrustRequest {
            target: Query::Hostname("bravo".into()),
            note: String::new(),
        },
    );
    let Response::Pending(p) = w.ask(&mut b, Request::Pending) else {
        panic!()
    };
    assert_eq!(p.len(), 1);
    assert_eq!(p[0].from.hostname.as_deref(), Some("alpha"));
    w.ask(
        &mut b,
        Request::TrustDecision {
            requester: a.id.peer_id(),
            approve: true,
        },
    );
    assert!(w.server.trusts(&a.id.peer_id(), &b.id.peer_id()));
    let Response::Resolved(e) = w.ask(&mut a, Request::Resolve(Query::Hostname("bravo".into())))
    else {
        panic!()
    };
    assert!(e.endpoints.is_some());
    let Response::Resolved(e) = w.ask(&mut b, Request::Resolve(Query::Hostname("alpha".into())))
    else {
        panic!()
    };
    assert!(e.endpoints.is_some(), "trust is mutual");
    w.ask(
        &mut a,
        Request::Revoke {
            peer: b.id.peer_id(),
        },
    );
    assert!(!w.server.trusts(&a.id.peer_id(), &b.id.peer_id()));
    assert!(
        w.pushes_for(b.id.peer_id())
            .contains(&Push::Revoked { by: a.id.peer_id() })
    );
    assert_eq!(
        code(&w.ask(&mut b, Request::Resolve(Query::Hostname("alpha".into())))),
        Some(ErrorCode::NotAllowed)
    );
}

#[test]
fn s6_s7_private_nodes_are_not_enumerable_and_their_endpoints_do_not_leak() {
    let mut w = World::new();
    let mut nodes: Vec<Node> = (1..=60).map(|i| w.node(i)).collect();
    let mut addrs = Vec::new();
    for (i, n) in nodes.iter_mut().enumerate() {
        let public = i % 2 == 0;
        let r = w.register(n, &format!("node{i}"), public);
        addrs.push(address_of(&r).node());
    }
    // Addresses are random, not sequential (Pilot handed out 1, 2, 3, ...).
    let mut sorted = addrs.clone();
    sorted.sort();
    assert!(sorted.windows(2).all(|p| p[1] - p[0] > 1000), "{sorted:?}");
    let mut asker = w.node(99);
    w.register(&mut asker, "asker", true);
    let Response::Found(found) = w.ask(
        &mut asker,
        Request::Find {
            words: "tag:mcp".into(),
            limit: 64,
        },
    ) else {
        panic!()
    };
    assert_eq!(found.len(), 30, "only the public nodes");
    assert!(found.iter().all(|e| e.public));
    for (i, n) in nodes.iter().enumerate() {
        w.now += 100; // stay under the request rate limit
        let r = w.ask(&mut asker, Request::Resolve(Query::Peer(n.id.peer_id())));
        if i % 2 == 0 {
            assert!(matches!(r, Response::Resolved(_)));
        } else {
            // Neither the record's endpoints nor even its details leak.
            assert_eq!(code(&r), Some(ErrorCode::NotAllowed));
        }
    }
    // Guessing addresses finds nothing.
    for guess in 1..=200u32 {
        let r = w.ask(
            &mut asker,
            Request::Resolve(Query::Address(Address::new(0, guess))),
        );
        assert_eq!(code(&r), Some(ErrorCode::NotFound));
        w.now += 100; // stay under the request rate limit
    }
}

#[test]
fn s8_s9_relay_only_between_registered_nodes_that_may_talk() {
    let mut w = World::new();
    let mut a = w.node(1);
    let mut b = w.node(2);
    let mut private = w.node(3);
    w.register(&mut a, "alpha", true);
    w.register(&mut b, "bravo", true);
    w.register(&mut private, "private", false);
    let now = w.now;
    assert_eq!(
        w.server
            .relay_allowed(now, &a.id.peer_id(), &b.id.peer_id(), 1200),
        Ok(())
    );
    let stranger = Identity::from_secret([77; 32]).peer_id();
    assert_eq!(
        w.server
            .relay_allowed(now, &stranger, &b.id.peer_id(), 1200),
        Err(RelayDenied::SenderUnknown)
    );
    assert_eq!(
        w.server
            .relay_allowed(now, &a.id.peer_id(), &stranger, 1200),
        Err(RelayDenied::TargetUnknown)
    );
    assert_eq!(
        w.server
            .relay_allowed(now, &a.id.peer_id(), &private.id.peer_id(), 1200),
        Err(RelayDenied::NotAllowed)
    );
    // A private node may dial a public one, and gets the answers back.
    assert_eq!(
        w.server
            .relay_allowed(now, &private.id.peer_id(), &a.id.peer_id(), 1200),
        Ok(())
    );
    assert_eq!(
        w.server
            .relay_allowed(now, &a.id.peer_id(), &private.id.peer_id(), 1200),
        Ok(()),
        "answers to the private dialer pass"
    );
    // Offline targets are not relayed to.
    w.server.disconnected(&b.id.peer_id());
    assert_eq!(
        w.server
            .relay_allowed(now, &a.id.peer_id(), &b.id.peer_id(), 1200),
        Err(RelayDenied::TargetUnknown)
    );
}

#[test]
fn a_relay_flood_from_one_client_stays_within_its_quota_while_others_are_served() {
    let mut config = ServerConfig::default();
    config.relay_bytes_per_sec = 1_000_000;
    config.relay_burst = 2_000_000;
    let mut w = World::with(config);
    let mut flooder = w.node(1);
    let mut target = w.node(2);
    let mut polite = w.node(3);
    for (n, h) in [(&mut flooder, "f"), (&mut target, "t"), (&mut polite, "p")] {
        w.register(n, h, true);
    }
    let (f, t, p) = (
        flooder.id.peer_id(),
        target.id.peer_id(),
        polite.id.peer_id(),
    );
    let mut sent = 0u64;
    let mut polite_ok = 0;
    // 10 simulated seconds: the flooder tries 10 MB/s, the polite client 100 kB/s.
    for ms in 0..10_000u64 {
        let now = T0 + ms;
        for _ in 0..8 {
            if w.server.relay_allowed(now, &f, &t, 1250).is_ok() {
                sent += 1250;
            }
        }
        if ms % 10 == 0 && w.server.relay_allowed(now, &p, &t, 1000).is_ok() {
            polite_ok += 1;
        }
    }
    // Burst + rate x time, within one packet.
    assert!(sent <= 2_000_000 + 10 * 1_000_000 + 1250, "{sent}");
    assert!(sent >= 10 * 1_000_000, "{sent}");
    assert_eq!(polite_ok, 1000, "the polite client is never throttled");
}

#[test]
fn request_rate_is_limited_per_client() {
    let mut w = World::new();
    let mut a = w.node(1);
    let mut b = w.node(2);
    w.register(&mut a, "alpha", true);
    let mut limited = 0;
    for _ in 0..200 {
        if code(&w.ask(&mut a, Request::Resolve(Query::Hostname("alpha".into()))))
            == Some(ErrorCode::RateLimited)
        {
            limited += 1;
        }
    }
    assert!(limited >= 140, "{limited}");
    // Another client is unaffected.
    assert!(matches!(
        w.ask(&mut b, Request::Resolve(Query::Hostname("alpha".into()))),
        Response::Resolved(_)
    ));
}

#[test]
fn find_ranks_by_tool_descriptions_and_tags() {
    let mut w = World::new();
    let mut weather = w.node(1);
    let mut papers = w.node(2);
    let mut asker = w.node(3);
    w.ask(
        &mut weather,
        Request::Register(Registration {
            hostname: Some("wx".into()),
            tags: vec!["mcp".into()],
            tools: vec![Tool::new(
                "metar",
                "Current aviation weather report for an airport",
            )],
            public: true,
            candidates: vec![],
        }),
    );
    w.ask(
        &mut papers,
        Request::Register(Registration {
            hostname: Some("papers".into()),
            tags: vec!["mcp".into(), "weather".into()],
            tools: vec![Tool::new("doi_lookup", "Find a paper by DOI")],
            public: true,
            candidates: vec![],
        }),
    );
    let Response::Found(f) = w.ask(
        &mut asker,
        Request::Find {
            words: "aviation".into(),
            limit: 10,
        },
    ) else {
        panic!()
    };
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].record.hostname.as_deref(), Some("wx"));
    let Response::Found(f) = w.ask(
        &mut asker,
        Request::Find {
            words: "weather".into(),
            limit: 10,
        },
    ) else {
        panic!()
    };
    // A tag match (10) outranks a description word (2).
    assert_eq!(
        f.iter()
            .map(|e| e.record.hostname.clone().unwrap())
            .collect::<Vec<_>>(),
        vec!["papers", "wx"]
    );
    let Response::Found(f) = w.ask(
        &mut asker,
        Request::Find {
            words: "nothing-matches".into(),
            limit: 10,
        },
    ) else {
        panic!()
    };
    assert!(f.is_empty());
}

#[test]
fn snapshot_and_restore_keep_addresses_hostnames_and_trust() {
    let mut w = World::new();
    let mut a = w.node(1);
    let mut b = w.node(2);
    let addr = address_of(&w.register(&mut a, "alpha", false));
    w.register(&mut b, "bravo", false);
    w.ask(
        &mut a,
        Request::TrustRequest {
            target: Query::Hostname("bravo".into()),
            note: String::new(),
        },
    );
    w.ask(
        &mut b,
        Request::TrustDecision {
            requester: a.id.peer_id(),
            approve: true,
        },
    );
    let snap = w.server.snapshot();
    let mut w2 = World::new();
    w2.server.restore(snap);
    let mut a2 = w2.node(1);
    let mut b2 = w2.node(2);
    assert_eq!(address_of(&w2.register(&mut a2, "alpha", false)), addr);
    assert!(w2.server.trusts(&a2.id.peer_id(), &b2.id.peer_id()));
    let Response::Resolved(e) = w2.ask(&mut b2, Request::Resolve(Query::Hostname("alpha".into())))
    else {
        panic!()
    };
    assert_eq!(e.record.address, addr);
    let mut c = w2.node(3);
    assert_eq!(
        code(&w2.register(&mut c, "alpha", true)),
        Some(ErrorCode::HostnameTaken)
    );
}

#[test]
fn client_rejects_records_not_signed_by_the_pinned_server() {
    let mut w = World::new();
    let mut a = w.node(1);
    let (_, raw) = a.client.request(
        &a.id,
        w.now,
        &Request::Register(Registration {
            hostname: Some("alpha".into()),
            public: true,
            ..Default::default()
        }),
    );
    let resp = w.server.handle(w.now, a.id.peer_id(), &raw).unwrap();
    // A client pinned to another server key refuses the record.
    let mut wrong = Client::new(Identity::from_secret([5; 32]).peer_id(), [1; 32]);
    let (_, _) = wrong.request(&a.id, w.now, &Request::Pending); // makes req_id 1 outstanding
    assert_eq!(
        wrong.handle(w.now, &resp),
        Err(tern_core::rendezvous::client::ClientError::BadRecord)
    );
    // Unknown response ids are refused.
    assert!(a.client.handle(w.now, &resp).is_ok());
    assert!(
        a.client.handle(w.now, &resp).is_err(),
        "a duplicate response is unexpected"
    );
}
