//! Where a destination's deliveries go: its `url`'s scheme chooses the kind (HTTP,
//! Kafka, SQS, AMQP, NATS JetStream, Redis Streams), and the table's broker options
//! complete it.

use std::fmt;

use crate::domain::template::Template;

/// A destination's kind, as operators see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Http,
    Kafka,
    Sqs,
    Amqp,
    Nats,
    Redis,
}

impl Kind {
    /// Whether this build can deliver to it (each broker is a cargo feature).
    pub fn is_built(self) -> bool {
        match self {
            Self::Http => true,
            Self::Kafka => cfg!(feature = "kafka"),
            Self::Sqs => cfg!(feature = "sqs"),
            Self::Amqp => cfg!(feature = "amqp"),
            Self::Nats => cfg!(feature = "nats"),
            Self::Redis => cfg!(feature = "redis"),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Http => "http",
            Self::Kafka => "kafka",
            Self::Sqs => "sqs",
            Self::Amqp => "amqp",
            Self::Nats => "nats",
            Self::Redis => "redis",
        }
    }
}

#[derive(Clone)]
pub enum Endpoint {
    Http(reqwest::Url),
    Kafka(KafkaTarget),
    Sqs(SqsTarget),
    Amqp(AmqpTarget),
    Nats(NatsTarget),
    Redis(RedisTarget),
}

#[derive(Clone)]
pub struct KafkaTarget {
    /// `host:port,host:port`.
    pub brokers: String,
    pub topic: Template,
    /// Producer properties from the `kafka` table (SASL, TLS, ...), after hookrelay's
    /// own, so that they can change them.
    pub properties: Vec<(String, String)>,
}

#[derive(Clone)]
pub struct SqsTarget {
    /// The queue URL (without `sqs+`).
    pub queue_url: String,
    /// The endpoint to call when the queue is not on AWS (a local SQS, say).
    pub endpoint: Option<String>,
    pub region: Option<String>,
    /// A FIFO queue (its name ends in `.fifo`): messages carry a group and a
    /// deduplication id.
    pub fifo: bool,
    /// Access key id and secret from the table; otherwise the AWS chain's.
    pub credentials: Option<(String, String)>,
}

#[derive(Clone)]
pub struct AmqpTarget {
    /// The AMQP URI, credentials and vhost included.
    pub uri: String,
    pub exchange: String,
    pub routing_key: Template,
}

#[derive(Clone)]
pub struct NatsTarget {
    /// `nats://[user:pass@]host:port`.
    pub server: String,
    pub subject: Template,
}

#[derive(Clone)]
pub struct RedisTarget {
    /// `redis://[user:pass@]host:port`.
    pub server: String,
    pub stream: Template,
    /// `XADD ... MAXLEN ~ N`.
    pub max_len: Option<u64>,
}

/// A destination table's broker options, as written.
#[derive(Debug, Default)]
pub struct BrokerOptions {
    pub exchange: Option<String>,
    pub routing_key: Option<String>,
    pub region: Option<String>,
    pub max_len: Option<u64>,
    pub kafka: Vec<(String, String)>,
    /// SQS: `aws_access_key_id` and `aws_secret_access_key`.
    pub aws_credentials: Option<(String, String)>,
}

impl Endpoint {
    pub fn kind(&self) -> Kind {
        match self {
            Self::Http(_) => Kind::Http,
            Self::Kafka(_) => Kind::Kafka,
            Self::Sqs(_) => Kind::Sqs,
            Self::Amqp(_) => Kind::Amqp,
            Self::Nats(_) => Kind::Nats,
            Self::Redis(_) => Kind::Redis,
        }
    }

    /// Parses `url` with the table's broker options. `Err((field, reason))`.
    pub fn parse(url: &str, options: BrokerOptions) -> Result<Self, (&'static str, String)> {
        let (scheme, rest) = url.split_once("://").ok_or((
            "url",
            "must be a URL such as https://… or kafka://…".to_owned(),
        ))?;
        let endpoint = match scheme {
            "http" | "https" => {
                let url = reqwest::Url::parse(url).map_err(|e| ("url", e.to_string()))?;
                Self::Http(url)
            }
            "kafka" => {
                let (brokers, topic) = authority_and_name(rest, "topic")?;
                Self::Kafka(KafkaTarget {
                    brokers: brokers.to_owned(),
                    topic: template("url", topic)?,
                    properties: options.kafka.clone(),
                })
            }
            "sqs+https" | "sqs+http" => {
                let mut target = sqs(&url[4..], options.region.clone())?;
                target.credentials = options.aws_credentials.clone();
                Self::Sqs(target)
            }
            "amqp" | "amqps" => {
                let routing_key = options.routing_key.as_deref().ok_or((
                    "routing_key",
                    "is required for amqp:// destinations (with `exchange`, or alone for \
                     the default exchange, where it names the queue)"
                        .to_owned(),
                ))?;
                reqwest::Url::parse(url).map_err(|e| ("url", e.to_string()))?;
                Self::Amqp(AmqpTarget {
                    uri: url.to_owned(),
                    exchange: options.exchange.clone().unwrap_or_default(),
                    routing_key: template("routing_key", routing_key)?,
                })
            }
            "nats" => {
                let (server, subject) = authority_and_name(rest, "subject")?;
                Self::Nats(NatsTarget {
                    server: format!("{scheme}://{server}"),
                    subject: template("url", subject)?,
                })
            }
            "redis" | "rediss" => {
                let (server, stream) = authority_and_name(rest, "stream")?;
                Self::Redis(RedisTarget {
                    server: format!("{scheme}://{server}"),
                    stream: template("url", stream)?,
                    max_len: options.max_len,
                })
            }
            other => {
                return Err((
                    "url",
                    format!(
                        "{other}:// is not a destination kind: use http(s)://, kafka://, \
                         sqs+https://, amqp://, nats:// or redis://"
                    ),
                ));
            }
        };
        endpoint.check_options(&options)?;
        let kind = endpoint.kind();
        if !kind.is_built() {
            return Err((
                "url",
                format!(
                    "this build of hookrelay has no {0} destinations: build it with \
                     `--features {0}` (on by default)",
                    kind.as_str()
                ),
            ));
        }
        Ok(endpoint)
    }

