//! `boxtrap dkim`: the DKIM keys (RFC 6376) that sign the challenges and
//! notices a local domain sends, and the DNS records to publish for them:
//! generate, show. Also the `check-config` warning for domains whose
//! challenges go out unsigned.
//!
//! Selectors: `generate` names the keys after the day they are made,
//! `YYYYMMDD-ed` (Ed25519) and `YYYYMMDD-rsa` (RSA), so a replacement gets
//! a new selector and the old record can stay published while mail signed
//! with the old key is still on its way. `--selector S` names them
//! `S-ed` and `S-rsa`, or `S` itself when only one algorithm is made.

use super::{Admin, parse_domain};
use crate::address::Domain;
use crate::app::{redact, redact_text};
use crate::challenge::sign::{self, TxtRecord};
use crate::config::{Config, OutboundMode};
use crate::store::dkim::{
    DkimAlgorithm, NewDkimKey, StoredDkimKey, challenge_domains_without_dkim_at,
};
use crate::store::{Store, StoreError};
use anyhow::{Context, bail};
use clap::{Subcommand, ValueEnum};
use std::time::Duration;

#[derive(Debug, Subcommand)]
pub enum DkimCmd {
    /// Make DKIM keys for a local domain (Ed25519 and RSA-2048 by default),
    /// store them, and print the DNS records to publish. Challenges and
    /// notices from the domain are signed with them from the next mail on.
    Generate {
        /// A local domain (see `boxtrap domain list`).
        domain: String,
        /// The selector; default: today's date, `YYYYMMDD`. With both
        /// algorithms the keys are `S-ed` and `S-rsa`, with one just `S`.
        #[arg(long, value_name = "S")]
        selector: Option<String>,
        /// Which keys to make: ed25519 (RFC 8463), rsa (2048 bits) or both
        /// (receivers that do not know Ed25519 check the RSA signature).
        #[arg(long, value_enum, default_value_t = AlgorithmArg::Both)]
        algorithm: AlgorithmArg,
        /// Replace the domain's key of the same algorithm: the new one
        /// signs at once, under a new selector.
        #[arg(long)]
        replace: bool,
    },
    /// Print the DNS records of a domain's DKIM keys (and the HELO name's
    /// SPF record) again.
    Show {
        /// A local domain.
        domain: String,
    },
}

/// `--algorithm`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AlgorithmArg {
    /// Ed25519 only (RFC 8463).
    Ed25519,
    /// RSA-2048 only.
    Rsa,
    /// Both, each under its own selector.
    Both,
}

impl AlgorithmArg {
    fn algorithms(self) -> &'static [DkimAlgorithm] {
        match self {
            AlgorithmArg::Ed25519 => &[DkimAlgorithm::Ed25519],
            AlgorithmArg::Rsa => &[DkimAlgorithm::Rsa],
            AlgorithmArg::Both => &[DkimAlgorithm::Ed25519, DkimAlgorithm::Rsa],
        }
    }
}

/// The suffix of a selector made for `algorithm` when several are made.
fn suffix(algorithm: DkimAlgorithm) -> &'static str {
    match algorithm {
        DkimAlgorithm::Ed25519 => "ed",
        DkimAlgorithm::Rsa => "rsa",
    }
}

pub async fn run(admin: &Admin, cmd: DkimCmd) -> anyhow::Result<()> {
    match cmd {
        DkimCmd::Generate {
            domain,
            selector,
            algorithm,
            replace,
        } => generate(admin, &domain, selector.as_deref(), algorithm, replace).await,
        DkimCmd::Show { domain } => {
            let d = local_domain(&admin.store, &domain).await?;
            let keys = admin.store.dkim_keys(d.as_str()).await?;
            if keys.is_empty() {
                bail!(
                    "{d} has no DKIM key: its challenges and notices go out unsigned \
                     (`boxtrap dkim generate {d}` makes the keys)"
                );
            }
            print_records(&admin.config, &d, &keys)
        }
    }
}

/// The domain named on the command line, refused by name unless local.
async fn local_domain(store: &Store, arg: &str) -> anyhow::Result<Domain> {
    let d = parse_domain(arg)?;
    if store.domain_id(&d).await?.is_none() {
        bail!("{d} is not a local domain (see `boxtrap domain list`)");
    }
    Ok(d)
}

