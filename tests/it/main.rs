//! Integration tests: one binary, each module a part of the product seen
//! from outside (over SMTP, through the CLI, with real peers).

mod http;
mod support;

mod amplification;
mod association;
mod authentication;
mod automated;
mod browser;
mod browser_owner;
mod challenge;
mod cli;
mod cli_quarantine;
mod corpus;
mod crash;
mod delivery;
mod digest;
mod dkim;
mod dnsbl;
mod growth;
mod hardening;
mod limits;
mod lists;
mod load;
mod outbound;
mod peers;
mod real_mail;
mod smtp_dialogue;
mod spam;
mod web_activity;
mod web_admin;
mod web_api;
mod web_authz;
mod web_deleted;
mod web_domain_digest;
mod web_limits;
mod web_lists;
mod web_owner;
mod web_search;
mod web_settings;
