//! The npm registry protocol, pure (no IO, no async runtime, no HTTP server, no SQL): names, versions, tags, tarball inspection,
//! publish bodies, packument building, request paths and `Authorization` headers.

pub mod authorization;
pub mod dist_tag;
pub mod integrity;
pub mod lockfile;
pub mod merge;
pub mod name;
pub mod packument;
pub mod provenance;
pub mod publish;
pub mod route;
pub mod setup;
pub mod tarball;
pub mod trust;
pub mod version;
pub mod withhold;
