//! One stdio MCP server process, in its own process group, torn down the way the MCP stdio
//! transport asks: close its stdin, wait, SIGTERM, wait, SIGKILL — to the whole group, so
//! helpers it started die with it. Dropping a [`ServerProcess`] kills whatever is left.

use std::process::{Child, ChildStdin, ChildStdout, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, kill_process_group};

use crate::error::CliError;

/// How long a server gets to exit after its stdin closed, and again after SIGTERM.
pub const GRACE: Duration = Duration::from_secs(2);

/// A running server process.
#[derive(Debug)]
pub struct ServerProcess {
    child: Child,
    pgid: Option<Pid>,
    /// Its exit status, once reaped.
    status: Option<ExitStatus>,
}

/// The pipes of a freshly spawned server.
#[derive(Debug)]
pub struct Pipes {
    /// The server's stdin (drop it to send EOF).
    pub stdin: ChildStdin,
    /// The server's stdout.
    pub stdout: ChildStdout,
}

impl ServerProcess {
    /// Starts `argv` with piped stdin/stdout (stderr goes to ours: the server's logs stay on
    /// the exposing machine), in a new process group.
    pub fn spawn(argv: &[String]) -> Result<(Self, Pipes), CliError> {
        let (prog, args) = argv.split_first().ok_or_else(|| {
            CliError::invalid(
                "no MCP server command given",
                "put it after --, e.g. tern mcp expose -- python server.py",
            )
        })?;
        let mut cmd = Command::new(prog);
        cmd.args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let mut child = cmd.spawn().map_err(|e| {
            CliError::new(
                "SPAWN_FAILED",
                format!("cannot start the MCP server {prog:?}: {e}"),
                "check the command after -- (is it on PATH and executable?)",
            )
        })?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(CliError::internal("spawned server without pipes"));
        };
        let pgid = i32::try_from(child.id()).ok().and_then(Pid::from_raw);
        Ok((
            Self {
                child,
                pgid,
                status: None,
            },
            Pipes { stdin, stdout },
        ))
    }

    /// The process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Reaps the process if it exited.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().ok().flatten();
        }
        self.status
    }

    /// Waits up to `limit` for the process to exit.
    pub fn wait_for(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        let mut nap = Duration::from_millis(1);
        loop {
            if let Some(s) = self.try_wait() {
                return Some(s);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(nap);
            nap = (nap * 2).min(Duration::from_millis(50));
        }
    }

    fn signal_group(&self, sig: Signal) {
        if let Some(pg) = self.pgid {
            // The group may be gone already (ESRCH): nothing left to signal.
            let _ = kill_process_group(pg, sig);
        }
    }

    /// The stdio shutdown sequence, for a server whose stdin the caller already closed:
    /// wait [`GRACE`], SIGTERM the group, wait [`GRACE`], SIGKILL the group. Returns the
    /// exit status. Whatever else is left in the group is killed too.
    pub fn shut_down(&mut self) -> Option<ExitStatus> {
        let status = self.wait_for(GRACE).or_else(|| {
            self.signal_group(Signal::TERM);
            self.wait_for(GRACE)
        });
        let status = status.or_else(|| {
            self.signal_group(Signal::KILL);
            self.wait_for(GRACE)
        });
        // Helpers the server left behind in its group go too.
        self.signal_group(Signal::KILL);
        status
    }

    /// Kills the group at once (no grace) and reaps the process.
    pub fn kill_now(&mut self) -> Option<ExitStatus> {
        if self.try_wait().is_none() {
            self.signal_group(Signal::KILL);
            let _ = self.child.kill();
            self.status = self.child.wait().ok();
        }
        self.signal_group(Signal::KILL);
        self.status
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.kill_now();
    }
}

/// A readable description of an exit status ("exit code 3", "killed by signal 9").
pub fn describe(status: Option<ExitStatus>) -> String {
    use std::os::unix::process::ExitStatusExt;
    match status {
        None => "still running".into(),
        Some(s) => match (s.code(), s.signal()) {
            (Some(c), _) => format!("exit code {c}"),
            (None, Some(sig)) => format!("killed by signal {sig}"),
            _ => s.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    fn sh(script: &str) -> Vec<String> {
        vec!["sh".into(), "-c".into(), script.into()]
    }

    #[test]
    fn a_server_that_exits_on_eof_is_done_without_signals() {
        let (mut p, pipes) = ServerProcess::spawn(&sh("cat")).unwrap();
        let Pipes {
            mut stdin,
            mut stdout,
        } = pipes;
        stdin.write_all(b"hi\n").unwrap();
        drop(stdin);
        let mut out = String::new();
        stdout.read_to_string(&mut out).unwrap();
        assert_eq!(out, "hi\n");
        let t = Instant::now();
        let st = p.shut_down().unwrap();
        assert!(st.success());
        assert!(t.elapsed() < GRACE);
    }

    #[test]
    fn a_server_that_ignores_eof_and_term_is_killed_with_its_helpers() {
        // Ignores SIGTERM and EOF, and starts a helper in its group that does the same.
        let marker = format!("tern-test-{}-{}", std::process::id(), line!());
        let script = format!(
            "trap '' TERM; (trap '' TERM; exec -a {marker} sleep 600) & while true; do sleep 1; done"
        );
        let (mut p, pipes) = ServerProcess::spawn(&sh(&script)).unwrap();
        drop(pipes);
        std::thread::sleep(Duration::from_millis(200));
        let st = p.shut_down();
        assert!(st.is_some(), "reaped");
        std::thread::sleep(Duration::from_millis(100));
        let ps = Command::new("pgrep").args(["-f", &marker]).output();
        if let Ok(ps) = ps {
            assert!(ps.stdout.is_empty(), "helper left behind: {:?}", ps);
        }
    }

    #[test]
    fn a_missing_command_is_a_typed_error() {
        let e = ServerProcess::spawn(&["/nonexistent/tern-mcp-server".into()]).unwrap_err();
        assert_eq!(e.code, "SPAWN_FAILED");
    }
}
