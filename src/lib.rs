//! filebridge: every Jira Data Center project and issue gets a folder in the customer's own
//! storage, reached through Jira permissions.

pub mod config;
pub mod db;
pub mod telemetry;
pub mod egress;
pub mod jira;
pub mod auth;
pub mod http;
pub mod app;
pub mod cli;
pub mod doctor;
