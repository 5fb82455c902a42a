//! filebridge: every Jira Data Center project and issue gets a folder in the customer's own
//! storage, reached through Jira permissions.

pub mod accounts;
pub mod app;
pub mod audit;
pub mod auth;
pub mod broker;
pub mod cli;
pub mod config;
pub mod connections;
pub mod db;
pub mod doctor;
pub mod egress;
pub mod events;
pub mod http;
pub mod jira;
pub mod jobs;
pub mod metrics;
pub mod notify;
pub mod purge;
pub mod secrets;
pub mod signals;
pub mod storage;
pub mod telemetry;
