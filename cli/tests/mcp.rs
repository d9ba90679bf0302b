//! MCP over tern, end to end with real processes on loopback: a standalone rendezvous,
//! daemons with throw-away homes, `tern mcp expose` / `tern mcp connect`, and the official
//! Python MCP SDK (2.x, and 1.x for the older protocol era) as server and client.
//!
//! The SDK lives in virtual environments made by `scripts/mcp-venv.sh` (run by
//! `scripts/test.sh` and `.ci/run`); without them these tests fail and say so.
#![allow(clippy::disallowed_methods)] // timeouts use the real clock

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_tern");

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The Python of the SDK venv `major` (2 or 1); fails loudly when it is missing.
fn python(major: u8) -> PathBuf {
    let p = repo().join(format!("target/mcp-venv-{major}/bin/python"));
    assert!(
        p.exists(),
        "the MCP SDK {major}.x virtualenv is missing ({}): run scripts/mcp-venv.sh first",
        p.display()
    );
    p
}

fn script(name: &str) -> String {
    repo()
        .join("cli/tests/mcp")
        .join(name)
        .to_string_lossy()
        .into_owned()
}

/// A child process killed (TERM, then KILL) when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(pid) = i32::try_from(self.0.id())
            .ok()
            .and_then(rustix::process::Pid::from_raw)
        {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct World {
    _tmp: Option<tempfile::TempDir>,
    root: PathBuf,
    _rdv: Proc,
    rdv_addr: String,
    homes: Vec<PathBuf>,
}

impl World {
    fn new() -> Self {
        // TERN_TEST_KEEP=1 keeps the homes and logs for a look after a failure.
        let tmp = tempfile::Builder::new()
            .prefix("tern-mcp-test")
            .tempdir()
            .unwrap();
        let root = tmp.path().to_path_buf();
        let tmp = if std::env::var_os("TERN_TEST_KEEP").is_some() {
            eprintln!("keeping {}", tmp.keep().display());
            None
        } else {
            Some(tmp)
        };
        let home = root.join("rdv");
        let mut child = Command::new(BIN)
            .args([
                "--home",
                home.to_str().unwrap(),
                "--json",
                "rendezvous",
                "--listen",
                "127.0.0.1:0",
            ])
            .env("TERN_RUNTIME_DIR", root.join("runtime"))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let v: Value = serde_json::from_str(&line).unwrap();
        let rdv_addr = v["data"]["rendezvous"].as_str().unwrap().to_owned();
        Self {
            _tmp: tmp,
            root,
            _rdv: Proc(child),
            rdv_addr,
            homes: Vec::new(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    fn tern(&self, home: &Path) -> Command {
        let mut c = Command::new(BIN);
        c.arg("--home")
            .arg(home)
            .env("TERN_RUNTIME_DIR", self.path("runtime"));
        c
    }

    fn json(&self, home: &Path, args: &[&str]) -> (i32, Value) {
        let out = self.tern(home).arg("--json").args(args).output().unwrap();
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
        assert_eq!((code, &v["status"]), (0, &json!("ok")), "{args:?}: {v}");
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
        self.ok(&home, &args);
        self.homes.push(home.clone());
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.ok(&home, &["info"])["registered"] != true {
            assert!(Instant::now() < deadline, "{name} did not register");
            std::thread::sleep(Duration::from_millis(50));
        }
        home
    }

    /// `who` asks `host` for trust and `host` approves.
    fn trust(&self, who: &Path, host: &Path, host_name: &str, who_name: &str) {
        self.ok(who, &["handshake", host_name, "mcp", "please"]);
        self.ok(host, &["approve", who_name]);
    }

    /// `tern mcp expose` in the background; returns once it serves, with its summary.
    fn expose(&self, home: &Path, args: &[&str]) -> (Proc, Value) {
        let mut child = self
            .tern(home)
            .args(["--json", "mcp", "expose"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::from(
                std::fs::File::create(self.path("expose.log")).unwrap(),
            ))
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let v: Value = serde_json::from_str(&line).unwrap_or_else(|_| {
            panic!(
                "expose {args:?}: {line} {}",
                std::fs::read_to_string(self.path("expose.log")).unwrap_or_default()
            )
        });
        assert_eq!(v["status"], "ok", "{v}");
        (Proc(child), v["data"].clone())
    }
}

impl Drop for World {
    fn drop(&mut self) {
        for h in &self.homes {
            let _ = self.tern(h).args(["daemon", "stop"]).output();
        }
    }
}

/// Runs a command with a deadline; panics with its output when it fails.
fn run(mut cmd: Command, limit: Duration) -> Output {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + limit;
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "timed out: {cmd:?}\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The Python SDK client's JSON report (see client.py).
fn sdk_client(major: u8, kind: &str, mode: &str, target: &[&str]) -> Value {
    let mut c = Command::new(python(major));
    c.arg(script("client.py"))
        .args([kind, mode, "full"])
        .args(target);
    let out = run(c, Duration::from_secs(90));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "client {major} {kind} {mode} {target:?} failed:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(text.lines().last().unwrap_or("")).unwrap()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_tcp(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn check_report(r: &Value, major: u8) {
    let names: Vec<&str> = r["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["add", "crash", "echo", "fail", "reject", "slow", "tide"]
    );
    assert_eq!(r["add"]["result"]["content"][0]["text"], "5");
    assert_eq!(
        r["echo"]["result"]["content"][0]["text"],
        "héllo \"tern\"\\n ✓"
    );
    assert_eq!(
        r["slow"]["result"]["content"][0]["text"],
        "slept 0.3s for t"
    );
    assert_eq!(r["fail"]["result"]["isError"], true, "{r}");
    if major == 2 {
        // The JSON-RPC error the tool raised arrives with its code, message and data.
        assert_eq!(
            r["reject"]["error"],
            json!({"code": -32042, "message": "rejected: no", "data": {"why": "asked to"}})
        );
    }
}

#[test]
fn stdio_sdk_servers_of_both_eras_answer_through_tern_exactly_as_directly_and_only_to_trusted_peers()
 {
    let (py2, py1) = (python(2), python(1));
    let mut w = World::new();
    let alpha = w.daemon("alpha", &[]); // private: trusted peers only
    let bravo = w.daemon("bravo", &[]);
    let server2 = [py2.to_str().unwrap(), &script("server.py")];
    let server1 = [py1.to_str().unwrap(), &script("server.py")];
    let mut args2 = vec!["--tag", "tides", "--"];
    args2.extend_from_slice(&server2);
    let (_e2, summary) = w.expose(&alpha, &args2);
    // Discovery found the tools (the 2.x server speaks the stateless era).
    assert_eq!(summary["era"], "2026-07-28", "{summary}");
    assert_eq!(summary["tools"].as_array().unwrap().len(), 7);
    assert_eq!(summary["port"], 1000);
    let mut args1 = vec!["--port", "1100", "--"];
    args1.extend_from_slice(&server1);
    let (_e1, summary1) = w.expose(&alpha, &args1);
    assert_eq!(
        summary1["era"], "2025-11-25",
        "the 1.x server is legacy-only: {summary1}"
    );

    // Untrusted: a clear error on stderr, the exit code, and a JSON-RPC error for the
    // client's first request.
    let home = bravo.to_str().unwrap();
    let connect = |port: &str| -> Vec<String> {
        [
            BIN, "--home", home, "mcp", "connect", "alpha", "--port", port,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let mut c = w
        .tern(&bravo)
        .args(["mcp", "connect", "alpha"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin
        .take()
        .unwrap()
        .write_all(b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"initialize\",\"params\":{}}\n")
        .unwrap();
    let out = c.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(5),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reply: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(reply["id"], 1);
    assert!(
        ["PRIVATE_NODE", "NOT_TRUSTED"].contains(&reply["error"]["data"]["tern"].as_str().unwrap()),
        "{reply}"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("error: ") && err.contains("\nhint: "),
        "{err}"
    );
    let (code, v) = w.json(&bravo, &["mcp", "find", "harbour"]);
    assert_eq!(
        (code, v["data"].as_array().map(Vec::len)),
        (0, Some(0)),
        "a private server is not listed to strangers: {v}"
    );

    w.trust(&bravo, &alpha, "alpha", "bravo");

    // Found by a word of one tool's description, best first.
    let found = w.ok(&bravo, &["mcp", "find", "harbour"]);
    assert_eq!(found[0]["hostname"], "alpha", "{found}");
    assert_eq!(found[0]["matching_tools"], json!(["tide"]));
    assert!(
        w.ok(&bravo, &["mcp", "find", "zeppelin"])
            .as_array()
            .unwrap()
            .is_empty()
    );

    // SDK 2.x client and server, both eras; SDK 1.x client and server.
    for (major, mode, port) in [
        (2u8, "legacy", "1000"),
        (2, "modern", "1000"),
        (1, "legacy", "1100"),
    ] {
        let server = if major == 2 { &server2 } else { &server1 };
        let direct = sdk_client(major, "stdio", mode, server);
        check_report(&direct, major);
        let argv = connect(port);
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        let through = sdk_client(major, "stdio", mode, &argv);
        assert_eq!(
            through, direct,
            "SDK {major}.x {mode}: through tern differs from direct"
        );
    }
    // By tag.
    let mut c = Command::new(&py2);
    c.arg(script("client.py")).args([
        "stdio", "legacy", "add", "20", "22", BIN, "--home", home, "mcp", "connect", "--tag",
        "tides",
    ]);
    let out = run(c, Duration::from_secs(60));
    let v: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(v["add"]["result"]["content"][0]["text"], "42");
}

#[test]
fn streamable_http_sdk_servers_and_clients_of_both_eras_work_through_tern_exactly_as_directly() {
    let mut w = World::new();
    let alpha = w.daemon("alpha", &["--public"]);
    let bravo = w.daemon("bravo", &["--public"]);
    for major in [2u8, 1] {
        let port = free_port();
        let _server = Proc(
            Command::new(python(major))
                .arg(script("server.py"))
                .args(["http", &port.to_string()])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        wait_tcp(port);
        let url = format!("http://127.0.0.1:{port}/mcp");
        let vport = if major == 2 { "1200" } else { "1201" };
        let (_expose, summary) = w.expose(&alpha, &["--port", vport, "--http", &url]);
        assert_eq!(summary["tools"].as_array().unwrap().len(), 7, "{summary}");
        // connect --listen: a local HTTP endpoint for the SDK's HTTP client.
        let mut listen = w
            .tern(&bravo)
            .args([
                "--json",
                "mcp",
                "connect",
                "alpha",
                "--port",
                vport,
                "--listen",
                "127.0.0.1:0",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(listen.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let _listen = Proc(listen);
        let local: Value = serde_json::from_str(&line).unwrap();
        let local_url = local["data"]["url"].as_str().unwrap().to_owned();
        let modes: &[&str] = if major == 2 {
            &["legacy", "modern"]
        } else {
            &["legacy"]
        };
        for mode in modes {
            let direct = sdk_client(major, "http", mode, &[&url]);
            check_report(&direct, major);
            let through = sdk_client(major, "http", mode, &[&local_url]);
            assert_eq!(
                through, direct,
                "HTTP SDK {major}.x {mode}: through tern differs from direct"
            );
            // And a stdio client against the exposed HTTP server.
            let home = bravo.to_str().unwrap();
            let stdio = sdk_client(
                major,
                "stdio",
                mode,
                &[
                    BIN, "--home", home, "mcp", "connect", "alpha", "--port", vport,
                ],
            );
            assert_eq!(stdio, direct, "stdio client → HTTP server {major}.x {mode}");
        }
        // The local endpoint refuses a foreign Origin and non-MCP paths.
        let mut s = TcpStream::connect(
            local_url
                .trim_start_matches("http://")
                .trim_end_matches("/mcp"),
        )
        .unwrap();
        s.write_all(b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nOrigin: http://evil.example\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}").unwrap();
        let mut resp = String::new();
        s.read_to_string(&mut resp).unwrap();
        assert!(resp.starts_with("HTTP/1.1 403"), "{resp}");
    }
}

/// A raw JSON-RPC client over `tern mcp connect` (one process).
struct Raw {
    child: Child,
    out: BufReader<std::process::ChildStdout>,
}

impl Raw {
    /// `runtime` is the world's `TERN_RUNTIME_DIR`: the client threads hold paths, not the
    /// world, so a failing test still drops it (and stops its daemons).
    fn new(runtime: &Path, home: &Path, port: &str) -> Self {
        let mut child = Command::new(BIN)
            .arg("--home")
            .arg(home)
            .env("TERN_RUNTIME_DIR", runtime)
            .args(["mcp", "connect", "alpha", "--port", port])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let out = BufReader::new(child.stdout.take().unwrap());
        Self { child, out }
    }

    fn send(&mut self, v: &Value) {
        let mut line = serde_json::to_vec(v).unwrap();
        line.push(b'\n');
        self.child.stdin.as_mut().unwrap().write_all(&line).unwrap();
    }

    fn recv(&mut self) -> Value {
        let mut line = String::new();
        self.out.read_line(&mut line).unwrap();
        serde_json::from_str(&line).unwrap_or_else(|_| panic!("not JSON: {line:?}"))
    }

    fn call(&mut self, id: u64, tool: &str, args: Value) -> Value {
        self.send(&json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":{"name":tool,"arguments":args}}));
        self.recv()
    }

    fn init(&mut self) {
        self.send(&json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}));
        let r = self.recv();
        assert_eq!(r["result"]["protocolVersion"], "2025-11-25", "{r}");
        self.send(&json!({"jsonrpc":"2.0","method":"notifications/initialized"}));
    }

    /// Waits for `tern mcp connect` to exit by itself (stdin still open).
    fn exits_by_itself(mut self) -> std::process::ExitStatus {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            assert!(Instant::now() < deadline, "tern mcp connect did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn finish(mut self) -> std::process::ExitStatus {
        drop(self.child.stdin.take());
        self.child.wait().unwrap()
    }
}

/// Server processes still running with `marker` on their command line.
fn leftovers(marker: &str) -> usize {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| std::fs::read(e.ok()?.path().join("cmdline")).ok())
        .filter(|c| {
            // Not `tern mcp expose` itself, whose arguments name the server too.
            let c = String::from_utf8_lossy(c);
            c.starts_with("python") && c.contains(marker) && c.contains("raw_server.py")
        })
        .count()
}

#[test]
fn fifty_concurrent_clients_a_crashing_server_the_cap_and_no_orphans() {
    let mut w = World::new();
    let alpha = w.daemon("alpha", &["--public"]);
    let bravo = w.daemon("bravo", &["--public"]);
    let marker = w.path("marker").to_string_lossy().into_owned();
    let raw = script("raw_server.py");
    let (_expose, _) = w.expose(
        &alpha,
        &[
            "--port",
            "1300",
            "--max-servers",
            "64",
            "--",
            "python3",
            &raw,
            &marker,
        ],
    );
    let rt = Arc::new(w.path("runtime"));
    let bravo = Arc::new(bravo);

    const CLIENTS: u64 = 50;
    // Every client connects and initialises, then all call at once.
    let ready = Arc::new(AtomicUsize::new(0));
    let go = Arc::new(AtomicBool::new(false));
    let mut threads = Vec::new();
    for c in 0..CLIENTS {
        let (rt, bravo, ready, go) = (rt.clone(), bravo.clone(), ready.clone(), go.clone());
        threads.push(std::thread::spawn(move || {
            let mut r = Raw::new(&rt, &bravo, "1300");
            r.init();
            ready.fetch_add(1, Ordering::SeqCst);
            while !go.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(5));
            }
            // Ten calls over about two seconds: the crash below happens meanwhile.
            for i in 0..10u64 {
                let a = c * 1000 + i;
                let v = r.call(i + 1, "add", json!({"a": a, "b": 7}));
                assert_eq!(v["id"], i + 1);
                assert_eq!(
                    v["result"]["content"][0]["text"],
                    (a + 7).to_string(),
                    "client {c}: {v}"
                );
                std::thread::sleep(Duration::from_millis(200));
            }
            assert!(r.finish().success());
        }));
    }
    // One more client, whose server crashes while another of its requests is in flight.
    let mut victim = Raw::new(&rt, &bravo, "1300");
    victim.init();
    let deadline = Instant::now() + Duration::from_secs(90);
    while ready.load(Ordering::SeqCst) < CLIENTS as usize {
        let failed = threads.iter().any(|t| t.is_finished());
        assert!(
            !failed && Instant::now() < deadline,
            "only {} of {CLIENTS} clients got initialised",
            ready.load(Ordering::SeqCst)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    go.store(true, Ordering::SeqCst);
    victim.send(&json!({"jsonrpc":"2.0","id":"slow-1","method":"tools/call","params":{"name":"slow","arguments":{"seconds":30,"tag":"x"}}}));
    std::thread::sleep(Duration::from_millis(300));
    victim.send(&json!({"jsonrpc":"2.0","id":"boom","method":"tools/call","params":{"name":"crash","arguments":{"code":3}}}));
    let mut errors: Vec<Value> = vec![victim.recv(), victim.recv()];
    errors.sort_by_key(|e| e["id"].as_str().unwrap().to_owned());
    for (e, id) in errors.iter().zip(["boom", "slow-1"]) {
        assert_eq!(e["id"], id);
        assert_eq!(e["error"]["code"], -32603, "{e}");
        assert_eq!(e["error"]["data"]["tern"], "SERVER_EXITED", "{e}");
    }
    let status = victim.exits_by_itself();
    assert_eq!(
        status.code(),
        Some(6),
        "connect exits with CONNECTION_LOST when the server is gone"
    );
    for t in threads {
        t.join().expect("a concurrent client failed");
    }
    // The next connect works.
    let mut again = Raw::new(&rt, &bravo, "1300");
    again.init();
    assert_eq!(
        again.call(1, "add", json!({"a": 1, "b": 1}))["result"]["content"][0]["text"],
        "2"
    );
    assert!(again.finish().success());
    // Every server process is gone.
    let deadline = Instant::now() + Duration::from_secs(10);
    while leftovers(&marker) > 0 {
        assert!(
            Instant::now() < deadline,
            "{} server processes left behind",
            leftovers(&marker)
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // The cap: a third concurrent client gets a JSON-RPC error, not a hang.
    let (_capped, _) = w.expose(
        &alpha,
        &[
            "--port",
            "1301",
            "--max-servers",
            "2",
            "--no-discover",
            "--",
            "python3",
            &raw,
            &marker,
        ],
    );
    let mut first = Raw::new(&rt, &bravo, "1301");
    first.init();
    let mut second = Raw::new(&rt, &bravo, "1301");
    second.init();
    let mut third = Raw::new(&rt, &bravo, "1301");
    third.send(&json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{}}));
    let busy = third.recv();
    assert_eq!(busy["id"], 0);
    assert_eq!(busy["error"]["data"]["tern"], "BUSY", "{busy}");
    assert_eq!(third.exits_by_itself().code(), Some(6));
    assert!(first.finish().success());
    // Once the first client's server is gone (teardown is asynchronous), a slot is free.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut fourth = Raw::new(&rt, &bravo, "1301");
        fourth.send(&json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{}}));
        let r = fourth.recv();
        if r["result"].is_object() {
            assert!(fourth.finish().success());
            break;
        }
        assert_eq!(r["error"]["data"]["tern"], "BUSY", "{r}");
        assert!(Instant::now() < deadline, "the slot was never freed");
        let _ = fourth.exits_by_itself();
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(second.finish().success());

    // Stopping expose ends every server it runs.
    let mut held = Raw::new(&rt, &bravo, "1301");
    held.init();
    drop(_capped);
    let deadline = Instant::now() + Duration::from_secs(10);
    while leftovers(&marker) > 0 {
        assert!(
            Instant::now() < deadline,
            "server processes outlived tern mcp expose"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = held.finish();
}
