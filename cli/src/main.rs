//! `tern`: the daemon, the command line, the rendezvous server and the demo, in one binary.
//! Every command takes `--json` for one machine-readable envelope; errors are a cause and a
//! hint, with a stable code and a documented exit code (see `error.rs`).

// The binary owns the real clock (timeouts, progress).
#![allow(clippy::disallowed_methods)]

mod daemon;
mod demo;
mod error;
mod files;
mod home;
mod ipc;
mod rdv;
mod store;

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use serde_json::{Value, json};

use error::CliError;
use home::Home;
use ipc::Request;

/// tern: encrypted peer-to-peer sessions for AI agents and MCP servers.
#[derive(Parser, Debug)]
#[command(name = "tern", version, about, long_about = None)]
struct Cli {
    /// Home directory of the daemon (default: $TERN_HOME, else ~/.config/tern).
    #[arg(long, global = true)]
    home: Option<PathBuf>,
    /// Print one JSON object: {"status":"ok","data":…} or {"status":"error","code",…}.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Start, stop or inspect the daemon.
    Daemon {
        #[command(subcommand)]
        cmd: DaemonCmd,
    },
    /// This node: address, hostname, key, rendezvous, NAT.
    Info,
    /// Change the hostname published in the directory.
    SetHostname {
        /// The new hostname (a-z, 0-9, '-').
        hostname: String,
    },
    /// Show or replace the capability tags.
    Tags {
        /// New tags (none: show the current ones).
        tags: Vec<String>,
        /// Remove every tag.
        #[arg(long)]
        clear: bool,
    },
    /// Make this node public (anyone may find and reach it) or private (trusted peers only).
    Visibility {
        /// "public" or "private".
        mode: String,
    },
    /// Find nodes by hostname, tag or words.
    Find {
        /// Hostname, address or key.
        host: Option<String>,
        /// A capability tag.
        #[arg(long)]
        tag: Option<String>,
        /// Words matched against hostnames, tags and tool descriptions.
        #[arg(long)]
        words: Option<String>,
    },
    /// Encrypted ping: round-trip time and whether the path is direct or relayed.
    Ping {
        /// Hostname, address or key.
        target: String,
        /// Number of pings.
        #[arg(short = 'c', long, default_value_t = 3)]
        count: u32,
    },
    /// Ask a private node to trust this one.
    Handshake {
        /// Hostname, address or key.
        target: String,
        /// A note for its operator.
        note: Vec<String>,
    },
    /// Trust requests waiting for this node's decision.
    Pending,
    /// Approve a trust request (trust becomes mutual).
    Approve {
        /// Who asked (hostname, address or key).
        target: String,
    },
    /// Reject a trust request.
    Reject {
        /// Who asked.
        target: String,
    },
    /// List trusted peers, or trust a key directly.
    Trust {
        /// A peer key to trust (none: list).
        target: Option<String>,
    },
    /// Withdraw trust (both ways) and cut every session with the peer.
    Untrust {
        /// Hostname, address or key.
        target: String,
    },
    /// Live sessions: peer, path, RTT, encryption.
    Peers,
    /// Alias of `peers`.
    Connections,
    /// Pipe stdin/stdout through a stream to a port on a peer.
    Connect {
        /// Hostname, address or key.
        target: String,
        /// Virtual port.
        port: u16,
    },
    /// Accept one stream on a port and pipe it to stdin/stdout.
    Listen {
        /// Virtual port.
        port: u16,
    },
    /// Send one message to a port on a peer (from --data or stdin) and print any reply.
    Send {
        /// Hostname, address or key.
        target: String,
        /// Virtual port.
        port: u16,
        /// The message (default: stdin).
        #[arg(long)]
        data: Option<String>,
    },
    /// Receive messages on a port.
    Recv {
        /// Virtual port.
        port: u16,
        /// How many messages.
        #[arg(long, default_value_t = 1)]
        count: u32,
        /// Seconds to wait for each (0: forever).
        #[arg(long, default_value_t = 0)]
        timeout: u64,
    },
    /// Send a file (resumable, SHA-256 checked) to a peer's receive directory.
    SendFile {
        /// Hostname, address or key.
        target: String,
        /// The file.
        path: PathBuf,
    },
    /// Throughput and round-trip time to a peer.
    Bench {
        /// Hostname, address or key.
        target: String,
        /// MiB to send.
        #[arg(long, default_value_t = 64)]
        size: u64,
    },
    /// NAT type, reflexive addresses and relay latency.
    Netcheck,
    /// Run a rendezvous server (directory + beacon + relay).
    Rendezvous {
        /// UDP address to listen on.
        #[arg(long, default_value = "0.0.0.0:7400")]
        listen: String,
        /// Second UDP address for the beacon (default: next free port on the same IP).
        #[arg(long)]
        beacon: Option<String>,
        /// Directory store (default: <home>/rendezvous.redb).
        #[arg(long)]
        store: Option<PathBuf>,
    },
    /// The whole story on this machine in a few seconds, with throw-away homes.
    Demo,
}

