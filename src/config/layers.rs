//! Layering of bootstrap configuration: defaults < TOML file < `FILEBRIDGE__…` environment <
//! command-line flags, merged by the `config` crate.
//!
//! Beside the merge we keep, for every key, the layer that set it last (its origin), so that an
//! unknown key or an invalid value is refused with a message naming the key and the file,
//! variable or flag it came from.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use secrecy::SecretString;

use super::ConfigError;
use super::keys;

/// Environment variables that configure filebridge start with this (then `SECTION__KEY`).
pub const ENV_PREFIX: &str = "FILEBRIDGE__";

/// Where a key's effective value came from. The order of variants is the precedence.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Origin {
    Default,
    File(PathBuf),
    Env(String),
    Flag(String),
}

impl Origin {
    /// The layer, for precedence: two environment variables are the same layer.
    fn layer(&self) -> u8 {
        match self {
            Origin::Default => 0,
            Origin::File(_) => 1,
            Origin::Env(_) => 2,
            Origin::Flag(_) => 3,
        }
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Default => write!(f, "the default"),
            Origin::File(path) => write!(f, "file {}", path.display()),
            Origin::Env(var) => write!(f, "environment variable {var}"),
            Origin::Flag(flag) => write!(f, "command-line flag {flag}"),
        }
    }
}

/// What the loader reads. `main` fills it from the process; tests build it by hand so they
/// never touch the process environment.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    /// The TOML file, if any.
    pub file: Option<PathBuf>,
    /// When false a missing `file` is fine (the default path is optional).
    pub file_required: bool,
    /// The process environment (only `FILEBRIDGE__*` and `CREDENTIALS_DIRECTORY` are read).
    pub env: HashMap<String, String>,
    /// Command-line overrides: (key, value, flag as the user typed it).
    pub flags: Vec<(String, String, String)>,
}

/// The merged configuration plus each key's origin.
pub struct Layered {
    merged: config::Config,
    origins: HashMap<String, Origin>,
    /// Relative `*_file` paths are resolved against the config file's folder.
    file_dir: Option<PathBuf>,
    credentials_dir: Option<PathBuf>,
}

