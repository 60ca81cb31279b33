//! `gatehouse user add|list`.

use gatehouse_server::services::{Creation, NewUser};

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
    /// Set a user's password; the new one is read from standard input.
    Passwd {
        name: String,
        /// Read the password from the first line of standard input (required).
        #[arg(long, required = true)]
        password_stdin: bool,
    },
    /// Disable a user: they can't log in, and their tokens stop working at once.
    Disable { name: String },
    /// Enable a disabled user again.
    Enable { name: String },
    /// Make a user an administrator of everything, or not.
    Admin {
        name: String,
        #[arg(value_parser = ["on", "off"])]
        state: String,
    },
    /// Delete a user with their tokens and grants (their packages stay).
    Delete { name: String },
    /// Clear a user's failed-login lockout, on every server.
    Unlock { name: String },
    /// List users.
    List,
}

pub(super) async fn user(config: Config, cmd: UserCommand) -> anyhow::Result<()> {
    let (meta, services) = open(&config).await?;
    match cmd {
        UserCommand::Add {
            name,
            admin,
            email,
            password_stdin: _,
        } => {
            let password = password_from_stdin()?;
            let new = NewUser {
                name: &name,
                email: email.as_deref(),
                password,
                admin,
            };
            services
                .create_user(&Actor::cli(), new, Creation::ByAdministrator)
                .await?;
            println!("created user {name}{}", if admin { " (admin)" } else { "" });
        }
        UserCommand::Passwd {
            name,
            password_stdin: _,
        } => {
            let user = services.user(&name).await?;
            services
                .set_password(&Actor::cli(), &user, password_from_stdin()?)
                .await?;
            println!("changed the password of {name}");
        }
        UserCommand::Disable { name } => {
            let user = services.user(&name).await?;
            services.set_user_disabled(&Actor::cli(), &user, true).await?;
            println!("disabled {name}: they can't log in and their tokens are refused");
        }
        UserCommand::Enable { name } => {
            let user = services.user(&name).await?;
            services.set_user_disabled(&Actor::cli(), &user, false).await?;
            println!("enabled {name}");
        }
        UserCommand::Admin { name, state } => {
            let user = services.user(&name).await?;
            let admin = state == "on";
            services.set_user_admin(&Actor::cli(), &user, admin).await?;
            println!("{name} is {}an administrator", if admin { "" } else { "no longer " });
        }
        UserCommand::Delete { name } => {
            let user = services.user(&name).await?;
            services.delete_user(&Actor::cli(), &user).await?;
            println!("deleted {name}");
        }
        UserCommand::Unlock { name } => {
            let user = services.user(&name).await?;
            services.unlock_user(&Actor::cli(), &user).await?;
            println!("cleared the failed logins of {name}");
        }
        UserCommand::List => {
            for user in meta.users().await? {
                let role = match (user.is_admin, user.disabled) {
                    (_, true) => "disabled",
                    (true, false) => "admin",
                    (false, false) => "member",
                };
                println!("{}\t{role}\t{}", user.name, user.email.unwrap_or_default());
            }
        }
    }
    Ok(())
}

/// The first line of standard input, without its line ending.
fn password_from_stdin() -> anyhow::Result<String> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("cannot read the password from standard input")?;
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}
