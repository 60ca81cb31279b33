//! Bad input: names, versions, tags, publish bodies, oversized bodies and hostile
//! tarballs. Every refusal is checked four ways: the status, the message a user reads,
//! that nothing was stored or changed (packages, `_rev`, versions, tags, blobs — also
//! after a restart, so nothing hides behind a cache) and that the server still answers.

use std::io::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use base64::Engine as _;
use serde_json::{Value, json};

use crate::support::*;

/// The package every test publishes first; refused writes must leave it exactly as it is.
const SEED: &str = "seed";

/// A server with `seed@1.0.0` published, and an admin token.
struct Fixture {
    server: TestServer,
    token: String,
}

impl Fixture {
    fn start(config: &str) -> Fixture {
        let server = TestServer::start_with_config(config);
        let token = server.admin_token();
        publish_ok(&server, "default", &token, SEED, "1.0.0");
        Fixture { server, token }
    }

    /// Everything a refused request could have changed: every package of the registry
    /// (versions, tags, modified time), the seed's full packument (`_rev`, `time`) and
    /// the number of stored blobs. Tarball URLs carry the port, which a restart changes.
    fn state(&self) -> String {
        let mut all: Value = http()
            .get(format!("{}-/all", self.server.registry_url("default")))
            .bearer_auth(&self.token)
            .send()
            .expect("-/all")
            .json()
            .expect("-/all json");
        all.as_object_mut().expect("object").remove("_updated");
        let state = json!({
            "packages": all,
            "seed": packument(&self.server, "default", &self.token, SEED),
            "blobs": blob_count(&self.server),
        });
        state.to_string().replace(&self.server.base, "BASE")
    }

    /// Asserts a refusal: status, a readable error, nothing changed, server alive.
    fn assert_refused(&self, label: &str, (status, body): (u16, String), expected: u16, needle: &str, before: &str) {
        assert_eq!(status, expected, "{label}: unexpected status, body: {body}");
        let error = serde_json::from_str::<Value>(&body)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_owned))
            .unwrap_or_else(|| panic!("{label}: error body is not JSON with an `error`: {body:?}"));
        assert!(
            error.contains(needle),
            "{label}: error {error:?} does not mention {needle:?}"
        );
        assert_eq!(self.state(), before, "{label}: a refused request changed the store");
        self.assert_alive(label);
    }

    fn assert_alive(&self, label: &str) {
        let ping = http()
            .get(format!("{}-/ping", self.server.registry_url("default")))
            .send()
            .unwrap_or_else(|e| panic!("{label}: server stopped answering: {e}"));
        assert_eq!(ping.status(), 200, "{label}: ping after the request");
    }

    /// Ends a test: the store still holds exactly `before` when read fresh from disk,
    /// and a good publish still works.
    fn finish(mut self, before: &str) {
        self.server.restart();
        assert_eq!(self.state(), before, "state changed on disk (seen after a restart)");
        publish_ok(&self.server, "default", &self.token, SEED, "1.0.1");
        assert!(packument(&self.server, "default", &self.token, SEED).expect("seed")["versions"]["1.0.1"].is_object());
    }

    /// `PUT` of a JSON value to a raw path.
    fn put_json(&self, path: &str, body: &Value) -> (u16, String) {
        self.raw("PUT", path, body.to_string().as_bytes())
    }

    /// A request with the path sent byte for byte: HTTP clients would normalise
    /// `..` and re-encode escapes before the server could refuse them.
    fn raw(&self, method: &str, path: &str, body: &[u8]) -> (u16, String) {
        raw_request(&self.server, method, &format!("/r/default/{path}"), &self.token, body)
    }
}

fn raw_request(server: &TestServer, method: &str, path: &str, token: &str, body: &[u8]) -> (u16, String) {
    let addr = server.base.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).expect("write head");
    // The server may answer (and close) before reading a body it refuses.
    let _ = stream.write_all(body);
    read_response(&mut stream).unwrap_or_else(|| panic!("{method} {path}: no HTTP response"))
}

/// A package.json for `name@version` with extra fields.
fn manifest(name: &str, version: &str, extra: Value) -> Vec<u8> {
    let mut m = json!({ "name": name, "version": version, "main": "index.js" });
    if let (Some(m), Value::Object(extra)) = (m.as_object_mut(), extra) {
        m.extend(extra);
    }
    m.to_string().into_bytes()
}

