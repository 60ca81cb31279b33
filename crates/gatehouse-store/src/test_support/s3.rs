//! A real S3-compatible server for tests: `s3s-fs` (a Rust S3 server over a folder,
//! checking SigV4 signatures), one process per test on a port of its own, killed and
//! its folder removed on drop.
//!
//! Without the `s3s-fs` binary (on `PATH` or in `~/.cargo/bin`), `start()` returns
//! `None` (the test says so and passes), except under `CI=true`, where it fails: CI
//! must run these.

use std::io::{BufRead as _, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::blobs::{S3Credentials, S3Settings};

pub const ACCESS_KEY: &str = "gatehouse";
pub const SECRET_KEY: &str = "gatehouse-secret";
pub const BUCKET: &str = "gatehouse";

const INSTALL: &str = "cargo install --locked s3s-fs --version 0.14.1 --features binary";
/// How long the server may take to say it listens.
const STARTUP: Duration = Duration::from_secs(20);

/// A running `s3s-fs` with one bucket, [`BUCKET`].
pub struct S3Server {
    child: Child,
    root: PathBuf,
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
}

impl S3Server {
    /// Settings for the bucket under `prefix`, with the server's credentials.
    pub fn settings(&self, prefix: &str) -> S3Settings {
        S3Settings {
            bucket: BUCKET.to_owned(),
            prefix: prefix.to_owned(),
            endpoint: Some(self.endpoint.clone()),
            region: None,
            credentials: Some(S3Credentials {
                access_key_id: ACCESS_KEY.to_owned(),
                secret_access_key: SECRET_KEY.to_owned(),
                session_token: None,
            }),
        }
    }

    /// The server's process id (to stop it and watch the stores refuse).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The file s3s-fs keeps the object `key` of the bucket in.
    pub fn object_file(&self, key: &str) -> PathBuf {
        self.root.join(BUCKET).join(key)
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// Starts a server, or `None` when `s3s-fs` is not installed (outside CI).
pub async fn start() -> Option<S3Server> {
    let Some(binary) = binary() else {
        let how = format!("the S3 tests need the s3s-fs server: {INSTALL}");
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("{how}");
        }
        eprintln!("skipping the S3 tests: {how}");
        return None;
    };
    Some(
        tokio::task::spawn_blocking(move || run(binary))
            .await
            .expect("start s3s-fs"),
    )
}

fn binary() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .map(|dir| dir.join("s3s-fs"));
    let cargo_bin = std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cargo/bin/s3s-fs"));
    on_path.chain(cargo_bin).find(|candidate| candidate.is_file())
}

fn run(binary: PathBuf) -> S3Server {
    let root = std::env::temp_dir().join(format!(
        "gatehouse-s3-{}-{:08x}",
        std::process::id(),
        rand::random::<u32>()
    ));
    // A bucket is a folder (object_store cannot create buckets).
    std::fs::create_dir_all(root.join(BUCKET)).expect("s3s-fs folder");
    let mut child = Command::new(&binary)
        .args(["--host", "127.0.0.1", "--port", "0"])
        .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
        .arg(&root)
        // Without RUST_LOG it prints nothing, not even where it listens.
        .env("RUST_LOG", "s3s_fs=info")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{}: {e}", binary.display()));
    // Both streams read to their end (so the server never blocks on a full pipe),
    // each line sent here until the address shows.
    let (lines, received) = mpsc::channel();
    let stdout = child
        .stdout
        .take()
        .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>);
    let stderr = child
        .stderr
        .take()
        .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>);
    for stream in [stdout, stderr].into_iter().flatten() {
        let lines = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                let _ = lines.send(line);
            }
        });
    }
    drop(lines);
    let deadline = Instant::now() + STARTUP;
    let mut seen = Vec::new();
    let endpoint = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match received.recv_timeout(left) {
            Ok(line) => {
                if let Some(endpoint) = listening_at(&line) {
                    break endpoint;
                }
                seen.push(line);
            }
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                let _ = std::fs::remove_dir_all(&root);
                panic!(
                    "s3s-fs did not say where it listens within {STARTUP:?} ({e}):\n{}",
                    seen.join("\n")
                );
            }
        }
    };
    S3Server { child, root, endpoint }
}

/// The URL in `… server is running at http://127.0.0.1:PORT`.
fn listening_at(line: &str) -> Option<String> {
    let (_, rest) = line.split_once("server is running at ")?;
    let url: String = rest
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, ':' | '/' | '.'))
        .collect();
    url.starts_with("http://").then_some(url)
}

#[cfg(test)]
mod tests {
    #[test]
    fn finds_the_address_in_the_log_line() {
        assert_eq!(
            super::listening_at(
                "  2026-12-03T19:50:24Z  INFO s3s_fs: server is running at http://127.0.0.1:36575\x1b[0m"
            )
            .as_deref(),
            Some("http://127.0.0.1:36575")
        );
        assert_eq!(super::listening_at("INFO s3s_fs: authentication is enabled"), None);
    }
}