async fn generate(
    admin: &Admin,
    domain: &str,
    selector: Option<&str>,
    algorithm: AlgorithmArg,
    replace: bool,
) -> anyhow::Result<()> {
    let store = &admin.store;
    let d = local_domain(store, domain).await?;
    let algorithms = algorithm.algorithms();
    let base = match selector {
        Some(s) => sign::check_selector(s)?,
        None => admin.now().log_format()[..10].replace('-', ""),
    };
    let selector_for = |a: DkimAlgorithm| match algorithms.len() {
        1 if selector.is_some() => base.clone(),
        _ => format!("{base}-{}", suffix(a)),
    };
    // Refused before the slow part (an RSA key takes a moment); the store
    // checks again in the transaction that saves them.
    let existing = store.dkim_keys(d.as_str()).await?;
    for &a in algorithms {
        if let Some(old) = existing.iter().find(|k| k.algorithm == a)
            && !replace
        {
            bail!(
                "{d} already has an {} DKIM key (selector {}, made {} UTC): `boxtrap dkim show \
                 {d}` prints its records; add --replace to make a new one",
                a.label(),
                old.selector,
                old.created_at.log_format()
            );
        }
        let selector = selector_for(a);
        if existing.iter().any(|k| k.selector == selector) {
            bail!(
                "{d} already has a DKIM key with selector {selector}: a new key needs a new \
                 selector, since resolvers may still hold the old record (pass --selector)"
            );
        }
    }
    let mut new = Vec::new();
    for &a in algorithms {
        new.push(NewDkimKey {
            selector: selector_for(a),
            algorithm: a,
            private_key: sign::generate(a)?,
        });
    }
    let replaced = match store.add_dkim_keys(&d, &new, replace, admin.now()).await {
        Ok(r) => r,
        Err(StoreError::Conflict(m) | StoreError::NotFound(m)) => bail!("{m}"),
        Err(e) => return Err(e.into()),
    };
    for k in &new {
        say!(
            "; made an {} DKIM key for {d}, selector {}",
            k.algorithm.label(),
            k.selector
        );
    }
    for old in &replaced {
        say!(
            "; replaced the {} key with selector {}: keep its record published for a few \
             days, for mail signed with it that is still on its way, then remove it",
            old.algorithm.label(),
            old.selector
        );
    }
    let keys = store.dkim_keys(d.as_str()).await?;
    print_records(&admin.config, &d, &keys)
}

/// The records to publish, in zone-file form: every line that is not a
/// record is a `;` comment, so the output can go into a zone file as it is.
fn print_records(config: &Config, domain: &Domain, keys: &[StoredDkimKey]) -> anyhow::Result<()> {
    let records = keys
        .iter()
        .map(sign::dkim_record)
        .collect::<Result<Vec<TxtRecord>, _>>()
        .context("cannot read a stored DKIM key")?;
    say!(
        "; Challenges and notices from {domain} are DKIM-signed with these keys (RFC 6376, \
         Ed25519 per RFC 8463). Publish in DNS:"
    );
    for r in &records {
        say!("{}", r.zone_line());
    }
    say!(
        "; (a DNS provider's web form takes the name without the domain and the value \
         without quotes, the strings joined)"
    );
    let helo = if config.outbound.helo_name.is_empty() {
        &config.hostname
    } else {
        &config.outbound.helo_name
    };
    match sign::helo_spf_record(helo) {
        None => say!(
            "; boxtrap greets receivers as the address {helo}, which has no SPF record: \
             set outbound.helo_name to a name that resolves to it"
        ),
        Some(spf) => {
            say!(
                "; Challenges go out from the null sender <>, so receivers check SPF for the \
                 name boxtrap greets them with (RFC 7208 §2.3), {helo}. Publish, or merge \
                 into its SPF record if it has one (a name may have only one):"
            );
            say!("{}", spf.zone_line());
            say!(
                "; \"a\" passes the addresses {helo} resolves to: if mail leaves from another \
                 address, add ip4:ADDRESS or ip6:ADDRESS before -all"
            );
            if config.outbound_mode() == OutboundMode::Smarthost {
                say!(
                    "; outbound.mode is \"smarthost\": receivers see the smarthost, whose own \
                     name's SPF record counts, not this one"
                );
            }
        }
    }
    Ok(())
}

/// `check-config`'s warnings about DKIM: each local domain with a
/// challenge-response mailbox and no key, with the command that fixes it.
/// Reads the database if there is one (never creates or migrates it); one
/// note instead when it cannot be read.
pub async fn unsigned_domain_warnings(config: &Config) -> Vec<String> {
    let url = config.database_url();
    if let Some(rest) = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
    {
        let file = rest.split('?').next().unwrap_or(rest);
        if file.is_empty() || file == ":memory:" || !std::path::Path::new(file).exists() {
            return Vec::new();
        }
    }
    let not_read = |e: &dyn std::fmt::Display| {
        vec![format!(
            "the database {} was not read to check the DKIM keys: {}",
            redact(&url),
            redact_text(&e.to_string())
        )]
    };
    let domains = tokio::time::timeout(
        Duration::from_secs(5),
        challenge_domains_without_dkim_at(&url),
    )
    .await;
    match domains {
        Err(_) => not_read(&"no answer within 5 s"),
        Ok(Err(e)) => not_read(&e),
        Ok(Ok(domains)) => domains
            .iter()
            .map(|d| sign::unsigned_domain_warning(d))
            .collect(),
    }
}
