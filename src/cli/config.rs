//! `boxtrap check-config` (reads a database that exists only for its DKIM
//! warnings; never creates or migrates one) and `boxtrap migrate`.

use super::load_config;
use crate::app::{check_database_url, file_warnings, open_store, redact};
use crate::config::Config;
use anyhow::Context;
use std::path::Path;

/// Loads `path` (or the embedded defaults) and prints the effective
/// settings, secrets hidden (the database password in every form the URL
/// can carry it), then a warning for each setting worth a second look and
/// each data file or directory other users can open, and each domain whose
/// challenges go out without a DKIM signature.
pub async fn check(path: Option<&Path>) -> anyhow::Result<()> {
    let mut config = load_config(path)?;
    check_database_url(&config.database.url)?;
    let files = file_warnings(&config);
    let dkim = super::dkim::unsigned_domain_warnings(&config).await;
    let shown = match path {
        Some(p) => p.display().to_string(),
        None => "(embedded defaults)".into(),
    };
    say!("# {shown}: configuration OK; effective settings:");
    config.database.url = redact(&config.database.url);
    if !config.outbound.smarthost_password.is_empty() {
        config.outbound.smarthost_password = "***".into();
    }
    if !config.challenge.secret.is_empty() {
        config.challenge.secret = "***".into();
    }
    let text = toml::to_string(&config).context("cannot print the configuration")?;
    say!("{}", text.trim_end());
    for w in config.warnings().iter().chain(&files).chain(&dkim) {
        say!("# warning: {w}");
    }
    Ok(())
}

/// Opens the store, which creates or updates its schema, and nothing else.
pub async fn migrate(config: &Config) -> anyhow::Result<()> {
    open_store(config).await?;
    say!("database schema is up to date");
    Ok(())
}
