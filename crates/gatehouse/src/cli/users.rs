//! `gatehouse user add|list`.

use super::*;

#[derive(Subcommand, Debug)]
pub(super) enum UserCommand {
    /// Create a user; the password is read from standard input.
    Add {
        name: String,
        /// Administrators may change every package and manage the server.
        #[arg(long)]
        admin: bool,
        #[arg(long)]
        email: Option<String>,
        /// Read the password from the first line of standard input (required).
        #[arg(long, required = true)]
        password_stdin: bool,
    },
    /// List users.
    List,
}

pub(super) async fn user(config: Config, cmd: UserCommand) -> anyhow::Result<()> {
    let meta = app::open_meta(&config).await?;
    match cmd {
        UserCommand::Add {
            name,
            admin,
            email,
            password_stdin: _,
        } => {
            if !valid_user_name(&name) {
                bail!("invalid user name {name:?}: use 1-64 characters of a-z, 0-9, '.', '-' and '_'");
            }
            let mut line = String::new();
            std::io::stdin()
                .lock()
                .read_line(&mut line)
                .context("cannot read the password from standard input")?;
            let password = line.trim_end_matches(['\r', '\n']).to_owned();
            let hash = password::hash(password).await?;
            match meta.create_user(&name, email.as_deref(), &hash, admin).await {
                Ok(_) => {}
                Err(StoreError::Conflict(_)) => bail!("a user named {name:?} already exists"),
                Err(e) => return Err(e.into()),
            }
            meta.append_audit(&AuditEntry {
                actor: Some("cli".into()),
                action: "user.create",
                detail: Some(format!("{name} admin={admin}")),
                ..AuditEntry::default()
            })
            .await?;
            println!("created user {name}{}", if admin { " (admin)" } else { "" });
        }
        UserCommand::List => {
            for user in meta.users().await? {
                let role = if user.is_admin { "admin" } else { "member" };
                println!("{}\t{role}\t{}", user.name, user.email.unwrap_or_default());
            }
        }
    }
    Ok(())
}
