//! A bounded soak: installs and fetches through an upstream that, at random (seeded),
//! hangs, resets, truncates, serves wrong bytes, answers 5xx or is slow. What is
//! cached must always be served, no wrong byte ever leaves the server, its memory
//! stays bounded, and its log says what the upstream did.
//!
//! It runs for `GATEHOUSE_SOAK_SECS` (default 60) seconds; `GATEHOUSE_SOAK_SEED`
//! draws the same sequence of faults again (which request meets which depends on
//! timing). Everything stays on 127.0.0.1, and every loop stops by itself.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use sha2::{Digest, Sha512};

use crate::support::clients::{ClientKind, Project, clients_or_skip};
use crate::support::fake_upstream::{FakeUpstream, Fault, Mode};
use crate::support::*;

/// Packages fetched (so cached) before the chaos starts, and packages first asked
/// for during it.
const CACHED: usize = 12;
const FRESH: usize = 36;
/// Fetching threads, and the most requests each makes per second of the soak.
const WORKERS: usize = 6;
const MAX_REQUESTS_PER_WORKER_SECOND: usize = 500;
const RSS_LIMIT_KIB: u64 = 300 * 1024;

fn soak_duration() -> Duration {
    let secs = std::env::var("GATEHOUSE_SOAK_SECS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(60);
    Duration::from_secs(secs.max(5))
}

fn seed() -> u64 {
    std::env::var("GATEHOUSE_SOAK_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
        })
}

/// splitmix64: each worker's own sequence of choices.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// A package of the soak: its name and the true bytes of its two versions.
struct Package {
    name: String,
    versions: [(String, Vec<u8>); 2],
}

fn vm_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
}

/// What the fetching threads saw.
#[derive(Default)]
struct Tally {
    requests: usize,
    /// Fetches of fresh packages that did not complete (refused or failed): allowed.
    fresh_failures: usize,
    fresh_served: usize,
    /// Anything that must never happen, with what happened.
    violations: Vec<String>,
}

