//! The daemon's home directory: identity (created on first start, mode 0600), settings and
//! trust list (persisted), PID file, control socket, log and receive directory.
//!
//! Location: `--home`, else `$TERN_HOME`, else `$XDG_CONFIG_HOME/tern`, else
//! `~/.config/tern`. Several daemons on one machine use several homes.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tern_core::{Identity, PeerId};

use crate::error::CliError;

/// Paths inside one home.
#[derive(Clone, Debug)]
pub struct Home {
    /// The directory.
    pub dir: PathBuf,
}

/// Persisted daemon settings (`settings.json`).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct Settings {
    /// Hostname published in the directory.
    pub hostname: Option<String>,
    /// Capability tags.
    pub tags: Vec<String>,
    /// Public nodes can be found and reached by anyone; private ones only by trusted peers.
    pub public: bool,
    /// UDP address to listen on (`0.0.0.0:0` picks a port; the chosen one is kept).
    pub listen: Option<String>,
    /// Rendezvous server as `ADDR#KEY`; none = the machine-local one.
    pub rendezvous: Option<String>,
    /// Published MCP tools (name, description), set by `tern mcp expose`.
    pub tools: Vec<(String, String)>,
}

impl Home {
    /// Resolves the home directory from the flag, the environment or the default.
    pub fn locate(flag: Option<&Path>) -> Result<Self, CliError> {
        let dir = match flag {
            Some(p) => p.to_path_buf(),
            None => match std::env::var_os("TERN_HOME") {
                Some(h) => PathBuf::from(h),
                None => {
                    let base = std::env::var_os("XDG_CONFIG_HOME")
                        .map(PathBuf::from)
                        .or_else(|| {
                            std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config"))
                        })
                        .ok_or_else(|| {
                            CliError::invalid(
                                "no home directory",
                                "pass --home DIR or set TERN_HOME",
                            )
                        })?;
                    base.join("tern")
                }
            },
        };
        Ok(Self { dir })
    }

    /// Creates the directory (mode 0700) if needed.
    pub fn ensure(&self) -> Result<(), CliError> {
        fs::create_dir_all(&self.dir)
            .map_err(|e| CliError::io("cannot create the home directory", &e))?;
        let _ = fs::set_permissions(&self.dir, fs::Permissions::from_mode(0o700));
        fs::create_dir_all(self.received())
            .map_err(|e| CliError::io("cannot create the receive directory", &e))?;
        Ok(())
    }

    pub fn identity_path(&self) -> PathBuf {
        self.dir.join("identity.key")
    }
    pub fn settings_path(&self) -> PathBuf {
        self.dir.join("settings.json")
    }
    pub fn trust_path(&self) -> PathBuf {
        self.dir.join("trust.json")
    }
    pub fn pid_path(&self) -> PathBuf {
        self.dir.join("daemon.pid")
    }
    pub fn socket_path(&self) -> PathBuf {
        self.dir.join("daemon.sock")
    }
    pub fn log_path(&self) -> PathBuf {
        self.dir.join("daemon.log")
    }
    /// Where received files land (and nowhere else).
    pub fn received(&self) -> PathBuf {
        self.dir.join("received")
    }

    /// Loads the identity, creating it (mode 0600) on first use.
    pub fn identity(&self) -> Result<Identity, CliError> {
        let path = self.identity_path();
        match fs::read_to_string(&path) {
            Ok(s) => {
                let bytes = hex32(s.trim()).ok_or_else(|| {
                    CliError::new(
                        "FILE_ERROR",
                        format!("{} is not a valid identity key", path.display()),
                        "restore it from a backup, or delete it to create a new identity (the address changes)",
                    )
                })?;
                Ok(Identity::from_secret(bytes))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut secret = [0u8; 32];
                getrandom::fill(&mut secret)
                    .map_err(|e| CliError::internal(format!("OS random generator: {e}")))?;
                let id = Identity::from_secret(secret);
                let hex: String = id
                    .secret_bytes()
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect();
                write_private(&path, hex.as_bytes())?;
                Ok(id)
            }
            Err(e) => Err(CliError::io("cannot read the identity key", &e)),
        }
    }

