//! The one-time install of the clients into `<target>/client-cache`, guarded across processes by
//! a lock file and marked complete by a marker file written last.

use std::fs;
use std::io::{ErrorKind, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::json;

use super::run::{run, run_with_timeout, try_run};
use super::{ClientKind, Sandbox, read_json, remove_leaky_env, write_file, write_json};

/// Exact versions installed into the client cache (all exist on the npm registry).
pub const CLIENT_PACKAGES: [&str; 5] = [
    "npm@11.21.2",
    "pnpm@10.34.9",
    "yarn@1.22.22",
    "@yarnpkg/cli-dist@4.18.1",
    "bun@1.4.5",
];

/// Timeout for the one-time `npm install` of the clients.
const INSTALL_TIMEOUT: Duration = Duration::from_secs(600);
/// How long a process waits for another one that is installing the clients.
const LOCK_WAIT: Duration = Duration::from_secs(900);
/// A lock file older than this whose owner can't be checked is considered abandoned.
const LOCK_STALE_AFTER: Duration = Duration::from_secs(1200);
/// Written into the cache dir, last, by a finished install; holds [`CLIENT_PACKAGES`].
const COMPLETE_MARKER: &str = ".gatehouse-clients-complete";

/// The five clients, installed under `dir/node_modules`.
#[derive(Debug)]
pub struct Clients {
    pub dir: PathBuf,
}

/// Installs the clients (once) and returns them. If the install fails, every caller panics with
/// the first failure instead of retrying it.
pub fn clients() -> &'static Clients {
    static CLIENTS: OnceLock<Result<Clients, String>> = OnceLock::new();
    let installed = CLIENTS.get_or_init(|| {
        std::panic::catch_unwind(|| install_clients(&client_cache_dir())).map_err(|panic| {
            panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_else(|| "unknown panic".to_owned())
        })
    });
    match installed {
        Ok(clients) => clients,
        Err(message) => panic!("installing the e2e clients failed:\n{message}"),
    }
}

/// The clients, or `None` after printing why `test` is skipped: when they are not installed
/// yet and the npm registry they come from can't be reached (or `GATEHOUSE_OFFLINE=1`), so the
/// suite stays green offline.
pub fn clients_or_skip(test: &str) -> Option<&'static Clients> {
    let cached = Clients {
        dir: client_cache_dir(),
    }
    .is_complete();
    if !cached && super::public::public_registry(test).is_none() {
        return None;
    }
    Some(clients())
}

/// `<CARGO_TARGET_DIR or <workspace>/target>/client-cache`.
pub fn client_cache_dir() -> PathBuf {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let target = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => workspace.join(dir), // join keeps an absolute dir as is
        _ => workspace.join("target"),
    };
    target.join("client-cache")
}

impl Clients {
    pub fn node_modules(&self) -> PathBuf {
        self.dir.join("node_modules")
    }

    /// The script (or, for bun, the native binary) that runs `kind`.
    pub fn entry(&self, kind: ClientKind) -> PathBuf {
        let modules = self.node_modules();
        match kind {
            ClientKind::Npm => modules.join("npm/bin/npm-cli.js"),
            ClientKind::Pnpm => modules.join("pnpm/bin/pnpm.cjs"),
            // yarn@1 and @yarnpkg/cli-dist both claim node_modules/.bin/yarn: call each by its own script.
            ClientKind::YarnClassic => modules.join("yarn/bin/yarn.js"),
            ClientKind::YarnBerry => modules.join("@yarnpkg/cli-dist/bin/yarn.js"),
            // After bun's postinstall this is the real binary (before it, a placeholder).
            ClientKind::Bun => modules.join("bun/bin/bun.exe"),
        }
    }

    /// The installed version of `kind`, from its package.json.
    pub fn version(&self, kind: ClientKind) -> String {
        let path = self.node_modules().join(kind.package()).join("package.json");
        let manifest = read_json(&path);
        manifest["version"]
            .as_str()
            .unwrap_or_else(|| panic!("no version in {}", path.display()))
            .to_owned()
    }

    /// The `.bin` folder of the cache, put first on PATH (npm, pnpm, bun; `yarn` there is ambiguous).
    pub fn bin_dir(&self) -> PathBuf {
        self.node_modules().join(".bin")
    }

    fn is_complete(&self) -> bool {
        let marker = fs::read_to_string(self.dir.join(COMPLETE_MARKER)).unwrap_or_default();
        marker == CLIENT_PACKAGES.join("\n") && ClientKind::ALL.iter().all(|kind| self.entry(*kind).is_file())
    }
}

