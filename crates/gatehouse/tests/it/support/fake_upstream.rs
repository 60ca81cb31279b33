//! A local npm-shaped upstream for fault injection: it serves real packuments and
//! tarballs, and can be made slow, failing, hanging, resetting, lying about
//! integrity, oversized, malformed, redirecting, or gone; or all of these at random
//! (`Mode::Chaos`, seeded). It counts every request.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

use super::{sha1_hex, sri_sha512};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    Normal,
    /// Every request gets HTTP 500.
    Failing,
    /// Accepts, reads the request, never answers (until the test ends).
    Hanging,
    /// Closes the connection without answering.
    Resetting,
    /// Answers `302` to this location.
    Redirecting(String),
    /// Each request draws a fault from a generator seeded with this (see [`Fault`]):
    /// about half are answered normally.
    Chaos(u64),
}

/// What a request got in [`Mode::Chaos`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Fault {
    None,
    /// Read, never answered (until the upstream is dropped, or 30 s).
    Hang,
    /// Closed without an answer.
    Reset,
    /// HTTP 500, 502 or 503.
    ServerError,
    /// The headers promise the whole body; half of it comes, then the connection closes.
    Truncate,
    /// A tarball with one byte changed (its declared integrity no longer matches); a
    /// packument is answered normally.
    WrongBytes,
    /// Answered normally after up to 1.5 s.
    Slow,
}

impl Fault {
    fn draw(random: u64) -> Fault {
        match random % 100 {
            0..50 => Fault::None,
            50..58 => Fault::Hang,
            58..68 => Fault::Reset,
            68..78 => Fault::ServerError,
            78..86 => Fault::Truncate,
            86..94 => Fault::WrongBytes,
            _ => Fault::Slow,
        }
    }
}

#[derive(Default)]
struct State {
    packuments: HashMap<String, Value>,
    /// Packuments served verbatim (malformed, huge…).
    raw_packuments: HashMap<String, Vec<u8>>,
    tarballs: HashMap<String, Vec<u8>>,
    /// Tarball bodies stop after this many bytes until the gate opens.
    tarball_pause: Option<(usize, Gate)>,
    /// Tarball bodies end (connection closed) after this many bytes.
    tarball_cut: Option<usize>,
    hits: HashMap<String, usize>,
    not_modified: usize,
    delay: Duration,
    /// The chaos generator's state (splitmix64), seeded by `Mode::Chaos`.
    chaos: Option<u64>,
    faults: HashMap<Fault, usize>,
}

impl State {
    fn draw_fault(&mut self, seed: u64) -> Fault {
        let state = self.chaos.get_or_insert(seed);
        *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = *state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        let fault = Fault::draw(z ^ (z >> 31));
        *self.faults.entry(fault).or_default() += 1;
        fault
    }
}

/// Holds tarball bodies mid-way until opened (also when dropped, so no thread waits forever).
#[derive(Clone, Default)]
pub struct Gate(Arc<(Mutex<bool>, Condvar)>);

impl Gate {
    pub fn open(&self) {
        *self.0.0.lock().expect("gate") = true;
        self.0.1.notify_all();
    }

    fn wait(&self) {
        let (open, opened) = &*self.0;
        let guard = open.lock().expect("gate");
        let _open = opened
            .wait_timeout_while(guard, Duration::from_secs(60), |open| !*open)
            .expect("gate");
    }
}

pub struct FakeUpstream {
    /// `http://127.0.0.1:PORT/`
    pub url: String,
    state: Arc<Mutex<State>>,
    mode: Arc<Mutex<Mode>>,
    down: Arc<AtomicBool>,
}