/// A publish of `seed@2.0.0` with `tarball`, changed by `mutate`.
fn seed_publish(tarball: &[u8], mutate: impl FnOnce(&mut Value)) -> Value {
    let mut body = publish_body_with(SEED, "2.0.0", "latest", tarball);
    mutate(&mut body);
    body
}

fn good_seed_tarball() -> Vec<u8> {
    package_tarball(SEED, "2.0.0")
}

#[test]
fn invalid_package_names_are_refused_before_anything_is_stored() {
    let fx = Fixture::start("");
    let before = fx.state();
    let long = "x".repeat(215);
    // (URL path segment(s), status, what the error says)
    let cases: &[(&str, u16, &str)] = &[
        (&long, 400, "more than 214 characters"),
        ("a:b", 400, "URL-friendly characters"),
        (
            "caf%C3%A9",
            400,
            "only the \"/\" of a scoped name may be percent-encoded",
        ),
        ("café", 400, "URL-friendly characters"),
        ("Uppercase", 400, "can no longer contain capital letters"),
        ("@Acme%2fui", 400, "can no longer contain capital letters"),
        (".hidden", 400, "cannot start with a period"),
        ("_private", 400, "cannot start with an underscore"),
        ("-dash", 400, "cannot start with a hyphen"),
        ("node_modules", 400, "is not a valid package name"),
        ("http", 400, "is a core module name"),
        ("a~b", 400, "special characters"),
        ("@acme", 400, "URL-friendly characters"),
        ("@%2fx", 400, "URL-friendly characters"),
        ("@.acme%2fx", 400, "scope cannot start with a period"),
        ("@acme%2f.x", 400, "cannot start with a period"),
        ("@acme%2fa%2fb", 400, "URL-friendly characters"),
        ("..", 400, "'.' and '..' segments are not allowed"),
        ("%2e%2e", 400, "'.' and '..' segments are not allowed"),
        ("%2E%2E", 400, "'.' and '..' segments are not allowed"),
        ("@../x", 400, "scope cannot start with a period"),
        ("@acme/..", 400, "'.' and '..' segments are not allowed"),
        ("foo%2fbar", 400, "URL-friendly characters"),
        ("foo%2f..%2fbar", 400, "'.' and '..' segments are not allowed"),
        ("foo%5cbar", 400, "\"%5c\" is not allowed"),
        ("a%00b", 400, "\"%00\" is not allowed"),
        ("a%0ab", 400, "\"%0a\" is not allowed"),
        ("a%1Bb", 400, "\"%1B\" is not allowed"),
        ("a%7fb", 400, "\"%7f\" is not allowed"),
        ("a%20b", 400, "\"%20\" is not allowed"),
        ("a%zz", 400, "must be followed by two hexadecimal digits"),
        ("con", 400, "con is a reserved device name on Windows"),
        ("nul", 400, "nul is a reserved device name on Windows"),
        ("com1", 400, "com1 is a reserved device name on Windows"),
        ("lpt9", 400, "lpt9 is a reserved device name on Windows"),
        ("aux.js", 400, "aux.js is a reserved device name on Windows"),
        ("@acme%2fprn", 400, "prn is a reserved device name on Windows"),
    ];
    for (path, status, needle) in cases {
        // The body names the package as the URL does, so the name is the only fault.
        let decoded = percent_encoding::percent_decode_str(path)
            .decode_utf8_lossy()
            .into_owned();
        let body = publish_body(&decoded, "1.0.0");
        let response = fx.put_json(path, &body);
        fx.assert_refused(&format!("PUT {path}"), response, *status, needle, &before);
    }
    // Raw control characters and spaces never reach the registry: the HTTP parser refuses
    // the request line, with a bare 400 (there is no request to answer in JSON).
    for path in ["a\u{0}b", "a\u{1}b", "a\u{7f}b", "a\tb", "a b"] {
        let (status, _) = fx.raw("PUT", path, publish_body("ab", "1.0.0").to_string().as_bytes());
        assert_eq!(status, 400, "PUT {path:?}");
        assert_eq!(fx.state(), before, "PUT {path:?} changed the store");
        fx.assert_alive(&format!("PUT {path:?}"));
    }
    // Reads and tag writes refuse the same names the same way.
    for (path, needle) in [
        ("%2e%2e", "'.' and '..' segments"),
        ("a%00b", "\"%00\" is not allowed"),
        ("@../x", "scope cannot start with a period"),
        ("seed/-/%2e%2e%2fseed-1.0.0.tgz", "'.' and '..' segments"),
        ("seed/-/seed-1.0.0.tgz%00", "control characters"),
        ("seed/-/a%2fb.tgz", "encoded slashes"),
        ("-/package/%2e%2e/dist-tags", "'.' and '..' segments"),
        ("-/package/a%2fb/dist-tags", "URL-friendly characters"),
    ] {
        let response = fx.raw("GET", path, b"");
        fx.assert_refused(&format!("GET {path}"), response, 400, needle, &before);
    }
    let response = fx.put_json("-/package/%2e%2e%2fseed/dist-tags/next", &json!("1.0.0"));
    fx.assert_refused("PUT tag on ../seed", response, 400, "'.' and '..' segments", &before);
    fx.finish(&before);
}

