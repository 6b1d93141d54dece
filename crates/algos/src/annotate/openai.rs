//! An LLM judge over an OpenAI-compatible chat-completions API (vLLM, llama.cpp's server,
//! Ollama, TGI, OpenAI). In score mode each (prompt, response) is shown to the judge model
//! through a prompt template and its 1-10 answer, parsed strictly, is the score; in pairwise
//! mode it sees two responses and answers A or B, in both orders unless told otherwise (a
//! disagreement is a tie: position bias cancels). Requests run `concurrency` at a
//! time through [`post_json`] (timeouts, retries with backoff, `Retry-After`); every judgment,
//! raw reply included, is appended to a cache file as it arrives, so a resumed or repeated run
//! reads it instead of paying again.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};

use bpo_data::Content;

use crate::annotate::annotator::{Annotator, AnnotatorUsage, Preference};
use crate::annotate::http::{ApiClient, ClientSettings, HttpFailure};
use crate::annotate::judge_cache::{JudgeCache, Judgment};
use crate::annotate::judge_reply::{fill, judgment_of, parse_choice, parse_score};
use crate::error::AlgoError;
use crate::online::prompt_text;

/// The judge prompt of score mode when the config names no template.
pub const DEFAULT_SCORE_TEMPLATE: &str = "You are a careful, impartial judge of AI assistant \
responses. Rate how well the response answers the prompt, for helpfulness, correctness and \
clarity, on a scale from 1 (worst) to 10 (best).\n\n[Prompt]\n{prompt}\n\n[Response]\n{response}\n\n\
Answer with a single integer from 1 to 10 and nothing else.";

/// The judge prompt of pairwise mode when the config names no template.
pub const DEFAULT_PAIRWISE_TEMPLATE: &str = "You are a careful, impartial judge of AI assistant \
responses. Which of the two responses below answers the prompt better, for helpfulness, \
correctness and clarity?\n\n[Prompt]\n{prompt}\n\n[Response A]\n{response_a}\n\n\
[Response B]\n{response_b}\n\nAnswer with a single letter, A or B, and nothing else.";

/// What the judge is asked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JudgeMode {
    /// A 1-10 score per response (pairs are then the best and worst of each prompt's samples).
    #[default]
    Score,
    /// A or B between a prompt's two samples (`sampling.samples_per_prompt = 2`).
    Pairwise,
}

impl JudgeMode {
    /// The placeholders a template of this mode must hold.
    fn placeholders(self) -> &'static [&'static str] {
        match self {
            JudgeMode::Score => &["{prompt}", "{response}"],
            JudgeMode::Pairwise => &["{prompt}", "{response_a}", "{response_b}"],
        }
    }

    /// Parses a reply; anything but an allowed answer is `None`, a failed judgment, never a
    /// guess (pairwise: A is 1, B is 2).
    pub(crate) fn parse(self, reply: &str) -> Option<f64> {
        match self {
            JudgeMode::Score => parse_score(reply),
            JudgeMode::Pairwise => parse_choice(reply),
        }
    }
}

/// `kind = "openai_judge"`: where the judge is and how to ask it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenAiJudgeConfig {
    /// The API's base URL, up to `/v1` (`http://127.0.0.1:8000/v1`).
    pub base_url: String,
    /// The judge model's name as the server knows it.
    pub model: String,
    /// The environment variable holding the API key (sent as a bearer token); none: no key.
    /// The key itself is never written anywhere.
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// What the judge is asked. Default `score`.
    #[serde(default)]
    pub mode: JudgeMode,
    /// A file with the judge prompt, `{prompt}` and `{response}` (pairwise: `{response_a}`
    /// and `{response_b}`) standing for them; default [`DEFAULT_SCORE_TEMPLATE`] or
    /// [`DEFAULT_PAIRWISE_TEMPLATE`].
    #[serde(default)]
    pub template: Option<PathBuf>,
    /// Pairwise mode: ask in both orders and call a disagreement a tie. Default true.
    #[serde(default = "default_both_orders")]
    pub both_orders: bool,
    /// Tokens the judge may answer with. Default 8.
    #[serde(default = "default_max_tokens")]
    pub max_tokens: u32,
    /// Sampling temperature of the judge. Default 0.
    #[serde(default)]
    pub temperature: f64,
    /// Requests in flight at once. Default 4.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// Seconds to connect and to wait for each reply. Default 60.
    #[serde(default = "crate::annotate::http::default_timeout")]
    pub timeout_s: f64,
    /// Attempts per judgment before the phase stops with an error. Default 6.
    #[serde(default = "crate::annotate::http::default_attempts")]
    pub max_attempts: u32,
    /// Seconds before the first retry, doubled for each further one (jittered to 50-150%,
    /// longer when the server's `Retry-After` says so, at most 60). Default 0.5.
    #[serde(default = "crate::annotate::http::default_backoff")]
    pub backoff_s: f64,
    /// The cache of judgments (JSON lines); default `<run.out>/judge-cache.jsonl` in a run,
    /// none elsewhere.
    #[serde(default)]
    pub cache: Option<PathBuf>,
}

