//! Test kit: the real `gatehouse` binary on an ephemeral 127.0.0.1 port with a fresh
//! data dir, plus builders for npm-shaped tarballs and publish bodies.

#![allow(dead_code)]

pub mod clients;
pub mod fake_upstream;
pub mod firewall;
pub mod oidc;
pub mod sigstore;
pub mod stack;
pub mod verdaccio;

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};
use sha1::Sha1;
use sha2::{Digest, Sha512};

pub use stack::Stack;
use stack::Stores;

pub const ADMIN_PASSWORD: &str = "admin-password-1";
pub const BIN: &str = env!("CARGO_BIN_EXE_gatehouse");

pub struct TestServer {
    /// `http://127.0.0.1:PORT`
    pub base: String,
    pub data_dir: PathBuf,
    config_file: Option<PathBuf>,
    /// Where its metadata and tarballs are: `data_dir`, or a database and a bucket.
    pub stores: Stores,
    _dir: Option<tempfile::TempDir>,
    child: Child,
}

impl TestServer {
    /// A fresh server: registry `default`, user `admin` / `ADMIN_PASSWORD`, on the
    /// stack the run names ([`Stack::from_env`]).
    pub fn start() -> TestServer {
        Self::start_with_config("")
    }

    /// A fresh server with extra TOML configuration. Unless the configuration says
    /// otherwise, `default` has no upstream: tests never reach beyond 127.0.0.1.
    pub fn start_with_config(toml: &str) -> TestServer {
        Self::start_on_stack(Stack::from_env(), toml)
    }

    /// A fresh server on the embedded stores, whatever the run's stack: for tests of
    /// the data directory's files (backup, restore, the blob folder).
    pub fn start_embedded(toml: &str) -> TestServer {
        Self::start_on_stack(Stack::Embedded, toml)
    }

    /// A fresh server on `stack`, configured as [`TestServer::start_with_config`].
    pub fn start_on_stack(stack: Stack, toml: &str) -> TestServer {
        Self::start_on_stores(Stores::new(stack), toml)
    }

    /// Another server over the same stores as `self` (a replica, for the scale-out
    /// stack), with its own data dir and configuration.
    pub fn replica(&self, toml: &str) -> TestServer {
        Self::start_on_stores(self.stores.shared(), toml)
    }

    /// A fresh server on `stores` (new, or another server's), with its own data dir.
    pub fn start_on_stores(stores: Stores, toml: &str) -> TestServer {
        let dir = tempfile::tempdir().expect("tempdir");
        let data_dir = dir.path().join("data");
        let path = dir.path().join("gatehouse.toml");
        write_config(&path, &stores, toml);
        let config_file = Some(path);
        let (child, base) = spawn(&data_dir, config_file.as_deref(), &stores, "127.0.0.1:0");
        TestServer {
            base,
            data_dir,
            config_file,
            stores,
            _dir: Some(dir),
            child,
        }
    }

    /// A server on an existing data dir (a restored backup), configured as `start` does.
    pub fn start_on(data_dir: &Path) -> TestServer {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("gatehouse.toml");
        let stores = Stores::new(Stack::Embedded);
        write_config(&path, &stores, "");
        let (child, base) = spawn(data_dir, Some(&path), &stores, "127.0.0.1:0");
        TestServer {
            base,
            data_dir: data_dir.to_owned(),
            config_file: Some(path),
            stores,
            _dir: Some(dir),
            child,
        }
    }

    /// The file holding the blob `hex` (sha512): in the data dir's blob folder, or
    /// where the S3 server keeps the object.
    pub fn blob_file(&self, hex: &str) -> PathBuf {
        let key = format!("sha512/{}/{}/{hex}", &hex[0..2], &hex[2..4]);
        match &self.stores {
            Stores::Embedded => self.data_dir.join("blobs").join(key),
            Stores::ScaleOut(stores) => stores.s3.object_file(&format!("{}/{key}", stack::PREFIX)),
        }
    }

    pub fn registry_url(&self, registry: &str) -> String {
        format!("{}/r/{registry}/", self.base)
    }

