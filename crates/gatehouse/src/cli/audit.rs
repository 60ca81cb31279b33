//! `gatehouse audit`.

use super::*;

pub(super) async fn audit(config: Config, limit: u32) -> anyhow::Result<()> {
    let (meta, _) = open(&config).await?;
    println!("TIME\tACTOR\tACTION\tREGISTRY\tPACKAGE\tVERSION\tFROM\tDETAIL");
    for (at, e) in meta.recent_audit(limit).await? {
        let field = |v: Option<String>| v.unwrap_or_else(|| "-".into());
        println!(
            "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
            iso_time(at),
            field(e.actor),
            e.action,
            field(e.registry),
            field(e.package),
            field(e.version),
            field(e.client_addr),
            field(e.detail)
        );
    }
    Ok(())
}
