//! `tern demo`: the whole story on this machine with throw-away homes: a rendezvous, two
//! daemons, find, a trust handshake, an encrypted ping, a file transfer and a bench line.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::error::CliError;

struct Step<'a> {
    exe: PathBuf,
    runtime: &'a Path,
    json: bool,
}

impl Step<'_> {
    /// Runs `tern --home <home> --json <args>` and returns its data.
    fn tern(&self, home: &Path, args: &[&str]) -> Result<Value, CliError> {
        let out = Command::new(&self.exe)
            .arg("--home")
            .arg(home)
            .arg("--json")
            .args(args)
            .env("TERN_RUNTIME_DIR", self.runtime)
            .output()
            .map_err(|e| CliError::io("cannot run tern", &e))?;
        let line = String::from_utf8_lossy(&out.stdout);
        let v: Value = serde_json::from_str(line.lines().last().unwrap_or("")).map_err(|_| {
            CliError::internal(format!(
                "demo step {args:?} printed no JSON: {}",
                String::from_utf8_lossy(&out.stderr)
            ))
        })?;
        if v["status"] != "ok" {
            let e: CliError =
                serde_json::from_value(v).map_err(|e| CliError::internal(e.to_string()))?;
            return Err(e);
        }
        Ok(v["data"].clone())
    }

    fn say(&self, s: &str) {
        if !self.json {
            println!("{s}");
        }
    }
}

fn text(v: &Value, k: &str) -> String {
    v.get(k).and_then(Value::as_str).unwrap_or("-").to_owned()
}

/// Runs the demo.
pub fn run(json: bool) -> Result<(), CliError> {
    let t0 = Instant::now();
    let tmp = std::env::temp_dir().join(format!("tern-demo-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).map_err(|e| CliError::io("temp dir", &e))?;
    let runtime = tmp.join("runtime");
    let step = Step {
        exe: std::env::current_exe().map_err(|e| CliError::io("current exe", &e))?,
        runtime: &runtime,
        json,
    };
    let (alpha, bravo) = (tmp.join("alpha"), tmp.join("bravo"));
    let result = story(&step, &tmp, &alpha, &bravo);
    // Always clean up the daemons and the homes.
    for h in [&alpha, &bravo] {
        let _ = step.tern(h, &["daemon", "stop"]);
    }
    let _ = std::fs::remove_dir_all(&tmp);
    let summary = result?;
    if json {
        println!("{}", serde_json::json!({ "status": "ok", "data": summary }));
    } else {
        println!("\ndemo finished in {:.1}s", t0.elapsed().as_secs_f64());
    }
    Ok(())
}

fn story(step: &Step<'_>, tmp: &Path, alpha: &Path, bravo: &Path) -> Result<Value, CliError> {
    step.say("== tern demo: two agents on this machine, found by name, talking over encrypted sessions ==\n");
    let a = step.tern(
        alpha,
        &["daemon", "start", "--hostname", "alpha", "--tag", "demo"],
    )?;
    step.say(&format!("$ tern daemon start --hostname alpha\n  Daemon running (pid {})\n  Address: {}\n  Hostname: alpha\n  (first daemon on this machine: it hosts the local rendezvous)", a["pid"], text(&a, "address")));
    let b = step.tern(
        bravo,
        &[
            "daemon",
            "start",
            "--hostname",
            "bravo",
            "--tag",
            "demo",
            "--tag",
            "files",
        ],
    )?;
    step.say(&format!("$ tern daemon start --hostname bravo\n  Daemon running (pid {})\n  Address: {}\n  Hostname: bravo  (private: only trusted peers get in)\n", b["pid"], text(&b, "address")));
    // Registration is asynchronous: wait until the directory has both.
    let deadline = Instant::now() + Duration::from_secs(5);
    for home in [alpha, bravo] {
        loop {
            let i = step.tern(home, &["info"])?;
            if i["registered"].as_bool() == Some(true) {
                break;
            }
            if Instant::now() > deadline {
                return Err(CliError::new(
                    "TIMEOUT",
                    "a daemon did not register with the rendezvous",
                    "check the daemon logs",
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    // Private nodes are listed only to peers they trust; alpha asks.
    step.say("$ tern --home alpha find bravo");
    match step.tern(alpha, &["find", "bravo"]) {
        Err(e) => step.say(&format!("  error: {} (hint: {})", e.message, e.hint)),
        Ok(v) => step.say(&format!("  {v}")),
    }
    step.tern(alpha, &["handshake", "bravo", "demo", "request"])?;
    step.say("$ tern --home alpha handshake bravo\n  trust request sent");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let p = step.tern(bravo, &["pending"])?;
        if p.as_array().is_some_and(|l| !l.is_empty()) {
            step.say(&format!(
                "$ tern --home bravo pending\n  {}  {}  \"{}\"",
                text(&p[0], "address"),
                text(&p[0], "hostname"),
                text(&p[0], "note")
            ));
            break;
        }
        if Instant::now() > deadline {
            return Err(CliError::new(
                "TIMEOUT",
                "the trust request did not arrive",
                "check the daemon logs",
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    step.tern(bravo, &["approve", "alpha"])?;
    step.say("$ tern --home bravo approve alpha\n  trust established (both ways)\n");
    let f = step.tern(alpha, &["find", "bravo"])?;
    step.say(&format!(
        "$ tern --home alpha find bravo\n  {}  {}  online",
        text(&f[0], "address"),
        text(&f[0], "hostname")
    ));
    let p = step.tern(alpha, &["ping", "bravo", "-c", "3"])?;
    let rtts: Vec<f64> = p["rtt_ms"]
        .as_array()
        .map(|v| v.iter().filter_map(Value::as_f64).collect())
        .unwrap_or_default();
    step.say("$ tern --home alpha ping bravo -c 3");
    for r in &rtts {
        step.say(&format!(
            "  ✓ reply from {} · {r:.2}ms ({})",
            text(&p, "address"),
            text(&p, "path")
        ));
    }
    // A file transfer.
    let file = tmp.join("report.bin");
    let data: Vec<u8> = (0..(4u32 << 20))
        .map(|i| (i.wrapping_mul(2654435761) >> 24) as u8)
        .collect();
    std::fs::write(&file, &data).map_err(|e| CliError::io("demo file", &e))?;
    let fr = step.tern(alpha, &["send-file", "bravo", &file.to_string_lossy()])?;
    let received = bravo.join("received").join("report.bin");
    let intact = std::fs::read(&received).map(|r| r == data).unwrap_or(false);
    step.say(&format!(
        "$ tern --home alpha send-file bravo report.bin\n  sent report.bin (4 MiB, sha256 {}…) in {:.2}s · received intact: {intact}",
        &text(&fr, "sha256")[..16],
        fr["seconds"].as_f64().unwrap_or(0.0)
    ));
    if !intact {
        return Err(CliError::new(
            "HASH_MISMATCH",
            "the demo file arrived damaged",
            "this is a bug; please report it",
        ));
    }
    let bench = step.tern(alpha, &["bench", "bravo", "--size", "32"])?;
    step.say(&format!(
        "$ tern --home alpha bench bravo\n  {:.1} MiB/s · rtt {:.2}ms ({})",
        bench["mib_per_s"].as_f64().unwrap_or(0.0),
        bench["rtt_ms_median"].as_f64().unwrap_or(0.0),
        text(&bench, "path")
    ));
    Ok(serde_json::json!({
        "alpha": text(&a, "address"),
        "bravo": text(&b, "address"),
        "ping_ms": rtts,
        "file_intact": intact,
        "bench_mib_per_s": bench["mib_per_s"],
    }))
}
