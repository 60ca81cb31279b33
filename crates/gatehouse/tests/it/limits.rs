//! Limits under load: clients that dribble headers or bodies, idle connections and
//! more connections than `max_connections` are cut off or kept waiting by `[limits]`,
//! while normal clients keep being answered. Timeouts are small (seconds) and every
//! wait has a generous bound: these tests run next to a hundred others.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::*;

/// Small timeouts; `max_connections` far above what these tests open unless said.
const TIMEOUTS: &str = "[limits]\nheader_timeout_ms = 1500\nbody_timeout_ms = 1500\n\
                        body_total_timeout_ms = 4000\nidle_timeout_ms = 6000\n";

fn connect(server: &TestServer) -> TcpStream {
    let stream = TcpStream::connect(server.base.trim_start_matches("http://")).expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    stream
}

/// Whether the server closed `stream` (end of stream or reset); never blocks.
fn closed(stream: &mut TcpStream) -> bool {
    stream.set_nonblocking(true).expect("nonblocking");
    let mut buf = [0u8; 1024];
    let result = match stream.read(&mut buf) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) if e.kind() == ErrorKind::WouldBlock => false,
        Err(_) => true,
    };
    stream.set_nonblocking(false).expect("blocking");
    result
}

fn ping(server: &TestServer) -> u16 {
    http()
        .get(format!("{}/-/ping", server.base))
        .timeout(Duration::from_secs(20))
        .send()
        .map(|r| r.status().as_u16())
        .unwrap_or_else(|e| panic!("ping failed: {e}\n{}", server.log()))
}

