//! `/-/metrics` in the Prometheus text format. One set per process, like the
//! allocator: the parts that count (the HTTP layer, the packument cache, the upstream
//! client, admission, the firewall) reach it through [`global`] instead of carrying it
//! through every constructor. Labels are bounded: route templates, never package
//! names; outcomes and verdicts from fixed lists.

use std::borrow::Cow;
use std::sync::LazyLock;
use std::time::Duration;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
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

/// A request's labels: its histogram's `_count` is the number of such requests (one
/// lookup per request, not two).
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

pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Histogram>,
    upstream: Family<OutcomeLabels, Counter>,
    cache: Family<CacheLabels, Counter>,
    admissions: Family<AdmissionLabels, Counter>,
    decisions: Family<VerdictLabels, Counter>,
    blob_bytes: Family<DirectionLabels, Counter>,
    pool: Family<PoolLabels, Gauge>,
}

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// This process's metrics.
pub fn global() -> &'static Metrics {
    &METRICS
}

impl Metrics {
    fn new() -> Self {
        let mut registry = Registry::with_prefix("gatehouse");
        // 100 µs to about 18 s.
        let requests = Family::<RequestLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0001, 3.0, 12))
        });
        registry.register(
            "http_request_duration_seconds",
            "Requests answered and their time to the response's head, by route template and status",
            requests.clone(),
        );
        let upstream = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "upstream_requests",
            "Requests to upstream registries, by outcome (status class, timeout, error)",
            upstream.clone(),
        );
        let cache = Family::<CacheLabels, Counter>::default();
        registry.register(
            "cache_lookups",
            "Cache lookups, by cache and hit or miss",
            cache.clone(),
        );
        let admissions = Family::<AdmissionLabels, Counter>::default();
        registry.register(
            "versions_admitted",
            "Versions that came in (stored) or were refused, by way in (publish, pull, promotion, import)",
            admissions.clone(),
        );
        let decisions = Family::<VerdictLabels, Counter>::default();
        registry.register(
            "policy_decisions",
            "Policy decisions recorded (new or changed), by verdict",
            decisions.clone(),
        );
        let blob_bytes = Family::<DirectionLabels, Counter>::default();
        registry.register(
            "blob_bytes",
            "Tarball bytes stored (in) and served (out)",
            blob_bytes.clone(),
        );
        let pool = Family::<PoolLabels, Gauge>::default();
        registry.register(
            "database_connections",
            "Database pool connections, by pool and state (idle, busy) and its size limit (max)",
            pool.clone(),
        );
        Metrics {
            registry,
            requests,
            upstream,
            cache,
            admissions,
            decisions,
            blob_bytes,
            pool,
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
        self.requests.get_or_create(&labels).observe(took.as_secs_f64());
    }

    /// One request to an upstream: `2xx`, `304`, `404`, `4xx`, `5xx`, `timeout`, `error`.
    pub fn upstream(&self, outcome: &'static str) {
        self.upstream.get_or_create(&OutcomeLabels { outcome }).inc();
    }

    pub fn cache_lookup(&self, cache: &'static str, hit: bool) {
        let result = if hit { "hit" } else { "miss" };
        self.cache.get_or_create(&CacheLabels { cache, result }).inc();
    }

    /// A version offered to admission: stored (with its tarball's size) or refused.
    pub fn admission(&self, origin: &'static str, stored: Option<u64>) {
        let outcome = if stored.is_some() { "stored" } else { "refused" };
        self.admissions
            .get_or_create(&AdmissionLabels { origin, outcome })
            .inc();
        if let Some(bytes) = stored {
            self.blob_bytes
                .get_or_create(&DirectionLabels { direction: "in" })
                .inc_by(bytes);
        }
    }

    pub fn tarball_served(&self, bytes: u64) {
        self.blob_bytes
            .get_or_create(&DirectionLabels { direction: "out" })
            .inc_by(bytes);
    }

    pub fn decisions<'a>(&self, verdicts: impl IntoIterator<Item = &'a str>) {
        for verdict in verdicts {
            let labels = VerdictLabels {
                verdict: verdict.to_owned(),
            };
            self.decisions.get_or_create(&labels).inc();
        }
    }

    /// The text exposition, with the database pools as they are now.
    pub fn render(&self, pools: &[PoolUse]) -> String {
        for pool in pools {
            let gauge = |state| self.pool.get_or_create(&PoolLabels { pool: pool.name, state });
            gauge("idle").set(i64::from(pool.idle));
            gauge("busy").set(i64::from(pool.size.saturating_sub(pool.idle)));
            gauge("max").set(i64::from(pool.max));
        }
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
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
}
