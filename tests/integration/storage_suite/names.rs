//! Names that trip up URL encoding, XML, shells and Unicode handling.

use std::collections::BTreeSet;
use std::sync::Arc;

use filebridge::storage::{ItemKind, Storage, StoragePath, WriteMode};

use super::scratch::Scratch;

/// Names that trip up URL encoding, XML, shells and Unicode handling. Written as given; the
/// store must list them exactly as [`StoragePath::parse`] normalised them (NFC).
const UNUSUAL: &[&str] = &[
    "with space.txt",
    "two  spaces  inside.txt",
    "plus+sign.txt",
    "amp&ersand.txt",
    "100% sure.txt",
    "literal%20percent-twenty.txt",
    "#hash.txt",
    "question#fragment.txt",
    "semi;colon,comma=equals.txt",
    "[brackets] (parens) {braces}.txt",
    "'single' quote.txt",
    "tilde~ at@ dollar$.txt",
    "emoji 📎🎉👩‍💻.txt",
    "Cafe\u{301} (NFD input).txt",
    "q\u{307}\u{323} combining marks.txt",
    "Ünïcödé ẞ.txt",
    "日本語のファイル.txt",
    "folder with spaces & #hash %/inner+file name.txt",
];

pub async fn unusual_names(storage: Arc<dyn Storage>) {
    let s = Scratch::new(storage, "unusual_names").await;
    let folder = s.path("folder with spaces & #hash %");
    s.ok(
        "create `folder with spaces & #hash %`",
        s.storage.create_folder(&folder).await,
    );
    let mut expected = BTreeSet::new();
    for relative in UNUSUAL {
        let written = s
            .put(relative, relative.as_bytes(), WriteMode::CreateOnly)
            .await;
        let path = s.path(relative);
        if written.item.path != path.to_string() || written.item.name != path.name() {
            s.fail(format!(
                "write `{relative}`: answered the item {:?}",
                written.item
            ));
        }
        if path.parent() == Some(s.base.clone()) {
            expected.insert(path.name().to_string());
        }
    }
    expected.insert(folder.name().to_string());
    let listing = s.listing("").await;
    let listed: BTreeSet<String> = listing.keys().cloned().collect();
    if listed != expected {
        let missing: Vec<_> = expected.difference(&listed).collect();
        let extra: Vec<_> = listed.difference(&expected).collect();
        s.fail(format!(
            "listing: missing {missing:?}, unexpected {extra:?}"
        ));
    }
    for item in listing.values() {
        if item.path != format!("{}/{}", s.base, item.name) {
            s.fail(format!(
                "listing: `{}` has the path `{}`",
                item.name, item.path
            ));
        }
    }
    let inner = s.listing("folder with spaces & #hash %").await;
    let inner_names: Vec<&String> = inner.keys().collect();
    if inner_names != ["inner+file name.txt"] {
        s.fail(format!("listing the unusual folder: {inner_names:?}"));
    }
    // Read back under the names the listings reported, which must lead to the same files.
    let listed_paths = listing
        .values()
        .filter(|item| item.kind == ItemKind::File)
        .map(|item| item.name.clone())
        .chain(inner.keys().map(|name| format!("{}/{name}", folder.name())));
    let mut read_back = 0;
    for relative in listed_paths {
        let Some(original) = UNUSUAL
            .iter()
            .find(|u| StoragePath::parse(u, s.rules).is_ok_and(|p| p.to_string() == relative))
        else {
            s.fail(format!("listed `{relative}` matches no name written"));
        };
        if s.get(&relative).await != original.as_bytes() {
            s.fail(format!("`{relative}` does not read back as written"));
        }
        let stat = s.ok(
            &format!("stat `{relative}`"),
            s.storage.stat(&s.path(&relative)).await,
        );
        if stat.size != Some(original.len() as u64) || stat.kind != ItemKind::File {
            s.fail(format!("stat `{relative}`: {stat:?}"));
        }
        read_back += 1;
    }
    if read_back != UNUSUAL.len() {
        s.fail(format!("read back {read_back} of {} files", UNUSUAL.len()));
    }
    s.finish().await;
}
