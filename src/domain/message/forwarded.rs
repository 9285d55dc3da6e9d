//! Which of the sender's headers travel on with a delivery.

/// Headers that describe one hop, not the message: never forwarded.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
];

/// A sender's Standard Webhooks or Svix signature headers: dropped when hookrelay
/// re-signs, so that libraries which read `svix-*` first (Svix's own) verify
/// hookrelay's signature, not the sender's. The stored event keeps them.
const RESIGNED: &[&str] = &[
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    "svix-id",
    "svix-timestamp",
    "svix-signature",
];

/// The sender's headers less hop-by-hop ones (and those its `Connection` header
/// names), hookrelay's own `x-hookrelay-*`, and, when hookrelay re-signs, the
/// sender's signature headers. Names in lower case, order and repeats kept; the
/// stored list is taken, not copied (this runs for every attempt).
pub fn forwarded_headers(
    mut headers: Vec<(String, Vec<u8>)>,
    resigned: bool,
) -> Vec<(String, Vec<u8>)> {
    for (name, _) in &mut headers {
        name.make_ascii_lowercase();
    }
    let named_by_connection: Vec<String> = headers
        .iter()
        .filter(|(name, _)| name == "connection")
        .flat_map(|(_, value)| {
            String::from_utf8_lossy(value)
                .split(',')
                .map(|token| token.trim().to_ascii_lowercase())
                .filter(|token| !token.is_empty())
                .collect::<Vec<_>>()
        })
        .collect();
    headers.retain(|(name, _)| {
        !(HOP_BY_HOP.contains(&name.as_str())
            || named_by_connection.contains(name)
            || name.starts_with("x-hookrelay-")
            || (resigned && RESIGNED.contains(&name.as_str())))
    });
    headers
}
