//! Real package managers (npm, pnpm, yarn classic, yarn berry, bun) for end-to-end tests.
//!
//! [`clients()`] installs pinned versions of all five from the machine's npm registry, once per
//! process and once across processes, into `<target>/client-cache` (a lock file guards the
//! install, a marker file records a finished one, and a finished install is reused by later runs).
//!
//! Every client command runs in a [`Sandbox`]: a fresh HOME, cache and TMPDIR, and an environment
//! scrubbed of `npm_config_*`, `YARN_*`, `PNPM_*`, `BUN_*`, proxy and token variables, so nothing
//! from the developer's machine (`~/.npmrc`, global caches, CI settings) leaks in. A [`Project`] is
//! one package directory inside its own sandbox, with helpers to point it at a registry, publish
//! it, install dependencies, read the installed files and read the lockfile back.
//!
//! Every command has a timeout and a failure panics with the command line, exit status, stdout and
//! stderr. Set `GATEHOUSE_E2E_KEEP=1` to keep sandboxes after the test; a test that panics keeps
//! its sandboxes and prints where they are.
//!
//! Layout: `install` (the one-time install and its cross-process lock), `run` (commands with a
//! timeout), `lockfile` (reading each client's lockfile), `public` (the npm registry for tests
//! that install real public packages, skipped offline); sandboxes, client commands and
//! [`Project`] live here.

pub mod install;
pub mod lockfile;
pub mod public;
pub mod run;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::thread;

use serde_json::{Value, json};

pub use install::{Clients, clients, clients_or_skip};
pub use lockfile::{LockedPackage, Lockfile};
pub use public::public_registry;
pub use run::{Running, output_text, run, run_answering, run_failing};

// ---------------------------------------------------------------------------------------------
// Client kinds, sandboxes and commands
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ClientKind {
    Npm,
    Pnpm,
    YarnClassic,
    YarnBerry,
    Bun,
}

impl ClientKind {
    pub const ALL: [ClientKind; 5] = [
        ClientKind::Npm,
        ClientKind::Pnpm,
        ClientKind::YarnClassic,
        ClientKind::YarnBerry,
        ClientKind::Bun,
    ];

