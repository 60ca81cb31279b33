//! `/-/metrics` in the Prometheus text format. One set per process, like the
//! allocator: the parts that count (the HTTP layer, the packument cache, the upstream
//! client, admission, the firewall) reach it through [`global`] instead of carrying it
//! through every constructor. Labels are bounded: route templates, never package
//! names; outcomes and verdicts from fixed lists.
//!
//! Counting must not cost the request path, so each thread counts into its own
//! [`Tally`] (a lock no other thread takes but a scrape, no cache line another core
//! writes) and a scrape sums the tallies. A shared histogram would put one mutex and
//! one contended cache line on every request.

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, LazyLock, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use gatehouse_store::PoolUse;

/// Which part of the server answered.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum Surface {
    /// `/r/{registry}/…`
    registry,
    /// Registry requests at the host root (old lockfiles' tarballs, npm's OIDC exchange).
    root,
    api,
    ui,
    ops,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub surface: Surface,
    /// The route's template (`/{name}/-/{file}`, `/-/api/v1/registries/{registry}`).
    pub route: Cow<'static, str>,
    pub method: &'static str,
}

/// A request's labels: its histogram's `_count` is the number of such requests.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    surface: Surface,
    route: Cow<'static, str>,
    method: &'static str,
    status: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CacheLabels {
    cache: &'static str,
    result: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AdmissionLabels {
    origin: &'static str,
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VerdictLabels {
    verdict: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DirectionLabels {
    direction: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PoolLabels {
    pool: &'static str,
    state: &'static str,
}

/// Upper bounds of the latency buckets: 100 µs to about 18 s, then +Inf.
const BOUNDS: [f64; 12] = [
    0.0001, 0.0003, 0.0009, 0.0027, 0.0081, 0.0243, 0.0729, 0.2187, 0.6561, 1.9683, 5.9049, 17.7147,
];

/// One label set's latencies: a count per bucket (the last is +Inf) and their sum.
#[derive(Debug, Clone, Default)]
struct Latencies {
    buckets: [u64; BOUNDS.len() + 1],
    sum: f64,
}

impl Latencies {
    fn observe(&mut self, seconds: f64) {
        let bucket = BOUNDS
            .iter()
            .position(|bound| seconds <= *bound)
            .unwrap_or(BOUNDS.len());
        self.buckets[bucket] += 1;
        self.sum += seconds;
    }

    fn add(&mut self, other: &Latencies) {
        for (mine, theirs) in self.buckets.iter_mut().zip(other.buckets) {
            *mine += theirs;
        }
        self.sum += other.sum;
    }
}

// Encoded like prometheus-client's own histogram: per-bucket counts, made
// cumulative by the encoder.
impl EncodeMetric for Latencies {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let buckets: Vec<(f64, u64)> = BOUNDS.iter().copied().chain([f64::MAX]).zip(self.buckets).collect();
        let count = self.buckets.iter().sum();
        encoder.encode_histogram::<NoLabelSet>(self.sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

/// The summed latencies of every label set, as one histogram family.
#[derive(Debug)]
struct RequestLatencies(Vec<(RequestLabels, Latencies)>);

impl EncodeMetric for RequestLatencies {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        for (labels, latencies) in &self.0 {
            latencies.encode(encoder.encode_family(labels)?)?;
        }
        Ok(())
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

/// What one thread counted (or, for [`Shared::retired`], the threads that ended).
#[derive(Debug, Default)]
struct Tally {
    requests: HashMap<RequestLabels, Latencies>,
    upstream: HashMap<OutcomeLabels, u64>,
    cache: HashMap<CacheLabels, u64>,
    admissions: HashMap<AdmissionLabels, u64>,
    decisions: HashMap<VerdictLabels, u64>,
    blob_bytes: HashMap<DirectionLabels, u64>,
}

fn add_counts<L: Hash + Eq + Clone>(into: &mut HashMap<L, u64>, from: &HashMap<L, u64>) {
    for (labels, count) in from {
        *into.entry(labels.clone()).or_default() += count;
    }
}

/// Adds one to `labels`, allocating a key only the first time this thread sees it.
fn bump<L: Hash + Eq + Clone>(counts: &mut HashMap<L, u64>, labels: &L, by: u64) {
    match counts.get_mut(labels) {
        Some(count) => *count += by,
        None => {
            counts.insert(labels.clone(), by);
        }
    }
}

impl Tally {
    fn add(&mut self, other: &Tally) {
        for (labels, latencies) in &other.requests {
            self.requests.entry(labels.clone()).or_default().add(latencies);
        }
        add_counts(&mut self.upstream, &other.upstream);
        add_counts(&mut self.cache, &other.cache);
        add_counts(&mut self.admissions, &other.admissions);
        add_counts(&mut self.decisions, &other.decisions);
        add_counts(&mut self.blob_bytes, &other.blob_bytes);
    }
}

/// A counter family holding `counts`.
fn counters<L>(counts: HashMap<L, u64>) -> Family<L, Counter>
where
    L: Clone + Hash + Eq + EncodeLabelSet + std::fmt::Debug + Send + Sync + 'static,
{
    let family = Family::<L, Counter>::default();
    for (labels, count) in counts {
        family.get_or_create(&labels).inc_by(count);
    }
    family
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while counting leaves numbers, not broken invariants.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The tallies of one [`Metrics`]: each live thread's, and what ended threads left.
#[derive(Debug, Default)]
struct Shared {
    live: Mutex<Vec<SharedTally>>,
    retired: Mutex<Tally>,
}

/// This thread's tallies, one per [`Metrics`] it counted into (one in the server;
/// unit tests make their own). When the thread ends they move to `retired`, so
/// nothing counted is lost and the live list does not grow with the blocking pool.
#[derive(Default)]
struct ThreadTallies(RefCell<Vec<(Arc<Shared>, SharedTally)>>);

/// One thread's tally: its thread counts into it, a scrape reads it.
type SharedTally = Arc<Mutex<Tally>>;

impl Drop for ThreadTallies {
    fn drop(&mut self) {
        for (shared, tally) in self.0.get_mut().drain(..) {
            lock(&shared.live).retain(|live| !Arc::ptr_eq(live, &tally));
            lock(&shared.retired).add(&lock(&tally));
        }
    }
}

thread_local! {
    static TALLIES: ThreadTallies = ThreadTallies::default();
}

pub struct Metrics {
    shared: Arc<Shared>,
}

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// This process's metrics.
pub fn global() -> &'static Metrics {
    &METRICS
}

impl Metrics {
    fn new() -> Self {
        Metrics { shared: Arc::default() }
    }

    /// Runs `count` on this thread's tally.
    fn count(&self, count: impl FnOnce(&mut Tally)) {
        let mut count = Some(count);
        let counted = TALLIES.try_with(|tallies| {
            let mut tallies = tallies.0.borrow_mut();
            let tally = match tallies.iter().find(|(shared, _)| Arc::ptr_eq(shared, &self.shared)) {
                Some((_, tally)) => tally,
                None => {
                    let tally = Arc::new(Mutex::new(Tally::default()));
                    lock(&self.shared.live).push(tally.clone());
                    tallies.push((self.shared.clone(), tally));
                    &tallies[tallies.len() - 1].1
                }
            };
            if let Some(count) = count.take() {
                count(&mut lock(tally));
            }
        });
        // A thread already tearing down its locals counts into the retired tally.
        if counted.is_err()
            && let Some(count) = count.take()
        {
            count(&mut lock(&self.shared.retired));
        }
    }

    /// One answered request.
    pub fn request(&self, route: RouteLabels, status: u16, took: Duration) {
        let labels = RequestLabels {
            surface: route.surface,
            route: route.route,
            method: route.method,
            status,
        };
        let seconds = took.as_secs_f64();
        self.count(|tally| match tally.requests.get_mut(&labels) {
            Some(latencies) => latencies.observe(seconds),
            None => tally.requests.entry(labels).or_default().observe(seconds),
        });
    }

    /// One request to an upstream: `2xx`, `304`, `404`, `4xx`, `5xx`, `timeout`, `error`.
    pub fn upstream(&self, outcome: &'static str) {
        self.count(|tally| bump(&mut tally.upstream, &OutcomeLabels { outcome }, 1));
    }

    pub fn cache_lookup(&self, cache: &'static str, hit: bool) {
        let result = if hit { "hit" } else { "miss" };
        self.count(|tally| bump(&mut tally.cache, &CacheLabels { cache, result }, 1));
    }

    /// A version offered to admission: stored (with its tarball's size) or refused.
    pub fn admission(&self, origin: &'static str, stored: Option<u64>) {
        let outcome = if stored.is_some() { "stored" } else { "refused" };
        self.count(|tally| {
            bump(&mut tally.admissions, &AdmissionLabels { origin, outcome }, 1);
            if let Some(bytes) = stored {
                bump(&mut tally.blob_bytes, &DirectionLabels { direction: "in" }, bytes);
            }
        });
    }

    pub fn tarball_served(&self, bytes: u64) {
        self.count(|tally| bump(&mut tally.blob_bytes, &DirectionLabels { direction: "out" }, bytes));
    }

    pub fn decisions<'a>(&self, verdicts: impl IntoIterator<Item = &'a str>) {
        self.count(|tally| {
            for verdict in verdicts {
                let labels = VerdictLabels {
                    verdict: verdict.to_owned(),
                };
                bump(&mut tally.decisions, &labels, 1);
            }
        });
    }

    /// Every thread's tally summed.
    fn total(&self) -> Tally {
        let mut total = Tally::default();
        total.add(&lock(&self.shared.retired));
        let live = lock(&self.shared.live).clone();
        for tally in live {
            total.add(&lock(&tally));
        }
        total
    }

    /// The text exposition, with the database pools as they are now.
    pub fn render(&self, pools: &[PoolUse]) -> String {
        let total = self.total();
        let mut registry = Registry::with_prefix("gatehouse");
        registry.register(
            "http_request_duration_seconds",
            "Requests answered and their time to the response's head, by route template and status",
            RequestLatencies(total.requests.into_iter().collect()),
        );
        registry.register(
            "upstream_requests",
            "Requests to upstream registries, by outcome (status class, timeout, error)",
            counters(total.upstream),
        );
        registry.register(
            "cache_lookups",
            "Cache lookups, by cache and hit or miss",
            counters(total.cache),
        );
        registry.register(
            "versions_admitted",
            "Versions that came in (stored) or were refused, by way in (publish, pull, promotion, import)",
            counters(total.admissions),
        );
        registry.register(
            "policy_decisions",
            "Policy decisions recorded (new or changed), by verdict",
            counters(total.decisions),
        );
        registry.register(
            "blob_bytes",
            "Tarball bytes stored (in) and served (out)",
            counters(total.blob_bytes),
        );
        let pool = Family::<PoolLabels, Gauge>::default();
        for use_ in pools {
            let gauge = |state| pool.get_or_create(&PoolLabels { pool: use_.name, state });
            gauge("idle").set(i64::from(use_.idle));
            gauge("busy").set(i64::from(use_.size.saturating_sub(use_.idle)));
            gauge("max").set(i64::from(use_.max));
        }
        registry.register(
            "database_connections",
            "Database pool connections, by pool and state (idle, busy) and its size limit (max)",
            pool,
        );
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &registry) {
            tracing::error!(error = %e, "metrics did not encode");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_render_with_their_labels_and_nothing_unbounded() {
        let metrics = Metrics::new();
        let route = RouteLabels {
            surface: Surface::registry,
            route: Cow::Borrowed("/{name}/-/{file}"),
            method: "GET",
        };
        metrics.request(route.clone(), 200, Duration::from_millis(2));
        metrics.request(route, 200, Duration::from_millis(3));
        metrics.upstream("5xx");
        metrics.cache_lookup("packument", true);
        metrics.admission("publish", Some(1234));
        metrics.admission("pull", None);
        metrics.decisions(["quarantine"]);
        let text = metrics.render(&[PoolUse {
            name: "writer",
            size: 1,
            idle: 1,
            max: 1,
        }]);
        for line in [
            r#"gatehouse_http_request_duration_seconds_count{surface="registry",route="/{name}/-/{file}",method="GET",status="200"} 2"#,
            r#"gatehouse_upstream_requests_total{outcome="5xx"} 1"#,
            r#"gatehouse_cache_lookups_total{cache="packument",result="hit"} 1"#,
            r#"gatehouse_versions_admitted_total{origin="publish",outcome="stored"} 1"#,
            r#"gatehouse_versions_admitted_total{origin="pull",outcome="refused"} 1"#,
            r#"gatehouse_blob_bytes_total{direction="in"} 1234"#,
            r#"gatehouse_policy_decisions_total{verdict="quarantine"} 1"#,
            r#"gatehouse_database_connections{pool="writer",state="busy"} 0"#,
        ] {
            assert!(text.contains(line), "{line} missing in\n{text}");
        }
    }

    #[test]
    fn threads_count_apart_and_a_scrape_sums_them_even_after_they_end() {
        let metrics = Arc::new(Metrics::new());
        let route = RouteLabels {
            surface: Surface::ops,
            route: Cow::Borrowed("/-/ping"),
            method: "GET",
        };
        let (release, hold) = std::sync::mpsc::channel::<()>();
        let (counted, wait) = std::sync::mpsc::channel::<()>();
        let live = {
            let (metrics, route) = (metrics.clone(), route.clone());
            std::thread::spawn(move || {
                metrics.request(route, 200, Duration::from_micros(50));
                counted.send(()).expect("send");
                // Stays alive until the first scrape has read it.
                let _ = hold.recv();
            })
        };
        let ended = {
            let (metrics, route) = (metrics.clone(), route.clone());
            std::thread::spawn(move || {
                for _ in 0..3 {
                    metrics.request(route.clone(), 200, Duration::from_secs(30));
                }
                metrics.tarball_served(10);
            })
        };
        ended.join().expect("thread");
        wait.recv().expect("counted");
        metrics.request(route, 200, Duration::from_millis(1));
        metrics.tarball_served(5);
        let count = r#"gatehouse_http_request_duration_seconds_count{surface="ops",route="/-/ping",method="GET",status="200"} 5"#;
        let fastest = r#"gatehouse_http_request_duration_seconds_bucket{le="0.0001",surface="ops",route="/-/ping",method="GET",status="200"} 1"#;
        let slowest = r#"gatehouse_http_request_duration_seconds_bucket{le="17.7147",surface="ops",route="/-/ping",method="GET",status="200"} 2"#;
        let bytes = r#"gatehouse_blob_bytes_total{direction="out"} 15"#;
        let text = metrics.render(&[]);
        for line in [count, fastest, slowest, bytes] {
            assert!(text.contains(line), "{line} missing in\n{text}");
        }
        drop(release);
        live.join().expect("thread");
        // The live thread has ended: its count moved to the retired tally, once.
        let text = metrics.render(&[]);
        assert!(text.contains(count), "{count} missing in\n{text}");
        assert_eq!(lock(&metrics.shared.live).len(), 1, "only this thread's tally is live");
    }
}
