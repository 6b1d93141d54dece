//! A remote reward model speaking OpenRLHF's protocol as the annotator, against a stand-in on
//! 127.0.0.1: batched requests, the cache, retries, and replies that stop a phase.

use bpo_algos::annotate::{Annotator, AnnotatorConfig, RewardServer, RewardServerConfig};
use bpo_testkit::{Fault, JudgeServer};
use serde_json::{Value, json};

/// The stand-in reward model: the number of `e`s in each query.
fn e_rewards(request: &Value) -> Value {
    let queries = request["query"].as_array().cloned().unwrap_or_default();
    let rewards: Vec<f64> = queries
        .iter()
        .map(|q| q.as_str().unwrap_or_default().matches('e').count() as f64)
        .collect();
    json!({ "rewards": rewards })
}

fn config(server: &JudgeServer, cache: Option<std::path::PathBuf>) -> RewardServerConfig {
    RewardServerConfig {
        url: format!("{}/get_reward", server.base_url),
        api_key_env: None,
        batch_size: 2,
        timeout_s: 5.0,
        max_attempts: 3,
        backoff_s: 0.01,
        cache,
    }
}

#[test]
fn rewards_come_in_batches_and_are_cached() {
    let server = JudgeServer::start_json(e_rewards);
    let dir = tempfile::tempdir().unwrap();
    let settings = config(&server, Some(dir.path().join("cache.jsonl")));
    let mut rewards = RewardServer::new(&settings, None).unwrap();
    let items = [("p ", "eee"), ("p ", "x"), ("the ", "e"), ("p ", "eee")];
    let expected = vec![3.0, 0.0, 2.0, 3.0];
    assert_eq!(rewards.score(&items).unwrap(), expected);
    let requests = server.requests();
    assert_eq!(
        requests.len(),
        2,
        "three distinct queries in batches of two"
    );
    let body: Value = serde_json::from_str(&requests[0].body).unwrap();
    assert_eq!(body["query"], json!(["p eee", "p x"]));
    assert_eq!(body["prompts"], json!(["p ", "p "]));
    let usage = rewards.take_usage().unwrap();
    assert_eq!((usage.requests, usage.retries, usage.cached), (2, 0, 1));
    // Again, by this client or a new one on the same cache: nothing is requested.
    assert_eq!(rewards.score(&items).unwrap(), expected);
    let mut again = RewardServer::new(&settings, None).unwrap();
    assert_eq!(again.score(&items).unwrap(), expected);
    assert_eq!(server.requests().len(), 2);
    // Built from TOML like every annotator.
    let text = format!("kind = \"reward_server\"\nurl = \"{}\"\n", settings.url);
    let parsed: AnnotatorConfig = toml::from_str(&text).unwrap();
    assert!(matches!(parsed, AnnotatorConfig::RewardServer(c) if c.batch_size == 16));
}

#[test]
fn retries_then_replies_that_are_not_rewards_stop_the_phase() {
    let server = JudgeServer::start_json(e_rewards);
    let mut rewards = RewardServer::new(&config(&server, None), None).unwrap();
    server.fail_next([
        Fault::Status(503, Some(0), "warming up".into()),
        Fault::Drop,
    ]);
    assert_eq!(rewards.score(&[("a", "e")]).unwrap(), vec![1.0]);
    assert_eq!(rewards.take_usage().unwrap().retries, 2);
    server.fail_next([Fault::Malformed]);
    let err = rewards.score(&[("b", "e")]).unwrap_err().to_string();
    assert!(err.contains("expected {\"rewards\": [1 numbers]}"), "{err}");
    server.fail_next(vec![Fault::Status(500, None, "boom".into()); 3]);
    let err = rewards.score(&[("c", "e")]).unwrap_err().to_string();
    assert!(
        err.contains("HTTP 500") && err.contains("3 attempts"),
        "{err}"
    );
    // A server that answers the wrong number of rewards.
    let short = JudgeServer::start_json(|_| json!({"rewards": [1.0]}));
    let mut rewards = RewardServer::new(&config(&short, None), None).unwrap();
    let err = rewards
        .score(&[("a", "x"), ("b", "y")])
        .unwrap_err()
        .to_string();
    assert!(err.contains("[2 numbers]"), "{err}");
}
