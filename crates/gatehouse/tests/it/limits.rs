//! Limits under load: request bodies dribbled byte by byte or stalled are answered
//! 408 and store nothing. Timeouts are small (seconds) and every wait has a generous
//! bound: these tests run next to a hundred others.

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::*;

/// Small timeouts.
const TIMEOUTS: &str = "[limits]\nbody_timeout_ms = 1500\nbody_total_timeout_ms = 4000\n";

fn connect(server: &TestServer) -> TcpStream {
    let stream = TcpStream::connect(server.base.trim_start_matches("http://")).expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    stream
}

fn ping(server: &TestServer) -> u16 {
    http()
        .get(format!("{}/-/ping", server.base))
        .timeout(Duration::from_secs(20))
        .send()
        .map(|r| r.status().as_u16())
        .unwrap_or_else(|e| panic!("ping failed: {e}\n{}", server.log()))
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
fn admin_api_bodies_are_read_within_the_limits() {
    let server = TestServer::start_with_config("[limits]\nmax_body_bytes = 1024\n");
    let token = server.admin_token();
    let big = format!("{{\"name\": \"x\", \"password\": \"{}\"}}", "p".repeat(4096));
    for (path, credentials) in [("users", None), ("users", Some(&token)), ("registries", Some(&token))] {
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