impl FakeUpstream {
    pub fn start() -> FakeUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind fake upstream");
        listener.set_nonblocking(true).expect("nonblocking");
        let url = format!("http://{}/", listener.local_addr().expect("addr"));
        let state = Arc::new(Mutex::new(State::default()));
        let mode = Arc::new(Mutex::new(Mode::Normal));
        let down = Arc::new(AtomicBool::new(false));
        let (s, m, d) = (state.clone(), mode.clone(), down.clone());
        std::thread::spawn(move || {
            // Polling accept so that `go_down` can close the port for real.
            while !d.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let (s, m, d) = (s.clone(), m.clone(), d.clone());
                        std::thread::spawn(move || serve(stream, &s, &m, &d));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        FakeUpstream { url, state, mode, down }
    }

    /// Adds `name@version` with a real tarball, integrity and publish time.
    pub fn publish(&self, name: &str, version: &str) -> Vec<u8> {
        let tarball = super::package_tarball(name, version);
        self.publish_bytes(name, version, &tarball, &tarball);
        tarball
    }

    /// Adds a version whose declared digests are those of `declared` but whose
    /// tarball URL serves `served` (to lie about integrity, pass different bytes).
    pub fn publish_bytes(&self, name: &str, version: &str, declared: &[u8], served: &[u8]) {
        let basename = name.rsplit('/').next().unwrap_or(name);
        let path = format!("{name}/-/{basename}-{version}.tgz");
        let mut state = self.state.lock().expect("state");
        state.tarballs.insert(path.clone(), served.to_vec());
        let doc = state.packuments.entry(name.to_owned()).or_insert_with(|| {
            json!({"_id": name, "name": name, "dist-tags": {}, "versions": {},
                   "time": {"created": "2020-01-01T00:00:00.000Z"}, "readme": "upstream readme"})
        });
        doc["versions"][version] = json!({
            "name": name, "version": version,
            "_npmUser": {"name": "ci", "email": "ci@example.com", "trustedPublisher": {"id": "github", "oidcConfigId": "x"}},
            "engines": {"node": ">=18"},
            "dist": {
                "tarball": format!("{}{path}", self.url),
                "integrity": sri_sha512(declared),
                "shasum": sha1_hex(declared),
                "signatures": [{"keyid": "SHA256:test", "sig": "c2ln"}]
            }
        });
        doc["dist-tags"]["latest"] = json!(version);
        doc["time"][version] = json!("2021-06-01T12:00:00.000Z");
        doc["time"]["modified"] = json!("2021-06-01T12:00:00.000Z");
    }

    /// Edits a stored packument.
    pub fn edit(&self, name: &str, f: impl FnOnce(&mut Value)) {
        let mut state = self.state.lock().expect("state");
        f(state.packuments.get_mut(name).expect("known package"));
    }

    pub fn set_raw_packument(&self, name: &str, body: Vec<u8>) {
        self.state
            .lock()
            .expect("state")
            .raw_packuments
            .insert(name.to_owned(), body);
    }

    pub fn set_mode(&self, mode: Mode) {
        if let Mode::Chaos(_) = mode {
            self.state.lock().expect("state").chaos = None;
        }
        *self.mode.lock().expect("mode") = mode;
    }

    /// How many requests got each fault in [`Mode::Chaos`].
    pub fn faults(&self) -> HashMap<Fault, usize> {
        self.state.lock().expect("state").faults.clone()
    }

    /// Tarball bodies stop after `bytes` until the returned gate is opened.
    pub fn pause_tarballs_after(&self, bytes: usize) -> Gate {
        let gate = Gate::default();
        self.state.lock().expect("state").tarball_pause = Some((bytes, gate.clone()));
        gate
    }

    /// Tarball bodies end after `bytes` (the connection closes mid-body); `None` heals.
    pub fn cut_tarballs_after(&self, bytes: Option<usize>) {
        self.state.lock().expect("state").tarball_cut = bytes;
    }

    pub fn set_delay(&self, delay: Duration) {
        self.state.lock().expect("state").delay = delay;
    }

    /// Stops listening: connections are refused from now on.
    pub fn go_down(&self) {
        self.down.store(true, Ordering::SeqCst);
        // Let the accept loop notice and drop the listener.
        std::thread::sleep(Duration::from_millis(30));
    }

    /// Requests seen for a path (`lodash`, `lodash/-/lodash-1.0.0.tgz`, escaped names as sent).
    pub fn hits(&self, path: &str) -> usize {
        self.state.lock().expect("state").hits.get(path).copied().unwrap_or(0)
    }

    pub fn not_modified_answers(&self) -> usize {
        self.state.lock().expect("state").not_modified
    }
}

impl Drop for FakeUpstream {
    fn drop(&mut self) {
        self.down.store(true, Ordering::SeqCst);
    }
}

fn serve(mut stream: TcpStream, state: &Mutex<State>, mode: &Mutex<Mode>, down: &AtomicBool) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && head.len() < 64 * 1024 {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return,
        }
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let target = head.split_whitespace().nth(1).unwrap_or("/").to_owned();
    let path = target.trim_start_matches('/').to_owned();
    let if_none_match = head
        .lines()
        .find_map(|l| {
            l.strip_prefix("if-none-match: ")
                .or_else(|| l.strip_prefix("If-None-Match: "))
        })
        .map(str::to_owned);
    let delay = {
        let mut s = state.lock().expect("state");
        *s.hits.entry(path.clone()).or_default() += 1;
        s.delay
    };
    std::thread::sleep(delay);
    let mode = mode.lock().expect("mode").clone();
    let fault = match mode {
        Mode::Chaos(seed) => state.lock().expect("state").draw_fault(seed),
        _ => Fault::None,
    };
    match fault {
        Fault::None | Fault::Truncate | Fault::WrongBytes => {}
        Fault::Hang => {
            let until = std::time::Instant::now() + Duration::from_secs(30);
            while !down.load(Ordering::SeqCst) && std::time::Instant::now() < until {
                std::thread::sleep(Duration::from_millis(50));
            }
            return;
        }
        Fault::Reset => return,
        Fault::ServerError => {
            let status = [500, 502, 503][hits_of(state, &path) % 3];
            return respond(&mut stream, status, "application/json", b"{\"error\":\"chaos\"}", None);
        }
        Fault::Slow => std::thread::sleep(Duration::from_millis(100 * (hits_of(state, &path) % 16) as u64)),
    }
    match mode {
        Mode::Failing => return respond(&mut stream, 500, "application/json", b"{\"error\":\"boom\"}", None),
        Mode::Hanging => {
            std::thread::sleep(Duration::from_secs(120));
            return;
        }
        Mode::Resetting => return,
        Mode::Redirecting(location) => {
            let response =
                format!("HTTP/1.1 302 Found\r\nLocation: {location}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            let _ = stream.write_all(response.as_bytes());
            return;
        }
        Mode::Normal | Mode::Chaos(_) => {}
    }
    let decoded = path.replace("%2f", "/").replace("%2F", "/");
    let s = state.lock().expect("state");
    if let Some(bytes) = s.tarballs.get(&decoded) {
        let bytes = bytes.clone();
        let (pause, mut cut) = (s.tarball_pause.clone(), s.tarball_cut);
        drop(s);
        let mut bytes = bytes;
        match fault {
            Fault::Truncate => cut = Some(bytes.len() / 2),
            Fault::WrongBytes => {
                let middle = bytes.len() / 2;
                bytes[middle] ^= 0x55;
            }
            _ => {}
        }
        return respond_tarball(&mut stream, &bytes, pause, cut);
    }
    if let Some(raw) = s.raw_packuments.get(&decoded) {
        let raw = raw.clone();
        drop(s);
        return respond(&mut stream, 200, "application/json", &raw, None);
    }
    if let Some(doc) = s.packuments.get(&decoded) {
        let body = serde_json::to_vec(doc).expect("json");
        let etag = format!("\"{}\"", &sha1_hex(&body)[..16]);
        drop(s);
        if fault == Fault::Truncate {
            return respond_cut(&mut stream, &body, body.len() / 2);
        }
        if if_none_match.as_deref() == Some(etag.as_str()) {
            state.lock().expect("state").not_modified += 1;
            return respond(&mut stream, 304, "application/json", b"", Some(&etag));
        }
        return respond(&mut stream, 200, "application/json", &body, Some(&etag));
    }
    drop(s);
    respond(&mut stream, 404, "application/json", b"{\"error\":\"Not found\"}", None);
}

/// A tarball answer, optionally paused or cut off part-way through the body.
fn respond_tarball(stream: &mut TcpStream, body: &[u8], pause: Option<(usize, Gate)>, cut: Option<usize>) {
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(head.as_bytes());
    let end = cut.unwrap_or(body.len()).min(body.len());
    let mut sent = 0;
    if let Some((at, gate)) = pause {
        let at = at.min(end);
        let _ = stream.write_all(&body[..at]);
        let _ = stream.flush();
        gate.wait();
        sent = at;
    }
    let _ = stream.write_all(&body[sent..end]);
}

/// Requests seen for `path` so far (a cheap varying number for chaos answers).
fn hits_of(state: &Mutex<State>, path: &str) -> usize {
    state.lock().expect("state").hits.get(path).copied().unwrap_or(0)
}

/// A 200 whose headers promise `body` but whose connection closes after `at` bytes.
fn respond_cut(stream: &mut TcpStream, body: &[u8], at: usize) {
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(&body[..at.min(body.len())]);
}

fn respond(stream: &mut TcpStream, status: u16, content_type: &str, body: &[u8], etag: Option<&str>) {
    let reason = match status {
        200 => "OK",
        304 => "Not Modified",
        404 => "Not Found",
        _ => "Error",
    };
    let etag = etag.map(|e| format!("ETag: {e}\r\n")).unwrap_or_default();
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n{etag}Connection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(body);
}