    /// Options for another kind are mistakes worth stopping for.
    fn check_options(&self, options: &BrokerOptions) -> Result<(), (&'static str, String)> {
        let kind = self.kind();
        let only = |field: &'static str, given: bool, wanted: Kind| {
            if given && kind != wanted {
                Err((
                    field,
                    format!("applies only to {} destinations", wanted.as_str()),
                ))
            } else {
                Ok(())
            }
        };
        only("exchange", options.exchange.is_some(), Kind::Amqp)?;
        only("routing_key", options.routing_key.is_some(), Kind::Amqp)?;
        only("region", options.region.is_some(), Kind::Sqs)?;
        only(
            "aws_access_key_id",
            options.aws_credentials.is_some(),
            Kind::Sqs,
        )?;
        only("max_len", options.max_len.is_some(), Kind::Redis)?;
        only("kafka", !options.kafka.is_empty(), Kind::Kafka)
    }

    /// Where an event goes: the topic, queue, routing key, subject or stream its
    /// templates name for it, or the URL.
    pub fn target_for(&self, source: &str, event_type: Option<&str>) -> String {
        match self {
            Self::Http(url) => without_secrets(url.as_str()),
            Self::Kafka(k) => format!("topic {}", k.topic.render(source, event_type)),
            Self::Sqs(s) => format!("queue {}", without_secrets(&s.queue_url)),
            Self::Amqp(a) => format!(
                "exchange {:?}, routing key {}",
                a.exchange,
                a.routing_key.render(source, event_type)
            ),
            Self::Nats(n) => format!("subject {}", n.subject.render(source, event_type)),
            Self::Redis(r) => format!("stream {}", r.stream.render(source, event_type)),
        }
    }

    /// A broker's name in OpenTelemetry's messaging conventions
    /// (`messaging.system`), and the destination it names for an event
    /// (`messaging.destination.name`); `None` for HTTP.
    pub fn messaging(
        &self,
        source: &str,
        event_type: Option<&str>,
    ) -> Option<(&'static str, String)> {
        Some(match self {
            Self::Http(_) => return None,
            Self::Kafka(k) => ("kafka", k.topic.render(source, event_type)),
            Self::Sqs(s) => (
                "aws_sqs",
                s.queue_url
                    .rsplit('/')
                    .next()
                    .unwrap_or_default()
                    .to_owned(),
            ),
            Self::Amqp(a) => ("rabbitmq", a.exchange.clone()),
            Self::Nats(n) => ("nats", n.subject.render(source, event_type)),
            Self::Redis(r) => ("redis", r.stream.render(source, event_type)),
        })
    }

    /// The address as operators may see it: no credentials, no query.
    pub fn shown(&self) -> String {
        match self {
            Self::Http(url) => without_secrets(url.as_str()),
            Self::Kafka(k) => format!("kafka://{}/{}", k.brokers, k.topic),
            Self::Sqs(s) => format!("sqs+{}", without_secrets(&s.queue_url)),
            Self::Amqp(a) => {
                let mut shown = without_secrets(&a.uri);
                shown.push_str(&format!(
                    " exchange={:?} routing_key={}",
                    a.exchange, a.routing_key
                ));
                shown
            }
            Self::Nats(n) => format!("{}/{}", without_secrets(&n.server), n.subject),
            Self::Redis(r) => format!("{}/{}", without_secrets(&r.server), r.stream),
        }
    }
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.shown())
    }
}

/// `AUTHORITY/NAME`: the name is everything after the first `/`, as written.
fn authority_and_name<'a>(
    rest: &'a str,
    what: &str,
) -> Result<(&'a str, &'a str), (&'static str, String)> {
    match rest.split_once('/') {
        Some((authority, name)) if !authority.is_empty() && !name.is_empty() => {
            Ok((authority, name))
        }
        _ => Err((
            "url",
            format!(
                "must name the {what} after the host: …://HOST:PORT/{}",
                what.to_uppercase()
            ),
        )),
    }
}

