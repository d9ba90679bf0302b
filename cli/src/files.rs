//! `send-file` over a stream to the peer's file service (virtual port [`FILE_PORT`]).
//!
//! ```text
//! sender → {"name": "...", "size": N, "sha256": "hex"}\n
//! receiver → {"offset": K}\n        (bytes it already has from an interrupted transfer)
//!          | {"error": {code, message, hint}}\n
//! sender → the bytes from K to N, then FIN
//! receiver → {"ok": true, "path": "<name as saved>"}\n  |  {"error": ...}\n
//! ```
//!
//! The receiver takes only the file *name*: anything with a path separator, `..`, a leading
//! dot, control characters or more than 255 bytes is refused (`PATH_ESCAPES`), so nothing is
//! ever written outside the receive directory (Pilot S14). Partial data lives in
//! `.<name>.<sha256 prefix>.part` until the SHA-256 of the whole file matches.

use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::CliError;

/// The virtual port of the file service.
pub const FILE_PORT: u16 = 1001;
/// Largest file accepted (1 TiB).
pub const MAX_FILE: u64 = 1 << 40;

/// The transfer header.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Header {
    /// File name (no directories).
    pub name: String,
    /// Bytes.
    pub size: u64,
    /// SHA-256, hex.
    pub sha256: String,
}

/// Checks that `name` is a plain file name that stays inside the receive directory.
pub fn safe_name(name: &str) -> Result<&str, CliError> {
    let bad = name.is_empty()
        || name.len() > 255
        || name == "."
        || name == ".."
        || name.starts_with('.')
        || name.contains(['/', '\\', '\0'])
        || name.chars().any(char::is_control)
        || Path::new(name).components().count() != 1;
    if bad {
        return Err(CliError::new(
            "PATH_ESCAPES",
            format!("refused file name {name:?}: it is not a plain file name"),
            "send files with a plain name (no directories, no leading dot)",
        ));
    }
    Ok(name)
}

/// SHA-256 of a file, hex.
pub fn sha256_file(path: &Path) -> Result<String, CliError> {
    let mut f = File::open(path)
        .map_err(|e| CliError::io(&format!("cannot read {}", path.display()), &e))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf).map_err(|e| CliError::io("read", &e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex(&h.finalize()))
}

/// Lower-case hex.
pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn send_line(w: &mut impl Write, v: &serde_json::Value) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(v).map_err(std::io::Error::other)?;
    line.push(b'\n');
    w.write_all(&line)
}

fn read_line(r: &mut impl BufRead) -> Result<serde_json::Value, CliError> {
    let mut line = String::new();
    r.read_line(&mut line).map_err(|e| {
        CliError::new(
            "CONNECTION_LOST",
            format!("file transfer: {e}"),
            "try again; the transfer resumes where it stopped",
        )
    })?;
    if line.len() > 64 << 10 {
        return Err(CliError::new(
            "PROTOCOL",
            "oversized file-transfer message",
            "the peer runs an incompatible tern",
        ));
    }
    serde_json::from_str(&line).map_err(|_| {
        CliError::new(
            "CONNECTION_LOST",
            "the file transfer was cut",
            "try again; the transfer resumes where it stopped",
        )
    })
}

fn remote_error(v: &serde_json::Value) -> Option<CliError> {
    serde_json::from_value::<CliError>(v.get("error")?.clone()).ok()
}

/// Receiver side: runs one transfer on `stream` into `dir`. Returns the saved path.
pub fn receive<S: Read + Write>(stream: S, dir: &Path) -> Result<PathBuf, CliError> {
    let mut r = BufReader::new(stream);
    let header: Header = serde_json::from_value(read_line(&mut r)?).map_err(|_| {
        CliError::new(
            "PROTOCOL",
            "bad file header",
            "the peer runs an incompatible tern",
        )
    })?;
    let fail = |r: &mut BufReader<S>, e: CliError| {
        let _ = send_line(r.get_mut(), &serde_json::json!({ "error": e }));
        Err(e)
    };
    let name = match safe_name(&header.name) {
        Ok(n) => n.to_owned(),
        Err(e) => return fail(&mut r, e),
    };
    if header.size > MAX_FILE
        || header.sha256.len() != 64
        || !header.sha256.bytes().all(|b| b.is_ascii_hexdigit())
    {
        return fail(
            &mut r,
            CliError::invalid("bad file header", "the peer runs an incompatible tern"),
        );
    }
    let part = dir.join(format!(".{name}.{}.part", &header.sha256[..16]));
    let mut f = match OpenOptions::new().create(true).append(true).open(&part) {
        Ok(f) => f,
        Err(e) => {
            return fail(
                &mut r,
                CliError::io("cannot write in the receive directory", &e),
            );
        }
    };
    let have = f.metadata().map(|m| m.len()).unwrap_or(0).min(header.size);
    if have < f.metadata().map(|m| m.len()).unwrap_or(0) {
        let _ = f.set_len(have);
    }
    send_line(r.get_mut(), &serde_json::json!({ "offset": have }))
        .map_err(|e| CliError::io("file transfer", &e))?;
    let mut left = header.size - have;
    let mut buf = vec![0u8; 1 << 16];
    while left > 0 {
        let n = r
            .read(&mut buf[..(left.min(1 << 16)) as usize])
            .map_err(|e| {
                CliError::new(
                    "CONNECTION_LOST",
                    format!("file transfer cut: {e}"),
                    "send again; it resumes",
                )
            })?;
        if n == 0 {
            return Err(CliError::new(
                "CONNECTION_LOST",
                "the sender stopped early",
                "send again; it resumes",
            ));
        }
        f.write_all(&buf[..n])
            .map_err(|e| CliError::io("cannot write the file", &e))?;
        left -= n as u64;
    }
    f.sync_all()
        .map_err(|e| CliError::io("cannot write the file", &e))?;
    drop(f);
    let got = sha256_file(&part)?;
    if got != header.sha256 {
        let _ = fs::remove_file(&part);
        return fail(
            &mut r,
            CliError::new(
                "HASH_MISMATCH",
                "the received file does not match its SHA-256",
                "send it again",
            ),
        );
    }
    let mut target = dir.join(&name);
    let mut k = 1;
    while target.exists() {
        target = dir.join(format!("{name}.{k}"));
        k += 1;
    }
    fs::rename(&part, &target).map_err(|e| CliError::io("cannot save the file", &e))?;
    let saved = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let _ = send_line(
        r.get_mut(),
        &serde_json::json!({ "ok": true, "path": saved }),
    );
    Ok(target)
}

