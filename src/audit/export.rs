//! Export of the audit trail as CSV (for spreadsheets and SIEM imports) or JSON lines.

use std::io::Write;

use futures_util::TryStreamExt;
use sqlx::PgPool;
use time::OffsetDateTime;

use super::{AuditError, AuditRecord};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    Csv,
    Jsonl,
}

/// Which rows to export; every bound is optional.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub since: Option<OffsetDateTime>,
    pub until: Option<OffsetDateTime>,
    /// A Jira user key or name.
    pub actor: Option<String>,
    pub limit: Option<i64>,
}

const COLUMNS: [&str; 14] = [
    "seq",
    "at",
    "actor_key",
    "actor_name",
    "action",
    "target",
    "path",
    "size",
    "outcome",
    "client_ip",
    "request_id",
    "details",
    "prev_hash",
    "hash",
];

/// Streams the matching rows, oldest first, to `out`; returns how many were written.
pub async fn export(
    pool: &PgPool,
    filter: &Filter,
    format: ExportFormat,
    out: &mut impl Write,
) -> Result<u64, AuditError> {
    let mut rows = sqlx::query_as::<_, AuditRecord>(
        "SELECT seq, at, actor_key, actor_name, action, target, path, size, outcome,
                client_ip, request_id, details, prev_hash, hash
         FROM audit_events
         WHERE ($1::timestamptz IS NULL OR at >= $1)
           AND ($2::timestamptz IS NULL OR at < $2)
           AND ($3::text IS NULL OR actor_key = $3 OR actor_name = $3)
         ORDER BY seq
         LIMIT $4",
    )
    .bind(filter.since)
    .bind(filter.until)
    .bind(&filter.actor)
    .bind(filter.limit.unwrap_or(i64::MAX))
    .fetch(pool);
    if format == ExportFormat::Csv {
        writeln!(out, "{}", COLUMNS.join(","))?;
    }
    let mut count = 0;
    while let Some(row) = rows.try_next().await? {
        match format {
            ExportFormat::Csv => writeln!(out, "{}", csv_line(&row))?,
            ExportFormat::Jsonl => {
                serde_json::to_writer(&mut *out, &row).map_err(std::io::Error::other)?;
                writeln!(out)?;
            }
        }
        count += 1;
    }
    Ok(count)
}

fn csv_line(row: &AuditRecord) -> String {
    let at = row
        .at
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    let fields = [
        row.seq.to_string(),
        at,
        row.actor_key.clone(),
        row.actor_name.clone(),
        row.action.clone(),
        row.target.clone().unwrap_or_default(),
        row.path.clone().unwrap_or_default(),
        row.size.map(|s| s.to_string()).unwrap_or_default(),
        row.outcome.clone(),
        row.client_ip.clone().unwrap_or_default(),
        row.request_id.clone().unwrap_or_default(),
        row.details.to_string(),
        hex::encode(&row.prev_hash),
        hex::encode(&row.hash),
    ];
    fields
        .iter()
        .map(|f| csv_field(f))
        .collect::<Vec<_>>()
        .join(",")
}

/// Quotes as RFC 4180 wants, and defuses spreadsheet formulas: a file named `=HYPERLINK(...)`
/// must not run when an auditor opens the export.
fn csv_field(value: &str) -> String {
    let defused = if value.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{value}")
    } else {
        value.to_string()
    };
    if defused.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", defused.replace('"', "\"\""))
    } else {
        defused
    }
}

#[cfg(test)]
mod tests {
    use super::csv_field;

    #[test]
    fn csv_fields_are_quoted_and_formulas_defused() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("=1+1"), "'=1+1");
        assert_eq!(csv_field("-2"), "'-2");
        assert_eq!(csv_field("line\nbreak"), "\"line\nbreak\"");
    }
}