#[test]
fn invalid_versions_and_range_like_dist_tags_are_refused() {
    let fx = Fixture::start("");
    let before = fx.state();
    for version in [
        "1.0",
        "1",
        "v2.0.0",
        "=2.0.0",
        "02.0.0",
        "2.0.0-",
        "2.0.0.0",
        "2.0.0 ",
        "latest",
        "9007199254740992.0.0",
        "",
    ] {
        let tarball = tarball(&[("package/package.json", &manifest(SEED, version, json!({})))]);
        let body = publish_body_with(SEED, version, "latest", &tarball);
        let response = fx.put_json(SEED, &body);
        fx.assert_refused(
            &format!("version {version:?}"),
            response,
            400,
            "invalid version",
            &before,
        );
    }
    // A tag that is a valid range could never be installed by name: `npm i seed@1.x`
    // means the range.
    for tag in ["1.x", "1", "*", "x", "~1.2", "v1", "2.0.0", "1.2.x"] {
        let body = seed_publish(&good_seed_tarball(), |b| b["dist-tags"] = json!({ tag: "2.0.0" }));
        let response = fx.put_json(SEED, &body);
        fx.assert_refused(
            &format!("publish tag {tag}"),
            response,
            400,
            "must not be a valid SemVer range",
            &before,
        );
        let response = fx.put_json(&format!("-/package/{SEED}/dist-tags/{tag}"), &json!("1.0.0"));
        fx.assert_refused(
            &format!("dist-tag add {tag}"),
            response,
            400,
            "must not be a valid SemVer range",
            &before,
        );
    }
    for (tag, needle) in [
        ("a%00", "control characters"),
        ("%20next", "must not start or end with whitespace"),
        ("a%3Cb", "URL-friendly characters"),
    ] {
        let response = fx.put_json(&format!("-/package/{SEED}/dist-tags/{tag}"), &json!("1.0.0"));
        fx.assert_refused(&format!("dist-tag add {tag}"), response, 400, needle, &before);
    }
    fx.finish(&before);
}

