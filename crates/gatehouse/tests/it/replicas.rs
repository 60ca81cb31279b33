//! Several replicas over one PostgreSQL and one bucket, behind a round-robin proxy:
//! nothing acknowledged is lost, races have one winner, and a change made on one
//! replica shows on the others within a second.

use std::net::{Shutdown, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::stack::Stores;
use crate::support::*;

/// How soon a change on one replica must show on the others.
const PROPAGATION: Duration = Duration::from_secs(1);

/// A TCP proxy handing each new connection to the next replica, skipping one that
/// refuses (a load balancer's health check, crudely).
struct RoundRobin {
    base: String,
    backends: Arc<Mutex<Vec<String>>>,
}

impl RoundRobin {
    fn start() -> RoundRobin {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let base = format!("http://{}", listener.local_addr().expect("address"));
        let backends: Arc<Mutex<Vec<String>>> = Arc::default();
        let next = Arc::new(AtomicUsize::new(0));
        let shared = backends.clone();
        thread::spawn(move || {
            for client in listener.incoming().map_while(Result::ok) {
                let backends = shared.lock().expect("backends").clone();
                let next = next.clone();
                thread::spawn(move || {
                    let upstream = (0..backends.len()).find_map(|_| {
                        let at = next.fetch_add(1, Ordering::Relaxed) % backends.len();
                        TcpStream::connect(&backends[at]).ok()
                    });
                    if let Some(upstream) = upstream {
                        pipe(client, upstream);
                    }
                });
            }
        });
        RoundRobin { base, backends }
    }

    fn serve(&self, replicas: &[TestServer]) {
        *self.backends.lock().expect("backends") = replicas
            .iter()
            .map(|r| r.base.trim_start_matches("http://").to_owned())
            .collect();
    }

    fn registry_url(&self) -> String {
        format!("{}/r/default/", self.base)
    }
}

/// Copies both ways until either side closes.
fn pipe(client: TcpStream, upstream: TcpStream) {
    let (mut client_in, mut upstream_out) = (client.try_clone().expect("clone"), upstream.try_clone().expect("clone"));
    let forward = thread::spawn(move || {
        let _ = std::io::copy(&mut client_in, &mut upstream_out);
        let _ = upstream_out.shutdown(Shutdown::Write);
    });
    let (mut upstream_in, mut client_out) = (upstream, client);
    let _ = std::io::copy(&mut upstream_in, &mut client_out);
    let _ = client_out.shutdown(Shutdown::Write);
    let _ = forward.join();
}

/// A client that opens a connection per request, so the proxy spreads them.
fn spread() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(60))
        .no_proxy()
        .pool_max_idle_per_host(0)
        .build()
        .expect("client")
}

/// `n` replicas over new scale-out stores, all with the proxy's public URL (as behind
/// a load balancer), or `None` when PostgreSQL or s3s-fs is missing (not in CI).
fn fleet(n: usize) -> Option<(RoundRobin, Vec<TestServer>)> {
    fleet_with(n, "")
}

/// [`fleet`], each replica also configured with `toml`.
fn fleet_with(n: usize, toml: &str) -> Option<(RoundRobin, Vec<TestServer>)> {
    let stores = Stores::scale_out()?;
    let proxy = RoundRobin::start();
    let config = format!("public_url = \"{}\"\n{toml}", proxy.base);
    let first = TestServer::start_on_stores(stores, &config);
    let mut replicas = vec![first];
    for _ in 1..n {
        let replica = replicas[0].replica(&config);
        replicas.push(replica);
    }
    proxy.serve(&replicas);
    Some((proxy, replicas))
}

fn put(client: &reqwest::blocking::Client, registry_url: &str, token: &str, body: &Value) -> (u16, String) {
    let name = body["name"].as_str().expect("name").replace('/', "%2f");
    let response = client
        .put(format!("{registry_url}{name}"))
        .bearer_auth(token)
        .json(body)
        .send()
        .expect("publish");
    (response.status().as_u16(), response.text().unwrap_or_default())
}

