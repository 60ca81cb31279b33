//! The `gatehouse` binary: the allocator, logging, the runtime and the command line.

mod cli;

use std::process::ExitCode;

use clap::Parser as _;
use tracing_subscriber::EnvFilter;

/// mimalloc hands freed memory back to the system; with glibc's per-thread arenas the
/// server kept hundreds of MiB after a burst of publishes (bench/RESULTS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Index of `purge_delay` in mimalloc v3's `mi_option_e` (libmimalloc-sys names only
/// v2's options); the test below fails if an upgrade moves it.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// By default mimalloc keeps freed pages for a second, so an idle server holds on to
/// whatever its last burst used (argon2's 19 MiB for a login, a large packument).
/// Returning them at once, and committing arena memory only as it is used
/// (`.cargo/config.toml`), keeps an idle server near 15 MiB instead of ~40
/// (bench/RESULTS.md). `MIMALLOC_PURGE_DELAY` in the environment still wins.
#[allow(unsafe_code)]
fn tune_allocator() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: `mi_option_set` stores an integer in mimalloc's option table. It has
        // no memory-safety preconditions, and no other thread exists yet.
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 0) };
    }
    // SQLite allocates with glibc's malloc, which gives each thread that allocates (one
    // per database connection) an arena of its own and keeps what they freed: 3.5 MiB
    // of an idle server after seeding (bench/RESULTS.md). The hot routes are answered
    // from Gatehouse's caches, not SQLite, so one shared arena costs them nothing they
    // reach. `MALLOC_ARENA_MAX` in the environment still wins.
    #[cfg(target_env = "gnu")]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: `mallopt` sets a tunable of glibc's allocator; called before any other
        // thread exists, it races with no allocation.
        unsafe { libc::mallopt(libc::M_ARENA_MAX, 1) };
    }
}

fn main() -> ExitCode {
    tune_allocator();
    let cli = cli::Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_env("GATEHOUSE_LOG").unwrap_or_else(|_| EnvFilter::new("info")))
        .with_writer(std::io::stderr)
        // Colour codes only for a person at a terminal, never in a log file or a pipe.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(cli::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        // The command said what it had to; only its status is left.
        Err(e) if e.downcast_ref::<cli::Exit>().is_some() => {
            ExitCode::from(e.downcast_ref::<cli::Exit>().map_or(1, |exit| exit.0))
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(unsafe_code)]
    fn allocator_option_indices_match_the_linked_mimalloc() {
        // SAFETY: reading an option has no preconditions.
        let purge_delay = unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) };
        assert_eq!(purge_delay, 1000, "mimalloc v3's default purge delay");
        // Option index 4 is `arena_eager_commit`, set to 0 at build time.
        let eager_commit = unsafe { libmimalloc_sys::mi_option_get(4) };
        assert_eq!(
            eager_commit, 0,
            "built with MI_DEFAULT_ARENA_EAGER_COMMIT=0 (.cargo/config.toml)"
        );
    }
}