fn default_max_tokens() -> u32 {
    8
}

fn default_concurrency() -> usize {
    4
}

fn default_both_orders() -> bool {
    true
}

/// The judge as an annotator.
pub struct OpenAiJudge {
    config: OpenAiJudgeConfig,
    template: String,
    client: ApiClient,
    cache: JudgeCache,
    usage: AnnotatorUsage,
    /// The raw replies of the last call, per item.
    replies: Vec<Vec<String>>,
}

impl OpenAiJudge {
    /// Builds the judge of `config`, caching in `config.cache`, else `default_cache`.
    pub fn new(
        config: &OpenAiJudgeConfig,
        default_cache: Option<&Path>,
    ) -> Result<Self, AlgoError> {
        let bad = |m: String| Err(AlgoError::Config(format!("annotator: {m}")));
        if config.concurrency == 0 || config.concurrency > 256 {
            return bad(format!(
                "concurrency must be 1-256, got {}",
                config.concurrency
            ));
        }
        let settings = ClientSettings {
            api_key_env: config.api_key_env.as_deref(),
            timeout_s: config.timeout_s,
            max_attempts: config.max_attempts,
            backoff_s: config.backoff_s,
        };
        let url = format!("{}/chat/completions", config.base_url.trim_end_matches('/'));
        let client = ApiClient::new(url, &settings)?;
        let template = match (&config.template, config.mode) {
            (Some(path), _) => std::fs::read_to_string(path).map_err(|e| AlgoError::io(path, e))?,
            (None, JudgeMode::Score) => DEFAULT_SCORE_TEMPLATE.to_owned(),
            (None, JudgeMode::Pairwise) => DEFAULT_PAIRWISE_TEMPLATE.to_owned(),
        };
        for placeholder in config.mode.placeholders() {
            if !template.contains(placeholder) {
                return bad(format!("the judge template has no `{placeholder}`"));
            }
        }
        let cache_path = config
            .cache
            .clone()
            .or(default_cache.map(Path::to_path_buf));
        Ok(OpenAiJudge {
            config: config.clone(),
            template,
            client,
            cache: JudgeCache::open(cache_path.as_deref())?,
            usage: AnnotatorUsage::default(),
            replies: Vec::new(),
        })
    }

    /// The judge prompt of a score-mode item.
    fn render(&self, prompt: &str, response: &str) -> String {
        fill(
            &self.template,
            &[("{prompt}", prompt), ("{response}", response)],
        )
    }

    /// The judge prompt of a pairwise item, `a` shown first.
    fn render_pair(&self, prompt: &str, a: &str, b: &str) -> String {
        let values = [
            ("{prompt}", prompt),
            ("{response_a}", a),
            ("{response_b}", b),
        ];
        fill(&self.template, &values)
    }

    /// Which of two responses to each prompt is better: asked in the order given and, with
    /// `both_orders`, swapped; a disagreement or a failed judgment is a tie.
    fn prefer(&mut self, items: &[(&str, &str, &str)]) -> Result<Vec<Preference>, AlgoError> {
        let both = self.config.both_orders;
        let mut contents = Vec::new();
        for (prompt, first, second) in items {
            contents.push(self.render_pair(prompt, first, second));
            if both {
                contents.push(self.render_pair(prompt, second, first));
            }
        }
        let judgments = self.judge_all(&contents)?;
        let per_item = if both { 2 } else { 1 };
        self.replies = judgments
            .chunks(per_item)
            .map(|j| j.iter().map(|j| j.reply.clone()).collect())
            .collect();
        let answers: Vec<Option<f64>> = judgments.iter().map(|j| j.score).collect();
        Ok(answers
            .chunks(per_item)
            .map(|votes| {
                let straight = match votes[0] {
                    Some(1.0) => Preference::First,
                    Some(2.0) => Preference::Second,
                    _ => Preference::Tie,
                };
                let swapped = match votes.get(1).copied().flatten() {
                    Some(1.0) => Preference::Second,
                    Some(2.0) => Preference::First,
                    _ => Preference::Tie,
                };
                match (both, straight == swapped) {
                    (false, _) | (true, true) => straight,
                    (true, false) => Preference::Tie,
                }
            })
            .collect())
    }