#[test]
fn cached_packages_survive_a_chaotic_upstream() {
    let seed = seed();
    let duration = soak_duration();
    eprintln!("soak: {duration:?}, GATEHOUSE_SOAK_SEED={seed}");
    let fake = FakeUpstream::start();
    let packages: Vec<Package> = (0..CACHED + FRESH)
        .map(|i| {
            let name = if i % 3 == 0 {
                format!("@soak/pkg-{i}")
            } else {
                format!("soak-pkg-{i}")
            };
            let versions = ["1.0.0", "1.1.0"].map(|v| {
                let bytes = if i % 4 == 0 {
                    // A few tarballs large enough to stream in many pieces.
                    large_package_tarball(&name, v, 256 * 1024)
                } else {
                    package_tarball(&name, v)
                };
                fake.publish_bytes(&name, v, &bytes, &bytes);
                (v.to_owned(), bytes)
            });
            Package { name, versions }
        })
        .collect();
    let server = TestServer::start_with_config(&format!(
        "[upstream]\nnpmjs_url = \"{}\"\nmax_age_secs = 1\nnot_found_ttl_secs = 1\n\
         connect_timeout_ms = 500\nfirst_byte_timeout_ms = 1000\ntransfer_timeout_ms = 3000\n\
         breaker_failures = 5\nbreaker_open_secs = 1\n\
         [registries.default]\nupstreams = [\"npmjs\"]\n",
        fake.url
    ));
    let token = server.admin_token();
    let registry = server.registry_url("default");

    // Cache the first packages while the upstream behaves: packuments and tarballs.
    let client = http();
    for package in &packages[..CACHED] {
        let doc = client
            .get(format!("{registry}{}", package.name.replace('/', "%2f")))
            .bearer_auth(&token)
            .send()
            .expect("packument");
        assert_eq!(doc.status(), 200, "caching {}", package.name);
        for (version, bytes) in &package.versions {
            let served = client
                .get(tarball_url(&registry, &package.name, version))
                .bearer_auth(&token)
                .send()
                .expect("tarball");
            assert_eq!(served.status(), 200);
            assert_eq!(served.bytes().expect("bytes").as_ref(), bytes.as_slice());
        }
    }
    // An npm project locked to some of them, made before the chaos.
    let npm = clients_or_skip("soak::npm").map(|_| {
        let project = Project::new(ClientKind::Npm);
        project.configure(&registry, &token);
        let deps: Vec<(&str, &str)> = packages[..4].iter().map(|p| (p.name.as_str(), "^1.0.0")).collect();
        project.install(&deps);
        project
    });

    fake.set_mode(Mode::Chaos(seed));
    let started = Instant::now();
    let deadline = started + duration;
    let max_requests = MAX_REQUESTS_PER_WORKER_SECOND * duration.as_secs() as usize;
    let packages = Arc::new(packages);
    let tally = Arc::new(Mutex::new(Tally::default()));
    let stop = Arc::new(AtomicBool::new(false));

    let pid = server.pid();
    let sampler = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut samples = Vec::new();
            while !stop.load(Ordering::SeqCst) && Instant::now() < deadline + Duration::from_secs(120) {
                if let Some(kib) = vm_rss_kib(pid) {
                    samples.push(kib);
                }
                std::thread::sleep(Duration::from_millis(500));
            }
            samples
        })
    };

    let workers: Vec<_> = (0..WORKERS)
        .map(|w| {
            let (packages, tally, registry, token) = (packages.clone(), tally.clone(), registry.clone(), token.clone());
            std::thread::spawn(move || {
                let mut random = Random(seed ^ (w as u64 + 1).wrapping_mul(0x2545_f491_4f6c_dd1d));
                let client = http();
                for _ in 0..max_requests {
                    if Instant::now() >= deadline {
                        break;
                    }
                    let index = random.below(packages.len());
                    let package = &packages[index];
                    let cached = index < CACHED;
                    let outcome = if random.below(3) == 0 {
                        fetch_packument(&client, &registry, &token, package)
                    } else {
                        let (version, bytes) = &package.versions[random.below(2)];
                        fetch_tarball(&client, &registry, &token, &package.name, version, bytes)
                    };
                    let mut tally = tally.lock().expect("tally");
                    tally.requests += 1;
                    match outcome {
                        Outcome::Served => tally.fresh_served += usize::from(!cached),
                        Outcome::Failed(why) if cached => {
                            tally.violations.push(format!("cached {}: {why}", package.name))
                        }
                        Outcome::Failed(_) => tally.fresh_failures += 1,
                        Outcome::Wrong(why) => tally.violations.push(format!("WRONG BYTES {}: {why}", package.name)),
                    }
                }
            })
        })
        .collect();

    // Real installs of cached packages meanwhile: `npm ci` from the lockfile and a
    // fresh `npm install` (which reads the packuments the chaos keeps revalidating).
    let mut installs = 0;
    if let Some(locked) = &npm {
        let names: Vec<&str> = packages[4..CACHED].iter().map(|p| p.name.as_str()).collect();
        while Instant::now() + Duration::from_secs(10) < deadline && installs < duration.as_secs() / 10 {
            let ci = Project::new(ClientKind::Npm);
            ci.configure(&registry, &token);
            ci.copy_from(locked, &["package.json", "package-lock.json"]);
            ci.install_frozen();
            let fresh = Project::new(ClientKind::Npm);
            fresh.configure(&registry, &token);
            let deps: Vec<(&str, &str)> = names.iter().map(|n| (*n, "1.x")).collect();
            fresh.install(&deps);
            for name in &names {
                let installed = fresh.read_installed(name, "package.json");
                assert!(installed.contains("\"1.1.0\""), "{name}: {installed}");
            }
            installs += 1;
        }
    }
    for worker in workers {
        worker.join().expect("worker");
    }
    stop.store(true, Ordering::SeqCst);
    let samples = sampler.join().expect("sampler");
    let elapsed = started.elapsed();
    let faults = fake.faults();
    fake.set_mode(Mode::Normal);

    let tally = tally.lock().expect("tally");
    eprintln!(
        "soak: {} requests in {elapsed:.0?}, {installs} npm install rounds, fresh: {} served / {} refused or failed; \
         upstream faults: {faults:?}; RSS (KiB) at each quarter: {:?}, max {:?}",
        tally.requests,
        tally.fresh_served,
        tally.fresh_failures,
        (0..=4)
            .filter_map(|q| samples.get((samples.len().saturating_sub(1)) * q / 4))
            .collect::<Vec<_>>(),
        samples.iter().max(),
    );
    assert!(
        tally.violations.is_empty(),
        "{} violations (seed {seed}), first ones:\n{}\n{}",
        tally.violations.len(),
        tally.violations.iter().take(20).cloned().collect::<Vec<_>>().join("\n"),
        server.log().lines().rev().take(50).collect::<Vec<_>>().join("\n")
    );
    assert!(tally.requests > 100, "only {} requests", tally.requests);
    for fault in [
        Fault::Hang,
        Fault::Reset,
        Fault::ServerError,
        Fault::Truncate,
        Fault::WrongBytes,
    ] {
        assert!(
            faults.get(&fault).copied().unwrap_or(0) > 0,
            "the chaos never drew {fault:?}: {faults:?}"
        );
    }

    // Memory: bounded, and not growing steadily (the last third of the samples is not
    // far above the first third).
    let max = samples.iter().copied().max().expect("RSS samples");
    assert!(max < RSS_LIMIT_KIB, "server RSS reached {max} KiB");
    let third = samples.len() / 3;
    if third > 0 {
        let average = |s: &[u64]| s.iter().sum::<u64>() / s.len() as u64;
        let (early, late) = (average(&samples[..third]), average(&samples[samples.len() - third..]));
        assert!(
            late < early + early / 2 + 32 * 1024,
            "server RSS grew from {early} KiB to {late} KiB on average"
        );
    }

    // The log says what happened upstream.
    let log = server.log();
    for needle in [
        "upstream failed; serving the stored copy",
        "timed out",
        "answered HTTP 50",
        "served a bad tarball",
        "pull failed",
    ] {
        assert!(log.contains(needle), "the server's log does not mention {needle:?}");
    }

    // With the upstream healthy again, every package is served, fresh ones included.
    std::thread::sleep(Duration::from_secs(3));
    for package in packages.iter() {
        for (version, bytes) in &package.versions {
            let outcome = fetch_tarball(&client, &registry, &token, &package.name, version, bytes);
            assert!(
                matches!(outcome, Outcome::Served),
                "{}@{version} after the chaos: {outcome:?}",
                package.name
            );
        }
    }
}

