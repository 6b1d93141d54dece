//! A remote reward model as OpenRLHF serves one: `POST {"query": [...], "prompts": [...]}`
//! (each query the prompt followed by the response), answered `{"rewards": [...]}`, through the
//! LLM judge's client (timeouts, retries with backoff, `Retry-After`, a cap on attempts) and
//! cache (a resumed or repeated run asks nothing twice).

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::annotate::annotator::{Annotator, AnnotatorUsage};
use crate::annotate::http::{ApiClient, ClientSettings, HttpFailure, excerpt};
use crate::annotate::judge_cache::{JudgeCache, Judgment};
use crate::error::AlgoError;

/// `kind = "reward_server"`: where the reward model is served and how to reach it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RewardServerConfig {
    /// The endpoint (`http://127.0.0.1:5000/get_reward`).
    pub url: String,
    /// The environment variable holding an API key (a bearer token), if the server wants one.
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// Queries per request. Default 16.
    #[serde(default = "default_batch")]
    pub batch_size: usize,
    /// Seconds to connect and to wait for each reply. Default 60.
    #[serde(default = "crate::annotate::http::default_timeout")]
    pub timeout_s: f64,
    /// Attempts per request before the phase stops with an error. Default 6.
    #[serde(default = "crate::annotate::http::default_attempts")]
    pub max_attempts: u32,
    /// Seconds before the first retry, doubled for each further one. Default 0.5.
    #[serde(default = "crate::annotate::http::default_backoff")]
    pub backoff_s: f64,
    /// The cache of rewards (JSON lines); default `<run.out>/judge-cache.jsonl` in a run.
    #[serde(default)]
    pub cache: Option<PathBuf>,
}

fn default_batch() -> usize {
    16
}

/// The reward server as an annotator.
pub struct RewardServer {
    config: RewardServerConfig,
    client: ApiClient,
    cache: JudgeCache,
    usage: AnnotatorUsage,
}

impl RewardServer {
    /// Builds the client of `config`, caching in `config.cache`, else `default_cache`.
    pub fn new(
        config: &RewardServerConfig,
        default_cache: Option<&Path>,
    ) -> Result<Self, AlgoError> {
        if config.batch_size == 0 {
            return Err(AlgoError::Config(
                "annotator.batch_size must be at least 1".into(),
            ));
        }
        let settings = ClientSettings {
            api_key_env: config.api_key_env.as_deref(),
            timeout_s: config.timeout_s,
            max_attempts: config.max_attempts,
            backoff_s: config.backoff_s,
        };
        let cache = config
            .cache
            .clone()
            .or(default_cache.map(Path::to_path_buf));
        Ok(RewardServer {
            client: ApiClient::new(config.url.clone(), &settings)?,
            config: config.clone(),
            cache: JudgeCache::open(cache.as_deref())?,
            usage: AnnotatorUsage::default(),
        })
    }

    /// The cache key of a (prompt, response) at this server.
    fn key(&self, prompt: &str, response: &str) -> String {
        let what = json!(["reward_server", self.config.url, prompt, response]);
        let digest = Sha256::digest(what.to_string().as_bytes());
        digest.iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// The rewards in a reply that must hold `n` of them.
fn parse_rewards(body: &str, n: usize) -> Result<Vec<f64>, String> {
    let rewards: Option<Vec<f64>> = serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v.get("rewards").and_then(Value::as_array).cloned())
        .and_then(|r| r.iter().map(Value::as_f64).collect());
    match rewards {
        Some(rewards) if rewards.len() == n && rewards.iter().all(|r| r.is_finite()) => Ok(rewards),
        _ => Err(format!(
            "expected {{\"rewards\": [{n} numbers]}}, got {}",
            excerpt(body, 200)
        )),
    }
}

impl Annotator for RewardServer {
    fn name(&self) -> String {
        format!("reward server {}", self.config.url)
    }

    /// The server's rewards; a reply that is not one finite number per query stops the phase
    /// with an error (a server answering garbage is not a label). Rewards already in the cache
    /// are not asked again; each batch's are cached as it arrives.
    fn score(&mut self, items: &[(&str, &str)]) -> Result<Vec<f64>, AlgoError> {
        let started = Instant::now();
        let keys: Vec<String> = items.iter().map(|(p, r)| self.key(p, r)).collect();
        let mut asked = std::collections::HashSet::new();
        let missing: Vec<usize> = (0..items.len())
            .filter(|&i| self.cache.get(&keys[i]).is_none() && asked.insert(keys[i].clone()))
            .collect();
        self.usage.cached += (items.len() - missing.len()) as u64;
        for chunk in missing.chunks(self.config.batch_size) {
            let queries: Vec<String> = chunk
                .iter()
                .map(|&i| format!("{}{}", items[i].0, items[i].1))
                .collect();
            let prompts: Vec<&str> = chunk.iter().map(|&i| items[i].0).collect();
            let body = json!({"query": queries, "prompts": prompts}).to_string();
            let seed = u64::from_str_radix(&keys[chunk[0]][..16], 16).unwrap_or(0);
            let (reply, attempts) = self.client.post(&body, seed);
            self.usage.requests += attempts.requests;
            self.usage.retries += attempts.retries;
            let url = self.client.url();
            let text = match reply {
                Ok(text) => text,
                Err(HttpFailure::Fatal(message)) => return Err(AlgoError::Annotator(message)),
                Err(HttpFailure::TooLarge(limit)) => {
                    return Err(AlgoError::Annotator(format!(
                        "{url}: a reply over {limit} bytes"
                    )));
                }
            };
            let rewards = parse_rewards(&text, chunk.len())
                .map_err(|m| AlgoError::Annotator(format!("{url}: {m}")))?;
            for (&i, reward) in chunk.iter().zip(rewards) {
                let judgment = Judgment {
                    score: Some(reward),
                    reply: reward.to_string(),
                    prompt_tokens: 0,
                    completion_tokens: 0,
                };
                self.cache.insert(&keys[i], judgment)?;
            }
        }
        self.usage.seconds += started.elapsed().as_secs_f64();
        Ok(keys
            .iter()
            .map(|key| {
                self.cache
                    .get(key)
                    .and_then(|j| j.score)
                    .unwrap_or(f64::NAN)
            })
            .collect())
    }

    fn take_usage(&mut self) -> Option<AnnotatorUsage> {
        Some(std::mem::take(&mut self.usage))
    }
}
