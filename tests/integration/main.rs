//! Integration tests: the real application on port 0 against a real PostgreSQL (one
//! database per test) and the fake Jira. Run them with ./scripts/test.

mod cli;
mod config_loading;
mod fake_jira_schema;
mod health;
mod helpers;
mod identity;
mod migrations;
mod tls;
