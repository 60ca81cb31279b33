//! `gatehouse token create|list|revoke`.

use gatehouse_server::services::TokenRef;
use gatehouse_store::now_millis;

use super::*;

#[derive(Subcommand, Debug)]
pub(super) enum TokenCommand {
    /// Create a token; its value is printed once and never stored.
    Create {
        /// Owner of the token; it acts with this user's rights, never more.
        #[arg(long)]
        user: String,
        /// The token may read but never publish, tag, deprecate or unpublish.
        #[arg(long)]
        read_only: bool,
        /// Only accept the token from these address ranges (repeatable), e.g. 10.0.0.0/8.
        #[arg(long = "cidr", value_name = "RANGE")]
        cidrs: Vec<String>,
        /// Only accept the token on these registries (repeatable); all when omitted.
        #[arg(long = "registry", value_name = "NAME")]
        registries: Vec<String>,
        /// Only accept the token for packages matching these patterns (repeatable), e.g. '@acme/*'.
        #[arg(long = "package", value_name = "PATTERN")]
        packages: Vec<String>,
        /// Lifetime, e.g. 30d, 12h, 90m, 2w; no expiry when omitted.
        #[arg(long, value_name = "DURATION")]
        expires: Option<String>,
        /// A label to recognise the token by.
        #[arg(long, value_name = "LABEL")]
        name: Option<String>,
    },
    /// List live tokens (never their values).
    List {
        /// Only this user's tokens.
        #[arg(long)]
        user: Option<String>,
    },
    /// Revoke a token by its key (from `token list`).
    Revoke { key: String },
}

pub(super) async fn token_command(config: Config, cmd: TokenCommand) -> anyhow::Result<()> {
    let (meta, services) = open(&config).await?;
    match cmd {
        TokenCommand::Create {
            user,
            read_only,
            cidrs,
            registries,
            packages,
            expires,
            name,
        } => {
            let owner = services.user(&user).await?;
            for cidr in &cidrs {
                Cidr::parse(cidr)?;
            }
            for registry in &registries {
                find_registry(&services, registry).await?;
            }
            let lifetime = expires.as_deref().map(parse_duration).transpose()?;
            if lifetime.is_some_and(|d| d.is_zero()) {
                bail!("a token lifetime must be longer than zero");
            }
            let expires_at = lifetime.map(|d| now_millis() + i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
            let spec = TokenSpec {
                name,
                readonly: read_only,
                cidr_whitelist: cidrs,
                registries,
                packages,
                expires_at,
                published_by: None,
            };
            let minted = services.issue_token(&Actor::cli(), &owner, spec).await?;
            eprintln!(
                "created token {} for {} (shown once; store it now)",
                minted.key, owner.name
            );
            println!("{}", minted.secret);
        }
        TokenCommand::List { user } => {
            let tokens = match user {
                Some(name) => meta.tokens_of(services.user(&name).await?.id).await?,
                None => meta.all_tokens().await?,
            };
            println!("KEY\tUSER\tTOKEN\tSCOPE\tCREATED\tLAST USED\tEXPIRES\tNAME");
            for t in tokens {
                let mut scope = vec![if t.readonly { "read-only" } else { "read-write" }.to_owned()];
                scope.extend(t.registries.iter().map(|r| format!("registry:{r}")));
                scope.extend(t.packages.iter().map(|p| format!("package:{p}")));
                scope.extend(t.cidr_whitelist.iter().map(|c| format!("cidr:{c}")));
                println!(
                    "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
                    t.key,
                    t.user.name,
                    t.display,
                    scope.join(","),
                    iso_time(t.created_at),
                    t.last_used_at.map(iso_time).unwrap_or_else(|| "never".into()),
                    t.expires_at.map(iso_time).unwrap_or_else(|| "never".into()),
                    t.name.unwrap_or_default()
                );
            }
        }
        TokenCommand::Revoke { key } => {
            services
                .revoke_token(&Actor::cli(), None, TokenRef::Key(&key), "gatehouse token revoke")
                .await?;
            println!("revoked token {key}");
        }
    }
    Ok(())
}

/// `30d`, `12h`, `90m`, `45s`, `2w`.
pub(super) fn parse_duration(raw: &str) -> anyhow::Result<Duration> {
    let (number, unit) = raw.split_at(raw.find(|c: char| !c.is_ascii_digit()).unwrap_or(raw.len()));
    let count: u64 = number
        .parse()
        .map_err(|_| anyhow::anyhow!("invalid duration {raw:?}: use e.g. 30d, 12h, 90m"))?;
    let seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 604_800,
        _ => bail!("invalid duration {raw:?}: use e.g. 30d, 12h, 90m"),
    };
    Ok(Duration::from_secs(count.saturating_mul(seconds)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30d").expect("valid"), Duration::from_secs(30 * 86_400));
        assert_eq!(parse_duration("90m").expect("valid"), Duration::from_secs(5400));
        assert_eq!(parse_duration("0s").expect("valid"), Duration::ZERO);
        for bad in ["", "d", "10", "10y", "-1d"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