    /// Short name for package and user names: `npm`, `pnpm`, `yarn-classic`, `yarn-berry`, `bun`.
    pub fn slug(self) -> &'static str {
        match self {
            ClientKind::Npm => "npm",
            ClientKind::Pnpm => "pnpm",
            ClientKind::YarnClassic => "yarn-classic",
            ClientKind::YarnBerry => "yarn-berry",
            ClientKind::Bun => "bun",
        }
    }

    /// The npm package that provides this client.
    pub fn package(self) -> &'static str {
        match self {
            ClientKind::Npm => "npm",
            ClientKind::Pnpm => "pnpm",
            ClientKind::YarnClassic => "yarn",
            ClientKind::YarnBerry => "@yarnpkg/cli-dist",
            ClientKind::Bun => "bun",
        }
    }

    /// The lockfile this client writes.
    pub fn lockfile_name(self) -> &'static str {
        match self {
            ClientKind::Npm => "package-lock.json",
            ClientKind::Pnpm => "pnpm-lock.yaml",
            ClientKind::YarnClassic | ClientKind::YarnBerry => "yarn.lock",
            ClientKind::Bun => "bun.lock",
        }
    }

    /// A command running this client in `cwd`, isolated in `sandbox` (see [`Sandbox`]).
    pub fn command(self, sandbox: &Sandbox, cwd: &Path) -> Command {
        self.command_with(clients(), sandbox, cwd)
    }

    fn command_with(self, clients: &Clients, sandbox: &Sandbox, cwd: &Path) -> Command {
        let mut cmd = match self {
            ClientKind::Bun => Command::new(clients.entry(self)),
            _ => {
                let mut cmd = Command::new("node");
                cmd.arg(clients.entry(self));
                cmd
            }
        };
        cmd.current_dir(cwd);
        remove_leaky_env(&mut cmd, true);
        let home = &sandbox.home;
        let path = std::env::join_paths(
            std::iter::once(clients.bin_dir())
                .chain(std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())),
        )
        .expect("PATH");
        cmd.env("PATH", path)
            .env("HOME", home)
            .env("USERPROFILE", home)
            .env("XDG_CONFIG_HOME", home.join(".config"))
            .env("XDG_DATA_HOME", home.join(".local/share"))
            .env("XDG_STATE_HOME", home.join(".local/state"))
            .env("XDG_CACHE_HOME", sandbox.cache.join("xdg"))
            .env("TMPDIR", &sandbox.tmp)
            .env("TMP", &sandbox.tmp)
            .env("TEMP", &sandbox.tmp)
            .env("DO_NOT_TRACK", "1")
            .env("NO_UPDATE_NOTIFIER", "1");
        if matches!(self, ClientKind::Npm | ClientKind::Pnpm | ClientKind::YarnClassic) {
            // These also read the machine-wide npmrc (`<node prefix>/etc/npmrc`): use an empty one.
            cmd.env("npm_config_globalconfig", sandbox.global_npmrc());
        }
        match self {
            // pnpm 10 publishes by running `npm publish`: the same cache and settings apply to it.
            ClientKind::Npm | ClientKind::Pnpm => {
                cmd.env("npm_config_cache", sandbox.cache.join("npm"))
                    // Without this npm asks the configured registry for `GET /npm` (update check).
                    .env("npm_config_update_notifier", "false")
                    .env("npm_config_audit", "false")
                    .env("npm_config_fund", "false");
            }
            ClientKind::YarnClassic => {
                cmd.env("YARN_CACHE_FOLDER", sandbox.cache.join("yarn-classic"))
                    .env("YARN_DISABLE_SELF_UPDATE_CHECK", "true")
                    // yarn 1 reads `$PREFIX/etc/npmrc` (default: node's prefix), not npm's globalconfig.
                    // (Run as root it also reads /usr/local/share/.npmrc and .yarnrc; no way around that.)
                    .env("PREFIX", sandbox.path().join("yarn-prefix"));
            }
            ClientKind::YarnBerry => {
                cmd.env("YARN_CACHE_FOLDER", sandbox.cache.join("yarn-berry"))
                    .env("YARN_ENABLE_GLOBAL_CACHE", "false")
                    .env("YARN_GLOBAL_FOLDER", sandbox.cache.join("yarn-berry-global"))
                    .env("YARN_ENABLE_TELEMETRY", "false");
            }
            ClientKind::Bun => {
                cmd.env("BUN_INSTALL_CACHE_DIR", sandbox.cache.join("bun"));
            }
        }
        cmd
    }
}

/// Prefixes (lower-case) of package-manager settings that must not leak in from the caller's
/// environment (e.g. `npm_config_*` when cargo runs under `npm run`, `YARN_*`, `PNPM_HOME`).
const CONFIG_ENV_PREFIXES: &[&str] = &["npm_", "yarn_", "pnpm_", "bun_", "corepack_"];
/// Further variables (lower-case) a client never sees: the sandbox sets its own HOME/XDG/temp
/// dirs, and clients talk only to 127.0.0.1, so no proxy.
const CLIENT_ONLY_ENV: &[&str] = &[
    "node_options",
    "node_path",
    "node_auth_token",
    "init_cwd",
    "http_proxy",
    "https_proxy",
    "all_proxy",
    "no_proxy",
    "home",
    "userprofile",
    "tmpdir",
    "tmp",
    "temp",
];

/// Removes leaky variables from `cmd`'s environment. The one-time client install
/// (`for_client == false`) keeps proxies, NODE_OPTIONS and the rest: it talks to the real registry.
fn remove_leaky_env(cmd: &mut Command, for_client: bool) {
    for (key, _) in std::env::vars_os() {
        let lower = key.to_string_lossy().to_ascii_lowercase();
        let config = CONFIG_ENV_PREFIXES.iter().any(|prefix| lower.starts_with(prefix));
        let client_only = lower.starts_with("xdg_") || CLIENT_ONLY_ENV.contains(&lower.as_str());
        if config || (for_client && client_only) {
            cmd.env_remove(&key);
        }
    }
}