fn template(field: &'static str, text: &str) -> Result<Template, (&'static str, String)> {
    Template::parse(text).map_err(|e| (field, e))
}

fn sqs(queue_url: &str, region: Option<String>) -> Result<SqsTarget, (&'static str, String)> {
    let url = reqwest::Url::parse(queue_url).map_err(|e| ("url", e.to_string()))?;
    let host = url.host_str().unwrap_or_default().to_owned();
    let segments: Vec<&str> = url.path_segments().map(|s| s.collect()).unwrap_or_default();
    let [_account, queue] = segments[..] else {
        return Err((
            "url",
            "must be a queue URL: sqs+https://sqs.REGION.amazonaws.com/ACCOUNT/QUEUE".into(),
        ));
    };
    let on_aws = host.ends_with(".amazonaws.com");
    // sqs.REGION.amazonaws.com
    let region_in_host = on_aws
        .then(|| host.split('.').nth(1).map(str::to_owned))
        .flatten();
    let endpoint = (!on_aws).then(|| {
        let mut origin = url.clone();
        origin.set_path("");
        origin.as_str().trim_end_matches('/').to_owned()
    });
    Ok(SqsTarget {
        fifo: queue.ends_with(".fifo"),
        queue_url: queue_url.to_owned(),
        endpoint,
        region: region.or(region_in_host),
        credentials: None,
    })
}

fn without_secrets(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut url) => {
            let _ = url.set_username("");
            let _ = url.set_password(None);
            url.set_query(None);
            url.to_string()
        }
        Err(_) => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(url: &str) -> Result<Endpoint, (&'static str, String)> {
        Endpoint::parse(url, BrokerOptions::default())
    }

    #[test]
    fn the_scheme_chooses_the_kind() {
        let kafka = parse("kafka://a:9092,b:9092/webhooks.{source}").unwrap();
        let Endpoint::Kafka(target) = &kafka else {
            panic!()
        };
        assert_eq!(target.brokers, "a:9092,b:9092");
        assert_eq!(target.topic.render("stripe", None), "webhooks.stripe");
        let nats = parse("nats://u:p@127.0.0.1:4222/hooks.{event_type}").unwrap();
        assert_eq!(nats.kind(), Kind::Nats);
        assert_eq!(nats.shown(), "nats://127.0.0.1:4222/hooks.{event_type}");
        let redis = Endpoint::parse(
            "redis://127.0.0.1:6379/webhooks",
            BrokerOptions {
                max_len: Some(1000),
                ..BrokerOptions::default()
            },
        )
        .unwrap();
        let Endpoint::Redis(target) = redis else {
            panic!()
        };
        assert_eq!(
            (target.server.as_str(), target.max_len),
            ("redis://127.0.0.1:6379", Some(1000))
        );
        let amqp = Endpoint::parse(
            "amqp://guest:guest@127.0.0.1:5672/%2f",
            BrokerOptions {
                exchange: Some("webhooks".into()),
                routing_key: Some("{source}".into()),
                ..BrokerOptions::default()
            },
        )
        .unwrap();
        assert!(!amqp.shown().contains("guest"), "{}", amqp.shown());
    }

    #[test]
    fn sqs_queues_on_aws_and_elsewhere() {
        let Endpoint::Sqs(aws) =
            parse("sqs+https://sqs.eu-west-1.amazonaws.com/123456789012/orders.fifo").unwrap()
        else {
            panic!()
        };
        assert_eq!(aws.region.as_deref(), Some("eu-west-1"));
        assert_eq!(aws.endpoint, None);
        assert!(aws.fifo);
        let Endpoint::Sqs(local) = parse("sqs+http://127.0.0.1:5000/123456789012/orders").unwrap()
        else {
            panic!()
        };
        assert_eq!(local.endpoint.as_deref(), Some("http://127.0.0.1:5000"));
        assert_eq!(local.queue_url, "http://127.0.0.1:5000/123456789012/orders");
        assert!(!local.fifo);
    }

    #[test]
    fn mistakes_name_their_field() {
        let cases = [
            ("ftp://x/y", BrokerOptions::default(), "url"),
            ("kafka://a:9092", BrokerOptions::default(), "url"),
            ("kafka://a:9092/{topc}", BrokerOptions::default(), "url"),
            (
                "sqs+https://sqs.x.amazonaws.com/q",
                BrokerOptions::default(),
                "url",
            ),
            ("amqp://h/%2f", BrokerOptions::default(), "routing_key"),
            (
                "http://h/",
                BrokerOptions {
                    exchange: Some("x".into()),
                    ..BrokerOptions::default()
                },
                "exchange",
            ),
            (
                "nats://h:4222/s",
                BrokerOptions {
                    max_len: Some(1),
                    ..BrokerOptions::default()
                },
                "max_len",
            ),
        ];
        for (url, options, field) in cases {
            let error = Endpoint::parse(url, options).unwrap_err();
            assert_eq!(error.0, field, "{url}: {error:?}");
        }
    }
}