#[derive(Subcommand, Debug)]
enum DaemonCmd {
    /// Start the daemon (in the background unless --foreground).
    Start {
        /// Hostname to publish.
        #[arg(long)]
        hostname: Option<String>,
        /// Capability tag (repeatable).
        #[arg(long = "tag")]
        tags: Vec<String>,
        /// Rendezvous server ADDR#KEY (default: the machine-local one, hosted by the first daemon).
        #[arg(long)]
        rendezvous: Option<String>,
        /// UDP address to listen on (default 0.0.0.0 with a port kept across restarts).
        #[arg(long)]
        listen: Option<String>,
        /// Public node: anyone may find it and open sessions.
        #[arg(long)]
        public: bool,
        /// Stay in the foreground (logs to stderr).
        #[arg(long)]
        foreground: bool,
    },
    /// Stop the daemon.
    Stop,
    /// Whether the daemon runs, with its PID, log and socket.
    Status,
    /// Run the daemon in this process (what `start` launches).
    #[command(hide = true)]
    Run,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
                let _ = e.print();
                return ExitCode::SUCCESS;
            }
            let json = std::env::args().any(|a| a == "--json");
            let err = CliError::new("USAGE", e.kind().to_string(), "see tern --help");
            if json {
                println!("{}", envelope_err(&err));
            } else {
                let _ = e.print();
            }
            return ExitCode::from(2);
        }
    };
    let json = cli.json;
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if json {
                println!("{}", envelope_err(&e));
            } else {
                eprintln!("error: {}", e.message);
                eprintln!("hint: {}", e.hint);
            }
            ExitCode::from(e.exit_code())
        }
    }
}

fn envelope_err(e: &CliError) -> Value {
    json!({ "status": "error", "code": e.code, "message": e.message, "hint": e.hint })
}

fn print_ok(json_mode: bool, data: &Value, human: impl FnOnce(&Value)) {
    if json_mode {
        println!("{}", json!({ "status": "ok", "data": data }));
    } else {
        human(data);
    }
}

fn s(v: &Value, k: &str) -> String {
    match v.get(k) {
        Some(Value::String(x)) => x.clone(),
        Some(Value::Null) | None => "-".into(),
        Some(other) => other.to_string(),
    }
}