fn versions_on(replica: &TestServer, token: &str, name: &str) -> Vec<String> {
    packument(replica, "default", token, name)
        .map(|doc| {
            doc["versions"]
                .as_object()
                .map(|v| v.keys().cloned().collect())
                .unwrap_or_default()
        })
        .unwrap_or_default()
}

#[test]
fn a_hundred_concurrent_publishes_spread_over_three_replicas_are_all_kept() {
    let Some((proxy, replicas)) = fleet(3) else { return };
    let token = replicas[0].create_token(&["--user", "admin"]);
    let registry_url = proxy.registry_url();
    let workers: Vec<_> = (0..10)
        .map(|worker| {
            let (token, registry_url) = (token.clone(), registry_url.clone());
            thread::spawn(move || {
                let client = spread();
                for i in 0..10 {
                    let version = format!("1.{worker}.{i}");
                    let (status, body) = put(&client, &registry_url, &token, &publish_body("fleet", &version));
                    assert_eq!(status, 201, "publish fleet@{version}: {body}");
                }
            })
        })
        .collect();
    for worker in workers {
        worker.join().expect("publisher");
    }
    for replica in &replicas {
        let mut versions = Vec::new();
        let all = eventually(PROPAGATION, || {
            versions = versions_on(replica, &token, "fleet");
            versions.len() == 100
        });
        assert!(all, "{} has {} of 100 versions", replica.base, versions.len());
    }
    // The same document, the same ETag: a 304 survives the balancer switching replicas.
    let etags: Vec<String> = replicas
        .iter()
        .map(|replica| {
            let response = get_from(replica, "default", "fleet", &token);
            assert_eq!(response.status(), 200);
            response.headers()["etag"].to_str().expect("etag").to_owned()
        })
        .collect();
    assert!(etags.windows(2).all(|w| w[0] == w[1]), "{etags:?}");
    let revalidated = http()
        .get(format!("{}fleet", replicas[2].registry_url("default")))
        .bearer_auth(&token)
        .header("if-none-match", &etags[0])
        .send()
        .expect("get");
    assert_eq!(revalidated.status(), 304);
    let check = replicas[1].cli_ok(&["check"]);
    assert!(
        check.contains("checked 100 versions and 100 blobs: 0 missing, 0 corrupt"),
        "{check}"
    );
}

#[test]
fn the_same_version_on_two_replicas_at_once_has_one_winner_everywhere() {
    let Some((_proxy, replicas)) = fleet(2) else { return };
    let token = replicas[0].create_token(&["--user", "admin"]);
    let bodies: Vec<(Vec<u8>, Value)> = (0..2)
        .map(|side| {
            let tarball = tarball(&[
                (
                    "package/package.json",
                    br#"{"name":"contested","version":"1.0.0"}"#.as_slice(),
                ),
                ("package/index.js", format!("module.exports = {side};\n").as_bytes()),
            ]);
            let body = publish_body_with("contested", "1.0.0", "latest", &tarball);
            (tarball, body)
        })
        .collect();
    let start = Arc::new(Barrier::new(2));
    let racers: Vec<_> = replicas
        .iter()
        .zip(bodies.iter())
        .map(|(replica, (_, body))| {
            let (url, token, body, start) = (
                replica.registry_url("default"),
                token.clone(),
                body.clone(),
                start.clone(),
            );
            thread::spawn(move || {
                start.wait();
                put(&http(), &url, &token, &body)
            })
        })
        .collect();
    let answers: Vec<(u16, String)> = racers.into_iter().map(|r| r.join().expect("racer")).collect();
    let winner = answers
        .iter()
        .position(|(status, _)| *status == 201)
        .unwrap_or_else(|| panic!("no winner: {answers:?}"));
    let loser = &answers[1 - winner];
    // The loser's answer is the one a republish gets (npm's 403 "cannot publish over").
    let (status, again) = put(
        &http(),
        &replicas[winner].registry_url("default"),
        &token,
        &bodies[1 - winner].1,
    );
    assert_eq!(status, 403, "{again}");
    assert_eq!(loser.0, status, "the loser is refused as a republish: {answers:?}");
    let error = |body: &str| serde_json::from_str::<Value>(body).expect("json")["error"].clone();
    assert_eq!(error(&loser.1), error(&again), "{answers:?}");
    assert!(error(&again).as_str().unwrap_or_default().contains("1.0.0"), "{again}");
    for replica in &replicas {
        let served = get_from(replica, "default", "contested/-/contested-1.0.0.tgz", &token);
        assert_eq!(served.status(), 200);
        assert_eq!(served.bytes().expect("bytes").as_ref(), bodies[winner].0.as_slice());
    }
}

