//! filebridge: every Jira Data Center project and issue gets a folder in the customer's own
//! storage, reached through Jira permissions.

pub mod app;
pub mod auth;
pub mod cli;
pub mod config;
pub mod db;
pub mod doctor;
pub mod egress;
pub mod http;
pub mod jira;
pub mod storage;
pub mod telemetry;
pub mod audit;