fn run(cli: Cli) -> Result<(), CliError> {
    let home = Home::locate(cli.home.as_deref())?;
    let sock = home.socket_path();
    let j = cli.json;
    let simple = |req: Request, human: &dyn Fn(&Value)| -> Result<(), CliError> {
        let data = ipc::call(&sock, &req)?;
        print_ok(j, &data, human);
        Ok(())
    };
    match cli.cmd {
        Cmd::Daemon { cmd } => match cmd {
            DaemonCmd::Start {
                hostname,
                tags,
                rendezvous,
                listen,
                public,
                foreground,
            } => {
                let opts = daemon::StartOptions {
                    hostname,
                    tags,
                    rendezvous,
                    listen,
                    public: public.then_some(true),
                };
                let info = daemon::start(&home, &opts, foreground)?;
                print_ok(j, &info, |i| {
                    println!("Daemon running (pid {})", s(i, "pid"));
                    println!("Address: {}", s(i, "address"));
                    println!("Hostname: {}", s(i, "hostname"));
                    if i.get("registered").and_then(Value::as_bool) != Some(true) {
                        println!(
                            "(not registered with the rendezvous yet: tern netcheck shows why)"
                        );
                    }
                });
                Ok(())
            }
            DaemonCmd::Stop => {
                let v = daemon::stop(&home)?;
                print_ok(j, &v, |v| println!("Daemon stopped (pid {})", s(v, "pid")));
                Ok(())
            }
            DaemonCmd::Status => {
                let v = daemon::status(&home)?;
                if v.get("running").and_then(Value::as_bool) != Some(true) && !j {
                    return Err(CliError::daemon_not_running());
                }
                print_ok(j, &v, |v| {
                    let i = &v["info"];
                    println!(
                        "running (pid {}) · {} · {}",
                        s(v, "pid"),
                        s(i, "address"),
                        s(i, "hostname")
                    );
                    println!("log: {}", s(v, "log"));
                });
                Ok(())
            }
            DaemonCmd::Run => daemon::run(&home),
        },
        Cmd::Info => simple(Request::Info, &|i| {
            println!("Address:    {}", s(i, "address"));
            println!("Hostname:   {}", s(i, "hostname"));
            println!("Key:        {}", s(i, "peer_id"));
            println!(
                "Tags:       {}",
                i["tags"]
                    .as_array()
                    .map(|t| t
                        .iter()
                        .map(|x| x.as_str().unwrap_or(""))
                        .collect::<Vec<_>>()
                        .join(", "))
                    .unwrap_or_default()
            );
            println!(
                "Visibility: {}",
                if i["public"].as_bool() == Some(true) {
                    "public"
                } else {
                    "private (trusted peers only)"
                }
            );
            println!("Listening:  {}", s(i, "listen"));
            println!(
                "Rendezvous: {} ({})",
                s(i, "rendezvous"),
                if i["rendezvous_connected"].as_bool() == Some(true) {
                    "connected"
                } else {
                    "not connected"
                }
            );
            println!("Sessions:   {}", s(i, "sessions"));
            println!("Encryption: {}", s(i, "encryption"));
        }),
        Cmd::SetHostname { hostname } => simple(Request::SetHostname { hostname }, &|v| {
            println!("Hostname: {} ({})", s(v, "hostname"), s(v, "address"));
        }),
        Cmd::Tags { tags, clear } => {
            if tags.is_empty() && !clear {
                simple(Request::Info, &|i| println!("{}", i["tags"]))
            } else {
                simple(Request::SetTags { tags }, &|_| println!("tags updated"))
            }
        }
        Cmd::Visibility { mode } => {
            let public = match mode.as_str() {
                "public" => true,
                "private" => false,
                _ => {
                    return Err(CliError::invalid(
                        format!("{mode:?} is not a visibility"),
                        "use public or private",
                    ));
                }
            };
            simple(Request::SetPublic { public }, &|_| {
                println!(
                    "visibility: {mode} (restart the daemon to apply it to incoming handshakes)"
                )
            })
        }
        Cmd::Find { host, tag, words } => simple(Request::Find { host, tag, words }, &|v| {
            let list = v.as_array().cloned().unwrap_or_default();
            if list.is_empty() {
                println!("no match");
            }
            for e in list {
                println!(
                    "{}  {}  {}  tags: {}{}",
                    s(&e, "address"),
                    s(&e, "hostname"),
                    if e["online"].as_bool() == Some(true) {
                        "online"
                    } else {
                        "offline"
                    },
                    e["tags"],
                    if e["tools"].as_array().is_some_and(|t| !t.is_empty()) {
                        format!(
                            "  tools: {}",
                            e["tools"]
                                .as_array()
                                .map(|t| t
                                    .iter()
                                    .map(|x| x["name"].as_str().unwrap_or("").to_owned())
                                    .collect::<Vec<_>>()
                                    .join(", "))
                                .unwrap_or_default()
                        )
                    } else {
                        String::new()
                    }
                );
            }
        }),
        Cmd::Ping { target, count } => {
            let mut call = ipc::Call::start(&sock, &Request::Ping { target, count })?;
            let data = call.finish(|p| {
                if !j {
                    println!(
                        "✓ reply from {} · {:.1}ms ({})",
                        s(p, "address"),
                        p["rtt_ms"].as_f64().unwrap_or(0.0),
                        s(p, "path")
                    );
                }
            })?;
            if j {
                print_ok(j, &data, |_| {});
            }
            Ok(())
        }
        Cmd::Handshake { target, note } => simple(
            Request::Handshake {
                target,
                note: note.join(" "),
            },
            &|v| {
                println!(
                    "trust request sent to {}; it must approve (tern approve) before you can connect",
                    s(v, "requested")
                );
            },
        ),
        Cmd::Pending => simple(Request::Pending, &|v| {
            let list = v.as_array().cloned().unwrap_or_default();
            if list.is_empty() {
                println!("no pending trust requests");
            }
            for p in list {
                println!(
                    "{}  {}  {}  \"{}\"",
                    s(&p, "address"),
                    s(&p, "hostname"),
                    &s(&p, "peer")[..16.min(s(&p, "peer").len())],
                    s(&p, "note")
                );
            }
        }),
        Cmd::Approve { target } => simple(Request::Approve { target }, &|v| {
            println!("trust established with {}", s(v, "peer"))
        }),
        Cmd::Reject { target } => simple(Request::Reject { target }, &|v| {
            println!("rejected {}", s(v, "peer"))
        }),
        Cmd::Trust { target } => simple(Request::Trust { target }, &|v| match v.as_array() {
            Some(list) => {
                if list.is_empty() {
                    println!("no trusted peers");
                }
                for p in list {
                    println!("{}  {}", s(p, "peer"), s(p, "name"));
                }
            }
            None => println!("trusted {}", s(v, "trusted")),
        }),
        Cmd::Untrust { target } => simple(Request::Untrust { target }, &|v| {
            println!("no longer trusting {}", s(v, "untrusted"))
        }),
        Cmd::Peers | Cmd::Connections => simple(Request::Peers, &|v| {
            let list = v.as_array().cloned().unwrap_or_default();
            if list.is_empty() {
                println!("no sessions");
            }
            for p in list {
                println!(
                    "{}  {}  {}  rtt {}  {}",
                    s(&p, "name"),
                    s(&p, "path"),
                    s(&p, "remote"),
                    p["rtt_ms"]
                        .as_f64()
                        .map_or("-".into(), |r| format!("{r:.1}ms")),
                    s(&p, "encryption")
                );
            }
        }),
        Cmd::Connect { target, port } => pipe(&sock, &Request::Connect { target, port }, j),
        Cmd::Listen { port } => pipe(&sock, &Request::Listen { port }, j),
        Cmd::Send { target, port, data } => {
            let data = match data {
                Some(d) => d,
                None => {
                    let mut d = String::new();
                    std::io::stdin()
                        .read_to_string(&mut d)
                        .map_err(|e| CliError::io("stdin", &e))?;
                    d
                }
            };
            simple(Request::Send { target, port, data }, &|v| {
                let reply = s(v, "reply");
                if reply.is_empty() {
                    println!("sent {} bytes", s(v, "sent"));
                } else {
                    println!("{reply}");
                }
            })
        }
        Cmd::Recv {
            port,
            count,
            timeout,
        } => {
            let mut call = ipc::Call::start(
                &sock,
                &Request::Recv {
                    port,
                    count,
                    timeout_secs: timeout,
                },
            )?;
            let data = call.finish(|m| {
                if !j {
                    println!("[{}] {}", s(m, "from"), s(m, "data"));
                }
            })?;
            if j {
                print_ok(j, &data, |_| {});
            }
            Ok(())
        }
        Cmd::SendFile { target, path } => {
            let abs = std::fs::canonicalize(&path).map_err(|e| {
                CliError::new(
                    "FILE_ERROR",
                    format!("cannot read {}: {e}", path.display()),
                    "check the path",
                )
            })?;
            let mut call = ipc::Call::start(
                &sock,
                &Request::SendFile {
                    target,
                    path: abs.to_string_lossy().into_owned(),
                },
            )?;
            let data = call.finish(|p| {
                if !j {
                    let (sent, total) = (
                        p["sent"].as_u64().unwrap_or(0),
                        p["total"].as_u64().unwrap_or(1).max(1),
                    );
                    let pct = sent * 100 / total;
                    let bar = "#".repeat((pct / 4) as usize);
                    eprint!(
                        "\r[{bar:<25}] {pct:3}%  {:.1} / {:.1} MiB",
                        sent as f64 / 1048576.0,
                        total as f64 / 1048576.0
                    );
                    let _ = std::io::stderr().flush();
                }
            })?;
            if !j {
                eprintln!();
            }
            print_ok(j, &data, |v| {
                println!(
                    "sent {} ({} bytes, sha256 {}) in {:.2}s · {:.1} MiB/s",
                    s(v, "name"),
                    s(v, "bytes"),
                    &s(v, "sha256")[..16],
                    v["seconds"].as_f64().unwrap_or(0.0),
                    v["mib_per_s"].as_f64().unwrap_or(0.0)
                );
            });
            Ok(())
        }
        Cmd::Bench { target, size } => {
            let mut call = ipc::Call::start(&sock, &Request::Bench { target, mib: size })?;
            let data = call.finish(|_| {})?;
            print_ok(j, &data, |v| {
                println!(
                    "{:.1} MiB/s · rtt {:.2}ms · {} MiB in {:.2}s ({})",
                    v["mib_per_s"].as_f64().unwrap_or(0.0),
                    v["rtt_ms_median"].as_f64().unwrap_or(0.0),
                    v["bytes"].as_u64().unwrap_or(0) >> 20,
                    v["seconds"].as_f64().unwrap_or(0.0),
                    s(v, "path")
                );
            });
            Ok(())
        }
        Cmd::Netcheck => simple(Request::Netcheck, &|v| {
            println!("UDP:        {}", s(v, "udp"));
            println!(
                "Rendezvous: {} ({})",
                s(v, "rendezvous"),
                if v["connected"].as_bool() == Some(true) {
                    "connected"
                } else {
                    "not connected"
                }
            );
            println!("Reflexive:  {}", v["reflexive"]);
            println!("NAT:        {}", s(v, "nat_mapping"));
            println!(
                "Relay RTT:  {}",
                v["relay_rtt_ms"]
                    .as_f64()
                    .map_or("-".into(), |r| format!("{r:.2}ms"))
            );
        }),
        Cmd::Rendezvous {
            listen,
            beacon,
            store,
        } => rendezvous(&home, &listen, beacon.as_deref(), store, j),
        Cmd::Demo => demo::run(j),
    }
}