impl Layered {
    pub fn load(sources: &Sources) -> Result<Self, ConfigError> {
        let mut origins = HashMap::new();
        let mut builder = config::Config::builder();

        for key in keys::KEYS {
            match key.default {
                Some(keys::Default::Str(value)) => {
                    builder = builder.set_default(key.name, value)?;
                }
                Some(keys::Default::List(values)) => {
                    let values: Vec<String> = values.iter().map(|v| v.to_string()).collect();
                    builder = builder.set_default(key.name, values)?;
                }
                None => continue,
            }
            origins.insert(key.name.to_string(), Origin::Default);
        }

        let mut file_dir = None;
        if let Some(path) = &sources.file {
            match std::fs::read_to_string(path) {
                Ok(text) => {
                    for key in toml_keys(path, &text)? {
                        origins.insert(key, Origin::File(path.clone()));
                    }
                    builder =
                        builder.add_source(config::File::from_str(&text, config::FileFormat::Toml));
                    file_dir = path.parent().map(Path::to_path_buf);
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && !sources.file_required => {}
                Err(source) => {
                    return Err(ConfigError::ReadFile {
                        path: path.clone(),
                        source,
                    });
                }
            }
        }

        let mut env_values = HashMap::new();
        for (var, value) in &sources.env {
            let Some(rest) = strip_prefix_ignore_case(var, ENV_PREFIX) else {
                continue;
            };
            let name = rest
                .split("__")
                .collect::<Vec<_>>()
                .join(".")
                .to_lowercase();
            if keys::lookup(&name).is_none() {
                return Err(ConfigError::UnknownKey {
                    key: name,
                    origin: Origin::Env(var.clone()),
                });
            }
            origins.insert(name.clone(), Origin::Env(var.clone()));
            env_values.insert(var.clone(), value.clone());
        }
        // Values stay strings (the crate's `try_parsing` would turn a token like `1e5` into a
        // number); list keys are split on commas in `list`.
        builder = builder.add_source(
            config::Environment::with_prefix("FILEBRIDGE")
                .prefix_separator("__")
                .separator("__")
                .try_parsing(false)
                .source(Some(env_values)),
        );

        for (key, value, flag) in &sources.flags {
            builder = builder.set_override(key.as_str(), value.as_str())?;
            origins.insert(key.clone(), Origin::Flag(flag.clone()));
        }

        Ok(Self {
            merged: builder.build()?,
            origins,
            file_dir,
            credentials_dir: sources.env.get("CREDENTIALS_DIRECTORY").map(PathBuf::from),
        })
    }

    pub fn origin(&self, key: &str) -> Origin {
        self.origins.get(key).cloned().unwrap_or(Origin::Default)
    }

    /// An "invalid value" error naming the key and where it came from.
    pub fn invalid(&self, key: &str, reason: impl fmt::Display) -> ConfigError {
        ConfigError::Invalid {
            key: key.to_string(),
            origin: self.origin(key),
            reason: reason.to_string(),
        }
    }

    /// A scalar as a string; unset and empty are both `None`.
    pub fn string(&self, key: &str) -> Result<Option<String>, ConfigError> {
        if !self.origins.contains_key(key) {
            return Ok(None);
        }
        match self.merged.get_string(key) {
            Ok(value) if value.trim().is_empty() => Ok(None),
            Ok(value) => Ok(Some(value)),
            Err(e) => Err(self.invalid(key, type_error(e))),
        }
    }

    pub fn required_string(&self, key: &str) -> Result<String, ConfigError> {
        self.string(key)?
            .ok_or_else(|| self.invalid(key, "must not be empty"))
    }

    pub fn parse<T>(&self, key: &str) -> Result<Option<T>, ConfigError>
    where
        T: FromStr,
        T::Err: fmt::Display,
    {
        match self.string(key)? {
            None => Ok(None),
            Some(text) => text
                .trim()
                .parse()
                .map(Some)
                .map_err(|e| self.invalid(key, format!("`{text}`: {e}"))),
        }
    }

    pub fn required<T>(&self, key: &str) -> Result<T, ConfigError>
    where
        T: FromStr,
        T::Err: fmt::Display,
    {
        self.parse(key)?
            .ok_or_else(|| self.invalid(key, "must not be empty"))
    }

    pub fn duration(&self, key: &str) -> Result<Duration, ConfigError> {
        let text = self.required_string(key)?;
        humantime::parse_duration(text.trim()).map_err(|e| {
            self.invalid(
                key,
                format!("`{text}` is not a duration like 30s or 8h: {e}"),
            )
        })
    }

    /// A list: an array in TOML, comma-separated in the environment. Empty items are dropped.
    pub fn list(&self, key: &str) -> Result<Vec<String>, ConfigError> {
        if !self.origins.contains_key(key) {
            return Ok(Vec::new());
        }
        let items: Vec<String> = match self.merged.get_array(key) {
            Ok(values) => values
                .into_iter()
                .map(|v| {
                    v.into_string()
                        .map_err(|e| self.invalid(key, type_error(e)))
                })
                .collect::<Result<_, _>>()?,
            Err(_) => match self.merged.get_string(key) {
                Ok(text) => text.split(',').map(str::to_string).collect(),
                Err(e) => return Err(self.invalid(key, type_error(e))),
            },
        };
        Ok(items
            .iter()
            .map(|item| item.trim())
            .filter(|item| !item.is_empty())
            .map(str::to_string)
            .collect())
    }

    /// A path-valued key, resolved like a secret file (see [`Self::resolve_path`]).
    pub fn path(&self, key: &str) -> Result<Option<PathBuf>, ConfigError> {
        Ok(self
            .string(key)?
            .map(|p| self.resolve_path(Path::new(p.trim()))))
    }

    /// A secret key: the value itself, or the trimmed contents of `<key>_file`. When both are
    /// set, the one from the higher layer wins; both in the same layer is an error.
    pub fn secret(&self, key: &str) -> Result<Option<SecretString>, ConfigError> {
        let file_key = format!("{key}_file");
        let direct = self.origins.get(key);
        let from_file = self.origins.get(&file_key);
        let use_file = match (direct, from_file) {
            (_, None) => false,
            (None, Some(_)) => true,
            (Some(a), Some(b)) if a.layer() == b.layer() => {
                return Err(ConfigError::Conflict {
                    key: key.to_string(),
                    origin: b.clone(),
                });
            }
            (Some(a), Some(b)) => b.layer() > a.layer(),
        };
        if !use_file {
            return Ok(self.string(key)?.map(SecretString::from));
        }
        let Some(path) = self.path(&file_key)? else {
            return Ok(None);
        };
        match std::fs::read_to_string(&path) {
            Ok(text) => Ok(Some(SecretString::from(text.trim().to_string()))),
            Err(e) => Err(self.invalid(&file_key, format!("cannot read {}: {e}", path.display()))),
        }
    }

    /// A relative path is looked up in systemd's `$CREDENTIALS_DIRECTORY` first, then next to
    /// the configuration file, then in the working directory.
    pub fn resolve_path(&self, path: &Path) -> PathBuf {
        if path.is_absolute() {
            return path.to_path_buf();
        }
        if let Some(dir) = &self.credentials_dir {
            let candidate = dir.join(path);
            if candidate.exists() {
                return candidate;
            }
        }
        match &self.file_dir {
            Some(dir) if !dir.as_os_str().is_empty() => dir.join(path),
            _ => path.to_path_buf(),
        }
    }
}

fn strip_prefix_ignore_case<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &text[prefix.len()..])
}

/// The `config` crate's own messages repeat the key and an unhelpful origin; keep the gist.
fn type_error(error: config::ConfigError) -> String {
    match error {
        config::ConfigError::Type {
            unexpected,
            expected,
            ..
        } => format!("expected {expected}, found {unexpected}"),
        other => other.to_string(),
    }
}

/// The dotted names of every value in a TOML document; refuses names filebridge does not know.
fn toml_keys(path: &Path, text: &str) -> Result<Vec<String>, ConfigError> {
    // Only the position and the parser's message: its Display quotes the offending line,
    // which may hold a password.
    let table: toml::Table = toml::from_str(text).map_err(|e| {
        let position = e.span().map(|span| {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.len() - before.rfind('\n').map(|i| i + 1).unwrap_or(0) + 1;
            format!("line {line}, column {column}: ")
        });
        ConfigError::Syntax {
            path: path.to_path_buf(),
            message: format!("{}{}", position.unwrap_or_default(), e.message()),
        }
    })?;
    let mut names = Vec::new();
    for (section, value) in &table {
        let known_section = keys::KEYS
            .iter()
            .any(|k| k.name.split_once('.').is_some_and(|(s, _)| s == section));
        let toml::Value::Table(entries) = value else {
            return Err(unknown(section, path));
        };
        if !known_section {
            return Err(unknown(section, path));
        }
        for (name, _) in entries {
            let key = format!("{section}.{name}");
            if keys::lookup(&key).is_none() {
                return Err(unknown(&key, path));
            }
            names.push(key);
        }
    }
    Ok(names)
}

fn unknown(key: &str, path: &Path) -> ConfigError {
    ConfigError::UnknownKey {
        key: key.to_string(),
        origin: Origin::File(path.to_path_buf()),
    }
}
