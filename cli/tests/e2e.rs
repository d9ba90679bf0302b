//! End to end with real processes on loopback: a standalone rendezvous and three daemons,
//! each with a throw-away home. Every command runs the real `tern` binary.
#![allow(clippy::disallowed_methods)] // timeouts use the real clock

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_tern");

struct World {
    dir: tempfile::TempDir,
    rdv: Option<Child>,
    rdv_addr: String,
    homes: Vec<PathBuf>,
}

impl World {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut w = Self {
            dir,
            rdv: None,
            rdv_addr: String::new(),
            homes: Vec::new(),
        };
        w.start_rendezvous();
        w
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn start_rendezvous(&mut self) {
        let home = self.path("rdv");
        let listen = if self.rdv_addr.is_empty() {
            "127.0.0.1:0".to_owned()
        } else {
            self.rdv_addr.split(['#', ',']).next().unwrap().to_owned()
        };
        let mut child = Command::new(BIN)
            .args([
                "--home",
                home.to_str().unwrap(),
                "--json",
                "rendezvous",
                "--listen",
                &listen,
            ])
            .env("TERN_RUNTIME_DIR", self.path("runtime"))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let v: Value = serde_json::from_str(&line).unwrap();
        let addr = v["data"]["rendezvous"].as_str().unwrap().to_owned();
        if !self.rdv_addr.is_empty() {
            // Same key after a restart (the identity lives in its home).
            assert_eq!(addr.split('#').nth(1), self.rdv_addr.split('#').nth(1));
        }
        self.rdv_addr = addr;
        self.rdv = Some(child);
    }

    fn stop_rendezvous(&mut self) {
        if let Some(mut c) = self.rdv.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn cmd(&self, home: &Path, args: &[&str]) -> Output {
        Command::new(BIN)
            .arg("--home")
            .arg(home)
            .args(args)
            .env("TERN_RUNTIME_DIR", self.path("runtime"))
            .output()
            .unwrap()
    }

    /// Runs with --json and returns (exit code, envelope).
    fn json(&self, home: &Path, args: &[&str]) -> (i32, Value) {
        let mut a = vec!["--json"];
        a.extend_from_slice(args);
        let out = self.cmd(home, &a);
        let text = String::from_utf8_lossy(&out.stdout);
        let v: Value =
            serde_json::from_str(text.lines().last().unwrap_or("null")).unwrap_or_else(|_| {
                panic!(
                    "{args:?}: no JSON: {text} / {}",
                    String::from_utf8_lossy(&out.stderr)
                )
            });
        (out.status.code().unwrap_or(-1), v)
    }

    fn ok(&self, home: &Path, args: &[&str]) -> Value {
        let (code, v) = self.json(home, args);
        if code != 0 {
            eprintln!(
                "LOG {}",
                std::fs::read_to_string(home.join("daemon.log")).unwrap_or_default()
            );
        }
        assert_eq!(code, 0, "{args:?}: {v}");
        assert_eq!(v["status"], "ok", "{args:?}: {v}");
        v["data"].clone()
    }

    fn daemon(&mut self, name: &str, extra: &[&str]) -> PathBuf {
        let home = self.path(name);
        let mut args = vec![
            "daemon",
            "start",
            "--hostname",
            name,
            "--rendezvous",
            &self.rdv_addr,
            "--listen",
            "127.0.0.1:0",
        ];
        args.extend_from_slice(extra);
        let data = self.ok(&home, &args);
        assert!(data["pid"].as_u64().is_some());
        self.homes.push(home.clone());
        self.wait_registered(&home);
        home
    }

    fn wait_registered(&self, home: &Path) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let (_, v) = self.json(home, &["info"]);
            if v["data"]["registered"] == true && v["data"]["rendezvous_connected"] == true {
                return;
            }
            assert!(Instant::now() < deadline, "not registered: {v}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for World {
    fn drop(&mut self) {
        for h in &self.homes {
            let _ = Command::new(BIN)
                .arg("--home")
                .arg(h)
                .args(["daemon", "stop"])
                .output();
        }
        self.stop_rendezvous();
    }
}

fn sha256(path: &Path) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    let mut f = std::fs::File::open(path).unwrap();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn three_daemons_find_trust_ping_send_files_untrust_and_survive_restarts() {
    let mut w = World::new();
    let alpha = w.daemon("alpha", &["--public", "--tag", "mcp", "--tag", "search"]);
    let bravo = w.daemon("bravo", &[]); // private
    let charlie = w.daemon("charlie", &["--public"]);
    let addr_of = |w: &World, h: &Path| w.ok(h, &["info"])["address"].as_str().unwrap().to_owned();
    let (a_addr, b_addr) = (addr_of(&w, &alpha), addr_of(&w, &bravo));
    let b_key = w.ok(&bravo, &["info"])["peer_id"]
        .as_str()
        .unwrap()
        .to_owned();

    // Find by hostname and by tag.
    let found = w.ok(&charlie, &["find", "alpha"]);
    assert_eq!(found[0]["address"], a_addr.as_str());
    let by_tag = w.ok(&charlie, &["find", "--tag", "search"]);
    assert_eq!(by_tag.as_array().unwrap().len(), 1);
    assert_eq!(by_tag[0]["hostname"], "alpha");

    // The private daemon is unreachable until it approves.
    let (code, v) = w.json(&charlie, &["ping", "bravo"]);
    assert_eq!((code, v["code"].as_str()), (5, Some("PRIVATE_NODE")), "{v}");
    let (code, v) = w.json(&charlie, &["ping", &b_addr]);
    assert_eq!((code, v["code"].as_str()), (5, Some("PRIVATE_NODE")), "{v}");
    w.ok(&charlie, &["handshake", "bravo", "please"]);
    let pending = w.ok(&bravo, &["pending"]);
    assert_eq!(pending[0]["hostname"], "charlie");
    assert_eq!(pending[0]["note"], "please");
    w.ok(&bravo, &["approve", "charlie"]);
    let ping = w.ok(&charlie, &["ping", "bravo", "-c", "3"]);
    assert_eq!(ping["replies"], 3);
    assert!(ping["median_ms"].as_f64().unwrap() < 50.0);
    assert!(["direct", "relayed"].contains(&ping["path"].as_str().unwrap()));

    // send / recv.
    let recv = Command::new(BIN)
        .args([
            "--home",
            bravo.to_str().unwrap(),
            "--json",
            "recv",
            "5000",
            "--timeout",
            "20",
        ])
        .env("TERN_RUNTIME_DIR", w.path("runtime"))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    w.ok(
        &charlie,
        &["send", "bravo", "5000", "--data", "hello bravo"],
    );
    let out = recv.wait_with_output().unwrap();
    let v: Value =
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).lines().last().unwrap()).unwrap();
    assert_eq!(v["data"][0]["data"], "hello bravo", "{v}");
    assert_eq!(v["data"][0]["from"], "charlie");

