//! Integration tests: one binary, each module a part of the product seen
//! from outside (over SMTP, through the CLI, with real peers).

mod support;

mod challenge;
mod cli;
mod crash;
mod delivery;
mod limits;
mod peers;
mod smtp_dialogue;
