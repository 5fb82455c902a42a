//! The S3 XML this backend reads and writes, and S3's percent-encoding.
//!
//! Parsed with quick-xml's serde support, which matches elements by local name: some
//! S3-compatible stores leave out the `xmlns` that AWS sends, and the parse must not care.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use serde::Deserialize;

use crate::storage::StorageError;

/// Everything but `A-Z a-z 0-9 - . _ ~` is encoded: SigV4's canonical form, which is also
/// what gets sent, so the signed and the sent request are the same bytes.
const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Like [`QUERY_VALUE`], but `/` separates path segments and stays as it is.
const PATH: &AsciiSet = &QUERY_VALUE.remove(b'/');

pub fn encode_query(value: &str) -> String {
    utf8_percent_encode(value, QUERY_VALUE).to_string()
}

pub fn encode_path(key: &str) -> String {
    utf8_percent_encode(key, PATH).to_string()
}

/// Decodes a key from a listing made with `encoding-type=url`. AWS encodes a space as `+`
/// (and a `+` as `%2B`), others use `%20`; both decode the same way here.
pub fn decode_listed_key(encoded: &str) -> Result<String, StorageError> {
    let plus_as_space = encoded.replace('+', " ");
    percent_decode_str(&plus_as_space)
        .decode_utf8()
        .map(|key| key.into_owned())
        .map_err(|_| {
            StorageError::Backend(format!(
                "the storage listed a key that is not UTF-8: {encoded}"
            ))
        })
}

fn parse<'a, T: Deserialize<'a>>(text: &'a str, what: &str) -> Result<T, StorageError> {
    quick_xml::de::from_str(text).map_err(|e| {
        StorageError::Backend(format!("unexpected {what} response from the storage: {e}"))
    })
}

/// An S3 `<Error>` document.
#[derive(Debug, Default, Deserialize)]
pub struct ErrorDocument {
    #[serde(rename = "Code", default)]
    pub code: String,
    #[serde(rename = "Message", default)]
    pub message: String,
}

impl ErrorDocument {
    /// `None` when the body is not an S3 error document (a proxy's HTML page, nothing).
    pub fn parse(body: &str) -> Option<Self> {
        if !body.contains("<Error") && !body.contains(":Error") {
            return None;
        }
        quick_xml::de::from_str::<ErrorDocument>(body)
            .ok()
            .filter(|doc| !doc.code.is_empty())
    }
}

#[derive(Debug, Deserialize)]
pub struct ListedObject {
    #[serde(rename = "Key")]
    pub key: String,
    #[serde(rename = "LastModified", default)]
    pub last_modified: Option<String>,
    #[serde(rename = "ETag", default)]
    pub etag: Option<String>,
    #[serde(rename = "Size", default)]
    pub size: Option<u64>,
}

#[derive(Debug, Deserialize)]
struct ListedPrefix {
    #[serde(rename = "Prefix")]
    prefix: String,
}

#[derive(Debug, Deserialize)]
struct RawListing {
    #[serde(rename = "Contents", default)]
    contents: Vec<ListedObject>,
    #[serde(rename = "CommonPrefixes", default)]
    common_prefixes: Vec<ListedPrefix>,
    #[serde(rename = "IsTruncated", default)]
    is_truncated: bool,
    #[serde(rename = "NextContinuationToken", default)]
    next_continuation_token: Option<String>,
    #[serde(rename = "EncodingType", default)]
    encoding_type: Option<String>,
}

/// One page of `ListObjectsV2`, keys decoded.
#[derive(Debug)]
pub struct Listing {
    pub objects: Vec<ListedObject>,
    pub prefixes: Vec<String>,
    /// Where the next page starts; `None` on the last page.
    pub next: Option<String>,
}

impl Listing {
    pub fn parse(body: &str) -> Result<Self, StorageError> {
        let raw: RawListing = parse(body, "ListObjectsV2")?;
        let encoded = raw.encoding_type.as_deref() == Some("url");
        let decode = |key: String| {
            if encoded {
                decode_listed_key(&key)
            } else {
                Ok(key)
            }
        };
        let mut objects = Vec::with_capacity(raw.contents.len());
        for mut object in raw.contents {
            object.key = decode(object.key)?;
            objects.push(object);
        }
        let prefixes = raw
            .common_prefixes
            .into_iter()
            .map(|p| decode(p.prefix))
            .collect::<Result<Vec<_>, _>>()?;
        let next = match (raw.is_truncated, raw.next_continuation_token) {
            (true, Some(token)) if !token.is_empty() => Some(token),
            // A truncated page without a token would silently end the listing early.
            (true, _) => {
                return Err(StorageError::Backend(
                    "the storage cut a listing short without a continuation token".into(),
                ));
            }
            (false, _) => None,
        };
        Ok(Self {
            objects,
            prefixes,
            next,
        })
    }
}

#[derive(Debug, Deserialize)]
pub struct InitiatedUpload {
    #[serde(rename = "UploadId")]
    pub upload_id: String,
}

impl InitiatedUpload {
    pub fn parse(body: &str) -> Result<Self, StorageError> {
        parse(body, "CreateMultipartUpload")
    }
}

#[derive(Debug, Deserialize)]
pub struct CompletedUpload {
    #[serde(rename = "ETag", default)]
    pub etag: Option<String>,
}

impl CompletedUpload {
    pub fn parse(body: &str) -> Result<Self, StorageError> {
        parse(body, "CompleteMultipartUpload")
    }
}

