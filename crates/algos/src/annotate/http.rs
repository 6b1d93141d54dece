//! POSTing JSON to an HTTP API as a production client does: connect and read timeouts,
//! retries with exponential backoff and jitter on 429, 5xx, timeouts and dropped connections
//! (a `Retry-After` is honoured), a cap on attempts, and a bounded read of the reply.

use std::io::Read;
use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::error::AlgoError;

/// The largest reply body read; a longer one is never held in memory.
pub const MAX_REPLY_BYTES: u64 = 1 << 20;

/// The default of an API annotator's `timeout_s`: 60 seconds.
pub(crate) fn default_timeout() -> f64 {
    60.0
}

/// The default of an API annotator's `max_attempts`: 6.
pub(crate) fn default_attempts() -> u32 {
    6
}

/// The default of an API annotator's `backoff_s`: 0.5 seconds.
pub(crate) fn default_backoff() -> f64 {
    0.5
}

/// How an API annotator reaches its endpoint (the fields its config shares).
#[derive(Debug, Clone)]
pub struct ClientSettings<'a> {
    /// The environment variable holding the API key (sent as a bearer token), if any.
    pub api_key_env: Option<&'a str>,
    /// Seconds to connect and to wait for each reply.
    pub timeout_s: f64,
    /// Attempts per request before giving up.
    pub max_attempts: u32,
    /// Seconds before the first retry.
    pub backoff_s: f64,
}

/// A client of one endpoint: an agent with the timeouts, the API key read once from the
/// environment, and the retry policy.
pub struct ApiClient {
    agent: ureq::Agent,
    url: String,
    api_key: Option<String>,
    policy: RetryPolicy,
}

impl ApiClient {
    /// A client of `url`, its settings checked (errors name the `annotator.` field; the key's
    /// variable by name, never its value).
    pub fn new(url: String, settings: &ClientSettings) -> Result<Self, AlgoError> {
        let bad = |m: String| Err(AlgoError::Config(format!("annotator.{m}")));
        if !(settings.timeout_s > 0.0 && settings.timeout_s <= crate::annotate::MAX_TIMEOUT_S) {
            return bad(format!(
                "timeout_s must be in (0, 86400], got {}",
                settings.timeout_s
            ));
        }
        if settings.max_attempts == 0 {
            return bad("max_attempts must be at least 1".into());
        }
        if !(settings.backoff_s >= 0.0 && settings.backoff_s <= 60.0) {
            return bad(format!(
                "backoff_s must be in [0, 60], got {}",
                settings.backoff_s
            ));
        }
        let api_key = match settings.api_key_env {
            Some(name) => {
                let key = std::env::var(name).map_err(|_| {
                    AlgoError::Config(format!(
                        "annotator.api_key_env: the environment variable `{name}` is not set"
                    ))
                })?;
                // A character a header cannot hold would put the key into ureq's error text.
                if key.is_empty() || !key.bytes().all(|b| b.is_ascii_graphic()) {
                    return bad(format!(
                        "api_key_env: `{name}` holds a character an HTTP header cannot carry \
                         (whitespace, a trailing carriage return, non-ASCII) or is empty"
                    ));
                }
                Some(key)
            }
            None => None,
        };
        let timeout = Duration::from_secs_f64(settings.timeout_s);
        // `timeout` bounds the whole request too, so a server trickling bytes cannot stall it.
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(timeout)
            .timeout(timeout)
            .build();
        Ok(ApiClient {
            agent,
            url,
            api_key,
            policy: RetryPolicy {
                max_attempts: settings.max_attempts,
                base_delay: Duration::from_secs_f64(settings.backoff_s),
                max_delay: Duration::from_secs(60),
            },
        })
    }

    /// The endpoint.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// POSTs `body` through [`post_json`] with this client's key, policy and
    /// [`MAX_REPLY_BYTES`].
    pub fn post(&self, body: &str, seed: u64) -> (Result<String, HttpFailure>, Attempts) {
        post_json(
            &self.agent,
            &self.url,
            self.api_key.as_deref(),
            body,
            &self.policy,
            MAX_REPLY_BYTES,
            seed,
        )
    }
}

/// When to try again and how long to wait.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Attempts per request, the first included.
    pub max_attempts: u32,
    /// The wait before the second attempt; doubled for each further one, then jittered to
    /// 50-150%.
    pub base_delay: Duration,
    /// The longest wait between attempts (a `Retry-After` included).
    pub max_delay: Duration,
}

/// What one request cost.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Attempts {
    /// Requests sent, retries included.
    pub requests: u64,
    /// Of those, retries.
    pub retries: u64,
}

