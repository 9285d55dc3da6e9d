//! The providers' signing schemes, and where each puts a delivery's unique id.

use std::str::FromStr;

use http::HeaderName;

/// How a sender signs its requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    None,
    Github,
    Stripe,
    Shopify,
    Slack,
    StandardWebhooks,
    Svix,
}

impl FromStr for Scheme {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "none" => Self::None,
            "github" => Self::Github,
            "stripe" => Self::Stripe,
            "shopify" => Self::Shopify,
            "slack" => Self::Slack,
            "standard-webhooks" => Self::StandardWebhooks,
            "svix" => Self::Svix,
            other => {
                return Err(format!(
                    "unknown scheme {other:?}; expected github, stripe, shopify, slack, \
                     standard-webhooks, svix or none"
                ));
            }
        })
    }
}

impl Scheme {
    pub fn name(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Github => "github",
            Self::Stripe => "stripe",
            Self::Shopify => "shopify",
            Self::Slack => "slack",
            Self::StandardWebhooks => "standard-webhooks",
            Self::Svix => "svix",
        }
    }

    /// Where each provider puts a delivery's unique id, in order of preference.
    pub fn default_keys(self) -> Vec<KeyLocation> {
        let header = |name: &'static str| KeyLocation::Header(HeaderName::from_static(name));
        let json = |pointer: &str| KeyLocation::Json(pointer.to_owned());
        match self {
            Self::None => vec![],
            Self::Github => vec![header("x-github-delivery")],
            Self::Stripe => vec![json("/id")],
            // The X- names, and the unprefixed ones of Shopify's Events webhooks.
            Self::Shopify => vec![
                header("x-shopify-event-id"),
                header("shopify-event-id"),
                header("x-shopify-webhook-id"),
                header("shopify-webhook-id"),
            ],
            // Events API bodies carry event_id; a slash command's exact replay has the
            // same signature.
            Self::Slack => vec![json("/event_id"), header("x-slack-signature")],
            Self::StandardWebhooks => vec![header("webhook-id")],
            Self::Svix => vec![header("svix-id"), header("webhook-id")],
        }
    }

    /// Standard Webhooks and Svix secrets are base64, usually with a `whsec_` prefix.
    pub fn decodes_secrets(self) -> bool {
        matches!(self, Self::StandardWebhooks | Self::Svix)
    }

    pub fn signs_timestamps(self) -> bool {
        matches!(
            self,
            Self::Stripe | Self::Slack | Self::StandardWebhooks | Self::Svix
        )
    }
}

/// Where an idempotency key is found when there is no `Idempotency-Key` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyLocation {
    Header(HeaderName),
    /// A JSON pointer into the body, e.g. `/id`.
    Json(String),
}

impl FromStr for KeyLocation {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(name) = s.strip_prefix("header:") {
            let name = HeaderName::from_bytes(name.trim().as_bytes())
                .map_err(|_| format!("{name:?} is not a valid header name"))?;
            Ok(Self::Header(name))
        } else if let Some(pointer) = s.strip_prefix("json:") {
            if !pointer.starts_with('/') {
                return Err("a JSON pointer starts with /, e.g. json:/id".into());
            }
            Ok(Self::Json(pointer.to_owned()))
        } else {
            Err("expected \"header:NAME\" or \"json:/pointer\"".into())
        }
    }
}