fn install_clients(dir: &Path) -> Clients {
    let clients = Clients { dir: dir.to_path_buf() };
    if clients.is_complete() {
        return clients;
    }
    let parent = dir.parent().expect("client cache dir has a parent");
    fs::create_dir_all(parent).unwrap_or_else(|e| panic!("create {}: {e}", parent.display()));
    let _lock = InstallLock::acquire(&dir.with_extension("lock"));
    if clients.is_complete() {
        return clients; // another process finished while we waited
    }
    let started = Instant::now();
    if dir.exists() {
        fs::remove_dir_all(dir).unwrap_or_else(|e| panic!("remove stale {}: {e}", dir.display()));
    }
    let home = dir.join(".install-home");
    fs::create_dir_all(&home).unwrap_or_else(|e| panic!("create {}: {e}", home.display()));
    let userconfig = home.join(".npmrc");
    write_file(&userconfig, "");
    // npm ≥ 11.19 gates dependency install scripts behind `allowScripts`; bun's postinstall puts the
    // native binary in place of bin/bun.exe, so allow it explicitly (today it only warns).
    write_json(
        &dir.join("package.json"),
        &json!({ "name": "gatehouse-e2e-clients", "private": true, "allowScripts": { "bun": true } }),
    );

    // Keep the machine's registry (the only one reachable) and CA file; isolate everything else.
    let registry = machine_npm_config("registry").unwrap_or_else(|| "https://registry.npmjs.org/".to_owned());
    let mut cmd = Command::new("npm");
    cmd.arg("install")
        .arg("--prefix")
        .arg(dir)
        .args([
            "--no-audit",
            "--no-fund",
            "--update-notifier=false",
            "--ignore-scripts=false",
        ])
        .arg(format!("--registry={registry}"))
        .arg("--userconfig")
        .arg(&userconfig)
        .arg("--cache")
        .arg(home.join("npm-cache"))
        .args(CLIENT_PACKAGES)
        .current_dir(dir);
    if let Some(cafile) = machine_npm_config("cafile") {
        cmd.arg(format!("--cafile={cafile}"));
    }
    remove_leaky_env(&mut cmd, false);
    cmd.env("HOME", &home);
    run_with_timeout(&mut cmd, INSTALL_TIMEOUT);

    // bun's binary comes from the optional dependency @oven/bun-<platform>; its postinstall links it
    // into bin/bun.exe. If scripts were skipped, run the postinstall ourselves.
    let bun = clients.entry(ClientKind::Bun);
    if !runs(Command::new(&bun).arg("--version")) {
        let mut postinstall = Command::new("node");
        postinstall
            .arg("install.js")
            .current_dir(clients.node_modules().join("bun"));
        run_with_timeout(&mut postinstall, INSTALL_TIMEOUT);
    }
    // Every client must start and report the pinned version.
    for kind in ClientKind::ALL {
        let sandbox = Sandbox::with_clients(&clients);
        let mut cmd = kind.command_with(&clients, &sandbox, sandbox.path());
        cmd.arg("--version");
        let out = run(&mut cmd);
        let reported = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        let expected = clients.version(kind);
        assert_eq!(
            reported, expected,
            "{kind:?} reports version {reported:?}, package.json says {expected:?}"
        );
    }
    let _ = fs::remove_dir_all(home.join("npm-cache")); // ~70 MB of tarballs nobody reads again
    write_file(&dir.join(COMPLETE_MARKER), &CLIENT_PACKAGES.join("\n"));
    eprintln!(
        "e2e: installed {} into {} in {:.1?}",
        CLIENT_PACKAGES.join(" "),
        dir.display(),
        started.elapsed()
    );
    clients
}

/// `npm config get KEY` with the machine's own configuration; `None` when unset.
pub(super) fn machine_npm_config(key: &str) -> Option<String> {
    let mut cmd = Command::new("npm");
    cmd.args(["config", "get", key, "--logs-max=0"])
        .current_dir(std::env::temp_dir());
    let out = try_run(&mut cmd, Duration::from_secs(60));
    let value = String::from_utf8_lossy(&out.output.stdout).trim().to_owned();
    let ok = out.output.status.success() && !out.timed_out;
    (ok && !value.is_empty() && value != "null" && value != "undefined").then_some(value)
}

fn runs(cmd: &mut Command) -> bool {
    cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
    cmd.status().map(|status| status.success()).unwrap_or(false)
}

/// A lock file created with `create_new`, holding the owner's pid; removed on drop.
struct InstallLock {
    path: PathBuf,
}

impl InstallLock {
    fn acquire(path: &Path) -> InstallLock {
        let deadline = Instant::now() + LOCK_WAIT;
        let mut announced = false;
        loop {
            match fs::OpenOptions::new().write(true).create_new(true).open(path) {
                Ok(mut file) => {
                    let _ = write!(file, "{}", std::process::id());
                    return InstallLock {
                        path: path.to_path_buf(),
                    };
                }
                Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                    if lock_is_stale(path) {
                        let _ = fs::remove_file(path);
                        continue;
                    }
                    if !announced {
                        eprintln!(
                            "e2e: waiting for another process installing clients ({})",
                            path.display()
                        );
                        announced = true;
                    }
                    assert!(
                        Instant::now() < deadline,
                        "gave up waiting for {} after {LOCK_WAIT:?}",
                        path.display()
                    );
                    thread::sleep(Duration::from_millis(250));
                }
                Err(e) => panic!("cannot create lock file {}: {e}", path.display()),
            }
        }
    }
}

impl Drop for InstallLock {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

fn lock_is_stale(path: &Path) -> bool {
    let age = fs::metadata(path)
        .and_then(|meta| meta.modified())
        .ok()
        .and_then(|modified| modified.elapsed().ok())
        .unwrap_or_default();
    let owner = fs::read_to_string(path)
        .ok()
        .and_then(|text| text.trim().parse::<u32>().ok());
    match owner {
        // Our own pid: a dead process's leftover (this process installs at most once, in a OnceLock).
        Some(pid) if pid == std::process::id() => true,
        // Linux: the owner is gone, or a zombie (field 3 of /proc/PID/stat is the state).
        Some(pid) if Path::new("/proc/self").exists() => fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|stat| {
                matches!(
                    stat.rsplit(')').next().and_then(|rest| rest.split_whitespace().next()),
                    Some("Z" | "X")
                )
            })
            .unwrap_or(true),
        _ => age > LOCK_STALE_AFTER,
    }
}
