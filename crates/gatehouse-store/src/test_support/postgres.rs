//! A real PostgreSQL for tests: `GATEHOUSE_TEST_PG` (a `postgres://` URL of a running
//! server) when set; otherwise a throwaway cluster this process starts once, on a
//! Unix socket in a temporary directory (no TCP port to collide on), stopped and
//! removed by a watchdog when the process exits. Each test gets a database of its
//! own, copied from a template migrated once.
//!
//! Without PostgreSQL's binaries, `database()` returns `None` (the test says so and
//! passes), except under `CI=true`, where it fails: CI must run these.

use std::path::PathBuf;
use std::process::Command;

use tokio::sync::{Mutex, OnceCell};

use crate::postgres::PostgresStore;

/// A server to create test databases on.
struct Server {
    /// The URL of its maintenance database (`postgres`).
    admin_url: String,
    /// A migrated database to copy, when this process made one.
    template: Option<String>,
}

static SERVER: OnceCell<Option<Server>> = OnceCell::const_new();
/// `CREATE DATABASE … TEMPLATE` refuses while the template is in use, by a
/// concurrent copy too: one at a time.
static CREATING: Mutex<()> = Mutex::const_new(());

/// A new, migrated database's URL, or `None` when there is no PostgreSQL to test on.
pub async fn database() -> Option<String> {
    create(true).await
}

/// A new database without Gatehouse's schema (to test migrating it).
pub async fn empty_database() -> Option<String> {
    create(false).await
}

async fn create(migrated: bool) -> Option<String> {
    let server = SERVER.get_or_init(start).await.as_ref()?;
    let name = format!("t_{:016x}", rand::random::<u64>());
    let template = match (&server.template, migrated) {
        (Some(template), true) => format!(" TEMPLATE {template}"),
        _ => " TEMPLATE template0".to_owned(),
    };
    let _one = CREATING.lock().await;
    admin(&server.admin_url, &format!("CREATE DATABASE {name}{template}")).await;
    drop(_one);
    let url = with_database(&server.admin_url, &name);
    if migrated && server.template.is_none() {
        PostgresStore::connect(&url, 2)
            .await
            .expect("migrate the test database");
    }
    Some(url)
}

async fn admin(url: &str, statement: &str) {
    use sqlx::Connection as _;
    let mut conn = sqlx::PgConnection::connect(url)
        .await
        .unwrap_or_else(|e| panic!("connect to {url}: {e}"));
    sqlx::query(statement)
        .execute(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("{statement}: {e}"));
    let _ = conn.close().await;
}

/// `url` naming the database `name` instead (its query, such as `?host=`, kept).
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = url.split_once('?').map_or((url, None), |(b, q)| (b, Some(q)));
    let authority_at = base.find("://").map_or(0, |at| at + 3);
    let path_at = base[authority_at..]
        .find('/')
        .map_or(base.len(), |at| authority_at + at);
    let mut out = format!("{}/{name}", &base[..path_at]);
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
    out
}

async fn start() -> Option<Server> {
    if let Ok(url) = std::env::var("GATEHOUSE_TEST_PG") {
        // Someone else's server: no template (several test processes may share it);
        // each database is migrated when it is created, and left behind.
        return Some(Server {
            admin_url: url,
            template: None,
        });
    }
    let cluster = cluster().await?;
    let admin_url = cluster.admin_url();
    let template = "gatehouse_template";
    admin(&admin_url, &format!("CREATE DATABASE {template}")).await;
    let store = PostgresStore::connect(&with_database(&admin_url, template), 1)
        .await
        .expect("migrate the template database");
    // A template may not be copied while anyone is connected to it.
    store.close().await;
    Some(Server {
        admin_url,
        template: Some(template.to_owned()),
    })
}

/// Says PostgreSQL is missing: on stderr, or under `CI=true` by failing.
fn missing_binaries() {
    let how = "PostgreSQL's server binaries (initdb, pg_ctl) are not installed: \
               apt-get install postgresql (or set GATEHOUSE_TEST_PG=postgres://…)";
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{how}");
    }
    eprintln!("skipping the PostgreSQL tests: {how}");
}

/// Where `initdb` and `pg_ctl` are: `pg_config --bindir`, else the newest
/// `/usr/lib/postgresql/*/bin` (Debian's `pg_config` may come without the server).
fn binaries() -> Option<PathBuf> {
    let from_pg_config = Command::new("pg_config")
        .arg("--bindir")
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|out| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()));
    let mut debian: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.path().join("bin"))
        .collect();
    debian.sort_by_key(|dir| {
        dir.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
    });
    from_pg_config
        .into_iter()
        .chain(debian.into_iter().rev())
        .find(|dir| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file())
}