    // A 100 MiB file, SHA-256 checked.
    let file = w.path("big.bin");
    {
        let mut f = std::fs::File::create(&file).unwrap();
        let mut x = 0x9e3779b97f4a7c15u64;
        let mut chunk = vec![0u8; 1 << 20];
        for _ in 0..100 {
            for c in chunk.chunks_mut(8) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                c.copy_from_slice(&x.to_le_bytes());
            }
            f.write_all(&chunk).unwrap();
        }
    }
    let sent = w.ok(&charlie, &["send-file", "bravo", file.to_str().unwrap()]);
    assert_eq!(sent["bytes"], 100 << 20);
    let received = bravo.join("received").join("big.bin");
    assert_eq!(sha256(&received), sha256(&file));
    assert_eq!(sent["sha256"].as_str().unwrap(), sha256(&file));

    // Untrust cuts charlie off with a clear error.
    w.ok(&bravo, &["untrust", "charlie"]);
    std::thread::sleep(Duration::from_millis(500));
    let (code, v) = w.json(&charlie, &["ping", "bravo"]);
    assert!(code == 5, "{code} {v}");
    assert!(
        ["PRIVATE_NODE", "NOT_TRUSTED"].contains(&v["code"].as_str().unwrap()),
        "{v}"
    );

    // Restarts keep identity, address and registrations.
    w.ok(&bravo, &["daemon", "stop"]);
    w.ok(&bravo, &["daemon", "start"]);
    w.wait_registered(&bravo);
    let info = w.ok(&bravo, &["info"]);
    assert_eq!(info["address"], b_addr.as_str());
    assert_eq!(info["peer_id"], b_key.as_str());
    assert_eq!(info["hostname"], "bravo");
    w.stop_rendezvous();
    w.start_rendezvous();
    for h in [&alpha, &bravo, &charlie] {
        w.wait_registered(h);
    }
    assert_eq!(w.ok(&alpha, &["info"])["address"], a_addr.as_str());
    let found = w.ok(&charlie, &["find", "alpha"]);
    assert_eq!(
        found[0]["address"],
        a_addr.as_str(),
        "registrations survived the rendezvous restart"
    );
    let ping = w.ok(&charlie, &["ping", "alpha", "-c", "1"]);
    assert_eq!(ping["replies"], 1);
}