/// Runs a raw pipe: the daemon's answer, then bytes both ways between stdin/stdout and the
/// stream.
fn pipe(sock: &std::path::Path, req: &Request, json_mode: bool) -> Result<(), CliError> {
    let mut call = ipc::Call::start(sock, req)?;
    let info = call.finish(|p| {
        if !json_mode {
            eprintln!("listening on port {}", s(p, "listening"));
        }
    })?;
    if json_mode {
        eprintln!("{}", json!({ "status": "ok", "data": info }));
    } else if let Some(c) = info.get("connected") {
        eprintln!(
            "connected to {} port {}",
            c.as_str().unwrap_or("?"),
            s(&info, "port")
        );
    } else {
        eprintln!("connection from {}", s(&info, "from"));
    }
    let (sock_stream, buffered) = call.into_raw();
    let mut out = std::io::stdout();
    out.write_all(&buffered)
        .map_err(|e| CliError::io("stdout", &e))?;
    let mut up = sock_stream
        .try_clone()
        .map_err(|e| CliError::io("socket", &e))?;
    let t = std::thread::spawn(move || {
        let mut stdin = std::io::stdin();
        let _ = std::io::copy(&mut stdin, &mut up);
        let _ = up.shutdown(std::net::Shutdown::Write);
    });
    let mut down = sock_stream;
    let _ = std::io::copy(&mut down, &mut out);
    let _ = out.flush();
    drop(t);
    Ok(())
}