#[test]
fn malformed_and_inconsistent_publish_bodies_are_refused() {
    let fx = Fixture::start("");
    let before = fx.state();
    let good = good_seed_tarball();
    let other = tarball(&[
        ("package/package.json", &manifest(SEED, "2.0.0", json!({}))),
        ("package/index.js", b"module.exports = 'other';\n"),
    ]);
    let tgz = format!("{SEED}-2.0.0.tgz");
    let no_attachments = |b: &mut Value| {
        b.as_object_mut().expect("object").remove("_attachments");
    };
    let packed = |extra: Value| tarball(&[("package/package.json", &manifest(SEED, "2.0.0", extra))]);
    type Case = (&'static str, Vec<u8>, u16, &'static str);
    let json_case =
        |label, body: Value, status, needle| -> Case { (label, body.to_string().into_bytes(), status, needle) };
    let cases: Vec<Case> = vec![
        ("empty body", Vec::new(), 400, "not valid JSON"),
        (
            "truncated JSON",
            br#"{"name": "seed", "versions": {"#.to_vec(),
            400,
            "not valid JSON",
        ),
        ("not UTF-8", b"{\"name\": \"\xff\"}".to_vec(), 400, "not valid JSON"),
        ("a JSON array", b"[]".to_vec(), 400, "must be a JSON object"),
        (
            "nothing to do",
            br#"{"name": "seed"}"#.to_vec(),
            400,
            "no versions, attachments or maintainers",
        ),
        json_case(
            "no attachments",
            seed_publish(&good, no_attachments),
            400,
            "version 2.0.0 does not exist; new versions must be published with their tarball",
        ),
        json_case(
            "empty attachments",
            seed_publish(&good, |b| b["_attachments"] = json!({})),
            400,
            "new versions must be published with their tarball",
        ),
        json_case(
            "attachment under another name",
            seed_publish(&good, |b| {
                let a = b["_attachments"][&tgz].take();
                b["_attachments"] = json!({ "seed-9.9.9.tgz": a });
            }),
            400,
            "unexpected attachment \"seed-9.9.9.tgz\"",
        ),
        json_case(
            "extra attachment",
            seed_publish(&good, |b| {
                b["_attachments"]["evil.tgz"] = b["_attachments"][&tgz].clone()
            }),
            400,
            "unexpected attachment \"evil.tgz\"",
        ),
        json_case(
            "attachment not base64",
            seed_publish(&good, |b| b["_attachments"][&tgz]["data"] = json!("not base64!!")),
            400,
            "not valid base64",
        ),
        json_case(
            "attachment without data",
            seed_publish(&good, |b| {
                b["_attachments"][&tgz].as_object_mut().expect("object").remove("data");
            }),
            400,
            "has no \"data\" string",
        ),
        json_case(
            "attachment empty",
            seed_publish(&good, |b| {
                b["_attachments"][&tgz]["data"] = json!("");
                b["_attachments"][&tgz]["length"] = json!(0);
            }),
            400,
            "tarball attachment is empty",
        ),
        json_case(
            "length mismatch",
            seed_publish(&good, |b| b["_attachments"][&tgz]["length"] = json!(good.len() + 1)),
            400,
            "does not match the",
        ),
        json_case(
            "length not a number",
            seed_publish(&good, |b| b["_attachments"][&tgz]["length"] = json!("12")),
            400,
            "\"length\" must be a number",
        ),
        json_case(
            "shasum mismatch",
            seed_publish(&good, |b| {
                b["versions"]["2.0.0"]["dist"]["shasum"] = json!(sha1_hex(&other))
            }),
            400,
            "shasum mismatch",
        ),
        json_case(
            "integrity mismatch",
            seed_publish(&good, |b| {
                b["versions"]["2.0.0"]["dist"]["integrity"] = json!(sri_sha512(&other))
            }),
            400,
            "integrity mismatch",
        ),
        json_case(
            "digests of another tarball",
            seed_publish(&good, |b| {
                b["_attachments"][&tgz]["data"] = json!(base64::engine::general_purpose::STANDARD.encode(&other));
                b["_attachments"][&tgz]["length"] = json!(other.len());
            }),
            400,
            "integrity mismatch",
        ),
        json_case(
            "no digests at all",
            seed_publish(&good, |b| b["versions"]["2.0.0"]["dist"] = json!({})),
            400,
            "no integrity or shasum",
        ),
        json_case(
            "_id differs from the URL",
            seed_publish(&good, |b| b["_id"] = json!("other")),
            400,
            "document _id \"other\" does not match",
        ),
        json_case(
            "name differs from the URL",
            seed_publish(&good, |b| b["name"] = json!("other")),
            400,
            "package name \"other\" in the body does not match",
        ),
        json_case(
            "name with a NUL",
            seed_publish(&good, |b| b["name"] = json!("seed\u{0}")),
            400,
            "in the body does not match",
        ),
        json_case(
            "manifest name differs",
            seed_publish(&good, |b| b["versions"]["2.0.0"]["name"] = json!("other")),
            400,
            "manifest name \"other\" does not match",
        ),
        json_case(
            "manifest version differs from its key",
            seed_publish(&good, |b| b["versions"]["2.0.0"]["version"] = json!("3.0.0")),
            400,
            "manifest version \"3.0.0\" does not match",
        ),
        json_case(
            "two versions",
            seed_publish(&good, |b| b["versions"]["2.0.1"] = b["versions"]["2.0.0"].clone()),
            400,
            "exactly one version",
        ),
        json_case(
            "tag pointing elsewhere",
            seed_publish(&good, |b| b["dist-tags"] = json!({ "latest": "1.0.0" })),
            400,
            "must point at the published version 2.0.0",
        ),
        json_case(
            "tarball names another package",
            publish_body_with(SEED, "2.0.0", "latest", &package_tarball("other", "2.0.0")),
            400,
            "the tarball's package.json names \"other\"",
        ),
        json_case(
            "tarball has another version",
            publish_body_with(SEED, "2.0.0", "latest", &package_tarball(SEED, "2.0.1")),
            400,
            "the tarball's package.json has version \"2.0.1\"",
        ),
        json_case(
            "dependencies differ from the tarball",
            seed_publish(&packed(json!({ "dependencies": { "evil": "1.0.0" } })), |_| {}),
            400,
            "manifest dependencies differ",
        ),
        json_case(
            "install script hidden from the manifest",
            seed_publish(
                &packed(json!({ "scripts": { "postinstall": "node steal.js" } })),
                |_| {},
            ),
            400,
            "scripts.postinstall differs",
        ),
    ];
    for (label, body, status, needle) in cases {
        let response = fx.raw("PUT", SEED, &body);
        fx.assert_refused(label, response, status, needle, &before);
    }
    // A new package sent without its tarball.
    let mut body = publish_body("fresh", "1.0.0");
    no_attachments(&mut body);
    let response = fx.put_json("fresh", &body);
    fx.assert_refused(
        "new package without attachment",
        response,
        400,
        "must be published with its tarball",
        &before,
    );
    fx.finish(&before);
}

