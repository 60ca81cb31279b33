// `sqlx::migrate!` embeds the migrations at compile time; without this, adding one
// does not rebuild the crate and the new binary silently lacks it. Cargo watches the
// whole directory, `migrations/sqlite/` and `migrations/postgres/` alike.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