#[test]
fn bad_input_gives_one_line_errors_with_hints_codes_and_exit_codes() {
    let mut w = World::new();
    let a = w.daemon("alpha", &["--public"]);
    let cases: &[(&[&str], i32, &str)] = &[
        (&["ping", "nobody-here"], 4, "HOST_NOT_FOUND"),
        (&["ping", "0:0000.XYZW.0001"], 9, "INVALID_ADDRESS"),
        (&["ping", "0:A91F.0000.7C2E"], 9, "INVALID_ADDRESS"),
        (&["ping", "Not_A_Host!"], 9, "INVALID_ADDRESS"),
        (&["set-hostname", "bad_host"], 9, "INVALID_ARGUMENT"),
        (
            &["send-file", "alpha", "/nonexistent/file"],
            10,
            "FILE_ERROR",
        ),
        (&["visibility", "sideways"], 9, "INVALID_ARGUMENT"),
    ];
    for (args, code, name) in cases {
        let (c, v) = w.json(&a, args);
        assert_eq!(
            (c, v["code"].as_str().unwrap_or("")),
            (*code, *name),
            "{args:?}: {v}"
        );
        assert!(!v["hint"].as_str().unwrap().is_empty());
        // Human form: two single lines, the cause and the hint.
        let out = w.cmd(&a, args);
        let err = String::from_utf8_lossy(&out.stderr);
        let lines: Vec<&str> = err.lines().collect();
        assert_eq!(lines.len(), 2, "{args:?}: {err}");
        assert!(
            lines[0].starts_with("error: ") && lines[1].starts_with("hint: "),
            "{err}"
        );
        assert_eq!(out.status.code(), Some(*code));
    }
    // Port in use.
    let listen = Command::new(BIN)
        .args(["--home", a.to_str().unwrap(), "listen", "6000"])
        .env("TERN_RUNTIME_DIR", w.path("runtime"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let (c, v) = w.json(&a, &["listen", "6000"]);
    assert_eq!((c, v["code"].as_str()), (7, Some("PORT_IN_USE")), "{v}");
    let (c, v) = w.json(&a, &["listen", "1001"]);
    assert_eq!((c, v["code"].as_str()), (7, Some("PORT_IN_USE")), "{v}");
    drop(listen);
    // Daemon not running.
    let nowhere = w.path("nowhere");
    let (c, v) = w.json(&nowhere, &["info"]);
    assert_eq!(
        (c, v["code"].as_str()),
        (3, Some("DAEMON_NOT_RUNNING")),
        "{v}"
    );
    // Already running.
    let (c, v) = w.json(&a, &["daemon", "start"]);
    assert_eq!(
        (c, v["code"].as_str()),
        (3, Some("DAEMON_ALREADY_RUNNING")),
        "{v}"
    );
    // Rendezvous unreachable: a daemon pointed at a dead rendezvous.
    let dead_key = w.rdv_addr.split('#').nth(1).unwrap().to_owned();
    let lonely = w.path("lonely");
    w.ok(
        &lonely,
        &[
            "daemon",
            "start",
            "--rendezvous",
            &format!("127.0.0.1:9#{dead_key}"),
            "--listen",
            "127.0.0.1:0",
        ],
    );
    w.homes.push(lonely.clone());
    let (c, v) = w.json(&lonely, &["find", "alpha"]);
    assert_eq!(
        (c, v["code"].as_str()),
        (8, Some("RENDEZVOUS_UNREACHABLE")),
        "{v}"
    );
    let (c, v) = w.json(&lonely, &["daemon", "start", "--rendezvous", "nonsense"]);
    assert_eq!(
        (c, v["code"].as_str()),
        (3, Some("DAEMON_ALREADY_RUNNING")),
        "{v}"
    );
    let fresh = w.path("fresh");
    let (c, v) = w.json(&fresh, &["daemon", "start", "--rendezvous", "nonsense"]);
    assert_eq!((c, v["code"].as_str()), (9, Some("INVALID_ADDRESS")), "{v}");
    // Usage errors are exit 2.
    let out = w.cmd(&a, &["ping"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn a_file_name_that_escapes_the_receive_directory_is_refused_and_nothing_is_written() {
    // Pilot S14: a peer wrote ~/pwned.txt through a task result name. Here a raw tern client
    // sends file headers with escaping names to a public daemon's file service.
    let mut w = World::new();
    let a = w.daemon("alpha", &["--public"]);
    let info = w.ok(&a, &["info"]);
    let key: tern_core::PeerId = info["peer_id"].as_str().unwrap().parse().unwrap();
    let listen: std::net::SocketAddr = info["listen"].as_str().unwrap().parse().unwrap();
    let ep = tern_driver_mio::Endpoint::bind(
        "127.0.0.1:0".parse().unwrap(),
        tern_core::Identity::from_secret([42; 32]),
        tern_driver_mio::EndpointConfig::default(),
    )
    .unwrap();
    let session = ep.connect(listen, Some(key)).unwrap();
    let before: Vec<_> = std::fs::read_dir(w.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    for name in [
        "../pwned.txt",
        "../../pwned.txt",
        "/tmp/pwned.txt",
        "..",
        ".hidden",
        "sub/dir.txt",
    ] {
        let mut s = session.open_stream(1001).unwrap();
        let header = serde_json::json!({ "name": name, "size": 5, "sha256": "0".repeat(64) });
        s.write_all(format!("{header}\n").as_bytes()).unwrap();
        let mut reply = Vec::new();
        let mut b = [0u8; 1];
        while s.read(&mut b).unwrap_or(0) == 1 && b[0] != b'\n' {
            reply.push(b[0]);
        }
        let v: Value = serde_json::from_slice(&reply).unwrap();
        assert_eq!(v["error"]["code"], "PATH_ESCAPES", "{name}: {v}");
    }
    let after: Vec<_> = std::fs::read_dir(w.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(before, after, "nothing new next to the homes");
    assert!(!Path::new("/tmp/pwned.txt").exists());
    let received: Vec<_> = std::fs::read_dir(a.join("received")).unwrap().collect();
    assert!(
        received.is_empty(),
        "nothing in the receive directory either"
    );
    ep.shutdown();
}

#[test]
fn a_local_application_that_stops_reading_does_not_stall_the_daemon() {
    // Pilot's whole-daemon stall: one client that never reads froze routing for everyone.
    let mut w = World::new();
    let bravo = w.daemon("bravo", &["--public"]);
    let alpha = w.daemon("alpha", &["--public"]);
    let charlie = w.daemon("charlie", &["--public"]);
    // On bravo, a local application listens and then never reads its stdout.
    let mut stuck = Command::new(BIN)
        .args(["--home", bravo.to_str().unwrap(), "listen", "5555"])
        .env("TERN_RUNTIME_DIR", w.path("runtime"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    // Alpha floods that port (64 MiB) through `tern connect`.
    let mut flood = Command::new(BIN)
        .args([
            "--home",
            alpha.to_str().unwrap(),
            "connect",
            "bravo",
            "5555",
        ])
        .env("TERN_RUNTIME_DIR", w.path("runtime"))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut input = flood.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        let chunk = vec![7u8; 1 << 20];
        for _ in 0..64 {
            if input.write_all(&chunk).is_err() {
                break;
            }
        }
    });
    std::thread::sleep(Duration::from_secs(2));
    // Meanwhile charlie still gets through to bravo: pings and a file.
    let ping = w.ok(&charlie, &["ping", "bravo", "-c", "3"]);
    assert_eq!(ping["replies"], 3);
    let f = w.path("small.bin");
    std::fs::write(&f, vec![1u8; 2 << 20]).unwrap();
    let sent = w.ok(&charlie, &["send-file", "bravo", f.to_str().unwrap()]);
    assert_eq!(sent["bytes"], 2 << 20);
    assert!(
        !writer.is_finished(),
        "the stuck reader really is stuck (flow control holds alpha)"
    );
    let _ = stuck.kill();
    let _ = flood.kill();
    let _ = stuck.wait();
    let _ = flood.wait();
}
