//! Persistence of the rendezvous directory in an embedded database (redb: a pure-Rust,
//! crash-safe key-value store with ACID transactions and no server or C library to install,
//! which is all a directory snapshot needs).

use std::net::{IpAddr, SocketAddr};
use std::path::Path;

use redb::{Database, ReadableDatabase, TableDefinition};
use serde::{Deserialize, Serialize};
use tern_core::rendezvous::server::{Snapshot, StoredNode, StoredRequest};
use tern_core::rendezvous::{Registration, Tool};
use tern_core::{Address, PeerId};

use crate::error::CliError;

const STATE: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("state");

#[derive(Serialize, Deserialize)]
struct NodeJson {
    peer: String,
    network: u16,
    node: u32,
    hostname: Option<String>,
    tags: Vec<String>,
    tools: Vec<(String, String)>,
    public: bool,
    candidates: Vec<SocketAddr>,
    ip: Option<IpAddr>,
}

#[derive(Serialize, Deserialize)]
struct RequestJson {
    from: String,
    to: String,
    note: String,
    time_ms: u64,
}

#[derive(Serialize, Deserialize, Default)]
struct SnapshotJson {
    nodes: Vec<NodeJson>,
    trust: Vec<(String, String)>,
    pending: Vec<RequestJson>,
}

fn to_json(s: &Snapshot) -> SnapshotJson {
    SnapshotJson {
        nodes: s
            .nodes
            .iter()
            .map(|n| NodeJson {
                peer: n.peer.to_string(),
                network: n.address.network(),
                node: n.address.node(),
                hostname: n.registration.hostname.clone(),
                tags: n.registration.tags.clone(),
                tools: n
                    .registration
                    .tools
                    .iter()
                    .map(|t| (t.name.clone(), t.description.clone()))
                    .collect(),
                public: n.registration.public,
                candidates: n.registration.candidates.clone(),
                ip: n.ip,
            })
            .collect(),
        trust: s
            .trust
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect(),
        pending: s
            .pending
            .iter()
            .map(|r| RequestJson {
                from: r.from.to_string(),
                to: r.to.to_string(),
                note: r.note.clone(),
                time_ms: r.time_ms,
            })
            .collect(),
    }
}

fn from_json(j: SnapshotJson) -> Snapshot {
    let peer = |s: &str| s.parse::<PeerId>().ok();
    Snapshot {
        nodes: j
            .nodes
            .into_iter()
            .filter_map(|n| {
                Some(StoredNode {
                    peer: peer(&n.peer)?,
                    address: Address::new(n.network, n.node),
                    registration: Registration {
                        hostname: n.hostname,
                        tags: n.tags,
                        tools: n
                            .tools
                            .iter()
                            .map(|(a, b)| Tool::new(a.clone(), b))
                            .collect(),
                        public: n.public,
                        candidates: n.candidates,
                    },
                    ip: n.ip,
                })
            })
            .collect(),
        trust: j
            .trust
            .iter()
            .filter_map(|(a, b)| Some((peer(a)?, peer(b)?)))
            .collect(),
        pending: j
            .pending
            .into_iter()
            .filter_map(|r| {
                Some(StoredRequest {
                    from: peer(&r.from)?,
                    to: peer(&r.to)?,
                    note: r.note,
                    time_ms: r.time_ms,
                })
            })
            .collect(),
    }
}

fn db_err(e: impl std::fmt::Display) -> CliError {
    CliError::new(
        "FILE_ERROR",
        format!("rendezvous store: {e}"),
        "check the --store path and its permissions; move a corrupted store away to start empty",
    )
}

/// The directory's store.
pub struct Store {
    db: Database,
}

impl Store {
    /// Opens (or creates) the store at `path`.
    pub fn open(path: &Path) -> Result<Self, CliError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| CliError::io("cannot create the store directory", &e))?;
        }
        Ok(Self {
            db: Database::create(path).map_err(db_err)?,
        })
    }

    /// The saved snapshot, if any.
    pub fn load(&self) -> Result<Option<Snapshot>, CliError> {
        let tx = self.db.begin_read().map_err(db_err)?;
        let table = match tx.open_table(STATE) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(db_err(e)),
        };
        let Some(v) = table.get("snapshot").map_err(db_err)? else {
            return Ok(None);
        };
        let j: SnapshotJson = serde_json::from_slice(v.value()).map_err(db_err)?;
        Ok(Some(from_json(j)))
    }

    /// Saves a snapshot atomically.
    pub fn save(&self, s: &Snapshot) -> Result<(), CliError> {
        let bytes = serde_json::to_vec(&to_json(s)).map_err(db_err)?;
        let tx = self.db.begin_write().map_err(db_err)?;
        {
            let mut t = tx.open_table(STATE).map_err(db_err)?;
            t.insert("snapshot", bytes.as_slice()).map_err(db_err)?;
        }
        tx.commit().map_err(db_err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tern_core::Identity;

    #[test]
    fn snapshots_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rdv.redb");
        let a = Identity::from_secret([1; 32]).peer_id();
        let b = Identity::from_secret([2; 32]).peer_id();
        let snap = Snapshot {
            nodes: vec![StoredNode {
                peer: a,
                address: Address::new(0, 77),
                registration: Registration {
                    hostname: Some("alpha".into()),
                    tags: vec!["mcp".into()],
                    tools: vec![Tool::new("t", "d")],
                    public: true,
                    candidates: vec!["10.0.0.1:1".parse().unwrap()],
                },
                ip: Some("10.0.0.1".parse().unwrap()),
            }],
            trust: vec![(a, b)],
            pending: vec![StoredRequest {
                from: b,
                to: a,
                note: "hi".into(),
                time_ms: 5,
            }],
        };
        {
            let s = Store::open(&path).unwrap();
            assert_eq!(s.load().unwrap(), None);
            s.save(&snap).unwrap();
        }
        let s = Store::open(&path).unwrap();
        assert_eq!(s.load().unwrap(), Some(snap));
    }
}
