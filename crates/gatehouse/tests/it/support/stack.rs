//! Which stores a test server runs on. The same tests run on the embedded stack
//! (SQLite and a blob folder in the data dir, the default) and on the scale-out stack
//! (a real PostgreSQL and a real S3-compatible server): `GATEHOUSE_TEST_STACK=scale-out`
//! moves every server a test starts with [`super::TestServer::start`] there.

use std::path::Path;
use std::sync::Arc;

use gatehouse_store::storage::{BlobSettings, DatabaseSettings, DatabaseUrl};
use gatehouse_store::test_support::{postgres, s3};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stack {
    Embedded,
    ScaleOut,
}

impl Stack {
    /// `GATEHOUSE_TEST_STACK`: `embedded` (unset) or `scale-out`.
    pub fn from_env() -> Stack {
        match std::env::var("GATEHOUSE_TEST_STACK").as_deref() {
            Err(_) | Ok("" | "embedded") => Stack::Embedded,
            Ok("scale-out") => Stack::ScaleOut,
            Ok(other) => panic!("GATEHOUSE_TEST_STACK={other:?}: embedded or scale-out"),
        }
    }
}

/// A server's stores. Clones share them (replicas): the bucket's server lives as
/// long as a server on it.
#[derive(Clone)]
pub enum Stores {
    /// In the server's data dir.
    Embedded,
    ScaleOut(Arc<ScaleOut>),
}

/// A database of its own on the test PostgreSQL, and a bucket on an S3 server of its own.
pub struct ScaleOut {
    pub database_url: String,
    pub s3: s3::S3Server,
}

/// Tarballs go under this prefix of the bucket (a prefix is what deployments use).
pub const PREFIX: &str = "gatehouse";

impl Stores {
    /// New, empty stores on `stack`; the scale-out stack's servers must be there.
    pub fn new(stack: Stack) -> Stores {
        match stack {
            Stack::Embedded => Stores::Embedded,
            Stack::ScaleOut => Stores::scale_out().unwrap_or_else(|| {
                panic!("GATEHOUSE_TEST_STACK=scale-out needs PostgreSQL's server binaries and s3s-fs")
            }),
        }
    }

    /// New scale-out stores, or `None` when PostgreSQL or s3s-fs is not installed
    /// (said on stderr; under `CI=true` that fails instead).
    pub fn scale_out() -> Option<Stores> {
        runtime().block_on(async {
            let database_url = postgres::empty_database().await?;
            let s3 = s3::start().await?;
            Some(Stores::ScaleOut(Arc::new(ScaleOut { database_url, s3 })))
        })
    }

    /// The same stores, for another server.
    pub fn shared(&self) -> Stores {
        self.clone()
    }

    /// The config file's sections naming the stores (none for the embedded ones).
    pub fn config(&self) -> String {
        match self {
            Stores::Embedded => String::new(),
            Stores::ScaleOut(stores) => format!(
                "[database]\nurl = \"{}\"\nmax_connections = 8\n\n[blobs]\nurl = \"s3://{}/{PREFIX}\"\nendpoint = \"{}\"\n",
                stores.database_url,
                s3::BUCKET,
                stores.s3.endpoint
            ),
        }
    }

    /// The environment a process on these stores needs: the bucket's credentials,
    /// which never go into a config file.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        match self {
            Stores::Embedded => Vec::new(),
            Stores::ScaleOut(_) => vec![
                ("AWS_ACCESS_KEY_ID", s3::ACCESS_KEY.to_owned()),
                ("AWS_SECRET_ACCESS_KEY", s3::SECRET_KEY.to_owned()),
            ],
        }
    }

    /// The settings that open these stores, as the server opens them.
    pub fn settings(&self, data_dir: &Path) -> (DatabaseSettings, BlobSettings) {
        match self {
            Stores::Embedded => (
                DatabaseSettings::new(DatabaseUrl::Sqlite(data_dir.join("gatehouse.db"))),
                BlobSettings::File(data_dir.join("blobs")),
            ),
            Stores::ScaleOut(stores) => (
                DatabaseSettings::new(DatabaseUrl::Postgres(stores.database_url.clone())),
                BlobSettings::S3(stores.s3.settings(PREFIX)),
            ),
        }
    }

    pub fn is_scale_out(&self) -> bool {
        matches!(self, Stores::ScaleOut(_))
    }
}

/// A runtime for the store's async helpers, from a blocking test.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}