/// Sends `PUT /r/default/seed` announcing a 1 GiB body (with a Content-Length, or
/// chunked), streams it until the server answers, and returns the answer and how many
/// body bytes went out before it came.
fn stream_huge_publish(fx: &Fixture, chunked: bool) -> ((u16, String), u64) {
    const HUGE: u64 = 1024 * 1024 * 1024;
    let addr = fx.server.base.trim_start_matches("http://").to_owned();
    let mut stream = std::net::TcpStream::connect(&addr).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
    stream
        .set_write_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let framing = if chunked {
        "Transfer-Encoding: chunked".to_owned()
    } else {
        format!("Content-Length: {HUGE}")
    };
    let head = format!(
        "PUT /r/default/{SEED} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\n{framing}\r\n\r\n",
        fx.token
    );
    stream.write_all(head.as_bytes()).expect("write head");
    let written = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let mut stream = stream.try_clone().expect("clone");
        let (written, stop) = (Arc::clone(&written), Arc::clone(&stop));
        std::thread::spawn(move || {
            let chunk = vec![b' '; 64 * 1024];
            let mut total = 0u64;
            // Lazily generated: never more than one chunk in memory.
            while total < HUGE && !stop.load(Ordering::Relaxed) {
                let sent = if chunked {
                    stream
                        .write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
                        .and_then(|()| stream.write_all(&chunk))
                        .and_then(|()| stream.write_all(b"\r\n"))
                } else {
                    stream.write_all(&chunk)
                };
                if sent.is_err() {
                    break;
                }
                total += chunk.len() as u64;
                written.store(total, Ordering::Relaxed);
            }
        })
    };
    let response = read_response(&mut stream);
    stop.store(true, Ordering::Relaxed);
    let _ = stream.shutdown(std::net::Shutdown::Both);
    writer.join().expect("writer thread");
    let label = if chunked { "chunked" } else { "Content-Length" };
    let response = response.unwrap_or_else(|| panic!("1 GiB {label}: no response from the server"));
    (response, written.load(Ordering::Relaxed))
}