    /// Loads settings (defaults if absent).
    pub fn settings(&self) -> Result<Settings, CliError> {
        match fs::read(self.settings_path()) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| {
                CliError::new(
                    "FILE_ERROR",
                    format!("settings.json is invalid: {e}"),
                    "fix or delete it (tern recreates defaults)",
                )
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Settings::default()),
            Err(e) => Err(CliError::io("cannot read settings.json", &e)),
        }
    }

    /// Saves settings atomically.
    pub fn save_settings(&self, s: &Settings) -> Result<(), CliError> {
        let json = serde_json::to_vec_pretty(s).map_err(|e| CliError::internal(e.to_string()))?;
        write_private(&self.settings_path(), &json)
    }

    /// Loads the trust list.
    pub fn trust(&self) -> Result<Vec<PeerId>, CliError> {
        match fs::read(self.trust_path()) {
            Ok(b) => {
                let list: Vec<String> = serde_json::from_slice(&b).map_err(|e| {
                    CliError::new(
                        "FILE_ERROR",
                        format!("trust.json is invalid: {e}"),
                        "fix or delete it",
                    )
                })?;
                Ok(list.iter().filter_map(|s| s.parse().ok()).collect())
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(CliError::io("cannot read trust.json", &e)),
        }
    }

    /// Saves the trust list atomically.
    pub fn save_trust(&self, list: &[PeerId]) -> Result<(), CliError> {
        let v: Vec<String> = list.iter().map(ToString::to_string).collect();
        let json = serde_json::to_vec_pretty(&v).map_err(|e| CliError::internal(e.to_string()))?;
        write_private(&self.trust_path(), &json)
    }

    /// The PID in the PID file, if that process is alive.
    pub fn running_pid(&self) -> Option<u32> {
        let pid: u32 = fs::read_to_string(self.pid_path())
            .ok()?
            .trim()
            .parse()
            .ok()?;
        Path::new(&format!("/proc/{pid}")).exists().then_some(pid)
    }
}

/// Writes a file readable only by its owner, atomically (temp file + rename).
pub fn write_private(path: &Path, data: &[u8]) -> Result<(), CliError> {
    let tmp = path.with_extension("tmp");
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| CliError::io(&format!("cannot write {}", tmp.display()), &e))?;
    f.write_all(data)
        .and_then(|()| f.sync_all())
        .map_err(|e| CliError::io(&format!("cannot write {}", tmp.display()), &e))?;
    fs::rename(&tmp, path)
        .map_err(|e| CliError::io(&format!("cannot write {}", path.display()), &e))
}

/// Parses 64 hex digits.
pub fn hex32(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, c) in s.as_bytes().chunks(2).enumerate() {
        out[i] = u8::from_str_radix(std::str::from_utf8(c).ok()?, 16).ok()?;
    }
    Some(out)
}

/// The directory for machine-local shared state (the embedded rendezvous announcement):
/// `$TERN_RUNTIME_DIR`, else `$XDG_RUNTIME_DIR/tern`, else `/tmp/tern-<uid>`.
pub fn runtime_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("TERN_RUNTIME_DIR") {
        return PathBuf::from(d);
    }
    if let Some(d) = std::env::var_os("XDG_RUNTIME_DIR") {
        return PathBuf::from(d).join("tern");
    }
    let uid = fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m))
        .unwrap_or(0);
    PathBuf::from(format!("/tmp/tern-{uid}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_is_created_once_with_private_mode_and_reloaded() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home {
            dir: dir.path().join("h"),
        };
        home.ensure().unwrap();
        let a = home.identity().unwrap();
        let mode = fs::metadata(home.identity_path())
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
        let b = home.identity().unwrap();
        assert_eq!(a.peer_id(), b.peer_id());
        fs::write(home.identity_path(), "nonsense").unwrap();
        let err = home.identity().unwrap_err();
        assert_eq!(err.code, "FILE_ERROR");
    }

    #[test]
    fn settings_and_trust_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home {
            dir: dir.path().to_path_buf(),
        };
        home.ensure().unwrap();
        assert_eq!(home.settings().unwrap(), Settings::default());
        let s = Settings {
            hostname: Some("alpha".into()),
            tags: vec!["mcp".into()],
            ..Settings::default()
        };
        home.save_settings(&s).unwrap();
        assert_eq!(home.settings().unwrap(), s);
        let p = Identity::from_secret([4; 32]).peer_id();
        home.save_trust(&[p]).unwrap();
        assert_eq!(home.trust().unwrap(), vec![p]);
    }
}