/// A temp dir with a fresh HOME, cache dir and TMPDIR for client commands.
pub struct Sandbox {
    dir: tempfile::TempDir,
    pub home: PathBuf,
    pub cache: PathBuf,
    pub tmp: PathBuf,
}

impl Default for Sandbox {
    fn default() -> Self {
        Sandbox::new()
    }
}

impl Sandbox {
    pub fn new() -> Sandbox {
        Sandbox::with_clients(clients())
    }

    fn with_clients(clients: &Clients) -> Sandbox {
        let dir = tempfile::Builder::new()
            .prefix("gatehouse-e2e-")
            .tempdir()
            .expect("sandbox temp dir");
        let home = dir.path().join("home");
        let cache = dir.path().join("cache");
        let tmp = dir.path().join("tmp");
        for path in [&home, &cache, &tmp] {
            fs::create_dir_all(path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
        }
        // pnpm's user config ($XDG_CONFIG_HOME/pnpm/rc) is read by pnpm only, so settings here don't
        // reach the npm it spawns for `pnpm publish` (npm warns about keys it doesn't know).
        let pnpm_rc = format!(
            "store-dir={}\ncache-dir={}\nnpm-path={}\nupdate-notifier=false\n",
            cache.join("pnpm-store").display(),
            cache.join("pnpm").display(),
            // pnpm 10 publishes via `npm publish`; without this it picks the npm next to node.
            clients.entry(ClientKind::Npm).display(),
        );
        write_file(&home.join(".config/pnpm/rc"), &pnpm_rc);
        let sandbox = Sandbox { dir, home, cache, tmp };
        write_file(&sandbox.global_npmrc(), "");
        sandbox
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `file` in the sandbox's HOME (user-level config such as `.npmrc` or `.yarnrc.yml`, where
    /// logins store tokens), or "" when it doesn't exist.
    pub fn read_home(&self, file: &str) -> String {
        fs::read_to_string(self.home.join(file)).unwrap_or_default()
    }

    /// Writes `file` in the sandbox's HOME.
    pub fn write_home(&self, file: &str, contents: &str) {
        write_file(&self.home.join(file), contents);
    }

    /// The (empty) file npm, pnpm and yarn 1 are told to use as the machine-wide npmrc.
    pub fn global_npmrc(&self) -> PathBuf {
        self.dir.path().join("global-npmrc")
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let keep = std::env::var_os("GATEHOUSE_E2E_KEEP").is_some_and(|v| !v.is_empty() && v != "0");
        if keep || thread::panicking() {
            self.dir.disable_cleanup(true);
            eprintln!("e2e: kept sandbox {}", self.dir.path().display());
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Projects: configure, publish, install, read back
// ---------------------------------------------------------------------------------------------

/// One package directory used with one client, in its own [`Sandbox`].
pub struct Project {
    pub kind: ClientKind,
    pub dir: PathBuf,
    pub sandbox: Sandbox,
    /// Variables set for every client command (see [`Project::with_env`]).
    env: Vec<(String, String)>,
}

impl Project {
    /// An empty project directory with a fresh HOME and cache.
    pub fn new(kind: ClientKind) -> Project {
        let sandbox = Sandbox::new();
        let dir = sandbox.path().join("project");
        fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        Project {
            kind,
            dir,
            sandbox,
            env: Vec::new(),
        }
    }

    /// Sets `key=value` for every client command of this project (e.g. `NPM_TOKEN`, which the
    /// sandbox otherwise keeps out).
    pub fn with_env(mut self, key: &str, value: &str) -> Project {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    /// The client command, in the project dir, with `args`.
    pub fn command(&self, args: &[&str]) -> Command {
        self.command_of(self.kind, args)
    }

    /// Another client's command in this project's dir and sandbox (same HOME, so the same user
    /// config: e.g. `pnpm login` here, then bun reading the token it stored).
    pub fn command_of(&self, kind: ClientKind, args: &[&str]) -> Command {
        let mut cmd = kind.command(&self.sandbox, &self.dir);
        cmd.args(args).envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd
    }

    /// Runs the client with `args`; panics (with all output) unless it succeeds in time.
    pub fn run(&self, args: &[&str]) -> Output {
        run(&mut self.command(args))
    }

    /// Runs the client with `args` for a refusal; panics unless it fails in time.
    pub fn run_failing(&self, args: &[&str]) -> Output {
        run_failing(&mut self.command(args))
    }

    /// Starts the client with `args` in the background (see [`Running`]).
    pub fn start(&self, args: &[&str]) -> Running {
        run::start(&mut self.command(args))
    }

    /// Runs the client with `args`, typing each answer after its prompt appears (in order), as a
    /// person at a terminal would; panics unless it succeeds in time.
    pub fn run_answering(&self, args: &[&str], answers: &[(&str, &str)]) -> Output {
        run_answering(&mut self.command(args), answers)
    }

    /// Points this project at `registry_url` (`http://127.0.0.1:PORT/r/NAME/`, with the trailing
    /// slash) with a bearer `token`, in the config files this client reads.
    pub fn configure(&self, registry_url: &str, token: &str) {
        self.configure_with(registry_url, Some(token));
    }

    /// Points this project at `registry_url` without credentials: the client must find them in
    /// the user config (where `npm login` / `yarn npm login` store them).
    pub fn configure_registry(&self, registry_url: &str) {
        self.configure_with(registry_url, None);
    }

    fn configure_with(&self, registry_url: &str, token: Option<&str>) {
        assert!(
            registry_url.ends_with('/'),
            "registry URL must end with '/': {registry_url}"
        );
        // Credentials are keyed by the registry URL without the scheme ("nerf dart"), path included.
        let nerf_dart = registry_url
            .strip_prefix("http:")
            .or_else(|| registry_url.strip_prefix("https:"))
            .unwrap_or_else(|| panic!("registry URL must be http(s): {registry_url}"));
        let auth = token.map_or(String::new(), |token| format!("{nerf_dart}:_authToken={token}\n"));
        match self.kind {
            ClientKind::Npm => self.write(
                ".npmrc",
                &format!(
                    // Machines may set omit-lockfile-registry-resolved=true (no `resolved` URLs); the project wins.
                    "registry={registry_url}\n{auth}omit-lockfile-registry-resolved=false\nupdate-notifier=false\naudit=false\nfund=false\n"
                ),
            ),
            ClientKind::Pnpm => self.write(".npmrc", &format!("registry={registry_url}\n{auth}update-notifier=false\n")),
            ClientKind::YarnClassic => {
                // Without always-auth yarn 1 sends the token only for scoped packages.
                self.write(".npmrc", &format!("registry={registry_url}\n{auth}always-auth=true\n"));
                self.write(".yarnrc", "disable-self-update-check true\n");
            }
            ClientKind::YarnBerry => {
                let mut settings = vec![format!("npmRegistryServer: {}", yaml_str(registry_url))];
                if let Some(token) = token {
                    settings.push(format!("npmAuthToken: {}", yaml_str(token)));
                }
                // Unscoped packuments and tarballs go out without auth unless this is set.
                settings.push("npmAlwaysAuth: true".to_owned());
                self.write_yarnrc(&settings);
            }
            ClientKind::Bun => {
                let registry = match token {
                    Some(token) => format!("{{ url = {}, token = {} }}", toml_str(registry_url), toml_str(token)),
                    None => toml_str(registry_url),
                };
                self.write(
                    "bunfig.toml",
                    &format!(
                        "telemetry = false\n\n[install]\nregistry = {registry}\nsaveTextLockfile = true\n\n[install.cache]\ndir = {}\n",
                        toml_str(&self.sandbox.cache.join("bun").to_string_lossy()),
                    ),
                );
            }
        }
    }

    /// Writes `.yarnrc.yml` (yarn berry) with the registry `settings` given (each one line or a
    /// YAML block) and the sandbox's own: plain HTTP allowed for 127.0.0.1, no release-age gate,
    /// caches in the sandbox, no telemetry, progress bars or immutable installs.
    pub fn write_yarnrc(&self, settings: &[String]) {
        let sandbox_settings = [
            // Plain-http registries are refused unless whitelisted.
            "unsafeHttpWhitelist:\n  - \"127.0.0.1\"".to_owned(),
            // Yarn 4 quarantines versions published moments ago (release-age gate).
            "npmMinimalAgeGate: 0".to_owned(),
            "nodeLinker: node-modules".to_owned(),
            "enableGlobalCache: false".to_owned(),
            format!(
                "cacheFolder: {}",
                yaml_str(&self.sandbox.cache.join("yarn-berry").to_string_lossy())
            ),
            format!(
                "globalFolder: {}",
                yaml_str(&self.sandbox.cache.join("yarn-berry-global").to_string_lossy())
            ),
            "enableTelemetry: false".to_owned(),
            // With CI set, yarn defaults to immutable installs and refuses to create yarn.lock.
            "enableImmutableInstalls: false".to_owned(),
            "enableProgressBars: false".to_owned(),
        ];
        let all: Vec<&str> = settings.iter().chain(&sandbox_settings).map(String::as_str).collect();
        self.write(".yarnrc.yml", &(all.join("\n") + "\n"));
        self.touch_berry_lockfile();
    }

    /// Writes `package.json` for `name@version` and `index.js` with `index_js`.
    pub fn write_package(&self, name: &str, version: &str, index_js: &str) {
        write_json(
            &self.dir.join("package.json"),
            &json!({
                "name": name,
                "version": version,
                "description": format!("{name}, published by {} in a Gatehouse end-to-end test", self.kind.slug()),
                "main": "index.js",
                "license": "MIT",
            }),
        );
        self.write("index.js", index_js);
        if self.kind == ClientKind::YarnBerry {
            self.touch_berry_lockfile();
        }
    }

    /// Publishes the package in this directory with the client's own publish command.
    pub fn publish(&self) -> Output {
        run(&mut self.publish_command())
    }

    /// Publishes expecting a refusal; returns the failed command's output.
    pub fn publish_refused(&self) -> Output {
        run_failing(&mut self.publish_command())
    }

    fn publish_command(&self) -> Command {
        match self.kind {
            ClientKind::Npm => self.command(&["publish"]),
            ClientKind::Pnpm => self.command(&["publish", "--no-git-checks"]),
            ClientKind::YarnClassic => {
                let manifest = read_json(&self.dir.join("package.json"));
                let version = manifest["version"].as_str().expect("package.json version").to_owned();
                // Without --new-version yarn 1 prompts for one; --no-git-tag-version keeps git out of it.
                self.command(&[
                    "publish",
                    "--non-interactive",
                    "--new-version",
                    &version,
                    "--no-git-tag-version",
                ])
            }
            ClientKind::YarnBerry => {
                // `yarn npm publish` needs the workspace in yarn.lock: "doesn't seem to be present in your lockfile".
                self.run(&["install"]);
                self.command(&["npm", "publish"])
            }
            ClientKind::Bun => self.command(&["publish"]),
        }
    }

    /// Writes a `package.json` depending on `deps` (`(name, range)`).
    pub fn write_manifest(&self, deps: &[(&str, &str)]) {
        let dependencies: serde_json::Map<String, Value> = deps
            .iter()
            .map(|(name, range)| ((*name).to_owned(), Value::from(*range)))
            .collect();
        write_json(
            &self.dir.join("package.json"),
            &json!({ "name": "gatehouse-e2e-consumer", "version": "0.0.0", "private": true, "dependencies": dependencies }),
        );
    }

    /// Writes a `package.json` depending on `deps` (`(name, range)`) and runs the client's install.
    pub fn install(&self, deps: &[(&str, &str)]) -> Output {
        run(&mut self.install_command(deps))
    }

    /// Like [`Project::install`], expecting a refusal; returns the failed command's output.
    pub fn install_refused(&self, deps: &[(&str, &str)]) -> Output {
        run_failing(&mut self.install_command(deps))
    }

    fn install_command(&self, deps: &[(&str, &str)]) -> Command {
        self.write_manifest(deps);
        match self.kind {
            ClientKind::Npm => self.command(&["install", "--omit-lockfile-registry-resolved=false"]),
            // pnpm turns frozen-lockfile on in CI; say explicitly that the lockfile may be written.
            ClientKind::Pnpm => self.command(&["install", "--no-frozen-lockfile"]),
            ClientKind::YarnClassic => self.command(&["install", "--non-interactive", "--no-progress"]),
            ClientKind::YarnBerry => {
                self.touch_berry_lockfile();
                self.command(&["install"])
            }
            ClientKind::Bun => self.command(&["install", "--no-progress"]),
        }
    }

    /// Installs exactly what the lockfile says, failing rather than changing it: the CI mode
    /// of each client (`npm ci`, `--frozen-lockfile`, `--immutable`).
    pub fn install_frozen(&self) -> Output {
        match self.kind {
            ClientKind::Npm => self.run(&["ci"]),
            ClientKind::Pnpm => self.run(&["install", "--frozen-lockfile"]),
            ClientKind::YarnClassic => {
                self.run(&["install", "--frozen-lockfile", "--non-interactive", "--no-progress"])
            }
            ClientKind::YarnBerry => self.run(&["install", "--immutable"]),
            ClientKind::Bun => self.run(&["install", "--frozen-lockfile", "--no-progress"]),
        }
    }

    /// Copies `files` (e.g. `package.json` and the lockfile) from another project's directory.
    pub fn copy_from(&self, other: &Project, files: &[&str]) {
        for file in files {
            let from = other.dir.join(file);
            let to = self.dir.join(file);
            fs::copy(&from, &to).unwrap_or_else(|e| panic!("copy {} to {}: {e}", from.display(), to.display()));
        }
    }

    /// The contents of `node_modules/<package>/<file>`.
    pub fn read_installed(&self, package: &str, file: &str) -> String {
        let path = self.dir.join("node_modules").join(package).join(file);
        fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "{:?}: cannot read {}: {e}\nnode_modules: {:?}",
                self.kind,
                path.display(),
                list_dir(&self.dir.join("node_modules"))
            )
        })
    }

    /// The parsed lockfile.
    pub fn lockfile(&self) -> Lockfile {
        let path = self.dir.join(self.kind.lockfile_name());
        let text = fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "{:?}: cannot read {}: {e}\nproject: {:?}",
                self.kind,
                path.display(),
                list_dir(&self.dir)
            )
        });
        let packages = lockfile::parse(self.kind, &text);
        Lockfile {
            kind: self.kind,
            path,
            text,
            packages,
        }
    }