#[test]
fn bodies_over_the_limit_are_refused_while_streaming() {
    const LIMIT: u64 = 1024 * 1024;
    let fx = Fixture::start(&format!("[limits]\nmax_body_bytes = {LIMIT}\n"));
    let before = fx.state();

    // A real publish just over the limit, as npm sends it (with a Content-Length).
    let big = tarball(&[
        ("package/package.json", &manifest(SEED, "2.0.0", json!({}))),
        ("package/data.bin", &pseudo_random(900 * 1024)),
    ]);
    let body = publish_body_with(SEED, "2.0.0", "latest", &big);
    assert!(body.to_string().len() as u64 > LIMIT);
    let response = publish(&fx.server, "default", &fx.token, &body);
    let status = response.status().as_u16();
    let text = response.text().unwrap_or_default();
    fx.assert_refused(
        "publish over the limit",
        (status, text),
        413,
        "larger than the limit of 1048576 bytes",
        &before,
    );

    // 1 GiB, announced or chunked: the answer must come from the first megabyte, without
    // the server reading (or buffering) the rest.
    for chunked in [false, true] {
        let label = if chunked {
            "chunked 1 GiB"
        } else {
            "1 GiB with Content-Length"
        };
        let (response, sent) = stream_huge_publish(&fx, chunked);
        fx.assert_refused(label, response, 413, "larger than the limit of 1048576 bytes", &before);
        assert!(
            sent < 64 * 1024 * 1024,
            "{label}: the server took {sent} bytes of a body it refused"
        );
    }
    fx.finish(&before);
}

/// Bytes that do not compress (xorshift).
fn pseudo_random(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_le_bytes()[0]
        })
        .collect()
}

/// One tar entry with the header written field by field, so that paths and types that
/// `tar::Builder` refuses can be crafted.
fn raw_entry(out: &mut Vec<u8>, path: &str, kind: tar::EntryType, link: Option<&str>, data: &[u8]) {
    let mut header = tar::Header::new_ustar();
    let name = &mut header.as_ustar_mut().expect("ustar").name;
    name[..path.len()].copy_from_slice(path.as_bytes());
    if let Some(link) = link {
        header.as_ustar_mut().expect("ustar").linkname[..link.len()].copy_from_slice(link.as_bytes());
    }
    header.set_entry_type(kind);
    header.set_size(data.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512, 0);
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(data).expect("gzip");
    encoder.finish().expect("gzip")
}

