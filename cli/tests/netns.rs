//! The CLI story across real NATs: network namespaces, veth pairs and nftables masquerade,
//! created and removed by this test (it needs root, as in CI).
//!
//! ```text
//!                      inet (203.0.113.0/24, bridge; the rendezvous at .1)
//!          ┌────────────────────┼─────────────────────┐
//!   r1 home NAT (.11)     r2 home NAT (.12)     r3 symmetric NAT (.13, fully-random)
//!          │                    │                     │
//!   h1 alpha 192.168.1.2  h2 bravo 192.168.2.2  h3 charlie 192.168.3.2
//! ```
//!
//! Each router is what a home router ships: masquerade on the WAN side plus a stateful
//! firewall that drops new inbound flows (so unsolicited packets leave no conntrack entry
//! behind, as with OpenWrt's default WAN zone). Each router also counts the packets it forwards inward from anyone but the rendezvous: that
//! is direct peer traffic, the ground truth `ping`'s "direct"/"relayed" is checked against.
#![allow(clippy::disallowed_methods)] // real clock for timeouts

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_tern");
const RDV_IP: &str = "203.0.113.1";

fn run(args: &[&str]) -> Output {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn nft(ns: &str, rules: &str) {
    let mut c = Command::new("ip")
        .args(["netns", "exec", ns, "nft", "-f", "-"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("nft (install nftables)");
    c.stdin.take().unwrap().write_all(rules.as_bytes()).unwrap();
    let out = c.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "nft in {ns}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

struct Lab {
    prefix: String,
    namespaces: Vec<String>,
    dir: tempfile::TempDir,
    rdv: Option<Child>,
    rdv_addr: String,
    homes: Vec<(String, PathBuf)>,
}

impl Lab {
    fn ns(&self, name: &str) -> String {
        format!("{}-{name}", self.prefix)
    }

    fn add_ns(&mut self, name: &str) -> String {
        let ns = self.ns(name);
        run(&["ip", "netns", "add", &ns]);
        self.namespaces.push(ns.clone());
        run(&["ip", "-n", &ns, "link", "set", "lo", "up"]);
        ns
    }

    /// Builds the topology above. `i` is the router number; `symmetric` picks random-fully.
    fn add_site(&mut self, i: u8, symmetric: bool) {
        let inet = self.ns("inet");
        let r = self.add_ns(&format!("r{i}"));
        let h = self.add_ns(&format!("h{i}"));
        let port = format!("p{i}");
        run(&[
            "ip", "link", "add", "wan", "netns", &r, "type", "veth", "peer", "name", &port,
            "netns", &inet,
        ]);
        run(&[
            "ip", "link", "add", "lan", "netns", &r, "type", "veth", "peer", "name", "eth0",
            "netns", &h,
        ]);
        run(&["ip", "-n", &inet, "link", "set", &port, "master", "br0"]);
        run(&["ip", "-n", &inet, "link", "set", &port, "up"]);
        let wan = format!("203.0.113.1{i}/24");
        let lan = format!("192.168.{i}.1/24");
        let host = format!("192.168.{i}.2/24");
        let gw = format!("192.168.{i}.1");
        run(&["ip", "-n", &r, "addr", "add", &wan, "dev", "wan"]);
        run(&["ip", "-n", &r, "addr", "add", &lan, "dev", "lan"]);
        run(&["ip", "-n", &r, "link", "set", "wan", "up"]);
        run(&["ip", "-n", &r, "link", "set", "lan", "up"]);
        run(&[
            "ip",
            "netns",
            "exec",
            &r,
            "sysctl",
            "-qw",
            "net.ipv4.ip_forward=1",
        ]);
        run(&["ip", "-n", &h, "addr", "add", &host, "dev", "eth0"]);
        run(&["ip", "-n", &h, "link", "set", "eth0", "up"]);
        run(&["ip", "-n", &h, "route", "add", "default", "via", &gw]);
        let masq = if symmetric {
            "masquerade fully-random"
        } else {
            "masquerade"
        };
        nft(
            &r,
            &format!(
                "table ip nat {{\n chain post {{\n  type nat hook postrouting priority 100;\n  oifname \"wan\" {masq}\n }}\n}}\n\
                 table ip watch {{\n chain inward {{\n  type filter hook forward priority 0;\n  iifname \"wan\" ip saddr != {RDV_IP} counter\n }}\n}}\n\
                 table ip firewall {{\n chain input {{\n  type filter hook input priority 0;\n  iifname \"wan\" ct state new drop\n }}\n\
                  chain forward {{\n  type filter hook forward priority 0;\n  iifname \"wan\" ct state new drop\n }}\n}}\n"
            ),
        );
    }

    fn new() -> Self {
        let mut lab = Self {
            prefix: format!("tern{}", std::process::id()),
            namespaces: Vec::new(),
            dir: tempfile::tempdir().unwrap(),
            rdv: None,
            rdv_addr: String::new(),
            homes: Vec::new(),
        };
        let inet = lab.add_ns("inet");
        run(&["ip", "-n", &inet, "link", "add", "br0", "type", "bridge"]);
        run(&[
            "ip",
            "-n",
            &inet,
            "addr",
            "add",
            &format!("{RDV_IP}/24"),
            "dev",
            "br0",
        ]);
        run(&["ip", "-n", &inet, "link", "set", "br0", "up"]);
        lab.add_site(1, false);
        lab.add_site(2, false);
        lab.add_site(3, true);
        // The rendezvous, on the "internet".
        let home = lab.dir.path().join("rdv");
        let mut child = Command::new("ip")
            .args([
                "netns",
                "exec",
                &inet,
                BIN,
                "--home",
                home.to_str().unwrap(),
                "--json",
            ])
            .args(["rendezvous", "--listen", &format!("{RDV_IP}:7000")])
            .env("TERN_RUNTIME_DIR", lab.dir.path().join("rt-inet"))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let v: Value =
            serde_json::from_str(&line).unwrap_or_else(|_| panic!("rendezvous said {line:?}"));
        lab.rdv_addr = v["data"]["rendezvous"].as_str().unwrap().to_owned();
        lab.rdv = Some(child);
        lab
    }

    /// Runs `tern --json ARGS` inside host namespace `h` with `home`.
    fn json(&self, h: &str, home: &Path, args: &[&str]) -> (i32, Value) {
        let out = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.ns(h),
                BIN,
                "--home",
                home.to_str().unwrap(),
                "--json",
            ])
            .args(args)
            .env("TERN_RUNTIME_DIR", self.dir.path().join(format!("rt-{h}")))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let v = serde_json::from_str(text.lines().last().unwrap_or("null")).unwrap_or(Value::Null);
        (out.status.code().unwrap_or(-1), v)
    }

    fn ok(&self, h: &str, home: &Path, args: &[&str]) -> Value {
        let (code, v) = self.json(h, home, args);
        if code != 0 {
            eprintln!(
                "--- {h} daemon log ---\n{}",
                std::fs::read_to_string(home.join("daemon.log")).unwrap_or_default()
            );
        }
        assert_eq!(
            (code, v["status"].as_str()),
            (0, Some("ok")),
            "{h} {args:?}: {v}"
        );
        v["data"].clone()
    }

    fn daemon(&mut self, h: &str, name: &str, extra: &[&str]) -> PathBuf {
        let home = self.dir.path().join(name);
        let mut args = vec![
            "daemon",
            "start",
            "--hostname",
            name,
            "--rendezvous",
            &self.rdv_addr,
        ];
        args.extend_from_slice(extra);
        self.ok(h, &home, &args);
        self.homes.push((h.to_owned(), home.clone()));
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let (_, v) = self.json(h, &home, &["netcheck"]);
            if v["data"]["connected"] == true && v["data"]["nat_mapping_code"] != "unknown" {
                break;
            }
            assert!(Instant::now() < deadline, "{name} not connected: {v}");
            std::thread::sleep(Duration::from_millis(100));
        }
        home
    }

    /// Prints every daemon's log (on failure).
    fn dump_logs(&self) {
        for (h, home) in &self.homes {
            eprintln!(
                "--- {h} log ---\n{}",
                std::fs::read_to_string(home.join("daemon.log")).unwrap_or_default()
            );
        }
        for r in ["r1", "r2", "r3"] {
            if let Ok(o) = Command::new("ip")
                .args(["netns", "exec", &self.ns(r), "conntrack", "-L", "-p", "udp"])
                .output()
            {
                eprintln!(
                    "--- {r} conntrack ---\n{}",
                    String::from_utf8_lossy(&o.stdout)
                );
            }
        }
    }

    /// Packets router `r` forwarded inward from anyone but the rendezvous.
    fn direct_in(&self, r: &str) -> u64 {
        let out = run(&[
            "ip",
            "netns",
            "exec",
            &self.ns(r),
            "nft",
            "list",
            "table",
            "ip",
            "watch",
        ]);
        let text = String::from_utf8_lossy(&out.stdout);
        let at = text.find("packets ").expect("counter");
        text[at + 8..]
            .split_whitespace()
            .next()
            .unwrap()
            .parse()
            .unwrap()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for (h, home) in &self.homes {
            let _ = self.json(h, home, &["daemon", "stop"]);
        }
        if let Some(mut c) = self.rdv.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        for ns in self.namespaces.iter().rev() {
            // Anything still running in it dies with it.
            if let Ok(out) = Command::new("ip").args(["netns", "pids", ns]).output() {
                for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                    let _ = Command::new("kill").args(["-9", pid]).status();
                }
            }
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// Pings until the path is `want` (or the time is up); returns the last ping.
fn ping_until(lab: &Lab, h: &str, home: &Path, target: &str, want: &str, limit: Duration) -> Value {
    let deadline = Instant::now() + limit;
    loop {
        let p = lab.ok(h, home, &["ping", target, "-c", "1"]);
        if p["path"] == want || Instant::now() > deadline {
            return p;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"))
}

#[test]
fn across_real_nats_home_nats_go_direct_and_a_symmetric_nat_still_connects_truthfully() {
    if std::env::var_os("TERN_SKIP_NETNS").is_some() {
        eprintln!("skipped: TERN_SKIP_NETNS is set");
        return;
    }
    assert!(
        is_root(),
        "this test builds network namespaces and needs root (CI runs as root); set TERN_SKIP_NETNS=1 to skip it"
    );
    let mut lab = Lab::new();
    let alpha = lab.daemon("h1", "alpha", &["--public", "--tag", "search"]);
    let bravo = lab.daemon("h2", "bravo", &[]); // private
    let charlie = lab.daemon("h3", "charlie", &["--public"]);

    // What the daemons learnt about their NATs.
    let nc = |h: &str, home: &Path| lab.ok(h, home, &["netcheck"]);
    assert_eq!(nc("h1", &alpha)["nat_mapping_code"], "endpoint_independent");
    assert_eq!(nc("h3", &charlie)["nat_mapping_code"], "endpoint_dependent");
    assert_eq!(
        nc("h1", &alpha)["reflexive"][0]
            .as_str()
            .unwrap()
            .split(':')
            .next(),
        Some("203.0.113.11")
    );

    // Find by hostname and tag across the NATs.
    let found = lab.ok("h3", &charlie, &["find", "--tag", "search"]);
    assert_eq!(found[0]["hostname"], "alpha");

    // The private daemon is unreachable until it approves.
    let (code, v) = lab.json("h1", &alpha, &["ping", "bravo"]);
    assert_eq!((code, v["code"].as_str()), (5, Some("PRIVATE_NODE")), "{v}");
    lab.ok("h1", &alpha, &["handshake", "bravo", "from alpha"]);
    lab.ok("h2", &bravo, &["approve", "alpha"]);

    // Two home NATs: relayed at first, direct after hole punching.
    let p = ping_until(
        &lab,
        "h1",
        &alpha,
        "bravo",
        "direct",
        Duration::from_secs(15),
    );
    if p["path"] != "direct" {
        lab.dump_logs();
    }
    assert_eq!(
        p["path"], "direct",
        "two home NATs should punch through: {p}"
    );
    let before = lab.direct_in("r1");
    let p = lab.ok("h1", &alpha, &["ping", "bravo", "-c", "5"]);
    assert_eq!(
        (p["replies"].as_u64(), p["path"].as_str()),
        (Some(5), Some("direct")),
        "{p}"
    );
    let direct = lab.direct_in("r1") - before;
    assert!(
        direct >= 5,
        "ping said direct but r1 forwarded only {direct} direct packets"
    );
    assert!(p["median_ms"].as_f64().unwrap() < 50.0, "{p}");

    // A file across the NATs, checked.
    let file = lab.dir.path().join("f.bin");
    std::fs::write(
        &file,
        (0..(4u32 << 20))
            .map(|i| (i * 7 % 251) as u8)
            .collect::<Vec<_>>(),
    )
    .unwrap();
    let sent = lab.ok(
        "h1",
        &alpha,
        &["send-file", "bravo", file.to_str().unwrap()],
    );
    assert_eq!(sent["bytes"], 4u64 << 20);
    assert_eq!(
        std::fs::read(bravo.join("received/f.bin")).unwrap(),
        std::fs::read(&file).unwrap()
    );

    // Symmetric NAT against a home NAT: it connects, and says how, truthfully.
    let p = ping_until(
        &lab,
        "h3",
        &charlie,
        "alpha",
        "direct",
        Duration::from_secs(15),
    );
    let path = p["path"].as_str().unwrap().to_owned();
    assert!(["direct", "relayed"].contains(&path.as_str()), "{p}");
    let before = lab.direct_in("r1");
    let p = lab.ok("h3", &charlie, &["ping", "alpha", "-c", "5"]);
    assert_eq!(p["replies"].as_u64(), Some(5), "{p}");
    assert_eq!(p["path"], path.as_str(), "the path held");
    let direct = lab.direct_in("r1") - before;
    if path == "direct" {
        assert!(
            direct >= 5,
            "ping said direct but r1 saw {direct} direct packets"
        );
    } else {
        assert!(
            direct < 5,
            "ping said relayed but r1 forwarded {direct} direct packets"
        );
    }
    eprintln!("symmetric NAT -> home NAT: {path}");
    let peers = lab.ok("h3", &charlie, &["peers"]);
    let row = peers
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "alpha")
        .expect("alpha in peers");
    assert_eq!(row["path"], path.as_str());
}