#[test]
fn a_token_revoked_on_one_replica_is_refused_by_the_others_within_a_second() {
    let Some((_proxy, replicas)) = fleet(3) else { return };
    let admin = replicas[0].admin_token();
    let created: Value = http()
        .post(format!("{}-/npm/v1/tokens", replicas[0].registry_url("default")))
        .bearer_auth(&admin)
        .json(&json!({"password": ADMIN_PASSWORD, "name": "ci"}))
        .send()
        .expect("create")
        .json()
        .expect("json");
    let token = created["token"].as_str().expect("token").to_owned();
    // Every replica knows (and caches) it.
    for replica in &replicas {
        assert_eq!(get_from(replica, "default", "-/whoami", &token).status(), 200);
    }
    let revoked = http()
        .delete(format!(
            "{}-/npm/v1/tokens/token/{}",
            replicas[1].registry_url("default"),
            created["key"].as_str().expect("key")
        ))
        .bearer_auth(&admin)
        .send()
        .expect("revoke");
    assert_eq!(revoked.status(), 204);
    let at = Instant::now();
    for replica in &replicas {
        let refused = eventually(PROPAGATION.saturating_sub(at.elapsed()), || {
            get_from(replica, "default", "-/whoami", &token).status() == 401
        });
        assert!(
            refused,
            "{} still accepts the revoked token after {:?}",
            replica.base,
            at.elapsed()
        );
    }
}

#[test]
fn dist_tags_and_deprecations_show_on_every_replica_within_a_second() {
    let Some((_proxy, replicas)) = fleet(2) else { return };
    let token = replicas[0].create_token(&["--user", "admin"]);
    publish_ok(&replicas[0], "default", &token, "tagged", "1.0.0");
    publish_ok(&replicas[0], "default", &token, "tagged", "2.0.0");
    // Both replicas have the packument prepared (cached).
    for replica in &replicas {
        assert!(eventually(PROPAGATION, || versions_on(replica, &token, "tagged").len() == 2));
    }
    let tagged = http()
        .put(format!(
            "{}-/package/tagged/dist-tags/stable",
            replicas[0].registry_url("default")
        ))
        .bearer_auth(&token)
        .json(&json!("1.0.0"))
        .send()
        .expect("tag");
    assert!(tagged.status().is_success(), "{}", tagged.status());
    let shown = eventually(PROPAGATION, || {
        packument(&replicas[1], "default", &token, "tagged").is_some_and(|doc| doc["dist-tags"]["stable"] == "1.0.0")
    });
    assert!(shown, "the other replica shows the new dist-tag");
}