fn rendezvous(
    home: &Home,
    listen: &str,
    beacon: Option<&str>,
    store: Option<PathBuf>,
    json_mode: bool,
) -> Result<(), CliError> {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("TERN_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
    home.ensure()?;
    let listen: std::net::SocketAddr = listen.parse().map_err(|_| {
        CliError::new(
            "INVALID_ADDRESS",
            format!("{listen:?} is not an IP:PORT"),
            "e.g. --listen 0.0.0.0:7400",
        )
    })?;
    let beacon = match beacon {
        Some(b) => Some(b.parse().map_err(|_| {
            CliError::new(
                "INVALID_ADDRESS",
                format!("{b:?} is not an IP:PORT"),
                "e.g. --beacon 0.0.0.0:7401",
            )
        })?),
        None => None,
    };
    // The server's identity persists in the home, so its key (which daemons pin) survives
    // restarts.
    let identity = home.identity()?;
    let store = store.unwrap_or_else(|| home.dir.join("rendezvous.redb"));
    let server = rdv::RdvServer::start(identity, listen, beacon, Some(&store))?;
    let mut addr = server.addr;
    // Print a reachable address when bound to the wildcard.
    if addr.server.ip().is_unspecified() {
        addr.server.set_ip(std::net::IpAddr::from([127, 0, 0, 1]));
    }
    if let Some(b) = addr.beacon.as_mut()
        && b.ip().is_unspecified()
    {
        b.set_ip(std::net::IpAddr::from([127, 0, 0, 1]));
    }
    if json_mode {
        println!(
            "{}",
            json!({ "status": "ok", "data": { "rendezvous": addr.to_string(), "store": store } })
        );
    } else {
        println!("{addr}");
        eprintln!("rendezvous running; daemons join with: tern daemon start --rendezvous {addr}");
    }
    let _ = std::io::stdout().flush();
    // Run until killed; the store is saved continuously.
    loop {
        std::thread::park();
    }
}
