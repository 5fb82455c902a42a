//! Integration tests: the real application on port 0 against a real PostgreSQL (one
//! database per test) and the fake Jira. Run them with ./scripts/test.

mod audit;
mod backup;
mod cli;
mod config_loading;
mod connections;
mod egress;
mod events;
mod events_cluster;
mod events_storage;
mod fake_jira_deliveries;
mod fake_jira_events_schema;
mod fake_jira_schema;
mod fake_nextcloud;
mod files;
mod health;
mod helpers;
mod hooks;
mod identity;
mod instances;
mod issue_page;
mod jira_service;
mod jobs;
mod metrics;
mod migrations;
mod moto_peer;
mod proxy;
mod proxy_peers;
mod storage_fs;
mod storage_nextcloud;
mod storage_s3;
mod storage_suite;
mod storage_webdav;
mod tls;
mod webhook_registration;