    /// Asserts that the lockfile records `name@version` as coming from `registry_url`, in the
    /// way this client records it, and returns the entry:
    /// - npm, yarn classic, bun store the tarball URL: it must be the canonical
    ///   `{registry_url}{name}/-/{basename}-{version}.tgz`.
    /// - pnpm stores `tarball` only when the packument's `dist.tarball` is not that canonical URL
    ///   under the configured registry, so there must be none, and `node_modules/.modules.yaml`
    ///   must name `registry_url` as the registry used.
    /// - yarn berry stores `name@npm:version` for conventional URLs (and rebuilds the URL from
    ///   `npmRegistryServer`), or `::__archiveUrl=…` for others: it must be the former.
    pub fn assert_locked_to_registry(&self, registry_url: &str, name: &str, version: &str) -> LockedPackage {
        let lock = self.lockfile();
        let entry = lock.get(name).clone();
        let expected = tarball_url(registry_url, name, version);
        assert_eq!(
            entry.version, version,
            "{:?}: locked version of {name}\n{}",
            self.kind, lock.text
        );
        match self.kind {
            ClientKind::Npm | ClientKind::YarnClassic | ClientKind::Bun => {
                assert_eq!(
                    entry.resolved.as_deref(),
                    Some(expected.as_str()),
                    "{:?}: resolved URL of {name}\n{}",
                    self.kind,
                    lock.text
                );
            }
            ClientKind::Pnpm => {
                assert_eq!(
                    entry.resolved, None,
                    "pnpm recorded a tarball URL for {name}: the packument's dist.tarball is not {expected}\n{}",
                    lock.text
                );
                assert!(
                    entry.integrity.is_some(),
                    "pnpm recorded no integrity for {name}\n{}",
                    lock.text
                );
                let state = fs::read_to_string(self.dir.join("node_modules/.modules.yaml")).unwrap_or_default();
                let default_registry = serde_json::from_str::<Value>(&state)
                    .ok()
                    .and_then(|state| state["registries"]["default"].as_str().map(str::to_owned));
                let used = default_registry
                    .unwrap_or_else(|| lockfile::yaml_scalar_after(&state, "default:").unwrap_or_default());
                assert_eq!(
                    used, registry_url,
                    "pnpm's registry in node_modules/.modules.yaml\n{state}"
                );
            }
            ClientKind::YarnBerry => {
                assert_eq!(
                    entry.resolution,
                    format!("{name}@npm:{version}"),
                    "yarn berry did not treat the tarball URL as conventional (expected {expected})\n{}",
                    lock.text
                );
                assert!(
                    entry.checksum.is_some(),
                    "yarn berry recorded no checksum for {name}\n{}",
                    lock.text
                );
            }
        }
        entry
    }