/// A replica killed in the middle of publishes: every acknowledged version is served
/// by the others with its bytes, and `check` finds no half-written state.
#[test]
fn a_replica_killed_mid_publish_loses_nothing_it_acknowledged() {
    let Some((_proxy, mut replicas)) = fleet(2) else { return };
    let token = replicas[0].create_token(&["--user", "admin"]);
    let url = replicas[0].registry_url("default");
    let publisher = {
        let token = token.clone();
        thread::spawn(move || {
            let client = http();
            let mut acknowledged = Vec::new();
            for i in 0..200 {
                let version = format!("1.0.{i}");
                let tarball = large_package_tarball("crashy", &version, 64 * 1024);
                let body = publish_body_with("crashy", &version, "latest", &tarball);
                let name = "crashy";
                match client
                    .put(format!("{url}{name}"))
                    .bearer_auth(&token)
                    .json(&body)
                    .send()
                {
                    Ok(response) if response.status() == 201 => acknowledged.push((version, tarball)),
                    Ok(_) | Err(_) => break,
                }
            }
            acknowledged
        })
    };
    assert!(
        eventually(Duration::from_secs(30), || versions_on(&replicas[1], &token, "crashy")
            .len()
            >= 5),
        "publishes reach the other replica"
    );
    replicas[0].kill();
    let acknowledged = publisher.join().expect("publisher");
    assert!(acknowledged.len() >= 5, "{} acknowledged", acknowledged.len());
    let survivor = &replicas[1];
    // Kept, not how soon it shows (another test times that): on a busy machine the
    // last acknowledgement may take a moment longer to reach the survivor's cache.
    let mut listed = Vec::new();
    eventually(Duration::from_secs(10), || {
        listed = versions_on(survivor, &token, "crashy");
        acknowledged.iter().all(|(version, _)| listed.contains(version))
    });
    for (version, tarball) in &acknowledged {
        assert!(listed.contains(version), "{version} was acknowledged but is gone");
        let served = get_from(survivor, "default", &format!("crashy/-/crashy-{version}.tgz"), &token);
        assert_eq!(served.status(), 200, "crashy@{version}");
        assert_eq!(
            served.bytes().expect("bytes").as_ref(),
            tarball.as_slice(),
            "crashy@{version}"
        );
    }
    // No half state: `check` finds every version's blob sound.
    survivor.cli_ok(&["check"]);
}

/// The bucket gone: a publish is refused saying so, nothing is recorded, and
/// readiness names the part that is down.
#[test]
fn with_the_bucket_unreachable_publishes_are_refused_and_nothing_is_recorded() {
    let Some((_proxy, replicas)) = fleet(1) else { return };
    let server = &replicas[0];
    let token = server.create_token(&["--user", "admin"]);
    publish_ok(server, "default", &token, "bucketless", "1.0.0");
    let Stores::ScaleOut(stores) = &server.stores else {
        unreachable!("a fleet is on the scale-out stack")
    };
    let stopped = Command::new("kill")
        .args(["-KILL", &stores.s3.pid().to_string()])
        .status()
        .expect("kill");
    assert!(stopped.success());
    let response = publish(
        server,
        "default",
        &token,
        &publish_body_with(
            "bucketless",
            "2.0.0",
            "latest",
            &large_package_tarball("bucketless", "2.0.0", 9 << 20),
        ),
    );
    let message = expect_error(response, 503);
    assert!(
        message.contains("blob store") || message.contains("storage"),
        "{message}"
    );
    assert_eq!(versions_on(server, &token, "bucketless"), vec!["1.0.0".to_owned()]);
    let ready = http().get(format!("{}/-/ready", server.base)).send().expect("ready");
    assert_eq!(ready.status(), 503);
    assert_eq!(ready.json::<Value>().expect("json")["part"], "blobs");
}

/// Wrong settings stop the start with one line naming the setting, not a trace.
#[test]
fn bad_scale_out_settings_stop_the_start_with_one_clear_line() {
    let Some(Stores::ScaleOut(stores)) = Stores::scale_out() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let start = |env: &[(&str, &str)]| {
        let mut command = Command::new(BIN);
        command
            .args(["serve", "--listen", "127.0.0.1:0"])
            .env("GATEHOUSE_DATA_DIR", dir.path())
            .env_remove("GATEHOUSE_CONFIG")
            .env("GATEHOUSE_DATABASE_URL", &stores.database_url)
            .env("GATEHOUSE_BLOB_URL", "s3://gatehouse/p")
            .env("AWS_ENDPOINT_URL", &stores.s3.endpoint)
            .env("AWS_ACCESS_KEY_ID", gatehouse_store::test_support::s3::ACCESS_KEY)
            .env("AWS_SECRET_ACCESS_KEY", gatehouse_store::test_support::s3::SECRET_KEY)
            .envs(env.iter().copied())
            .stdin(Stdio::null());
        let out = command.output().expect("run gatehouse");
        assert!(!out.status.success(), "started with {env:?}");
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error: ")).collect();
        assert_eq!(errors.len(), 1, "one error line: {stderr}");
        assert!(!stderr.contains("stack backtrace"), "{stderr}");
        errors[0].to_owned()
    };
    let no_database = stores.database_url.replacen("/t_", "/missing_", 1);
    let line = start(&[("GATEHOUSE_DATABASE_URL", &no_database)]);
    assert!(
        line.contains("GATEHOUSE_DATABASE_URL") && line.contains("does not exist"),
        "{line}"
    );
    let line = start(&[("GATEHOUSE_BLOB_URL", "s3://no-such-bucket")]);
    assert!(
        line.contains("GATEHOUSE_BLOB_URL") && line.contains("no such bucket"),
        "{line}"
    );
    let line = start(&[("AWS_SECRET_ACCESS_KEY", "wrong")]);
    assert!(
        line.contains("access denied") && line.contains("AWS_SECRET_ACCESS_KEY"),
        "{line}"
    );
    let line = start(&[("AWS_ENDPOINT_URL", "http://127.0.0.1:9")]);
    assert!(line.contains("cannot reach the endpoint"), "{line}");
    let line = start(&[("GATEHOUSE_DATABASE_URL", "postgres://nobody@127.0.0.1:9/gatehouse")]);
    assert!(line.contains("GATEHOUSE_DATABASE_URL"), "{line}");
}

