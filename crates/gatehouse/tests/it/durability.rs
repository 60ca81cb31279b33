//! Concurrency and crash safety: concurrent publishes never lose an update, a race
//! for one version has exactly one winner, and `kill -9` loses no acknowledged publish.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::Value;

use crate::support::*;

/// A tarball of `name@version` whose bytes also depend on `flavour`.
fn flavoured_tarball(name: &str, version: &str, flavour: &str) -> Vec<u8> {
    let manifest = serde_json::json!({ "name": name, "version": version, "main": "index.js" });
    tarball(&[
        ("package/package.json", manifest.to_string().as_bytes()),
        (
            "package/index.js",
            format!("module.exports = '{flavour}';\n").as_bytes(),
        ),
    ])
}

/// The tarball as served for `name@version`.
fn download(server: &TestServer, token: &str, name: &str, version: &str) -> Vec<u8> {
    let basename = name.rsplit('/').next().expect("basename");
    let response = http()
        .get(format!(
            "{}{name}/-/{basename}-{version}.tgz",
            server.registry_url("default")
        ))
        .bearer_auth(token)
        .send()
        .expect("tarball request");
    assert_eq!(response.status(), 200, "tarball of {name}@{version}");
    response.bytes().expect("tarball bytes").to_vec()
}

/// Every version in the packument has a downloadable tarball that hashes to its
/// `dist.integrity` and `dist.shasum`: no half-stored version.
fn assert_consistent(server: &TestServer, token: &str, name: &str) -> Value {
    let doc = packument(server, "default", token, name).unwrap_or_else(|| panic!("{name} is missing"));
    for (version, manifest) in doc["versions"].as_object().expect("versions") {
        let bytes = download(server, token, name, version);
        assert_eq!(manifest["dist"]["integrity"], sri_sha512(&bytes), "{name}@{version}");
        assert_eq!(manifest["dist"]["shasum"], sha1_hex(&bytes), "{name}@{version}");
    }
    doc
}

#[test]
fn thirty_concurrent_publishes_of_one_package_all_survive() {
    const N: usize = 30;
    const READERS: usize = 4;
    let server = TestServer::start();
    let token = server.admin_token();
    publish_ok(&server, "default", &token, "busy", "0.0.1");
    let barrier = Arc::new(Barrier::new(N + READERS));
    let done = AtomicBool::new(false);
    let statuses: Vec<(String, u16, String, bool)> = std::thread::scope(|scope| {
        // Readers keep loading the packument while it changes, as installs would.
        for _ in 0..READERS {
            let (server, token, barrier, done) = (&server, &token, Arc::clone(&barrier), &done);
            scope.spawn(move || {
                barrier.wait();
                for _ in 0..10_000 {
                    if done.load(Ordering::Relaxed) {
                        break;
                    }
                    let _ = packument(server, "default", token, "busy");
                }
            });
        }
        let handles: Vec<_> = (0..N)
            .map(|i| {
                let (server, token, barrier) = (&server, &token, Arc::clone(&barrier));
                scope.spawn(move || {
                    let version = format!("1.0.{i}");
                    let mut body = publish_body("busy", &version);
                    // Big manifests make packument builds slow, so that builds started
                    // before a commit are still running when it is acknowledged.
                    body["versions"][&version]["readme"] = Value::String(format!("busy {i} ").repeat(20_000));
                    barrier.wait();
                    let response = publish(server, "default", token, &body);
                    let status = response.status().as_u16();
                    let text = response.text().unwrap_or_default();
                    // Acknowledged means visible: the next read shows the version.
                    let seen = status == 201
                        && packument(server, "default", token, "busy")
                            .is_some_and(|doc| doc["versions"][&version].is_object());
                    (version, status, text, seen)
                })
            })
            .collect();
        let statuses = handles.into_iter().map(|h| h.join().expect("publisher")).collect();
        done.store(true, Ordering::Relaxed);
        statuses
    });
    for (version, status, body, seen) in &statuses {
        assert_eq!(*status, 201, "busy@{version}: {body}");
        assert!(
            seen,
            "busy@{version} was acknowledged but the packument read next lacks it"
        );
    }
    let doc = assert_consistent(&server, &token, "busy");
    let versions = doc["versions"].as_object().expect("versions");
    assert_eq!(
        versions.len(),
        N + 1,
        "versions: {:?}",
        versions.keys().collect::<Vec<_>>()
    );
    for i in 0..N {
        assert!(doc["time"][format!("1.0.{i}")].is_string(), "time of 1.0.{i}");
    }
    assert!(versions.contains_key(doc["dist-tags"]["latest"].as_str().expect("latest")));
    // Fresh from disk too, not only from the packument cache.
    let mut server = server;
    server.restart();
    let doc = packument(&server, "default", &token, "busy").expect("busy");
    assert_eq!(doc["versions"].as_object().expect("versions").len(), N + 1);
}

