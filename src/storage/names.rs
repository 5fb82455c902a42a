//! Names are validated once, here, before any storage sees them: every path a user or an
//! admin supplies becomes a [`StoragePath`] or a clear `invalid_name` error naming the rule.

use std::fmt;

use unicode_normalization::UnicodeNormalization;

use super::StorageError;

/// What a particular store accepts on top of the rules every store shares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NameRules {
    /// Windows-style restrictions (SMB shares, SharePoint/OneDrive): no `: * ? " < > |`, no
    /// trailing dot or space, no reserved device names such as `CON` or `LPT1`.
    pub windows: bool,
    /// Longest segment in UTF-8 bytes.
    pub max_segment_bytes: usize,
    /// Longest whole path (relative to the connection's root) in UTF-8 bytes.
    pub max_path_bytes: usize,
}

impl Default for NameRules {
    fn default() -> Self {
        Self {
            windows: false,
            max_segment_bytes: 255,
            max_path_bytes: 1024,
        }
    }
}

impl NameRules {
    pub const WINDOWS: NameRules = NameRules {
        windows: true,
        max_segment_bytes: 255,
        max_path_bytes: 400,
    };
}

const WINDOWS_FORBIDDEN: &[char] = &[':', '*', '?', '"', '<', '>', '|'];
const WINDOWS_RESERVED: &[&str] = &[
    "CON", "PRN", "AUX", "NUL", "COM1", "COM2", "COM3", "COM4", "COM5", "COM6", "COM7", "COM8",
    "COM9", "LPT1", "LPT2", "LPT3", "LPT4", "LPT5", "LPT6", "LPT7", "LPT8", "LPT9",
];

/// A validated path relative to some folder: `/`-separated segments in Unicode NFC. The
/// empty path is that folder itself.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct StoragePath {
    segments: Vec<String>,
}

impl StoragePath {
    pub fn root() -> Self {
        Self::default()
    }

    /// Parses user input. Leading and trailing `/` are not allowed (paths are relative);
    /// names are normalised to NFC (macOS clients send NFD).
    pub fn parse(text: &str, rules: NameRules) -> Result<Self, StorageError> {
        if text.is_empty() {
            return Ok(Self::root());
        }
        if text.starts_with('/') {
            return Err(invalid(
                "absolute paths are not allowed; paths are relative to the folder",
            ));
        }
        let mut segments = Vec::new();
        for segment in text.split('/') {
            segments.push(check_segment(segment, rules)?);
        }
        let path = Self { segments };
        check_length(&path, rules)?;
        Ok(path)
    }

    /// `self/other`, checked against the length limit.
    pub fn join(&self, other: &StoragePath, rules: NameRules) -> Result<Self, StorageError> {
        let mut segments = self.segments.clone();
        segments.extend(other.segments.iter().cloned());
        let path = Self { segments };
        check_length(&path, rules)?;
        Ok(path)
    }

    /// `self/name` for one validated segment.
    pub fn child(&self, name: &str, rules: NameRules) -> Result<Self, StorageError> {
        self.join(&StoragePath::parse(name, rules)?, rules)
    }

    pub fn is_root(&self) -> bool {
        self.segments.is_empty()
    }

    pub fn segments(&self) -> &[String] {
        &self.segments
    }

    /// The last segment; empty for the root.
    pub fn name(&self) -> &str {
        self.segments.last().map(String::as_str).unwrap_or("")
    }

    pub fn parent(&self) -> Option<StoragePath> {
        if self.segments.is_empty() {
            return None;
        }
        Some(Self {
            segments: self.segments[..self.segments.len() - 1].to_vec(),
        })
    }

    /// True when `self` is `other` or inside it (a folder cannot move into itself).
    pub fn starts_with(&self, other: &StoragePath) -> bool {
        self.segments.starts_with(&other.segments)
    }

    /// `self` with the leading `prefix` removed, if it is inside it.
    pub fn strip_prefix(&self, prefix: &StoragePath) -> Option<StoragePath> {
        self.segments
            .strip_prefix(prefix.segments.as_slice())
            .map(|rest| Self {
                segments: rest.to_vec(),
            })
    }
}

impl fmt::Display for StoragePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.segments.join("/"))
    }
}

fn invalid(rule: &str) -> StorageError {
    StorageError::InvalidName(rule.to_string())
}