    /// Writes `file` in the project directory.
    pub fn write(&self, file: &str, contents: &str) {
        write_file(&self.dir.join(file), contents);
    }

    /// Yarn berry takes the nearest ancestor with a yarn.lock (else package.json) as the project
    /// root; an empty yarn.lock here keeps it from wandering into a parent directory.
    fn touch_berry_lockfile(&self) {
        let path = self.dir.join("yarn.lock");
        if !path.exists() {
            write_file(&path, "");
        }
    }
}

/// The canonical tarball URL of `name@version` under `registry_url` (which ends with `/`):
/// `{registry}{name}/-/{name without scope}-{version}.tgz`.
pub fn tarball_url(registry_url: &str, name: &str, version: &str) -> String {
    let basename = name.rsplit('/').next().unwrap_or(name);
    format!("{registry_url}{name}/-/{basename}-{version}.tgz")
}

// ---------------------------------------------------------------------------------------------
// Small helpers
// ---------------------------------------------------------------------------------------------

fn yaml_str(value: &str) -> String {
    format!("\"{}\"", value.replace('\\', "\\\\").replace('"', "\\\""))
}

fn toml_str(value: &str) -> String {
    format!("\"{}\"", value.replace('\\', "\\\\").replace('"', "\\\""))
}

fn write_file(path: &Path, contents: &str) {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).unwrap_or_else(|e| panic!("create {}: {e}", parent.display()));
    }
    fs::write(path, contents).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

fn write_json(path: &Path, value: &Value) {
    let text = serde_json::to_string_pretty(value).expect("serialize JSON");
    write_file(path, &(text + "\n"));
}

fn read_json(path: &Path) -> Value {
    let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("parse {}: {e}", path.display()))
}

fn list_dir(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[cfg(test)]
mod tests {
    use super::tarball_url;

    #[test]
    fn canonical_tarball_urls_keep_the_registry_prefix() {
        let registry = "http://127.0.0.1:1/r/default/";
        assert_eq!(
            tarball_url(registry, "a", "1.0.0"),
            "http://127.0.0.1:1/r/default/a/-/a-1.0.0.tgz"
        );
        assert_eq!(
            tarball_url(registry, "@s/a", "1.0.0"),
            "http://127.0.0.1:1/r/default/@s/a/-/a-1.0.0.tgz"
        );
    }
}
