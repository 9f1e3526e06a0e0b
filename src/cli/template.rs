//! `boxtrap template`: a mailbox's overrides of the challenge texts,
//! checked before they are saved.

use super::output::one_line;
use super::{Admin, read_input};
use crate::challenge::templates::{self, MAX_TEMPLATE_BYTES, TemplateName};
use anyhow::bail;
use clap::{Args, Subcommand};
use std::path::PathBuf;

#[derive(Debug, Subcommand)]
pub enum TemplateCmd {
    /// Print a mailbox's template: its override, or the default (marked as such).
    #[command(
        long_about = "Print a mailbox's template: its override, or the built-in default. \
        The default is preceded by a `# default ...` line that is not part of the text."
    )]
    Show(TemplateArgs),
    /// Save an override from FILE or standard input, after checking it.
    Set {
        #[command(flatten)]
        of: TemplateArgs,
        /// The template file; standard input when omitted or `-`.
        file: Option<PathBuf>,
    },
    /// Drop the override: the default applies again.
    Reset(TemplateArgs),
}

/// One of a mailbox's templates.
#[derive(Debug, Args)]
pub struct TemplateArgs {
    /// The mailbox (any case).
    mailbox: String,
    /// verify, verifyreleased, returnverify or blacklist.
    #[arg(value_parser = template_name)]
    name: TemplateName,
}

fn template_name(s: &str) -> Result<TemplateName, String> {
    s.parse::<TemplateName>().map_err(|e| e.to_string())
}

pub async fn run(admin: &Admin, cmd: TemplateCmd) -> anyhow::Result<()> {
    let store = &admin.store;
    match cmd {
        TemplateCmd::Show(TemplateArgs { mailbox, name }) => {
            let s = admin.mailbox(&mailbox).await?;
            match store.template_override(s.id, name.as_str()).await? {
                Some(text) => say!("{}", text.trim_end_matches('\n')),
                None => {
                    say!("# default {name} template ({} has no override)", s.address);
                    say!("{}", templates::default_text(name).trim_end_matches('\n'));
                }
            }
        }
        TemplateCmd::Set {
            of: TemplateArgs { mailbox, name },
            file,
        } => {
            let s = admin.mailbox(&mailbox).await?;
            let (text, source) = read_input(file.as_deref(), MAX_TEMPLATE_BYTES as u64)?;
            if let Err(e) = templates::validate(name, &text) {
                let mut msg = format!("{source}: the {name} template is refused: {e}");
                if let Some(n) = e.line()
                    && let Some(line) = text.lines().nth(n.saturating_sub(1))
                {
                    msg.push_str(&format!("\n  {n} | {}", one_line(line.trim_end())));
                }
                msg.push_str("\nnothing was saved");
                bail!(msg);
            }
            store
                .set_template_override(s.id, name.as_str(), Some(&text), admin.now())
                .await?;
            say!(
                "saved the {name} template of {} ({} bytes)",
                s.address,
                text.len()
            );
        }
        TemplateCmd::Reset(TemplateArgs { mailbox, name }) => {
            let s = admin.mailbox(&mailbox).await?;
            let had = store
                .template_override(s.id, name.as_str())
                .await?
                .is_some();
            store
                .set_template_override(s.id, name.as_str(), None, admin.now())
                .await?;
            if had {
                say!(
                    "reset the {name} template of {}: the default applies",
                    s.address
                );
            } else {
                say!("{} had no {name} override: the default applies", s.address);
            }
        }
    }
    Ok(())
}
