//! Durations and sizes as people write them in settings: `250ms`, `10s`, `5m`;
//! `512KiB`, `1MiB`.

use std::time::Duration;

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