/// Sender side: sends `path` on `stream` (a fresh stream to the peer's [`FILE_PORT`]),
/// reporting `(sent, total)` as it goes. Returns the name the peer saved it under.
pub fn send<S: Read + Write>(
    mut stream: S,
    path: &Path,
    name: &str,
    mut progress: impl FnMut(u64, u64),
    mut finish: impl FnMut(&mut S) -> Result<(), CliError>,
) -> Result<(String, u64, String), CliError> {
    let mut f = File::open(path).map_err(|e| {
        CliError::new(
            "FILE_ERROR",
            format!("cannot read {}: {e}", path.display()),
            "check the path",
        )
    })?;
    let size = f.metadata().map_err(|e| CliError::io("stat", &e))?.len();
    let sha = sha256_file(path)?;
    let header = Header {
        name: name.to_owned(),
        size,
        sha256: sha.clone(),
    };
    send_line(
        &mut stream,
        &serde_json::to_value(&header).map_err(|e| CliError::internal(e.to_string()))?,
    )
    .map_err(|e| CliError::io("file transfer", &e))?;
    // Read the answer byte by byte: the stream carries our data next.
    let answer = read_line_unbuffered(&mut stream)?;
    if let Some(e) = remote_error(&answer) {
        return Err(e);
    }
    let offset = answer
        .get("offset")
        .and_then(serde_json::Value::as_u64)
        .unwrap_or(0)
        .min(size);
    f.seek(SeekFrom::Start(offset))
        .map_err(|e| CliError::io("seek", &e))?;
    let mut sent = offset;
    progress(sent, size);
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf).map_err(|e| CliError::io("read", &e))?;
        if n == 0 {
            break;
        }
        stream.write_all(&buf[..n]).map_err(|e| {
            CliError::new(
                "CONNECTION_LOST",
                format!("file transfer cut: {e}"),
                "send again; it resumes where it stopped",
            )
        })?;
        sent += n as u64;
        progress(sent, size);
    }
    finish(&mut stream)?;
    let done = read_line_unbuffered(&mut stream)?;
    if let Some(e) = remote_error(&done) {
        return Err(e);
    }
    let saved = done
        .get("path")
        .and_then(|p| p.as_str())
        .unwrap_or(name)
        .to_owned();
    Ok((saved, size, sha))
}

fn read_line_unbuffered(r: &mut impl Read) -> Result<serde_json::Value, CliError> {
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    loop {
        let n = r.read(&mut b).map_err(|e| {
            CliError::new(
                "CONNECTION_LOST",
                format!("file transfer: {e}"),
                "try again",
            )
        })?;
        if n == 0 || b[0] == b'\n' {
            break;
        }
        line.push(b[0]);
        if line.len() > 64 << 10 {
            return Err(CliError::new(
                "PROTOCOL",
                "oversized file-transfer message",
                "the peer runs an incompatible tern",
            ));
        }
    }
    serde_json::from_slice(&line).map_err(|_| {
        CliError::new(
            "CONNECTION_LOST",
            "the peer closed the file transfer",
            "check the peer's daemon log; try again",
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_escape_are_refused() {
        for ok in ["report.pdf", "a", "data.tar.gz", "ünï cödé.txt"] {
            assert!(safe_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            ".",
            "..",
            "../x",
            "a/b",
            "/etc/passwd",
            "..\\x",
            ".hidden",
            "a\0b",
            "x\ny",
            &"a".repeat(256),
        ] {
            assert_eq!(safe_name(bad).unwrap_err().code, "PATH_ESCAPES", "{bad:?}");
        }
    }
}