fn check_segment(raw: &str, rules: NameRules) -> Result<String, StorageError> {
    if raw.is_empty() {
        return Err(invalid(
            "empty path segments (`//` or a trailing `/`) are not allowed",
        ));
    }
    if raw == "." || raw == ".." {
        return Err(invalid("`.` and `..` are not allowed"));
    }
    if raw.chars().any(|c| c.is_control()) {
        return Err(invalid(
            "control characters (including NUL) are not allowed",
        ));
    }
    if raw.contains('\\') {
        return Err(invalid("backslashes are not allowed"));
    }
    // Most names are already NFC (all ASCII ones are); the quick check skips rebuilding them
    // char by char, a tenth of a large listing's CPU.
    let segment: String = match unicode_normalization::is_nfc_quick(raw.chars()) {
        unicode_normalization::IsNormalized::Yes => raw.to_string(),
        _ => raw.nfc().collect(),
    };
    if segment.len() > rules.max_segment_bytes {
        return Err(StorageError::InvalidName(format!(
            "a name may be at most {} bytes",
            rules.max_segment_bytes
        )));
    }
    if rules.windows {
        if let Some(c) = segment.chars().find(|c| WINDOWS_FORBIDDEN.contains(c)) {
            return Err(StorageError::InvalidName(format!(
                "`{c}` is not allowed on this storage"
            )));
        }
        if segment.ends_with('.') || segment.ends_with(' ') {
            return Err(invalid(
                "names may not end with a dot or a space on this storage",
            ));
        }
        let stem = segment.split('.').next().unwrap_or("").trim_end();
        if WINDOWS_RESERVED
            .iter()
            .any(|r| r.eq_ignore_ascii_case(stem))
        {
            return Err(StorageError::InvalidName(format!(
                "`{stem}` is a reserved name on this storage"
            )));
        }
    }
    Ok(segment)
}

fn check_length(path: &StoragePath, rules: NameRules) -> Result<(), StorageError> {
    let bytes: usize = path.segments.iter().map(|s| s.len() + 1).sum();
    if bytes.saturating_sub(1) > rules.max_path_bytes {
        return Err(StorageError::InvalidName(format!(
            "the path may be at most {} bytes",
            rules.max_path_bytes
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(text: &str) -> String {
        StoragePath::parse(text, NameRules::default())
            .unwrap()
            .to_string()
    }

    fn refused(text: &str, rules: NameRules) -> String {
        match StoragePath::parse(text, rules) {
            Err(StorageError::InvalidName(rule)) => rule,
            other => panic!("{text:?} accepted: {other:?}"),
        }
    }

    #[test]
    fn ordinary_and_unusual_names_pass() {
        assert_eq!(ok(""), "");
        assert_eq!(ok("a/b c/d+e&f%g#h.txt"), "a/b c/d+e&f%g#h.txt");
        assert_eq!(ok("📎 notes/Ünïcödé.md"), "📎 notes/Ünïcödé.md");
        // NFD input is stored as NFC.
        assert_eq!(ok("Cafe\u{301}"), "Caf\u{e9}");
    }

    #[test]
    fn hostile_paths_are_refused_naming_the_rule() {
        let d = NameRules::default();
        assert!(refused("../etc/passwd", d).contains("`..`"));
        assert!(refused("a/../../b", d).contains("`..`"));
        assert!(refused("/etc/passwd", d).contains("absolute"));
        assert!(refused("a//b", d).contains("empty"));
        assert!(refused("a/", d).contains("empty"));
        assert!(refused("a\0b", d).contains("control"));
        assert!(refused("a\nb", d).contains("control"));
        assert!(refused("a\\..\\b", d).contains("backslash"));
        assert!(refused(&"x".repeat(256), d).contains("255"));
        assert!(refused(&vec!["y".repeat(200); 6].join("/"), d).contains("1024"));
    }

    #[test]
    fn windows_like_stores_have_their_own_rules() {
        let w = NameRules::WINDOWS;
        assert!(refused("a:b", w).contains("`:`"));
        assert!(refused("what?", w).contains("`?`"));
        assert!(refused("trailing.", w).contains("dot"));
        assert!(refused("trailing ", w).contains("space"));
        assert!(refused("CON", w).contains("reserved"));
        assert!(refused("lpt1.txt", w).contains("reserved"));
        assert!(StoragePath::parse("a:b", NameRules::default()).is_ok());
        assert!(StoragePath::parse("console.txt", w).is_ok());
    }

    #[test]
    fn paths_compose() {
        let d = NameRules::default();
        let base = StoragePath::parse("Jira/PROJ/PROJ-1", d).unwrap();
        let full = base
            .join(&StoragePath::parse("docs/a.txt", d).unwrap(), d)
            .unwrap();
        assert_eq!(full.to_string(), "Jira/PROJ/PROJ-1/docs/a.txt");
        assert_eq!(full.name(), "a.txt");
        assert_eq!(full.parent().unwrap().to_string(), "Jira/PROJ/PROJ-1/docs");
        assert!(full.starts_with(&base));
        assert_eq!(full.strip_prefix(&base).unwrap().to_string(), "docs/a.txt");
        assert!(StoragePath::root().parent().is_none());
    }
}