/// Two processes starting at the same moment on fresh stores: both come up, with
/// one `default` registry and one admin.
#[test]
fn replicas_starting_at_once_on_an_empty_database_both_come_up() {
    let Some(stores) = Stores::scale_out() else { return };
    let starters: Vec<_> = (0..3)
        .map(|_| {
            let stores = stores.shared();
            thread::spawn(move || TestServer::start_on_stores(stores, ""))
        })
        .collect();
    let replicas: Vec<TestServer> = starters.into_iter().map(|s| s.join().expect("started")).collect();
    for replica in &replicas {
        let ready = http().get(format!("{}/-/ready", replica.base)).send().expect("ready");
        assert_eq!(ready.status(), 200, "{}", replica.log());
        let token = replica.admin_token();
        let me = get_from(replica, "default", "-/whoami", &token);
        assert_eq!(me.status(), 200);
    }
    let users = replicas[0].cli_ok(&["user", "list"]);
    assert_eq!(users.lines().filter(|l| l.starts_with("admin")).count(), 1, "{users}");
}

/// PostgreSQL restarted under load (a cluster of the test's own): while it is down,
/// every request that needs it gets a prompt 503 naming the database (never a 500 or
/// a hang) and `/-/ready` says "database"; once it is back the replicas recover by
/// themselves, and every acknowledged publish is kept.
#[test]
fn a_database_restarted_under_load_fails_requests_cleanly_and_recovers() {
    use crate::support::stack::{ScaleOut, runtime};
    use gatehouse_store::test_support::{postgres, s3};
    use std::sync::atomic::AtomicBool;

    let Some((cluster, stores)) = runtime().block_on(async {
        let cluster = postgres::cluster().await?;
        let s3 = s3::start().await?;
        let database_url = cluster.admin_url();
        Some((cluster, Stores::ScaleOut(Arc::new(ScaleOut { database_url, s3 }))))
    }) else {
        return;
    };
    let proxy = RoundRobin::start();
    let config = format!("public_url = \"{}\"\n", proxy.base);
    let first = TestServer::start_on_stores(stores, &config);
    let replicas = vec![first.replica(&config), first];
    proxy.serve(&replicas);
    let token = replicas[0].create_token(&["--user", "admin"]);
    publish_ok(&replicas[0], "default", &token, "steady", "0.0.1");

    // Publishers and readers through the proxy, each answer kept with its time.
    let stop = Arc::new(AtomicBool::new(false));
    let load: Vec<_> = (0..4)
        .map(|worker| {
            let (url, token, stop) = (proxy.registry_url(), token.clone(), stop.clone());
            thread::spawn(move || {
                let client = spread();
                let (mut answers, mut acknowledged) = (Vec::new(), Vec::new());
                for i in 0.. {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let started = Instant::now();
                    let (status, body) = if worker % 2 == 0 {
                        let version = format!("1.{worker}.{i}");
                        let tarball = package_tarball("steady", &version);
                        let answer = put(
                            &client,
                            &url,
                            &token,
                            &publish_body_with("steady", &version, "latest", &tarball),
                        );
                        if answer.0 == 201 {
                            acknowledged.push(version);
                        }
                        answer
                    } else {
                        let response = client
                            .get(format!("{url}-/whoami"))
                            .bearer_auth(&token)
                            .send()
                            .expect("whoami");
                        (response.status().as_u16(), response.text().unwrap_or_default())
                    };
                    answers.push((status, body, started.elapsed()));
                    thread::sleep(Duration::from_millis(20));
                }
                (answers, acknowledged)
            })
        })
        .collect();

    thread::sleep(Duration::from_millis(500));
    cluster.halt();
    thread::sleep(Duration::from_secs(2));
    for replica in &replicas {
        let ready = http().get(format!("{}/-/ready", replica.base)).send().expect("ready");
        assert_eq!(ready.status(), 503, "not ready while the database is down");
        assert_eq!(ready.json::<Value>().expect("json")["part"], "database");
    }
    cluster.resume();
    for replica in &replicas {
        assert!(
            eventually(Duration::from_secs(15), || http()
                .get(format!("{}/-/ready", replica.base))
                .send()
                .is_ok_and(|r| r.status() == 200)),
            "ready again: {}",
            replica.log()
        );
    }
    thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    let (mut answers, mut acknowledged) = (Vec::new(), Vec::new());
    for worker in load {
        let (a, v) = worker.join().expect("load");
        assert!(a.last().is_some_and(|(status, ..)| *status != 503), "recovered");
        answers.extend(a);
        acknowledged.extend(v);
    }

    let unavailable: Vec<_> = answers.iter().filter(|(status, ..)| *status == 503).collect();
    assert!(!unavailable.is_empty(), "the outage was seen");
    for (status, body, took) in &answers {
        assert!(matches!(status, 200 | 201 | 503), "{status}: {body}");
        assert!(
            *took < Duration::from_secs(10),
            "answered promptly: {took:?} for {status}"
        );
    }
    for (_, body, _) in &unavailable {
        let error = serde_json::from_str::<Value>(body).expect("json")["error"].clone();
        assert!(
            error.as_str().is_some_and(|e| e.contains("database is unavailable")),
            "{body}"
        );
    }
    let mut listed = Vec::new();
    eventually(PROPAGATION, || {
        listed = versions_on(&replicas[1], &token, "steady");
        acknowledged.iter().all(|version| listed.contains(version))
    });
    for version in &acknowledged {
        assert!(listed.contains(version), "{version} was acknowledged but is gone");
    }
    replicas[0].cli_ok(&["check"]);
}