/// A gzipped tar of `seed@2.0.0`'s package.json, then `entries`, then the end blocks.
fn hostile_tarball(entries: &[(&str, tar::EntryType, Option<&str>, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    raw_entry(
        &mut out,
        "package/package.json",
        tar::EntryType::Regular,
        None,
        &manifest(SEED, "2.0.0", json!({})),
    );
    for (path, kind, link, data) in entries {
        raw_entry(&mut out, path, *kind, *link, data);
    }
    out.extend_from_slice(&[0; 1024]);
    gzip(&out)
}

/// `count` gzip members of 1 MiB of zeros each: a member compresses to about 1 KiB, and
/// gzip readers (ours, and node's) read concatenated members as one stream.
fn zero_members(count: usize) -> Vec<u8> {
    let member = gzip(&vec![0; 1024 * 1024]);
    member.repeat(count)
}

#[test]
fn hostile_tarballs_are_refused() {
    use tar::EntryType as T;
    const UNPACKED: u64 = 4 * 1024 * 1024;
    let fx = Fixture::start(&format!(
        "[limits]\nmax_unpacked_bytes = {UNPACKED}\nmax_tarball_entries = 20\n"
    ));
    let before = fx.state();
    let index: &[u8] = b"module.exports = 1;\n";

    // A bomb: an entry of 256 MiB of zeros, about 260 KiB of gzip.
    let bomb = {
        let mut head = Vec::new();
        raw_entry(
            &mut head,
            "package/package.json",
            T::Regular,
            None,
            &manifest(SEED, "2.0.0", json!({})),
        );
        let mut header = tar::Header::new_ustar();
        header.set_path("package/zeros.bin").expect("path");
        header.set_size(256 * 1024 * 1024);
        header.set_mode(0o644);
        header.set_cksum();
        head.extend_from_slice(header.as_bytes());
        let mut gz = gzip(&head);
        gz.extend(zero_members(256));
        gz
    };
    // Many entries each within the limit, together over it.
    let sum_bomb = {
        let mut tar = Vec::new();
        raw_entry(
            &mut tar,
            "package/package.json",
            T::Regular,
            None,
            &manifest(SEED, "2.0.0", json!({})),
        );
        for i in 0..6 {
            raw_entry(
                &mut tar,
                &format!("package/part{i}.bin"),
                T::Regular,
                None,
                &vec![0; 1024 * 1024],
            );
        }
        tar.extend_from_slice(&[0; 1024]);
        gzip(&tar)
    };
    // A good package followed by 64 MiB of zeros that no entry accounts for.
    let trailing_bomb = {
        let mut gz = good_seed_tarball();
        gz.extend(zero_members(64));
        gz
    };
    let plain_tar = {
        let mut tar = Vec::new();
        raw_entry(
            &mut tar,
            "package/package.json",
            T::Regular,
            None,
            &manifest(SEED, "2.0.0", json!({})),
        );
        tar.extend_from_slice(&[0; 1024]);
        tar
    };
    let mut truncated = good_seed_tarball();
    truncated.truncate(truncated.len() / 2);
    let too_many: Vec<(String, T, Option<&str>, &[u8])> = (0..25)
        .map(|i| (format!("package/f{i}.js"), T::Regular, None, index))
        .collect();
    let too_many: Vec<(&str, T, Option<&str>, &[u8])> =
        too_many.iter().map(|(p, t, l, d)| (p.as_str(), *t, *l, *d)).collect();

    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("plain tar", plain_tar, "not gzip-compressed"),
        (
            "not an archive",
            b"just some text, not a tarball".to_vec(),
            "not gzip-compressed",
        ),
        ("truncated gzip", truncated, "corrupt"),
        ("gzip bomb", bomb, "unpacks to more than 4194304 bytes"),
        ("entries that add up", sum_bomb, "unpacks to more than 4194304 bytes"),
        (
            "zeros after the archive",
            trailing_bomb,
            "padding or data outside its entries",
        ),
        ("too many entries", hostile_tarball(&too_many), "more than 20 entries"),
        (
            "dot-dot inside",
            hostile_tarball(&[("package/../../etc/cron.d/x", T::Regular, None, index)]),
            "contains a \"..\" segment",
        ),
        (
            "dot-dot root",
            hostile_tarball(&[("../x.js", T::Regular, None, index)]),
            "contains a \"..\" segment",
        ),
        (
            "absolute path",
            hostile_tarball(&[("/etc/passwd", T::Regular, None, index)]),
            "is an absolute path",
        ),
        (
            "drive path",
            hostile_tarball(&[("C:/x.js", T::Regular, None, index)]),
            "is an absolute path",
        ),
        (
            "backslash",
            hostile_tarball(&[("package\\..\\x.js", T::Regular, None, index)]),
            "contains a backslash",
        ),
        (
            "symlink",
            hostile_tarball(&[("package/link", T::Symlink, Some("/etc/passwd"), b"")]),
            "is a symbolic link",
        ),
        (
            "hard link",
            hostile_tarball(&[("package/hard", T::Link, Some("package/package.json"), b"")]),
            "is a hard link",
        ),
        (
            "character device",
            hostile_tarball(&[("package/tty", T::Char, None, b"")]),
            "is a character device",
        ),
        (
            "block device",
            hostile_tarball(&[("package/sda", T::Block, None, b"")]),
            "is a block device",
        ),
        (
            "fifo",
            hostile_tarball(&[("package/pipe", T::Fifo, None, b"")]),
            "is a FIFO",
        ),
        (
            "duplicate package.json",
            hostile_tarball(&[(
                "package/package.json",
                T::Regular,
                None,
                &manifest(SEED, "2.0.0", json!({ "scripts": { "postinstall": "node steal.js" } })),
            )]),
            "contains package.json twice",
        ),
        (
            "second top-level folder",
            hostile_tarball(&[("other/index.js", T::Regular, None, index)]),
            "is outside the package folder",
        ),
        (
            "no package.json",
            gzip(&{
                let mut tar = Vec::new();
                raw_entry(&mut tar, "package/index.js", T::Regular, None, index);
                tar.extend_from_slice(&[0; 1024]);
                tar
            }),
            "has no package/package.json",
        ),
        (
            "package.json not JSON",
            tarball(&[("package/package.json", b"{ not json")]),
            "package.json is not valid JSON",
        ),
    ];
    for (label, tgz, needle) in cases {
        // Digests and length are right: only the tarball itself is at fault.
        let body = publish_body_with(SEED, "2.0.0", "latest", &tgz);
        let response = fx.put_json(SEED, &body);
        fx.assert_refused(label, response, 400, needle, &before);
    }
    fx.finish(&before);
}
