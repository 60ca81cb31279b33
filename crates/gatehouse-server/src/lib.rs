//! The Gatehouse server: configuration, the composed application, admission,
//! upstreams, authentication, prepared packuments and HTTP.
//! See ARCHITECTURE.md for the map of the code.

pub mod access;
pub mod admission;
pub mod advisory_sync;
pub mod app;
pub mod auth;
pub mod config;
pub mod firewall;
pub mod http;
pub mod import;
pub mod lockfile_check;
pub mod metrics;
pub mod offload;
pub mod oidc;
pub mod packument_cache;
pub mod readme;
pub mod services;
pub mod store_cache;
pub mod upstream;
