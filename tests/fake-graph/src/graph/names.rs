//! The names SharePoint Online and OneDrive for Business refuse, from Microsoft's
//! "Restrictions and limitations in OneDrive and SharePoint"
//! (https://support.microsoft.com/office/restrictions-and-limitations-in-onedrive-and-sharepoint-64883a5d-228e-48f5-b3d2-eb39e07630fa),
//! "Invalid file names and file types":
//!
//! - the characters `" * : < > ? / \ |` anywhere in a name;
//! - leading or trailing spaces;
//! - the names `.lock`, `CON`, `PRN`, `AUX`, `NUL`, `COM0`–`COM9`, `LPT0`–`LPT9`, `desktop.ini`,
//!   and any name starting with `~$`; `_vti_` anywhere in a name;
//! - `forms` as a folder at the root of a library;
//! - a decoded path (library URL + folders + name) over 400 characters.
//!
//! Added by the fake, stricter than the page (which no longer lists them): a trailing period,
//! and control characters. Each refusal is 400 `invalidRequest` with inner code `invalidPath`
//! (or `pathIsTooLong`), the codes Graph's error page lists for these cases.

use super::GraphError;

const FORBIDDEN_CHARS: [char; 9] = ['"', '*', ':', '<', '>', '?', '/', '\\', '|'];

/// The longest decoded path SharePoint accepts.
pub const MAX_PATH: usize = 400;

fn invalid(message: String) -> GraphError {
    GraphError::bad(message).inner("invalidPath")
}

fn reserved(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    if matches!(
        lower.as_str(),
        ".lock" | "con" | "prn" | "aux" | "nul" | "desktop.ini"
    ) {
        return true;
    }
    if let Some(digit) = lower
        .strip_prefix("com")
        .or_else(|| lower.strip_prefix("lpt"))
    {
        return digit.len() == 1 && digit.as_bytes()[0].is_ascii_digit();
    }
    lower.starts_with("~$") || lower.contains("_vti_")
}

/// Checks one name; `at_library_root` for items created directly in a library's root.
pub fn check(name: &str, folder: bool, at_library_root: bool) -> Result<(), GraphError> {
    if name.is_empty() {
        return Err(invalid("The name is empty.".to_owned()));
    }
    if let Some(c) = name
        .chars()
        .find(|c| FORBIDDEN_CHARS.contains(c) || c.is_control())
    {
        return Err(invalid(format!(
            "The name '{name}' contains the invalid character {c:?}."
        )));
    }
    if name.starts_with(' ') || name.ends_with(' ') {
        return Err(invalid(format!(
            "The name '{name}' starts or ends with a space."
        )));
    }
    if name.ends_with('.') {
        return Err(invalid(format!("The name '{name}' ends with a period.")));
    }
    if reserved(name) {
        return Err(invalid(format!("The name '{name}' is reserved.")));
    }
    if folder && at_library_root && name.eq_ignore_ascii_case("forms") {
        return Err(invalid(
            "'forms' is not allowed as a folder at the root of a library.".to_owned(),
        ));
    }
    Ok(())
}

/// Checks the decoded length of `library_url_path + item_path`.
pub fn check_length(full_path: &str) -> Result<(), GraphError> {
    let length = full_path.chars().count();
    if length > MAX_PATH {
        return Err(GraphError::bad(format!(
            "The path is {length} characters long; at most {MAX_PATH} are allowed."
        ))
        .inner("pathIsTooLong"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::check;

    #[test]
    fn refuses_what_sharepoint_refuses() {
        for bad in [
            "a\"b",
            "a*b",
            "a:b",
            "a<b",
            "a>b",
            "a?b",
            "a/b",
            "a\\b",
            "a|b",
            " lead",
            "trail ",
            "dot.",
            "CON",
            "con",
            "Lpt9",
            "COM0",
            ".lock",
            "desktop.ini",
            "~$draft.docx",
            "x_vti_y",
            "",
        ] {
            assert!(
                check(bad, false, false).is_err(),
                "{bad:?} should be refused"
            );
        }
        for good in [
            "report.pdf",
            "CON.txt",
            "COM10",
            "a#b%c&d",
            "_vti",
            "~draft",
            "forms",
        ] {
            assert!(
                check(good, false, false).is_ok(),
                "{good:?} should be allowed"
            );
        }
        assert!(check("Forms", true, true).is_err());
        assert!(check("Forms", true, false).is_ok());
    }
}