/// Pings the server every 100 ms on new connections until `stop`; returns how many
/// answers came and the slowest one.
fn ping_meanwhile(base: String, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<(usize, Duration)> {
    std::thread::spawn(move || {
        let (mut answers, mut slowest) = (0, Duration::ZERO);
        while !stop.load(Ordering::SeqCst) {
            let started = Instant::now();
            let status = http()
                .get(format!("{base}/-/ping"))
                .timeout(Duration::from_secs(20))
                .send()
                .map(|r| r.status().as_u16());
            assert!(
                matches!(status, Ok(200)),
                "a normal client was not answered: {status:?}"
            );
            answers += 1;
            slowest = slowest.max(started.elapsed());
            std::thread::sleep(Duration::from_millis(100));
        }
        (answers, slowest)
    })
}

#[test]
fn dribbled_headers_are_cut_off_while_normal_clients_are_answered() {
    let server = TestServer::start_with_config(TIMEOUTS);
    let stop = Arc::new(AtomicBool::new(false));
    let pinger = ping_meanwhile(server.base.clone(), stop.clone());
    // Slowloris: a request line, then one header byte per connection every 200 ms.
    let started = Instant::now();
    let mut slow: Vec<(TcpStream, Option<Duration>)> = (0..300)
        .map(|_| {
            let mut stream = connect(&server);
            stream
                .write_all(b"GET /-/ping HTTP/1.1\r\nHost: x\r\nX-Slow: ")
                .expect("write request line");
            (stream, None)
        })
        .collect();
    let deadline = started + Duration::from_secs(60);
    while slow.iter().any(|(_, closed_at)| closed_at.is_none()) && Instant::now() < deadline {
        for (stream, closed_at) in slow.iter_mut().filter(|(_, c)| c.is_none()) {
            if closed(stream) || stream.write_all(b"a").is_err() {
                *closed_at = Some(started.elapsed());
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let open = slow.iter().filter(|(_, c)| c.is_none()).count();
    assert_eq!(open, 0, "{open} dribbling connections still open after 60 s");
    let last = slow.iter().filter_map(|(_, c)| *c).max().expect("closed");
    // 1.5 s header timeout; anything under 30 s is the timeout working, not luck.
    assert!(
        last < Duration::from_secs(30),
        "the last slow connection was closed after {last:?}"
    );
    // Meanwhile, and afterwards, normal clients are answered.
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::SeqCst);
    let (answers, slowest) = pinger.join().expect("pinger");
    assert!(answers > 0, "no normal request was answered during the slowloris");
    assert!(slowest < Duration::from_secs(10), "a normal request took {slowest:?}");
    assert_eq!(ping(&server), 200);
}

/// Writes a request body, slowly.
type Sender = fn(&mut TcpStream, &[u8]);

/// A raw publish of `name@1.0.0` whose body is written by `send` (in a thread, so the
/// answer is read as soon as it comes); returns the status and the body.
fn slow_publish(server: &TestServer, token: &str, name: &str, send: Sender) -> (u16, String) {
    let body = publish_body(name, "1.0.0").to_string().into_bytes();
    let mut stream = connect(server);
    stream.set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
    write!(
        stream,
        "PUT /r/default/{name} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .expect("write head");
    let mut writer = stream.try_clone().expect("clone");
    let sender = std::thread::spawn(move || send(&mut writer, &body));
    let response =
        read_response(&mut stream).unwrap_or_else(|| panic!("no answer to a slow publish\n{}", server.log()));
    drop(stream);
    sender.join().expect("sender");
    response
}

#[test]
fn dribbled_publish_bodies_are_answered_408_and_store_nothing() {
    let server = TestServer::start_with_config(TIMEOUTS);
    let token = server.admin_token();
    publish_ok(&server, "default", &token, "seed", "1.0.0");
    let blobs = blob_count(&server);
    let cases: [(&str, Sender, &str); 2] = [
        // Half the body, then nothing: the pause passes body_timeout.
        (
            "stalled",
            |stream, body| {
                let _ = stream.write_all(&body[..body.len() / 2]);
                std::thread::sleep(Duration::from_secs(8));
            },
            "the request body stopped arriving: nothing came for 1.5 s (limits.body_timeout_ms)",
        ),
        // A byte every 200 ms: every pause is short, the whole passes body_total_timeout.
        (
            "dribbled",
            |stream, body| {
                let until = Instant::now() + Duration::from_secs(30);
                for byte in body.chunks(1) {
                    if Instant::now() > until || stream.write_all(byte).is_err() {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(200));
                }
            },
            "the request body took longer than 4 s to arrive (limits.body_total_timeout_ms)",
        ),
    ];
    for (label, send, needle) in cases {
        let name = format!("slow-{label}");
        let (status, body) = slow_publish(&server, &token, &name, send);
        assert_eq!(status, 408, "{label}: {body}");
        let error: Value = serde_json::from_str(&body).unwrap_or_else(|_| panic!("{label}: not JSON: {body}"));
        let error = error["error"].as_str().unwrap_or_default();
        assert!(error.contains(needle), "{label}: {error:?} does not say {needle:?}");
        assert!(error.contains("nothing was stored"), "{label}: {error:?}");
        assert_eq!(packument(&server, "default", &token, &name), None, "{label}: stored");
        assert_eq!(blob_count(&server), blobs, "{label}: a blob was stored");
        assert_eq!(ping(&server), 200, "{label}: alive");
    }
    // The same publish, sent at once, is fine.
    publish_ok(&server, "default", &token, "slow-stalled", "1.0.0");
}

#[test]
fn connections_over_the_limit_wait_until_one_closes() {
    let server = TestServer::start_with_config(
        "[limits]\nmax_connections = 4\nheader_timeout_ms = 30000\nidle_timeout_ms = 30000\n",
    );
    // Four connections take every place, sending half a request.
    let holders: Vec<TcpStream> = (0..4)
        .map(|_| {
            let mut stream = connect(&server);
            stream.write_all(b"GET /-/ping HTTP/1.1\r\n").expect("write");
            stream
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    // Six more send whole requests: they wait (in the listen backlog), unanswered.
    let request = b"GET /-/ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    let mut waiting: Vec<TcpStream> = (0..6)
        .map(|_| {
            let mut stream = connect(&server);
            stream.write_all(request).expect("write");
            stream
        })
        .collect();
    std::thread::sleep(Duration::from_millis(1500));
    for stream in &mut waiting {
        stream
            .set_read_timeout(Some(Duration::from_millis(100)))
            .expect("timeout");
        let mut byte = [0u8; 1];
        match stream.read(&mut byte) {
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            other => panic!("a connection over the limit was served (or closed): {other:?}"),
        }
    }
    // Places free up: every waiting request is answered.
    drop(holders);
    for stream in &mut waiting {
        stream.set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
        let (status, _) = read_response(stream).unwrap_or_else(|| panic!("no answer\n{}", server.log()));
        assert_eq!(status, 200);
    }
    drop(waiting);
    // Many more than the limit at once: they queue, none is lost, the server stays up.
    let base = server.base.clone();
    let crowd: Vec<_> = (0..40)
        .map(|_| {
            let base = base.clone();
            std::thread::spawn(move || {
                http()
                    .get(format!("{base}/-/ping"))
                    .timeout(Duration::from_secs(60))
                    .send()
                    .map(|r| r.status().as_u16())
            })
        })
        .collect();
    for client in crowd {
        assert!(matches!(client.join().expect("client"), Ok(200)));
    }
    assert_eq!(ping(&server), 200);
    let log = server.log();
    assert!(
        log.contains("all connections are in use (limits.max_connections)"),
        "the log does not say the limit was reached:\n{log}"
    );
    assert_eq!(
        log.matches("all connections are in use").count(),
        1,
        "said more than once a minute:\n{log}"
    );
}

#[test]
fn idle_keep_alive_connections_are_closed_after_the_idle_timeout() {
    let server = TestServer::start_with_config(TIMEOUTS);
    let mut stream = connect(&server);
    stream.set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
    // Requests 3 s apart: longer than the header timeout, shorter than the idle one;
    // the connection is kept.
    for _ in 0..3 {
        stream
            .write_all(b"GET /-/ping HTTP/1.1\r\nHost: x\r\n\r\n")
            .expect("keep-alive connection still open");
        let (status, _) = read_response(&mut stream).expect("answer");
        assert_eq!(status, 200);
        std::thread::sleep(Duration::from_secs(3));
    }
    stream
        .write_all(b"GET /-/ping HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("write");
    let (status, _) = read_response(&mut stream).expect("answer");
    assert_eq!(status, 200);
    let idle_since = Instant::now();
    let mut buf = [0u8; 64];
    let end = stream.read(&mut buf);
    let waited = idle_since.elapsed();
    assert!(
        matches!(&end, Ok(0)) || matches!(&end, Err(e) if e.kind() == ErrorKind::ConnectionReset),
        "idle connection not closed: {end:?}"
    );
    assert!(
        waited > Duration::from_secs(3),
        "closed after {waited:?}, before the 6 s idle timeout"
    );
    assert!(waited < Duration::from_secs(29), "closed only after {waited:?}");
    assert_eq!(ping(&server), 200);
}

/// Publishes `big@1.0.0` with a tarball of about `size` bytes, and returns the tarball.
fn publish_big(server: &TestServer, token: &str, size: usize) -> Vec<u8> {
    let tarball = large_package_tarball("big", "1.0.0", size);
    let response = publish(
        server,
        "default",
        token,
        &publish_body_with("big", "1.0.0", "latest", &tarball),
    );
    assert_eq!(response.status(), 201, "{}", response.text().unwrap_or_default());
    tarball
}

#[test]
fn a_client_that_stops_reading_its_response_is_cut_off() {
    let server = TestServer::start_with_config(TIMEOUTS);
    let token = server.admin_token();
    // Larger than what the socket buffers on both sides hold, so the server's writes stall.
    let tarball = publish_big(&server, &token, 24 * 1024 * 1024);
    let mut stream = connect(&server);
    write!(
        stream,
        "GET /r/default/big/-/big-1.0.0.tgz HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n"
    )
    .expect("write");
    // Read nothing for longer than the 6 s idle timeout, then everything there is.
    std::thread::sleep(Duration::from_secs(15));
    stream.set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
    let mut received = Vec::new();
    let end = stream.read_to_end(&mut received);
    assert!(
        end.is_ok() || end.as_ref().is_err_and(|e| e.kind() == ErrorKind::ConnectionReset),
        "the stalled download was not closed: {end:?}"
    );
    assert!(
        received.len() < tarball.len(),
        "the whole tarball ({} bytes) was sent to a client that stopped reading",
        tarball.len()
    );
    // Nothing else was affected.
    let again = http()
        .get(format!("{}big/-/big-1.0.0.tgz", server.registry_url("default")))
        .bearer_auth(&token)
        .send()
        .expect("download");
    assert_eq!(again.bytes().expect("bytes").len(), tarball.len());
}

#[test]
fn admin_api_bodies_are_read_within_the_limits() {
    let server = TestServer::start_with_config("[limits]\nmax_body_bytes = 1024\n");
    let token = server.admin_token();
    let big = format!("{{\"name\": \"x\", \"password\": \"{}\"}}", "p".repeat(4096));
    for (path, credentials) in [
        ("users", None),
        ("users", Some(&token)),
        ("registries", Some(&token)),
        ("registries/default/exceptions", Some(&token)),
        ("registries/default/quarantine/approve", Some(&token)),
        ("registries/default/trust?package=x", Some(&token)),
    ] {
        let mut request = http()
            .post(format!("{}/-/api/v1/{path}", server.base))
            .header("content-type", "application/json")
            .body(big.clone());
        if let Some(token) = credentials {
            request = request.bearer_auth(token);
        }
        let error = expect_error(request.send().expect("post"), 413);
        assert!(error.contains("larger than the limit of 1024 bytes"), "{path}: {error}");
    }
    assert_eq!(ping(&server), 200);
}

#[test]
fn shutdown_finishes_in_flight_downloads_and_closes_idle_connections() {
    let mut server = TestServer::start_with_config(TIMEOUTS);
    let token = server.admin_token();
    let tarball = publish_big(&server, &token, 16 * 1024 * 1024);
    let mut idle = connect(&server);
    idle.set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
    let mut download = connect(&server);
    download
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    write!(
        download,
        "GET /r/default/big/-/big-1.0.0.tgz HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    )
    .expect("write");
    let mut received = vec![0u8; 1024 * 1024];
    download.read_exact(&mut received).expect("the first MiB");
    // Shut down mid-download, and read the rest slowly.
    let stopping = std::thread::spawn(move || {
        let exit = server.terminate(Duration::from_secs(60));
        (exit, server)
    });
    let mut buf = [0u8; 64 * 1024];
    loop {
        match download.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => received.extend_from_slice(&buf[..n]),
            Err(e) => panic!("the download broke off after {} bytes: {e}", received.len()),
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let body_at = received.windows(4).position(|w| w == b"\r\n\r\n").expect("headers") + 4;
    assert!(
        received[body_at..] == tarball[..],
        "the in-flight download was not finished whole"
    );
    let mut byte = [0u8; 1];
    assert!(
        matches!(idle.read(&mut byte), Ok(0)),
        "the idle connection was not closed at shutdown"
    );
    let (exit, server) = stopping.join().expect("terminate");
    let exit = exit.unwrap_or_else(|| panic!("the server did not exit\n{}", server.log()));
    assert!(exit.success(), "exit status {exit:?}\n{}", server.log());
}