/// Why a request gave no usable reply.
#[derive(Debug, Clone, PartialEq)]
pub enum HttpFailure {
    /// An error retrying cannot fix (a 4xx other than 429), or the attempts ran out: the
    /// message names the last status and an excerpt of its body, or the transport error.
    Fatal(String),
    /// The server answered 2xx with a body past the size limit (counted as a failed answer).
    TooLarge(u64),
}

/// The first `limit` characters of `text`, for messages.
pub fn excerpt(text: &str, limit: usize) -> String {
    let cut: String = text.chars().take(limit).collect();
    match cut.len() < text.len() {
        true => format!("{cut}..."),
        false => cut,
    }
}

/// The wait before retry `retry` (1-based): `base * 2^(retry-1)` jittered to 50-150%, or
/// the server's `Retry-After` seconds when longer (its HTTP-date form is not read), at most
/// `max_delay`.
fn backoff(
    policy: &RetryPolicy,
    retry: u32,
    retry_after: Option<f64>,
    rng: &mut ChaCha8Rng,
) -> Duration {
    let exponential = policy.base_delay.as_secs_f64() * 2f64.powi(retry as i32 - 1);
    let jittered = exponential * rng.random_range(0.5..1.5);
    let wait = jittered.max(retry_after.unwrap_or(0.0));
    Duration::from_secs_f64(wait.min(policy.max_delay.as_secs_f64()))
}

/// POSTs `body` (JSON) to `url`, with `Authorization: Bearer <api_key>` when a key is given,
/// and returns the reply body (at most `max_body` bytes) and what the request cost. The key
/// never appears in a returned message. `seed` makes the jitter reproducible.
pub fn post_json(
    agent: &ureq::Agent,
    url: &str,
    api_key: Option<&str>,
    body: &str,
    policy: &RetryPolicy,
    max_body: u64,
    seed: u64,
) -> (Result<String, HttpFailure>, Attempts) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut attempts = Attempts::default();
    let mut last = String::new();
    for attempt in 1..=policy.max_attempts.max(1) {
        if attempt > 1 {
            attempts.retries += 1;
        }
        attempts.requests += 1;
        let mut request = agent.post(url).set("Content-Type", "application/json");
        if let Some(key) = api_key {
            request = request.set("Authorization", &format!("Bearer {key}"));
        }
        let retry_after = match request.send_string(body) {
            Ok(response) => {
                let mut bytes = Vec::new();
                let read = response
                    .into_reader()
                    .take(max_body + 1)
                    .read_to_end(&mut bytes);
                match read {
                    Ok(_) if bytes.len() as u64 > max_body => {
                        return (Err(HttpFailure::TooLarge(max_body)), attempts);
                    }
                    Ok(_) => return (Ok(String::from_utf8_lossy(&bytes).into_owned()), attempts),
                    Err(e) => {
                        last = format!("the reply was cut off: {e}");
                        None
                    }
                }
            }
            Err(ureq::Error::Status(status, response)) => {
                let retry_after = response
                    .header("Retry-After")
                    .and_then(|s| s.trim().parse::<f64>().ok())
                    .filter(|s| s.is_finite() && *s >= 0.0);
                // Only an excerpt is shown: the error body is read no further than needed.
                let mut bytes = Vec::new();
                let _ = response.into_reader().take(4096).read_to_end(&mut bytes);
                let text = String::from_utf8_lossy(&bytes);
                last = format!("HTTP {status}: {}", excerpt(&text, 200));
                if status != 429 && status < 500 {
                    let hint = match status {
                        401 | 403 => " (check the API key the config's api_key_env names)",
                        404 => " (check base_url and model)",
                        _ => "",
                    };
                    return (
                        Err(HttpFailure::Fatal(format!("{url}: {last}{hint}"))),
                        attempts,
                    );
                }
                retry_after
            }
            Err(ureq::Error::Transport(transport)) => {
                use ureq::ErrorKind::{ConnectionFailed, Dns, Io};
                last = transport.to_string();
                // A bad URL or scheme does not heal: only network failures are retried.
                if !matches!(transport.kind(), Dns | ConnectionFailed | Io) {
                    return (Err(HttpFailure::Fatal(format!("{url}: {last}"))), attempts);
                }
                None
            }
        };
        if attempt < policy.max_attempts {
            std::thread::sleep(backoff(policy, attempt, retry_after, &mut rng));
        }
    }
    let message = format!(
        "{url}: no answer after {} attempts; the last: {last}",
        attempts.requests
    );
    (Err(HttpFailure::Fatal(message)), attempts)
}