#[derive(Debug)]
enum Outcome {
    Served,
    /// Not served (an error status, a body cut short): fine for a fresh package.
    Failed(String),
    /// Served, but not the true bytes or metadata: never fine.
    Wrong(String),
}

fn fetch_tarball(
    client: &reqwest::blocking::Client,
    registry: &str,
    token: &str,
    name: &str,
    version: &str,
    truth: &[u8],
) -> Outcome {
    let response = match client
        .get(tarball_url(registry, name, version))
        .bearer_auth(token)
        .send()
    {
        Ok(response) => response,
        Err(e) => return Outcome::Failed(format!("{version}: {e}")),
    };
    let status = response.status().as_u16();
    let body = match response.bytes() {
        Ok(body) => body,
        Err(e) => return Outcome::Failed(format!("{version}: HTTP {status}, body cut short: {e}")),
    };
    if status != 200 {
        return Outcome::Failed(format!("{version}: HTTP {status}: {}", String::from_utf8_lossy(&body)));
    }
    if Sha512::digest(&body) != Sha512::digest(truth) {
        return Outcome::Wrong(format!(
            "{version}: {} bytes served, not the true {}",
            body.len(),
            truth.len()
        ));
    }
    Outcome::Served
}

fn fetch_packument(client: &reqwest::blocking::Client, registry: &str, token: &str, package: &Package) -> Outcome {
    let url = format!("{registry}{}", package.name.replace('/', "%2f"));
    let response = match client.get(url).bearer_auth(token).send() {
        Ok(response) => response,
        Err(e) => return Outcome::Failed(format!("packument: {e}")),
    };
    let status = response.status().as_u16();
    let body = match response.bytes() {
        Ok(body) => body,
        Err(e) => return Outcome::Failed(format!("packument: HTTP {status}, body cut short: {e}")),
    };
    if status != 200 {
        return Outcome::Failed(format!("packument: HTTP {status}: {}", String::from_utf8_lossy(&body)));
    }
    let Ok(doc) = serde_json::from_slice::<Value>(&body) else {
        return Outcome::Wrong(format!("packument: not JSON ({} bytes)", body.len()));
    };
    let integrities: HashMap<&str, String> = package
        .versions
        .iter()
        .map(|(version, bytes)| (version.as_str(), sri_sha512(bytes)))
        .collect();
    for (version, integrity) in integrities {
        let declared = doc["versions"][version]["dist"]["integrity"].as_str();
        if declared != Some(integrity.as_str()) {
            return Outcome::Wrong(format!("packument: {version} declares {declared:?}"));
        }
    }
    Outcome::Served
}

fn tarball_url(registry: &str, name: &str, version: &str) -> String {
    crate::support::clients::tarball_url(registry, name, version)
}