#[test]
fn two_publishes_racing_for_one_version_have_exactly_one_winner() {
    let server = TestServer::start();
    let token = server.admin_token();
    publish_ok(&server, "default", &token, "contested", "0.0.1");
    // A few rounds, so that the two requests really overlap in some of them.
    for round in 0..5 {
        let version = format!("1.0.{round}");
        let tarballs = [
            flavoured_tarball("contested", &version, "left"),
            flavoured_tarball("contested", &version, "right"),
        ];
        let barrier = Barrier::new(2);
        let results: Vec<(u16, String)> = std::thread::scope(|scope| {
            let handles: Vec<_> = tarballs
                .iter()
                .map(|tgz| {
                    let body = publish_body_with("contested", &version, "latest", tgz);
                    let (server, token, barrier) = (&server, &token, &barrier);
                    scope.spawn(move || {
                        barrier.wait();
                        let response = publish(server, "default", token, &body);
                        let status = response.status().as_u16();
                        (status, response.text().unwrap_or_default())
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().expect("publisher")).collect()
        });
        let winners: Vec<usize> = (0..2).filter(|&i| results[i].0 == 201).collect();
        assert_eq!(winners.len(), 1, "round {round}: {results:?}");
        let (winner, loser) = (winners[0], 1 - winners[0]);
        let (status, body) = &results[loser];
        assert!([403, 409].contains(status), "round {round}: loser got {status}: {body}");
        assert!(
            body.contains("cannot publish over the previously published versions"),
            "round {round}: {body}"
        );
        let doc = assert_consistent(&server, &token, "contested");
        assert_eq!(
            doc["versions"][&version]["dist"]["integrity"],
            sri_sha512(&tarballs[winner]),
            "round {round}: the stored version is not the winner's"
        );
        assert_eq!(download(&server, &token, "contested", &version), tarballs[winner]);
    }
}

/// A publish acknowledged with 201 before the crash.
#[derive(Clone)]
struct Acked {
    name: String,
    version: String,
    tarball: Vec<u8>,
}

#[test]
fn kill_9_during_publishes_loses_no_acknowledged_version() {
    kill_9_during_publishes(TestServer::start());
}

/// Without fsync, a crash of the process still loses nothing: the OS has the writes.
#[test]
fn kill_9_loses_nothing_with_process_durability_either() {
    kill_9_during_publishes(TestServer::start_with_config("durability = \"process\"\n"));
}

fn kill_9_during_publishes(mut server: TestServer) {
    const THREADS: usize = 4;
    const WANTED_ACKS: usize = 24;
    let token = server.admin_token();
    let acked: Arc<Mutex<Vec<Acked>>> = Arc::default();
    let base = server.registry_url("default");
    // Two threads share a package, two have one each: both kinds of write contend.
    let publishers: Vec<_> = (0..THREADS)
        .map(|t| {
            let (acked, token, base) = (Arc::clone(&acked), token.clone(), base.clone());
            std::thread::spawn(move || {
                let name = if t < 2 {
                    "crash-shared".to_owned()
                } else {
                    format!("crash-{t}")
                };
                let client = http();
                for i in 0..500 {
                    let version = format!("1.{t}.{i}");
                    let tgz = flavoured_tarball(&name, &version, &format!("{t}-{i}"));
                    let body = publish_body_with(&name, &version, "latest", &tgz);
                    // Connection errors once the server is gone end the thread.
                    let Ok(response) = client
                        .put(format!("{base}{name}"))
                        .bearer_auth(&token)
                        .json(&body)
                        .send()
                    else {
                        return;
                    };
                    match response.status().as_u16() {
                        201 => acked.lock().expect("lock").push(Acked {
                            name: name.clone(),
                            version,
                            tarball: tgz,
                        }),
                        other => panic!("{name}@{version}: {other} {}", response.text().unwrap_or_default()),
                    }
                }
            })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(20);
    while acked.lock().expect("lock").len() < WANTED_ACKS && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    server.kill();
    for publisher in publishers {
        publisher.join().expect("publisher thread");
    }
    let acked = std::mem::take(&mut *acked.lock().expect("lock"));
    assert!(
        acked.len() >= WANTED_ACKS,
        "only {} publishes acknowledged before the deadline",
        acked.len()
    );

    server.restart();
    let ready = http().get(format!("{}/-/ready", server.base)).send().expect("ready");
    assert_eq!(ready.status(), 200, "store not ready after the crash: {}", server.log());
    let mut names: Vec<&str> = acked.iter().map(|a| a.name.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    let docs: Vec<(&str, Value)> = names
        .iter()
        .map(|name| (*name, assert_consistent(&server, &token, name)))
        .collect();
    for a in &acked {
        let doc = &docs.iter().find(|(n, _)| *n == a.name).expect("doc").1;
        assert_eq!(
            doc["versions"][&a.version]["dist"]["integrity"],
            sri_sha512(&a.tarball),
            "acknowledged {}@{} lost or changed by the crash",
            a.name,
            a.version
        );
        assert_eq!(download(&server, &token, &a.name, &a.version), a.tarball);
    }
    for name in names {
        publish_ok(&server, "default", &token, name, "2.0.0");
    }
}

/// `gatehouse check` verifies every version's tarball; `gatehouse gc` removes what no
/// version refers to once it is old enough, and nothing else.
#[test]
fn check_finds_damage_and_gc_collects_only_orphans() {
    use sha2::{Digest as _, Sha512};
    let server = TestServer::start();
    let token = server.create_token(&["--user", "admin"]);
    publish_ok(&server, "default", &token, "kept", "1.0.0");
    publish_ok(&server, "default", &token, "damaged", "1.0.0");
    let out = server.cli(&["check"], "");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains("checked 2 versions and 2 blobs: 0 missing, 0 corrupt, 0 orphans")
    );

    // A blob nobody refers to, put in through the store.
    let orphan = bytes::Bytes::from_static(b"an orphan blob");
    let key = gatehouse_store::blobs::BlobKey::from_bytes(Sha512::digest(&orphan).into());
    with_storage(&server, async |storage| {
        storage.blobs.put(&key, orphan.clone()).await.expect("put")
    });
    let blobs = blob_count(&server);
    let out = server.cli(&["check"], "");
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("orphan\t-\t-\tblob {}", key.to_hex())));
    let dry = String::from_utf8_lossy(&server.cli(&["gc", "--dry-run"], "").stdout).into_owned();
    assert!(dry.contains(&format!("would remove\t{}", key.to_hex())), "{dry}");
    assert_eq!(blob_count(&server), blobs, "a dry run removes nothing");
    let young = String::from_utf8_lossy(&server.cli(&["gc"], "").stdout).into_owned();
    assert!(
        young.contains("removed 0 blobs no version refers to; kept 1 written or reused within 1h"),
        "{young}"
    );
    let removed = String::from_utf8_lossy(&server.cli(&["gc", "--grace", "0s"], "").stdout).into_owned();
    assert!(removed.contains(&format!("removed\t{}", key.to_hex())), "{removed}");
    assert_eq!(blob_count(&server), blobs - 1);
    // The versions' blobs are all still there.
    assert!(server.cli(&["check"], "").status.success());
    assert_eq!(
        get_from(&server, "default", "kept/-/kept-1.0.0.tgz", &token).status(),
        200
    );

    // A damaged tarball file is found (once the journal has written it out).
    let doc = packument(&server, "default", &token, "damaged").expect("packument");
    let integrity = doc["versions"]["1.0.0"]["dist"]["integrity"]
        .as_str()
        .expect("integrity")
        .to_owned();
    let digest = base64::engine::general_purpose::STANDARD
        .decode(integrity.trim_start_matches("sha512-"))
        .expect("base64");
    let hex = hex::encode(digest);
    let file = server.blob_file(&hex);
    assert!(
        eventually(Duration::from_secs(10), || file.exists()),
        "the journal writes the file"
    );
    std::fs::write(&file, b"not the tarball").expect("damage");
    // Until the journal has recorded the file as written, check also reads the
    // journal's copy; under load that can take a moment.
    let mut last = None;
    eventually(Duration::from_secs(10), || {
        let out = server.cli(&["check"], "");
        let found = String::from_utf8_lossy(&out.stdout).contains("corrupt\tdefault\tdamaged@1.0.0");
        last = Some(out);
        found
    });
    let out = last.expect("check ran");
    assert!(!out.status.success(), "exit status 1 when anything is wrong");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(stdout.contains("corrupt\tdefault\tdamaged@1.0.0"), "{stdout}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("1 versions have no sound tarball"));
    std::fs::remove_file(&file).expect("remove");
    let mut stdout = String::new();
    let missing = eventually(Duration::from_secs(10), || {
        stdout = String::from_utf8_lossy(&server.cli(&["check"], "").stdout).into_owned();
        stdout.contains("missing\tdefault\tdamaged@1.0.0")
    });
    assert!(missing, "{stdout}");
}

/// A backup of a server that keeps publishing holds every version acknowledged before
/// the backup began, with the right bytes, and restores into a clean install.
#[test]
fn a_backup_taken_while_publishing_restores_every_acknowledged_version() {
    // Backup and restore are for the embedded stores (pg_dump and the bucket's own tools otherwise).
    let server = TestServer::start_embedded("");
    let token = server.create_token(&["--user", "admin"]);
    let mut before = Vec::new();
    for i in 0..20 {
        let name = format!("backed-{i}");
        let tarball = package_tarball(&name, "1.0.0");
        let response = publish(
            &server,
            "default",
            &token,
            &publish_body_with(&name, "1.0.0", "latest", &tarball),
        );
        assert_eq!(response.status(), 201);
        before.push((name, tarball));
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let dest = dir.path().join("backup");
    let stop = Arc::new(AtomicBool::new(false));
    let published_during = std::thread::scope(|scope| {
        let writer = scope.spawn(|| {
            let mut count = 0;
            while !stop.load(Ordering::Relaxed) && count < 500 {
                let name = format!("during-{count}");
                let response = publish(&server, "default", &token, &publish_body(&name, "1.0.0"));
                assert_eq!(response.status(), 201);
                count += 1;
            }
            count
        });
        std::thread::sleep(Duration::from_millis(100));
        let out = server.cli(&["backup", dest.to_str().expect("utf8")], "");
        stop.store(true, Ordering::Relaxed);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert!(String::from_utf8_lossy(&out.stdout).starts_with("backed up "));
        writer.join().expect("writer")
    });
    assert!(published_during > 0, "publishes ran during the backup");
    let again = server.cli(&["backup", dest.to_str().expect("utf8")], "");
    assert!(String::from_utf8_lossy(&again.stderr).contains("is not empty: back up into a new folder"));

    // Restore into a fresh data dir, then serve it.
    let restored = dir.path().join("restored");
    let out = run_cli(&restored, &["restore", dest.to_str().expect("utf8")], "");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = run_cli(&restored, &["restore", dest.to_str().expect("utf8")], "");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("is not empty"),
        "a second restore is refused"
    );
    let check = run_cli(&restored, &["check"], "");
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stdout));
    assert!(String::from_utf8_lossy(&check.stdout).contains("0 missing, 0 corrupt, 0 orphans"));
    let copy = TestServer::start_on(&restored);
    let login = copy.admin_token();
    for (name, tarball) in &before {
        let got = get_from(&copy, "default", &format!("{name}/-/{name}-1.0.0.tgz"), &login);
        assert_eq!(got.status(), 200, "{name}");
        assert_eq!(
            got.bytes().expect("bytes").as_ref(),
            tarball.as_slice(),
            "{name}: the same bytes"
        );
    }
}

/// Fifty `kill -9`s at random moments during publishes and pulls through a registry
/// upstream: every acknowledged version survives with its bytes, a pull never hands
/// out wrong bytes, and `gatehouse check` is clean at the end.
#[test]
fn fifty_crashes_during_publishes_promotions_and_pulls_lose_nothing() {
    const ROUNDS: usize = 50;
    let mut server = TestServer::start_with_config(
        "[registries.prod]\nupstreams = []\n[registries.default]\nupstreams = [\"registry:prod\"]\n\
         [registries.team]\nupstreams = [\"registry:default\"]\n",
    );
    let token = server.create_token(&["--user", "admin"]);
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(7, |d| d.as_nanos() as u64)
        | 1;
    eprintln!("crash rounds seeded with {seed}");
    let mut random = move |below: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % below
    };
    let acked: Arc<Mutex<Vec<Acked>>> = Arc::default();
    let promoted: Arc<Mutex<Vec<Acked>>> = Arc::default();
    for round in 0..ROUNDS {
        let before = acked.lock().expect("lock").len();
        let stop = Arc::new(AtomicBool::new(false));
        let base = server.base.clone();
        let workers: Vec<_> = (0..4)
            .map(|worker| {
                let (acked, stop, token, base) = (Arc::clone(&acked), Arc::clone(&stop), token.clone(), base.clone());
                let promoted = Arc::clone(&promoted);
                std::thread::spawn(move || {
                    let client = http();
                    let mut i = 0;
                    while !stop.load(Ordering::Relaxed) && i < 200 {
                        i += 1;
                        if worker == 3 {
                            // Promote to `prod` what `default` acknowledged.
                            let Some(a) = acked.lock().expect("lock").last().cloned() else {
                                continue;
                            };
                            if promoted.lock().expect("lock").iter().any(|p| p.version == a.version && p.name == a.name) {
                                continue;
                            }
                            let Ok(response) = client
                                .post(format!("{base}/-/api/v1/registries/default/push"))
                                .bearer_auth(&token)
                                .json(&serde_json::json!({"package": a.name, "version": a.version, "to": "registry:prod"}))
                                .send()
                            else {
                                return;
                            };
                            if response.status() == 200 {
                                promoted.lock().expect("lock").push(a);
                            }
                            continue;
                        }
                        if worker == 2 {
                            // Pull through `team` what `default` acknowledged.
                            let Some(a) = acked
                                .lock()
                                .expect("lock")
                                .last()
                                .map(|a| (a.name.clone(), a.version.clone(), a.tarball.clone()))
                            else {
                                continue;
                            };
                            let url = format!("{base}/r/team/{}/-/{}-{}.tgz", a.0, a.0, a.1);
                            let Ok(response) = client.get(&url).bearer_auth(&token).send() else {
                                return;
                            };
                            if response.status() == 200
                                && let Ok(bytes) = response.bytes()
                            {
                                assert_eq!(
                                    bytes.as_ref(),
                                    a.2.as_slice(),
                                    "a pull served wrong bytes for {}@{}",
                                    a.0,
                                    a.1
                                );
                            }
                            continue;
                        }
                        let name = format!("crashy-{worker}");
                        let version = format!("{round}.{worker}.{i}");
                        let tgz = flavoured_tarball(&name, &version, &format!("{round}-{worker}-{i}"));
                        let body = publish_body_with(&name, &version, "latest", &tgz);
                        let Ok(response) = client
                            .put(format!("{base}/r/default/{name}"))
                            .bearer_auth(&token)
                            .json(&body)
                            .send()
                        else {
                            return;
                        };
                        if response.status() == 201 {
                            acked.lock().expect("lock").push(Acked {
                                name,
                                version,
                                tarball: tgz,
                            });
                        }
                    }
                })
            })
            .collect();
        // At least one publish acknowledged in each round (a loaded machine, or the
        // scale-out stack, may take longer than the random delay), then the crash
        // lands among the ones in flight.
        assert!(
            eventually(Duration::from_secs(30), || acked.lock().expect("lock").len() > before),
            "round {round}: no publish acknowledged within 30 s\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(random(100)));
        server.kill();
        stop.store(true, Ordering::Relaxed);
        for worker in workers {
            worker.join().expect("worker");
        }
        server.restart();
    }
    let acked = std::mem::take(&mut *acked.lock().expect("lock"));
    assert!(
        acked.len() >= ROUNDS,
        "only {} publishes acknowledged in {ROUNDS} rounds",
        acked.len()
    );
    for a in &acked {
        assert_eq!(
            download(&server, &token, &a.name, &a.version),
            a.tarball,
            "acknowledged {}@{} lost or changed by a crash",
            a.name,
            a.version
        );
    }
    let promoted = std::mem::take(&mut *promoted.lock().expect("lock"));
    assert!(!promoted.is_empty(), "no promotion was acknowledged in {ROUNDS} rounds");
    let prod_token = server.login("prod", "admin", ADMIN_PASSWORD);
    for p in &promoted {
        let url = format!(
            "{}{}/-/{}-{}.tgz",
            server.registry_url("prod"),
            p.name,
            p.name,
            p.version
        );
        let response = http().get(&url).bearer_auth(&prod_token).send().expect("prod tarball");
        assert_eq!(
            response.status(),
            200,
            "acknowledged promotion of {}@{} lost by a crash",
            p.name,
            p.version
        );
        assert_eq!(
            response.bytes().expect("bytes").as_ref(),
            p.tarball.as_slice(),
            "{}@{}",
            p.name,
            p.version
        );
    }
    let check = server.cli(&["check"], "");
    assert!(
        check.status.success(),
        "{}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
}
