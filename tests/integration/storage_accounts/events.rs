//! Jira events on delegated connections (being written).