    /// Runs a `gatehouse` CLI command against this server's data dir, with its
    /// configuration (commands that reach upstreams, `push` and `warm`, use its
    /// `[upstream]` settings: never the public registry).
    pub fn cli(&self, args: &[&str], stdin: &str) -> Output {
        self.cli_with_env(args, stdin, &[])
    }

    /// [`TestServer::cli`] with more environment (another stack's bucket, say).
    pub fn cli_with_env(&self, args: &[&str], stdin: &str, env: &[(&str, String)]) -> Output {
        run_cli_with(
            &self.data_dir,
            self.config_file.as_deref(),
            &self.stores,
            args,
            stdin,
            env,
        )
    }

    /// A CLI command that must succeed; its standard output.
    pub fn cli_ok(&self, args: &[&str]) -> String {
        let out = self.cli(args, "");
        assert!(
            out.status.success(),
            "gatehouse {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn add_user(&self, name: &str, password: &str) {
        let out = self.cli(&["user", "add", name, "--password-stdin"], &format!("{password}\n"));
        assert!(
            out.status.success(),
            "user add failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Logs in with the legacy CouchDB flow and returns the bearer token.
    pub fn login(&self, registry: &str, user: &str, password: &str) -> String {
        let response = http()
            .put(format!("{}-/user/org.couchdb.user:{user}", self.registry_url(registry)))
            .json(&json!({ "_id": format!("org.couchdb.user:{user}"), "name": user, "password": password, "type": "user", "roles": [] }))
            .send()
            .expect("login request");
        assert_eq!(response.status(), 201, "login of {user} failed");
        let body: Value = response.json().expect("login json");
        body["token"].as_str().expect("token in login response").to_owned()
    }

    /// `gatehouse token create ARGS` → the token's value.
    pub fn create_token(&self, args: &[&str]) -> String {
        let mut all = vec!["token", "create"];
        all.extend_from_slice(args);
        let out = self.cli(&all, "");
        assert!(
            out.status.success(),
            "token create: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf8").trim().to_owned()
    }

    pub fn admin_token(&self) -> String {
        self.login("default", "admin", ADMIN_PASSWORD)
    }

    /// SIGKILL: no shutdown, no flush — a crash.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts the server again on the same data dir (new port).
    pub fn restart(&mut self) {
        self.kill();
        let (child, base) = spawn(&self.data_dir, self.config_file.as_deref(), &self.stores, "127.0.0.1:0");
        self.child = child;
        self.base = base;
    }

    /// Stops the server and starts it again on the same data dir and the same port (so URLs
    /// recorded in lockfiles stay valid) with a new configuration, completed as
    /// [`TestServer::start_with_config`] completes it.
    pub fn restart_with_config(&mut self, toml: &str) {
        let path = self.config_file.clone().expect("a server started with a config file");
        self.kill();
        write_config(&path, &self.stores, toml);
        let listen = self.base.trim_start_matches("http://").to_owned();
        // The old socket is closed, but give the kernel a moment if the port is not free yet.
        let deadline = Instant::now() + Duration::from_secs(10);
        let (child, base) = loop {
            match try_spawn(&self.data_dir, Some(&path), &self.stores, &listen) {
                Ok(started) => break started,
                Err(why) if Instant::now() < deadline => {
                    eprintln!("restart on {listen}: {why}; retrying");
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(why) => panic!("cannot restart gatehouse on {listen}: {why}\n{}", self.log()),
            }
        };
        self.child = child;
        self.base = base;
    }

    /// SIGTERM: a graceful shutdown. Returns once the process exited (or after `timeout`,
    /// with `None`).
    pub fn terminate(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM failed");
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(exit)) = self.child.try_wait() {
                return Some(exit);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// The server process's id (to read its `/proc/PID/status`).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The server's log so far (stderr), for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.data_dir.join("../server.log")).unwrap_or_default()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Writes the server's config file: `toml`, then the stores' sections (tables, after
/// any top-level key of `toml`). Unless `toml` says otherwise, `default` has no upstream.
fn write_config(path: &Path, stores: &Stores, toml: &str) {
    let mut toml = toml.to_owned();
    if !toml.contains("[registries.default]") {
        toml.push_str("\n[registries.default]\nupstreams = []\n");
    }
    // The stores' sections merged into the test's (which may add to `[blobs]`); a
    // test's deliberately broken file is kept as it is, with the stores' appended.
    let merged = match (toml.parse::<toml::Table>(), stores.config().parse::<toml::Table>()) {
        (Ok(mut config), Ok(stores)) => {
            merge(&mut config, stores);
            toml::to_string(&config).expect("serialize the config")
        }
        _ => format!("{toml}\n{}", stores.config()),
    };
    std::fs::write(path, merged).expect("write config");
}

/// Adds `extra`'s keys to `into`, table by table; `into`'s own values stay.
fn merge(into: &mut toml::Table, extra: toml::Table) {
    for (key, value) in extra {
        match (into.get_mut(&key), value) {
            (Some(toml::Value::Table(mine)), toml::Value::Table(theirs)) => merge(mine, theirs),
            (Some(_), _) => {}
            (None, value) => {
                into.insert(key, value);
            }
        }
    }
}

fn spawn(data_dir: &Path, config_file: Option<&Path>, stores: &Stores, listen: &str) -> (Child, String) {
    try_spawn(data_dir, config_file, stores, listen).unwrap_or_else(|why| panic!("{why}"))
}

/// Starts `gatehouse serve` and waits for its "listening" line; on failure the process is
/// reaped and the error says what it printed.
fn try_spawn(
    data_dir: &Path,
    config_file: Option<&Path>,
    stores: &Stores,
    listen: &str,
) -> Result<(Child, String), String> {
    std::fs::create_dir_all(data_dir).expect("data dir");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(data_dir.join("../server.log"))
        .expect("log file");
    let mut cmd = Command::new(BIN);
    cmd.arg("serve")
        .arg("--listen")
        .arg(listen)
        .env("GATEHOUSE_DATA_DIR", data_dir)
        .env("GATEHOUSE_ADMIN_PASSWORD", ADMIN_PASSWORD)
        .env_remove("GATEHOUSE_CONFIG")
        .env_remove("GATEHOUSE_PUBLIC_URL")
        .envs(stores.env())
        .stdout(Stdio::piped())
        .stderr(log);
    if let Some(file) = config_file {
        cmd.env("GATEHOUSE_CONFIG", file);
    }
    let mut child = cmd.spawn().expect("spawn gatehouse");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let first = lines.next().and_then(Result::ok).unwrap_or_default();
    let Some(base) = first
        .strip_prefix("gatehouse listening on ")
        .and_then(|rest| rest.split_whitespace().next())
        .map(str::to_owned)
    else {
        let _ = child.kill();
        let _ = child.wait();
        return Err(format!("unexpected first line from gatehouse: {first:?}"));
    };
    // Keep draining stdout so the server never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    Ok((child, base))
}

/// A CLI command on an embedded data dir.
pub fn run_cli(data_dir: &Path, args: &[&str], stdin: &str) -> Output {
    run_cli_with(data_dir, None, &Stores::new(Stack::Embedded), args, stdin, &[])
}

fn run_cli_with(
    data_dir: &Path,
    config: Option<&Path>,
    stores: &Stores,
    args: &[&str],
    stdin: &str,
    env: &[(&str, String)],
) -> Output {
    let mut command = Command::new(BIN);
    command
        .args(args)
        .env("GATEHOUSE_DATA_DIR", data_dir)
        .env_remove("GATEHOUSE_CONFIG")
        .envs(stores.env())
        .envs(env.iter().map(|(k, v)| (k, v)));
    if let Some(config) = config {
        command.env("GATEHOUSE_CONFIG", config);
    }
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn gatehouse cli");
    if let Some(mut input) = child.stdin.take() {
        let _ = input.write_all(stdin.as_bytes());
    }
    child.wait_with_output().expect("cli output")
}

pub fn http() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(60))
        // Tests only talk to 127.0.0.1; a proxy variable in the environment must not interfere.
        .no_proxy()
        .build()
        .expect("http client")
}

/// A JSON request with a bearer token.
pub fn authed(builder: reqwest::blocking::RequestBuilder, token: &str) -> reqwest::blocking::RequestBuilder {
    builder.bearer_auth(token)
}

/// `{"error": "..."}` of a response, asserting its status.
pub fn expect_error(response: reqwest::blocking::Response, status: u16) -> String {
    let actual = response.status().as_u16();
    let text = response.text().unwrap_or_default();
    assert_eq!(actual, status, "unexpected status, body: {text}");
    let body: Value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("error body is not JSON: {text}"));
    body["error"]
        .as_str()
        .unwrap_or_else(|| panic!("no error field: {text}"))
        .to_owned()
}

/// A gzipped tar with the given `(path, contents)` entries, as `npm pack` makes them.
pub fn tarball(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(
        Vec::new(),
        flate2::Compression::default(),
    ));
    for (path, data) in entries {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder.append_data(&mut header, path, *data).expect("append");
    }
    builder.into_inner().expect("tar").finish().expect("gzip")
}

/// The tarball of a minimal package.
pub fn package_tarball(name: &str, version: &str) -> Vec<u8> {
    let manifest = json!({ "name": name, "version": version, "main": "index.js" });
    tarball(&[
        ("package/package.json", manifest.to_string().as_bytes()),
        (
            "package/index.js",
            format!("module.exports = '{name}@{version}';\n").as_bytes(),
        ),
    ])
}

/// The tarball of a package with `size` bytes of incompressible data, so that its body
/// crosses the network in many pieces.
pub fn large_package_tarball(name: &str, version: &str, size: usize) -> Vec<u8> {
    let mut data = Vec::with_capacity(size + 64);
    let mut block = Sha512::digest(format!("{name}@{version}").as_bytes());
    while data.len() < size {
        data.extend_from_slice(&block);
        block = Sha512::digest(block);
    }
    data.truncate(size);
    let manifest = json!({ "name": name, "version": version, "main": "index.js" });
    tarball(&[
        ("package/package.json", manifest.to_string().as_bytes()),
        ("package/index.js", b"module.exports = 1;\n"),
        ("package/data.bin", &data),
    ])
}

pub fn sri_sha512(bytes: &[u8]) -> String {
    format!(
        "sha512-{}",
        base64::engine::general_purpose::STANDARD.encode(Sha512::digest(bytes))
    )
}

pub fn sha1_hex(bytes: &[u8]) -> String {
    hex::encode(Sha1::digest(bytes))
}

/// The body `npm publish` sends for `name@version` with `tarball`, tagged `tag`.
pub fn publish_body_with(name: &str, version: &str, tag: &str, tarball: &[u8]) -> Value {
    json!({
        "_id": name,
        "name": name,
        "description": format!("the {name} package"),
        "dist-tags": { tag: version },
        "versions": { version: {
            "name": name,
            "version": version,
            "main": "index.js",
            "_id": format!("{name}@{version}"),
            "dist": {
                "integrity": sri_sha512(tarball),
                "shasum": sha1_hex(tarball),
                "tarball": format!("http://ignored/{name}/-/{name}-{version}.tgz")
            }
        }},
        "access": null,
        "_attachments": { format!("{name}-{version}.tgz"): {
            "content_type": "application/octet-stream",
            "data": base64::engine::general_purpose::STANDARD.encode(tarball),
            "length": tarball.len()
        }}
    })
}

pub fn publish_body(name: &str, version: &str) -> Value {
    publish_body_with(name, version, "latest", &package_tarball(name, version))
}

/// `PUT /r/{registry}/{escaped name}`.
/// `GET {registry}/{path}` with `token`.
pub fn get_from(server: &TestServer, registry: &str, path: &str, token: &str) -> reqwest::blocking::Response {
    http()
        .get(format!("{}{path}", server.registry_url(registry)))
        .bearer_auth(token)
        .send()
        .expect("get")
}

pub fn publish(server: &TestServer, registry: &str, token: &str, body: &Value) -> reqwest::blocking::Response {
    let name = body["name"].as_str().expect("name").replace('/', "%2f");
    http()
        .put(format!("{}{name}", server.registry_url(registry)))
        .bearer_auth(token)
        .json(body)
        .send()
        .expect("publish request")
}

pub fn publish_ok(server: &TestServer, registry: &str, token: &str, name: &str, version: &str) {
    let response = publish(server, registry, token, &publish_body(name, version));
    let status = response.status();
    assert_eq!(
        status,
        201,
        "publish {name}@{version}: {}",
        response.text().unwrap_or_default()
    );
}

/// The full packument, or `None` on 404.
pub fn packument(server: &TestServer, registry: &str, token: &str, name: &str) -> Option<Value> {
    let response = http()
        .get(format!("{}{}", server.registry_url(registry), name.replace('/', "%2f")))
        .bearer_auth(token)
        .send()
        .expect("packument request");
    match response.status().as_u16() {
        200 => Some(response.json().expect("packument json")),
        404 => None,
        other => panic!("packument {name}: unexpected status {other}"),
    }
}

/// Runs `f` on the server's stores, opened as an admin command opens them (the
/// store, not its files, answers).
pub fn with_storage<T>(server: &TestServer, f: impl AsyncFnOnce(&gatehouse_store::storage::Storage) -> T) -> T {
    use gatehouse_store::storage::{self, JournalTask};
    stack::runtime().block_on(async {
        let (database, blobs) = server.stores.settings(&server.data_dir);
        let storage = storage::open(
            database,
            blobs,
            gatehouse_store::Durability::Full,
            JournalTask::LeaveToServer,
        )
        .await
        .expect("open the server's stores");
        f(&storage).await
    })
}

/// Blobs the server holds, stored or still in the blob journal (small tarballs are
/// committed there and written moments later). The count must not move when a
/// request is refused.
pub fn blob_count(server: &TestServer) -> usize {
    with_storage(server, async |storage| {
        storage.blobs.count().await.expect("count blobs")
    })
}

/// Blobs being written to storage right now (a tarball streaming in).
pub fn staged_blob_count(server: &TestServer) -> usize {
    with_storage(server, async |storage| {
        storage.blobs.store().staged().await.expect("count staged blobs")
    })
}

/// Waits until `f` is true or the deadline passes.
pub fn eventually(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// Sends a GET with the path exactly as given (HTTP clients normalise `..` away)
/// and returns the status code.
pub fn raw_get_status(server: &TestServer, path: &str, token: &str) -> u16 {
    let addr = server.base.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    )
    .expect("write");
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {response:?}"))
}

/// Reads one HTTP/1.1 response (status and body) without waiting for the connection to
/// close: a server that refuses an upload may reset the connection right after answering.
pub fn read_response(stream: &mut impl Read) -> Option<(u16, String)> {
    let mut data = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    // Bounded: 30 s read timeout per read, and at most 64 MiB of response.
    while data.len() < 64 * 1024 * 1024 {
        if let Some(done) = complete_response(&data) {
            return Some(done);
        }
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => data.extend_from_slice(&buf[..n]),
        }
    }
    complete_response(&data)
}

fn complete_response(data: &[u8]) -> Option<(u16, String)> {
    let text = String::from_utf8_lossy(data);
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    let header = |name: &str| {
        head.lines().find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.eq_ignore_ascii_case(name).then(|| value.trim().to_owned())
        })
    };
    if let Some(len) = header("content-length").and_then(|v| v.parse::<usize>().ok()) {
        return (body.len() >= len).then(|| (status, body[..len].to_owned()));
    }
    if header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        return dechunk(body).map(|body| (status, body));
    }
    Some((status, body.to_owned()))
}

/// The decoded body, once the last chunk has arrived.
fn dechunk(mut body: &str) -> Option<String> {
    let mut out = String::new();
    for _ in 0..100_000 {
        let (size, rest) = body.split_once("\r\n")?;
        let size = usize::from_str_radix(size.trim(), 16).ok()?;
        if size == 0 {
            return Some(out);
        }
        out.push_str(rest.get(..size)?);
        body = rest.get(size..)?.strip_prefix("\r\n")?;
    }
    None
}
