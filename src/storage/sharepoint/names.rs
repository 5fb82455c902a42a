//! SharePoint Online's and OneDrive for Business's name rules, from Microsoft's "Restrictions
//! and limitations in OneDrive and SharePoint" ("Invalid file names and file types"):
//!
//! - the characters `" * : < > ? / \ |` (the shared Windows rules, [`NameRules::WINDOWS`]);
//! - leading or trailing spaces (trailing ones and trailing dots also by the Windows rules);
//! - the names `.lock`, `CON`, `PRN`, `AUX`, `NUL`, `COM0`–`COM9`, `LPT0`–`LPT9`,
//!   `desktop.ini`, any name starting with `~$`, and `_vti_` anywhere in a name;
//! - `forms` as a folder at the root of a library;
//! - a decoded path (the library's URL path, folders and name) of more than 400 characters.
//!
//! `#` and `%` are allowed in SharePoint Online. These checks run before a request for names
//! filebridge creates (uploads, new folders, rename targets), so a user gets `invalid_name`
//! naming the rule instead of Graph's `invalidRequest`; existing items are read whatever
//! their names.

use crate::storage::{NameRules, StorageError, StoragePath};

/// The longest decoded path SharePoint accepts, in characters.
pub(super) const MAX_PATH_CHARS: usize = 400;

/// What the broker checks before the storage sees a path: the Windows rules, and paths that
/// fit SharePoint's limit even below a short library URL (the exact limit is checked here,
/// once the library's URL is known).
pub(super) const RULES: NameRules = NameRules {
    windows: true,
    max_segment_bytes: 255,
    max_path_bytes: 1024,
};

fn invalid(why: String) -> StorageError {
    StorageError::InvalidName(why)
}

/// Checks the names of `path` (relative to the connection's root) that are about to be
/// created. `prefix_chars`: the characters of the library's URL path and the root folder in
/// front of it; `root_is_library`: whether the connection's root is the library's root (where
/// `forms` is refused).
pub(super) fn check(
    path: &StoragePath,
    prefix_chars: usize,
    root_is_library: bool,
) -> Result<(), StorageError> {
    for (i, segment) in path.segments().iter().enumerate() {
        check_segment(segment)?;
        if i == 0 && root_is_library && segment.eq_ignore_ascii_case("forms") {
            return Err(invalid(
                "`forms` is reserved at the root of a SharePoint library".into(),
            ));
        }
    }
    let chars = prefix_chars
        + path
            .segments()
            .iter()
            .map(|s| s.chars().count() + 1)
            .sum::<usize>();
    if chars > MAX_PATH_CHARS {
        return Err(invalid(format!(
            "SharePoint paths may be at most {MAX_PATH_CHARS} characters, library and folders \
             included; this one has {chars}"
        )));
    }
    Ok(())
}

fn check_segment(name: &str) -> Result<(), StorageError> {
    if name.starts_with(' ') || name.ends_with(' ') {
        return Err(invalid(
            "names may not start or end with a space on SharePoint".into(),
        ));
    }
    let lower = name.to_ascii_lowercase();
    let reserved = matches!(
        lower.as_str(),
        ".lock" | "con" | "prn" | "aux" | "nul" | "desktop.ini"
    ) || lower
        .strip_prefix("com")
        .or_else(|| lower.strip_prefix("lpt"))
        .is_some_and(|digit| digit.len() == 1 && digit.as_bytes()[0].is_ascii_digit());
    if reserved {
        return Err(invalid(format!(
            "`{name}` is a reserved name on SharePoint"
        )));
    }
    if lower.starts_with("~$") {
        return Err(invalid(
            "names starting with `~$` are reserved on SharePoint (Office lock files)".into(),
        ));
    }
    if lower.contains("_vti_") {
        return Err(invalid(
            "`_vti_` may not appear in names on SharePoint".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(text: &str) -> StoragePath {
        StoragePath::parse(text, NameRules::default()).unwrap()
    }

    fn refused(text: &str) -> String {
        match check(&path(text), 30, true) {
            Err(StorageError::InvalidName(rule)) => rule,
            other => panic!("{text:?} accepted: {other:?}"),
        }
    }

    #[test]
    fn microsofts_list_is_refused() {
        assert!(refused(" lead").contains("space"));
        assert!(refused("a/trail ").contains("space"));
        for name in [
            ".lock",
            "CON",
            "prn",
            "Aux",
            "nul",
            "COM0",
            "com9",
            "LPT0",
            "lpt5",
            "desktop.ini",
        ] {
            assert!(refused(name).contains("reserved"), "{name}");
        }
        assert!(refused("a/~$report.docx").contains("~$"));
        assert!(refused("x_vti_y").contains("_vti_"));
        assert!(refused("Forms").contains("forms"));
        assert!(refused("forms/a.txt").contains("forms"));
    }

    #[test]
    fn ordinary_and_near_miss_names_pass() {
        for ok in [
            "a/forms",
            "COM10",
            "console.txt",
            "lpt",
            "100% #1 R&D.txt",
            "vti.txt",
            "a~$b",
            "Ünïcödé 📎",
        ] {
            check(&path(ok), 30, true).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        // `forms` is only reserved at the library's root.
        check(&path("Forms"), 30, false).unwrap();
    }

    #[test]
    fn the_whole_path_counts_in_characters() {
        let name = "é".repeat(100);
        let long = format!("{name}/{name}/{name}");
        // 303 characters below the root: fine after 97 characters of library URL, not 98.
        check(&path(&long), 97, false).unwrap();
        assert!(refused_with(&long, 98).contains("400"));
        // The shared rules count bytes, so they allow the broker to pass it on.
        assert!(StoragePath::parse(&long, RULES).is_ok());
    }

    fn refused_with(text: &str, prefix: usize) -> String {
        match check(&path(text), prefix, false) {
            Err(StorageError::InvalidName(rule)) => rule,
            other => panic!("{text:?} accepted: {other:?}"),
        }
    }
}