#[derive(Debug, Deserialize)]
struct DeleteError {
    #[serde(rename = "Key", default)]
    key: String,
    #[serde(rename = "Code", default)]
    code: String,
    #[serde(rename = "Message", default)]
    message: String,
}

#[derive(Debug, Deserialize)]
struct DeleteResult {
    #[serde(rename = "Error", default)]
    errors: Vec<DeleteError>,
}

/// The keys a `DeleteObjects` call could not delete, as (key, code, message).
pub fn delete_failures(body: &str) -> Result<Vec<(String, String, String)>, StorageError> {
    let result: DeleteResult = parse(body, "DeleteObjects")?;
    Ok(result
        .errors
        .into_iter()
        .map(|e| (e.key, e.code, e.message))
        .collect())
}

/// Whether a key survives a trip through a `DeleteObjects` body: control characters cannot be written
/// in XML 1.0 (and a `\r` would be read back as `\n`), so such keys are deleted one by one.
pub fn xml_safe(key: &str) -> bool {
    !key.chars()
        .any(|c| c.is_control() || c == '\u{FFFE}' || c == '\u{FFFF}')
}

/// The body of `CompleteMultipartUpload` for the parts' ETags in order.
pub fn complete_body(etags: &[String]) -> String {
    let mut body = String::from("<CompleteMultipartUpload>");
    for (index, etag) in etags.iter().enumerate() {
        body.push_str(&format!(
            "<Part><PartNumber>{}</PartNumber><ETag>{}</ETag></Part>",
            index + 1,
            quick_xml::escape::escape(etag.as_str())
        ));
    }
    body.push_str("</CompleteMultipartUpload>");
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_is_sigv4_canonical() {
        assert_eq!(
            encode_path("a b/c+d&e%f#g~h.txt"),
            "a%20b/c%2Bd%26e%25f%23g~h.txt"
        );
        assert_eq!(encode_query("x/y=z"), "x%2Fy%3Dz");
        assert_eq!(encode_path("é"), "%C3%A9");
    }

    #[test]
    fn listed_keys_decode_both_space_styles() {
        assert_eq!(decode_listed_key("a+b%2Bc").unwrap(), "a b+c");
        assert_eq!(decode_listed_key("a%20b%25").unwrap(), "a b%");
        assert!(decode_listed_key("%FF").is_err());
    }

    #[test]
    fn listings_parse_with_or_without_a_namespace() {
        let body = r#"<?xml version="1.0" encoding="UTF-8"?>
<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
  <Name>b</Name><Prefix>p/</Prefix><KeyCount>3</KeyCount><MaxKeys>1000</MaxKeys>
  <EncodingType>url</EncodingType><IsTruncated>true</IsTruncated>
  <NextContinuationToken>tok+/=</NextContinuationToken>
  <Contents><Key>p/a+b.txt</Key><LastModified>2024-01-02T03:04:05.000Z</LastModified>
    <ETag>&quot;abc&quot;</ETag><Size>5</Size><StorageClass>STANDARD</StorageClass></Contents>
  <Contents><Key>p/c</Key><Size>0</Size></Contents>
  <CommonPrefixes><Prefix>p/d%20e/</Prefix></CommonPrefixes>
</ListBucketResult>"#;
        let page = Listing::parse(body).unwrap();
        assert_eq!(page.objects.len(), 2);
        assert_eq!(page.objects[0].key, "p/a b.txt");
        assert_eq!(page.objects[0].etag.as_deref(), Some("\"abc\""));
        assert_eq!(page.objects[0].size, Some(5));
        assert_eq!(page.prefixes, vec!["p/d e/"]);
        assert_eq!(page.next.as_deref(), Some("tok+/="));

        let bare = "<ListBucketResult><IsTruncated>false</IsTruncated></ListBucketResult>";
        let page = Listing::parse(bare).unwrap();
        assert!(page.objects.is_empty() && page.prefixes.is_empty() && page.next.is_none());

        let cut = "<ListBucketResult><IsTruncated>true</IsTruncated></ListBucketResult>";
        assert!(Listing::parse(cut).is_err());
    }

    #[test]
    fn errors_and_delete_results_parse() {
        let doc = ErrorDocument::parse(
            "<?xml version=\"1.0\"?><Error><Code>NoSuchKey</Code><Message>gone</Message></Error>",
        )
        .unwrap();
        assert_eq!(
            (doc.code.as_str(), doc.message.as_str()),
            ("NoSuchKey", "gone")
        );
        assert!(ErrorDocument::parse("<html>bad gateway</html>").is_none());
        assert!(ErrorDocument::parse("").is_none());

        let failures = delete_failures(
            "<DeleteResult><Error><Key>k</Key><Code>AccessDenied</Code><Message>no</Message></Error></DeleteResult>",
        )
        .unwrap();
        assert_eq!(
            failures,
            vec![("k".into(), "AccessDenied".into(), "no".into())]
        );
        assert!(delete_failures("<DeleteResult/>").unwrap().is_empty());
    }

    #[test]
    fn request_bodies_escape_keys() {
        assert!(xml_safe("ordinary name.txt"));
        assert!(!xml_safe("line\rbreak"));
        assert_eq!(
            complete_body(&["\"e1\"".to_string(), "\"e2\"".to_string()]),
            "<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>&quot;e1&quot;</ETag></Part>\
             <Part><PartNumber>2</PartNumber><ETag>&quot;e2&quot;</ETag></Part></CompleteMultipartUpload>"
        );
    }
}
