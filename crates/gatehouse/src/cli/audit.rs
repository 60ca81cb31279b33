//! `gatehouse audit`.

use gatehouse_store::{AuditAction, AuditQuery, Millis, now_millis};

use super::*;

#[derive(Args, Debug)]
pub(super) struct AuditArgs {
    #[arg(long, default_value_t = 50)]
    limit: u32,
    /// Only entries about this registry.
    #[arg(long)]
    registry: Option<String>,
    /// Only entries by this actor (a user name, `cli` or `system`).
    #[arg(long)]
    user: Option<String>,
    /// Only this action, e.g. version.publish, token.revoke, auth.login_failed.
    #[arg(long)]
    action: Option<String>,
    /// Only entries since this time: RFC 3339 (2026-12-01T00:00:00Z) or a time ago (24h, 7d).
    #[arg(long, value_name = "TIME")]
    since: Option<String>,
    /// Only entries until this time, as for --since.
    #[arg(long, value_name = "TIME")]
    until: Option<String>,
}

/// RFC 3339, or a duration back from now.
fn parse_time(raw: &str) -> anyhow::Result<Millis> {
    if let Ok(at) = chrono::DateTime::parse_from_rfc3339(raw) {
        return Ok(at.timestamp_millis());
    }
    let ago = tokens::parse_duration(raw).map_err(|_| {
        anyhow::anyhow!("invalid time {raw:?}: use RFC 3339 (2026-12-01T00:00:00Z) or a time ago (24h, 7d)")
    })?;
    Ok(now_millis() - i64::try_from(ago.as_millis()).unwrap_or(i64::MAX))
}

pub(super) async fn audit(config: Config, args: AuditArgs) -> anyhow::Result<()> {
    let action = match args.action.as_deref() {
        None => None,
        Some(raw) => Some(AuditAction::parse(raw).ok_or_else(|| {
            let known: Vec<&str> = AuditAction::ALL.iter().map(|a| a.as_str()).collect();
            anyhow::anyhow!("unknown action {raw:?}; actions are {}", known.join(", "))
        })?),
    };
    let query = AuditQuery {
        registry: args.registry,
        actor: args.user,
        action,
        since: args.since.as_deref().map(parse_time).transpose()?,
        until: args.until.as_deref().map(parse_time).transpose()?,
        before: None,
        limit: args.limit,
    };
    let (meta, _) = open(&config).await?;
    println!("TIME\tACTOR\tACTION\tREGISTRY\tPACKAGE\tVERSION\tFROM\tDETAIL");
    for (at, e) in meta.audit_entries(&query).await? {
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
