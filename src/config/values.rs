//! Values as people write them in settings: durations (`250ms`, `10s`, `5m`), sizes
//! (`512KiB`, `1MiB`), URLs and secrets with `${VAR}` from the environment; and the
//! one error for a table that cannot be used.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

/// A table of the config file that cannot be used: which table, which field, why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("[{table}] {field}: {reason}")]
pub struct TableError {
    /// As written in the file, e.g. `sources.stripe` or `alerts`.
    pub table: String,
    pub field: String,
    pub reason: String,
}

impl TableError {
    pub fn new(
        table: impl Into<String>,
        field: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        Self {
            table: table.into(),
            field: field.into(),
            reason: reason.into(),
        }
    }
}

pub fn parse_duration(raw: &str) -> Result<Duration, String> {
    let duration = humantime::parse_duration(raw.trim())
        .map_err(|e| format!("{e}; write a duration such as 250ms, 10s or 5m"))?;
    if duration.is_zero() {
        return Err("must be greater than zero".into());
    }
    Ok(duration)
}

pub fn parse_size(raw: &str) -> Result<usize, String> {
    let size: bytesize::ByteSize = raw
        .trim()
        .parse()
        .map_err(|e| format!("{e}; write a size such as 512KiB or 1MiB"))?;
    match usize::try_from(size.as_u64()) {
        Ok(0) => Err("must be greater than zero".into()),
        Ok(bytes) => Ok(bytes),
        Err(_) => Err("too large".into()),
    }
}

pub fn parse_at_least(raw: &str, min: u32) -> Result<u32, String> {
    let n: u32 = raw
        .trim()
        .parse()
        .map_err(|_| "expected a whole number".to_string())?;
    if n < min {
        return Err(format!("must be at least {min}"));
    }
    Ok(n)
}

pub fn parse_float_in(raw: &str, min: f64, max: f64) -> Result<f64, String> {
    let x: f64 = raw
        .trim()
        .parse()
        .map_err(|_| "expected a number".to_string())?;
    if !(min..=max).contains(&x) {
        return Err(format!("must be between {min} and {max}"));
    }
    Ok(x)
}

/// A `tracing` filter whose every part means something: a level, or `target=level`.
/// A bare word is a target to `tracing` (`verbose` would enable a target of that name
/// and silence everything else), so it is refused unless it is a level.
pub fn parse_log_filter(raw: &str) -> Result<String, String> {
    const LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];
    for part in raw.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let level = part.rsplit_once('=').map_or(part, |(_, level)| level);
        if !LEVELS.contains(&level.to_ascii_lowercase().as_str()) {
            return Err(format!(
                "{part:?} is not a level: write one of trace, debug, info, warn, error, off, \
                 or target=level (e.g. warn,hookrelay=debug)"
            ));
        }
    }
    tracing_subscriber::EnvFilter::try_new(raw)
        .map(|_| raw.to_owned())
        .map_err(|e| e.to_string())
}

pub fn parse_listen(raw: &str) -> Result<String, String> {
    raw.trim()
        .parse::<SocketAddr>()
        .map(|_| raw.trim().to_owned())
        .map_err(|_| "expected HOST:PORT, e.g. 0.0.0.0:8080".into())
}

/// Key material; its `Debug` never shows the bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl Secret {
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }

    pub fn bytes(&self) -> &[u8] {
        &self.0
    }

    /// A Standard Webhooks secret: base64, with or without the `whsec_` prefix.
    pub fn from_whsec(text: &str) -> Result<Self, String> {
        let encoded = text.strip_prefix("whsec_").unwrap_or(text);
        BASE64
            .decode(encoded)
            .map(Self)
            .map_err(|_| "must be base64, usually written whsec_<base64>".to_string())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(…)")
    }
}

/// A zero-length key would make every signature trivially computable: verification
/// silently off. `whsec_` alone (or `whsec_${VAR}` with `VAR` empty) decodes to that.
pub fn non_empty(secret: Secret) -> Result<Secret, String> {
    if secret.bytes().is_empty() {
        Err("decodes to an empty key; a signing key must not be empty".into())
    } else {
        Ok(secret)
    }
}

/// Replaces every `${NAME}` with the environment variable's value.
pub fn expand_env(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| "unclosed ${ in value".to_string())?;
        let name = &after[..end];
        let value = env(name).ok_or_else(|| format!("environment variable {name} is not set"))?;
        out.push_str(&value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// An `http://` or `https://` URL, with `${VAR}` from the environment.
pub fn parse_url(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<reqwest::Url, String> {
    let text = expand_env(text, env)?;
    let url = reqwest::Url::parse(&text).map_err(|e| e.to_string())?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err("must be an http:// or https:// URL".into());
    }
    Ok(url)
}

pub fn parse_signing_secret(
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Secret, String> {
    let text = expand_env(text, env)?;
    Secret::from_whsec(&text).and_then(non_empty)
}

pub fn parse_positive(text: &str) -> Result<Duration, String> {
    let duration = parse_duration(text)?;
    if duration.is_zero() {
        return Err("must be longer than zero".into());
    }
    Ok(duration)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_show_in_debug_output() {
        let secrets = vec![Secret::new(b"hunter2".to_vec())];
        assert!(!format!("{secrets:?}").contains("hunter2"));
    }
}