/// What the web app hands from one request to a later one holds whichever replica
/// answers: an npm web login started on one, approved on another and collected on a
/// third; a new token shown by another replica than the one its form reached; and
/// the failed sign-ins of every replica count against one limit.
#[test]
fn web_logins_shown_tokens_and_login_limits_hold_across_replicas() {
    use crate::web_app::{browser, text};

    let Some((proxy, replicas)) = fleet(3) else { return };
    // What a browser on the proxy's origin sends to whichever replica.
    let post = |replica: &TestServer, cookie: &str, path: &str, fields: &[(&str, &str)]| {
        browser()
            .post(format!("{}{path}", replica.base))
            .header("cookie", cookie)
            .header("origin", &proxy.base)
            .header("sec-fetch-site", "same-origin")
            .form(fields)
            .send()
            .expect("post")
    };
    let get = |replica: &TestServer, cookie: &str, path: &str| {
        browser()
            .get(format!("{}{path}", replica.base))
            .header("cookie", cookie)
            .send()
            .expect("get")
    };
    let sign_in = |replica: &TestServer, user: &str, password: &str| {
        post(
            replica,
            "",
            "/-/ui/login",
            &[("username", user), ("password", password), ("next", "/-/ui/")],
        )
    };
    let signed_in = sign_in(&replicas[1], "admin", ADMIN_PASSWORD);
    assert_eq!(signed_in.status(), 303);
    let cookie = signed_in.headers()["set-cookie"]
        .to_str()
        .expect("cookie")
        .split(';')
        .next()
        .expect("pair")
        .to_owned();

    // npm login: started on 0, polled on 2, approved on 1, collected on 2.
    let started: Value = http()
        .post(format!("{}-/v1/login", replicas[0].registry_url("default")))
        .json(&json!({}))
        .send()
        .expect("start")
        .json()
        .expect("json");
    let path_of = |url: &str| {
        url.strip_prefix(&proxy.base)
            .unwrap_or_else(|| panic!("{url} is on the public URL"))
            .to_owned()
    };
    let page = path_of(started["loginUrl"].as_str().expect("loginUrl"));
    let done = path_of(started["doneUrl"].as_str().expect("doneUrl"));
    let poll = |replica: &TestServer| http().get(format!("{}{done}", replica.base)).send().expect("poll");
    assert_eq!(poll(&replicas[2]).status(), 202);
    let shown = text(get(&replicas[2], &cookie, &page), 200);
    assert!(shown.contains("<h1>Approve npm login</h1>"), "{shown}");
    let approved = text(post(&replicas[1], &cookie, &page, &[]), 200);
    assert!(approved.contains("<h1>npm login approved</h1>"), "{approved}");
    let collected: Value = poll(&replicas[2]).json().expect("json");
    let token = collected["token"].as_str().expect("token").to_owned();
    let me = get_from(&replicas[0], "default", "-/whoami", &token);
    assert_eq!(me.json::<Value>().expect("json")["username"], "admin");
    assert_eq!(poll(&replicas[0]).status(), 404, "collected once");
    assert_eq!(post(&replicas[0], &cookie, &page, &[]).status(), 404, "approved once");

    // A new token: the form on 0, its page on 1, a reload on 2.
    let created = post(&replicas[0], &cookie, "/-/ui/tokens", &[("name", "from-the-form")]);
    assert_eq!(created.status(), 303);
    let shown_at = created.headers()["location"].to_str().expect("location").to_owned();
    let page = text(get(&replicas[1], &cookie, &shown_at), 200);
    assert!(page.contains("Token from-the-form created"), "{page}");
    let start = page.find("gth_").expect("the token on the page");
    let secret: String = page[start..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    assert_eq!(get_from(&replicas[2], "default", "-/whoami", &secret).status(), 200);
    let reload = text(get(&replicas[2], &cookie, &shown_at), 200);
    assert!(
        !reload.contains(&secret) && reload.contains("is not shown again"),
        "{reload}"
    );

    // Failed sign-ins spread over the replicas reach the one limit.
    replicas[0].add_user("target", "right-password-1");
    for attempt in 0..10 {
        let refused = sign_in(&replicas[attempt % 3], "target", "wrong");
        assert_eq!(refused.status(), 401, "attempt {attempt}");
    }
    for replica in &replicas {
        let body = text(sign_in(replica, "target", "right-password-1"), 429);
        assert!(body.contains("Too many failed sign-ins"), "{body}");
    }
}

/// Two replicas pulling the same upstream tarball at the same moment: every download
/// gets the upstream's bytes, and one version and one blob are stored. (Each replica
/// coalesces its own downloads into one upstream request; across replicas there may
/// be one per replica.)
#[test]
fn two_replicas_pulling_one_tarball_at_once_store_one_version_and_one_blob() {
    use crate::support::fake_upstream::FakeUpstream;

    let fake = FakeUpstream::start();
    let tarball = large_package_tarball("pulled", "1.0.0", 600 * 1024);
    fake.publish_bytes("pulled", "1.0.0", &tarball, &tarball);
    fake.set_delay(Duration::from_millis(300));
    let config = format!(
        "[upstream]\nnpmjs_url = \"{}\"\n[registries.default]\nupstreams = [\"npmjs\"]\n",
        fake.url
    );
    let Some((_proxy, replicas)) = fleet_with(2, &config) else {
        return;
    };
    let token = replicas[0].create_token(&["--user", "admin"]);
    let blobs = blob_count(&replicas[0]);
    let start = Arc::new(Barrier::new(8));
    let downloads: Vec<_> = (0..8)
        .map(|i| {
            let (url, token, start) = (replicas[i % 2].registry_url("default"), token.clone(), start.clone());
            thread::spawn(move || {
                start.wait();
                let response = http()
                    .get(format!("{url}pulled/-/pulled-1.0.0.tgz"))
                    .bearer_auth(&token)
                    .send()
                    .expect("download");
                (response.status().as_u16(), response.bytes().expect("bytes").to_vec())
            })
        })
        .collect();
    for download in downloads {
        let (status, bytes) = download.join().expect("download");
        assert_eq!(status, 200);
        assert!(bytes == tarball, "the upstream's bytes");
    }
    let hits = fake.hits("pulled/-/pulled-1.0.0.tgz");
    assert!(
        (1..=2).contains(&hits),
        "one upstream request per replica at most: {hits}"
    );
    assert_eq!(blob_count(&replicas[0]), blobs + 1, "one blob");
    for replica in &replicas {
        let versions = versions_on(replica, &token, "pulled");
        assert_eq!(versions, vec!["1.0.0".to_owned()]);
    }
    let report = replicas[1].cli_ok(&["check"]);
    assert!(
        report.contains("checked 1 versions and 1 blobs"),
        "one version stored: {report}"
    );
}

/// `[blobs] redirect = true`: a tarball download that passed the access checks is
/// answered with a short-lived presigned URL of the bucket, which serves the bytes
/// without credentials (npm installs through it); a caller without access gets no
/// URL, and a tampered one is refused by the bucket.
#[test]
fn with_redirects_on_tarballs_come_from_presigned_urls_of_the_bucket() {
    use crate::support::clients::{ClientKind, Project};

    let Some((proxy, replicas)) = fleet_with(1, "[blobs]\nredirect = true\n") else {
        return;
    };
    let server = &replicas[0];
    let Stores::ScaleOut(stores) = &server.stores else {
        unreachable!("a fleet is on the scale-out stack")
    };
    let token = server.create_token(&["--user", "admin"]);
    let tarball = package_tarball("signed", "1.0.0");
    let (status, body) = put(
        &http(),
        &server.registry_url("default"),
        &token,
        &publish_body_with("signed", "1.0.0", "latest", &tarball),
    );
    assert_eq!(status, 201, "{body}");
    let url = format!("{}signed/-/signed-1.0.0.tgz", server.registry_url("default"));
    let no_follow = crate::web_app::browser();

    let answer = no_follow.get(&url).bearer_auth(&token).send().expect("download");
    assert_eq!(answer.status(), 307);
    assert_eq!(answer.headers()["cache-control"], "private, no-store");
    let location = answer.headers()["location"].to_str().expect("location").to_owned();
    assert!(location.starts_with(&stores.s3.endpoint), "{location}");
    assert!(
        location.contains("X-Amz-Signature=") && location.contains("X-Amz-Expires=300"),
        "{location}"
    );
    let fetched = http().get(&location).send().expect("presigned");
    assert_eq!(fetched.status(), 200);
    assert!(
        fetched.bytes().expect("bytes").as_ref() == tarball.as_slice(),
        "the bytes"
    );

    let anonymous = no_follow.get(&url).send().expect("anonymous");
    assert_eq!(anonymous.status(), 401);
    assert!(anonymous.headers().get("location").is_none(), "no URL without access");
    // Another signature of the same shape: the bucket refuses it.
    let at = location.find("X-Amz-Signature=").expect("signature") + "X-Amz-Signature=".len();
    let flipped = if location[at..].starts_with('0') { "1" } else { "0" };
    let tampered = format!("{}{flipped}{}", &location[..at], &location[at + 1..]);
    assert_eq!(http().get(&tampered).send().expect("tampered").status(), 403);
    let head = no_follow.head(&url).bearer_auth(&token).send().expect("head");
    assert_eq!(head.status(), 200, "HEAD is answered here");

    // Through the load balancer, whose URL the packument's tarball URLs carry.
    let app = Project::new(ClientKind::Npm);
    app.configure(&proxy.registry_url(), &token);
    app.install(&[("signed", "1.0.0")]);
    assert!(app.read_installed("signed", "package.json").contains("\"1.0.0\""));
}