/// A cluster of this process's own (to stop and start again in a test), on a Unix
/// socket in a temporary directory, removed when the process exits; `None` as
/// [`database`] says.
pub async fn cluster() -> Option<Cluster> {
    let Some(bin) = binaries() else {
        missing_binaries();
        return None;
    };
    Some(
        tokio::task::spawn_blocking(move || Cluster::start(bin))
            .await
            .expect("start the cluster"),
    )
}

/// A running PostgreSQL cluster (see [`cluster`]).
pub struct Cluster {
    bin: PathBuf,
    dir: PathBuf,
    root: bool,
}

impl Cluster {
    /// Creates and starts a cluster in a new temporary directory, which holds its
    /// socket. As root, runs the server as `postgres` (initdb refuses root).
    fn start(bin: PathBuf) -> Cluster {
        let dir = std::env::temp_dir().join(format!(
            "gatehouse-pg-{}-{:08x}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&dir).expect("cluster directory");
        let uid = Command::new("id").arg("-u").output().expect("id -u");
        let root = String::from_utf8_lossy(&uid.stdout).trim() == "0";
        if root {
            run(Command::new("chown").arg("postgres:").arg(&dir));
        }
        let cluster = Cluster { bin, dir, root };
        run(cluster.as_server("initdb").arg("-D").arg(cluster.data()).args([
            "-U",
            "postgres",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--locale=C.UTF-8",
            "--no-sync",
        ]));
        cluster.resume();
        // The watchdog: statics are never dropped, so a process of its own stops the
        // server and removes the directory once this one is gone. In the background
        // of a shell that exits at once (nothing left to wait for), deaf to the
        // terminal's Ctrl-C, which would otherwise take it along with the tests.
        let watchdog = format!(
            "(trap '' INT HUP TERM; while kill -0 {pid} 2>/dev/null; do sleep 1; done; {stop}; rm -rf {dir}) \
             </dev/null >/dev/null 2>&1 &",
            pid = std::process::id(),
            stop = cluster.stop_command(),
            dir = cluster.dir.display(),
        );
        run(Command::new("sh").args(["-c", &watchdog]));
        cluster
    }

    /// The URL of its maintenance database (`postgres`).
    pub fn admin_url(&self) -> String {
        format!("postgres://postgres@localhost/postgres?host={}", self.dir.display())
    }

    /// Stops the server as a restart does (`pg_ctl stop -m fast`): every connection
    /// is cut, new ones are refused, what was committed is kept.
    pub fn halt(&self) {
        run(Command::new("sh").args(["-c", &self.stop_command().replace("-m immediate", "-m fast")]));
    }

    /// Starts the server (again), waiting until it accepts connections.
    pub fn resume(&self) {
        let options = format!(
            "-k {} -c listen_addresses= -c fsync=off -c synchronous_commit=off -c full_page_writes=off \
             -c max_connections=300",
            self.dir.display()
        );
        run(self
            .as_server("pg_ctl")
            .arg("-D")
            .arg(self.data())
            .arg("-l")
            .arg(self.dir.join("log"))
            .args(["-w", "-t", "30", "-o", &options, "start"]));
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn stop_command(&self) -> String {
        format!(
            "{runuser}{pg_ctl} -D {data} -m immediate -w stop",
            runuser = if self.root { "runuser -u postgres -- " } else { "" },
            pg_ctl = self.bin.join("pg_ctl").display(),
            data = self.data().display(),
        )
    }

    fn as_server(&self, program: &str) -> Command {
        let program = self.bin.join(program);
        if self.root {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(program);
            command
        } else {
            Command::new(program)
        }
    }
}

fn run(command: &mut Command) {
    let out = command.output().unwrap_or_else(|e| panic!("{command:?}: {e}"));
    assert!(
        out.status.success(),
        "{command:?}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn urls_name_another_database() {
        assert_eq!(
            with_database("postgres://postgres@localhost/postgres?host=/tmp/x", "t_1"),
            "postgres://postgres@localhost/t_1?host=/tmp/x"
        );
        assert_eq!(
            with_database("postgres://u:p@db:5432", "t_1"),
            "postgres://u:p@db:5432/t_1"
        );
        assert_eq!(
            with_database("postgresql://db/g?sslmode=require", "t"),
            "postgresql://db/t?sslmode=require"
        );
    }
}