    /// The cache key of a judge prompt: everything that decides the answer (not the key).
    fn key(&self, content: &str) -> String {
        let c = &self.config;
        let what = json!([
            c.base_url,
            c.model,
            c.mode,
            c.max_tokens,
            c.temperature,
            content
        ]);
        let digest = Sha256::digest(what.to_string().as_bytes());
        digest.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Asks the judge about `content`: the judgment (failed when the reply is unusable), or
    /// the error that stops the phase.
    fn ask(&self, content: &str, seed: u64) -> (Result<Judgment, String>, u64, u64) {
        let body = json!({
            "model": self.config.model,
            "messages": [{"role": "user", "content": content}],
            "max_tokens": self.config.max_tokens,
            "temperature": self.config.temperature,
        });
        let (reply, attempts) = self.client.post(&body.to_string(), seed);
        let judgment = match reply {
            Ok(text) => Ok(judgment_of(&text, self.config.mode)),
            Err(HttpFailure::TooLarge(limit)) => Ok(Judgment {
                score: None,
                reply: format!("(a reply body over {limit} bytes, not read)"),
                prompt_tokens: 0,
                completion_tokens: 0,
            }),
            Err(HttpFailure::Fatal(message)) => Err(message),
        };
        (judgment, attempts.requests, attempts.retries)
    }

    /// The judgments of judge prompts `contents` (a `None` score: a failed one). Judgments
    /// already in the cache are not asked again; each new one is in the cache before the next
    /// is asked, so an error (attempts exhausted) loses none of those paid for.
    fn judge_all(&mut self, contents: &[String]) -> Result<Vec<Judgment>, AlgoError> {
        let started = Instant::now();
        let keys: Vec<String> = contents.iter().map(|c| self.key(c)).collect();
        let mut asked = std::collections::HashSet::new();
        let missing: Vec<usize> = (0..contents.len())
            .filter(|&i| self.cache.get(&keys[i]).is_none() && asked.insert(keys[i].clone()))
            .collect();
        self.usage.cached += (contents.len() - missing.len()) as u64;
        let next = AtomicUsize::new(0);
        let fatal: Mutex<Option<String>> = Mutex::new(None);
        let usage = Mutex::new(AnnotatorUsage::default());
        let judge = &*self;
        std::thread::scope(|scope| {
            for _ in 0..judge.config.concurrency.min(missing.len()) {
                scope.spawn(|| {
                    loop {
                        let n = next.fetch_add(1, Ordering::SeqCst);
                        if n >= missing.len() || fatal.lock().expect("lock").is_some() {
                            return;
                        }
                        let i = missing[n];
                        let seed = u64::from_str_radix(&keys[i][..16], 16).unwrap_or(0);
                        let (judgment, requests, retries) = judge.ask(&contents[i], seed);
                        let mut u = usage.lock().expect("lock");
                        u.requests += requests;
                        u.retries += retries;
                        if let Ok(j) = &judgment {
                            u.prompt_tokens += j.prompt_tokens;
                            u.completion_tokens += j.completion_tokens;
                            u.failures += u64::from(j.score.is_none());
                        }
                        drop(u);
                        let stored = judgment.and_then(|j| {
                            judge.cache.insert(&keys[i], j).map_err(|e| e.to_string())
                        });
                        if let Err(message) = stored {
                            *fatal.lock().expect("lock") = Some(message);
                        }
                    }
                });
            }
        });
        let asked = usage.into_inner().expect("lock");
        self.usage.add(&asked);
        self.usage.seconds += started.elapsed().as_secs_f64();
        if let Some(message) = fatal.into_inner().expect("lock") {
            return Err(AlgoError::Annotator(message));
        }
        Ok(keys
            .iter()
            .map(|key| self.cache.get(key).expect("judged above"))
            .collect())
    }
}

impl Annotator for OpenAiJudge {
    fn name(&self) -> String {
        format!(
            "LLM judge {} at {}",
            self.config.model, self.config.base_url
        )
    }

    /// Scores 1-10; a failed judgment (a reply that is not one of them) scores NaN, which
    /// collection drops like a tie and counts. A pairwise judge has no scores: an error.
    fn score(&mut self, items: &[(&str, &str)]) -> Result<Vec<f64>, AlgoError> {
        if self.config.mode == JudgeMode::Pairwise {
            return Err(AlgoError::Annotator(
                "a pairwise judge compares two responses and gives no scores: it labels online \
                 runs with sampling.samples_per_prompt = 2; evaluation needs a scoring annotator"
                    .into(),
            ));
        }
        let contents: Vec<String> = items.iter().map(|(p, r)| self.render(p, r)).collect();
        let judgments = self.judge_all(&contents)?;
        self.replies = judgments.iter().map(|j| vec![j.reply.clone()]).collect();
        Ok(judgments
            .iter()
            .map(|j| j.score.unwrap_or(f64::NAN))
            .collect())
    }

    fn prefer_pairs(
        &mut self,
        items: &[(&Content, &str, &str)],
    ) -> Option<Result<Vec<Preference>, AlgoError>> {
        (self.config.mode == JudgeMode::Pairwise).then(|| {
            let texts: Vec<(&str, &str, &str)> = items
                .iter()
                .map(|(p, a, b)| (prompt_text(p), *a, *b))
                .collect();
            self.prefer(&texts)
        })
    }

    fn take_usage(&mut self) -> Option<AnnotatorUsage> {
        Some(std::mem::take(&mut self.usage))
    }

    fn take_replies(&mut self) -> Option<Vec<Vec<String>>> {
        Some(std::mem::take(&mut self.replies))
    }
}
