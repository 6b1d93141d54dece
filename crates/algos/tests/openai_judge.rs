//! The LLM judge over an OpenAI-compatible API, against a stand-in server on 127.0.0.1:
//! answers, the cache, retries (429 with Retry-After, 5xx, dropped connections, timeouts),
//! errors that stop a phase, unusable replies counted as failures, online runs labelled by the
//! judge that never write the API key, repeat offline from their cache and resume after the
//! judge stopped them without asking anything twice.

use std::path::{Path, PathBuf};

use bpo_algos::annotate::{
    Annotator, AnnotatorConfig, JudgeMode, OpenAiJudge, OpenAiJudgeConfig, Preference,
};
use bpo_algos::{OnlineConfig, ReferenceMode, Silent, train_online};
use bpo_data::{Content, PreferencePair, PromptRecord, ReadOptions, read_all, write_all};
use bpo_testkit::{Fault, JudgeServer, probe_logits, tiny_model_dir};

const KEY_ENV: &str = "BPO_TEST_JUDGE_KEY";
const KEY: &str = "sk-test-0123456789-secret";

/// The stand-in judge's score of a response: 1 + the number of `e`s, at most 10.
fn e_score(response: &str) -> usize {
    (1 + response.matches('e').count()).min(10)
}

/// The stand-in judge's answer to a judge prompt.
fn answer(content: &str) -> String {
    let response = content
        .split("[Response]\n")
        .nth(1)
        .and_then(|r| r.split("\n\n").next())
        .unwrap_or_default();
    e_score(response).to_string()
}

/// A judge that tells most sampled responses apart: 1 + the sum of their bytes mod 10.
fn byte_answer(content: &str) -> String {
    let response = content
        .split("[Response]\n")
        .nth(1)
        .and_then(|r| r.split("\n\n").next())
        .unwrap_or_default();
    byte_score(response).to_string()
}

fn byte_score(response: &str) -> usize {
    1 + response.bytes().map(usize::from).sum::<usize>() % 10
}

fn config(server: &JudgeServer, cache: Option<PathBuf>) -> OpenAiJudgeConfig {
    // Every test sets the same value, so tests running at once agree.
    unsafe { std::env::set_var(KEY_ENV, KEY) };
    OpenAiJudgeConfig {
        base_url: server.base_url.clone(),
        model: "judge".into(),
        api_key_env: Some(KEY_ENV.into()),
        mode: Default::default(),
        template: None,
        both_orders: true,
        max_tokens: 8,
        temperature: 0.0,
        concurrency: 1,
        timeout_s: 5.0,
        max_attempts: 4,
        backoff_s: 0.01,
        cache,
    }
}

#[test]
fn scores_come_from_the_judge_and_are_cached_with_their_replies() {
    let server = JudgeServer::start(answer);
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache.jsonl");
    let mut settings = config(&server, Some(cache.clone()));
    settings.concurrency = 3;
    let mut judge = OpenAiJudge::new(&settings, None).unwrap();
    let items = [("p", "eee"), ("p", "x"), ("p", "eee"), ("q", "e")];
    assert_eq!(judge.score(&items).unwrap(), vec![4.0, 1.0, 4.0, 2.0]);
    let requests = server.requests();
    assert_eq!(requests.len(), 3, "the repeated item is asked once");
    assert!(
        requests
            .iter()
            .all(|r| r.authorization.as_deref() == Some(&format!("Bearer {KEY}")[..]))
    );
    let body: serde_json::Value = serde_json::from_str(&requests[0].body).unwrap();
    assert_eq!(body["model"], "judge");
    assert!(requests[0].content.contains("from 1 to 10"));
    let usage = judge.take_usage().unwrap();
    assert_eq!(
        (usage.requests, usage.retries, usage.cached, usage.failures),
        (3, 0, 1, 0)
    );
    assert!(usage.prompt_tokens > 0 && usage.completion_tokens == 3);
    // Asked again, by this judge or a new one on the same cache: nothing is requested.
    assert_eq!(judge.score(&items).unwrap(), vec![4.0, 1.0, 4.0, 2.0]);
    let mut again = OpenAiJudge::new(&settings, None).unwrap();
    assert_eq!(again.score(&items).unwrap(), vec![4.0, 1.0, 4.0, 2.0]);
    assert_eq!(server.requests().len(), 3);
    let text = std::fs::read_to_string(&cache).unwrap();
    assert_eq!(text.lines().count(), 3);
    assert!(text.contains("\"reply\":\"4\"") && !text.contains(KEY));
    // A run killed mid-write leaves a torn last line: it is dropped and that judgment asked again.
    let lines: Vec<&str> = text.lines().collect();
    let torn = format!(
        "{}\n{}\n{}",
        lines[0],
        lines[1],
        &lines[2][..lines[2].len() / 2]
    );
    std::fs::write(&cache, torn).unwrap();
    let mut after_kill = OpenAiJudge::new(&settings, None).unwrap();
    assert_eq!(after_kill.score(&items).unwrap(), vec![4.0, 1.0, 4.0, 2.0]);
    assert_eq!(
        server.requests().len(),
        4,
        "the torn judgment is asked once more"
    );
    // A whole last line that lost only its newline is kept (and ended).
    let text = std::fs::read_to_string(&cache).unwrap();
    std::fs::write(&cache, text.trim_end()).unwrap();
    let mut kept = OpenAiJudge::new(&settings, None).unwrap();
    assert_eq!(kept.score(&items).unwrap(), vec![4.0, 1.0, 4.0, 2.0]);
    assert_eq!(server.requests().len(), 4);
    assert_eq!(std::fs::read_to_string(&cache).unwrap(), text);
    // Any other unreadable line is an error naming it.
    std::fs::write(&cache, format!("garbage\n{text}")).unwrap();
    let err = OpenAiJudge::new(&settings, None).err().unwrap().to_string();
    assert!(err.contains("line 1"), "{err}");
}

#[test]
fn retries_honour_retry_after_and_give_up_naming_the_last_status() {
    let server = JudgeServer::start(answer);
    let settings = config(&server, None);
    let mut judge = OpenAiJudge::new(&settings, None).unwrap();
    server.fail_next([
        Fault::Status(429, Some(0), "slow down".into()),
        Fault::Status(503, None, "busy".into()),
        Fault::Drop,
    ]);
    assert_eq!(judge.score(&[("p", "ee")]).unwrap(), vec![3.0]);
    let usage = judge.take_usage().unwrap();
    assert_eq!((usage.requests, usage.retries), (4, 3));
    // A Retry-After longer than the backoff is waited for.
    server.fail_next([Fault::Status(429, Some(1), "wait a second".into())]);
    let started = std::time::Instant::now();
    assert_eq!(judge.score(&[("p", "eee e")]).unwrap(), vec![5.0]);
    assert!(started.elapsed() >= std::time::Duration::from_secs(1));
    assert_eq!(judge.take_usage().unwrap().retries, 1);
    // Past max_attempts the phase stops; the message names the last status and body.
    server.fail_next(vec![Fault::Status(500, None, "internal boom".into()); 4]);
    let err = judge.score(&[("p", "e")]).unwrap_err().to_string();
    assert!(
        err.contains("HTTP 500") && err.contains("internal boom"),
        "{err}"
    );
    assert!(err.contains("4 attempts") && !err.contains(KEY), "{err}");
    assert_eq!(server.requests().len(), 10);
    // The same judgment succeeds on the next call: nothing was recorded for it.
    assert_eq!(judge.score(&[("p", "e")]).unwrap(), vec![2.0]);
}

#[test]
fn an_unauthorized_key_stops_at_once_with_a_hint() {
    let server = JudgeServer::start(answer);
    let mut judge = OpenAiJudge::new(&config(&server, None), None).unwrap();
    server.fail_next([Fault::Status(401, None, "{\"error\": \"bad key\"}".into())]);
    let err = judge.score(&[("p", "e")]).unwrap_err().to_string();
    assert!(
        err.contains("HTTP 401") && err.contains("api_key_env"),
        "{err}"
    );
    assert!(!err.contains(KEY), "{err}");
    assert_eq!(server.requests().len(), 1);
    let mut missing = config(&server, None);
    missing.api_key_env = Some("BPO_TEST_UNSET_KEY_VARIABLE".into());
    let err = OpenAiJudge::new(&missing, None).err().unwrap().to_string();
    assert!(
        err.contains("BPO_TEST_UNSET_KEY_VARIABLE") && err.contains("not set"),
        "{err}"
    );
    // A key a header cannot carry is refused by its variable's name, never echoed.
    unsafe { std::env::set_var("BPO_TEST_CRLF_KEY", "sk-from-a-windows-file\r") };
    let mut crlf = config(&server, None);
    crlf.api_key_env = Some("BPO_TEST_CRLF_KEY".into());
    let err = OpenAiJudge::new(&crlf, None).err().unwrap().to_string();
    assert!(
        err.contains("BPO_TEST_CRLF_KEY") && !err.contains("sk-from"),
        "{err}"
    );
}

#[test]
fn unusable_replies_are_counted_failures_never_guesses() {
    let server = JudgeServer::start(answer);
    let mut judge = OpenAiJudge::new(&config(&server, None), None).unwrap();
    server.fail_next([
        Fault::Malformed,
        Fault::Content("maybe a 7".into()),
        Fault::Huge(10 << 20),
        Fault::Content("11".into()),
        Fault::Content(" 7.\n".into()),
    ]);
    let items = [("a", "1"), ("b", "2"), ("c", "3"), ("d", "4"), ("e", "5")];
    let scores = judge.score(&items).unwrap();
    assert!(scores[..4].iter().all(|s| s.is_nan()), "{scores:?}");
    assert_eq!(scores[4], 7.0);
    let usage = judge.take_usage().unwrap();
    assert_eq!((usage.requests, usage.retries, usage.failures), (5, 0, 4));
}

#[test]
fn a_reply_slower_than_the_timeout_is_retried() {
    let server = JudgeServer::start(answer);
    let mut settings = config(&server, None);
    settings.timeout_s = 0.3;
    let mut judge = OpenAiJudge::new(&settings, None).unwrap();
    server.fail_next([Fault::Slow(std::time::Duration::from_secs(2))]);
    assert_eq!(judge.score(&[("p", "eeee")]).unwrap(), vec![5.0]);
    assert_eq!(judge.take_usage().unwrap().retries, 1);
}

fn prompts(dir: &Path) -> PathBuf {
    let records: Vec<PromptRecord> = (0..12)
        .map(|i| PromptRecord {
            prompt: Content::text(format!("the tree {i}")),
            reference: None,
            meta: Default::default(),
        })
        .collect();
    let path = dir.join("prompts.jsonl");
    write_all(&path, &records).unwrap();
    path
}

fn pairs(out: &Path) -> Vec<PreferencePair> {
    ["phase-01", "phase-02"]
        .iter()
        .flat_map(|p| {
            read_all::<PreferencePair>(
                &out.join(format!("pairs/{p}.jsonl")),
                ReadOptions::default(),
            )
            .unwrap()
            .records
        })
        .collect()
}

/// Every file under `dir`, read as bytes.
fn contents(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(contents(&path));
        } else {
            files.push((path.clone(), std::fs::read(&path).unwrap()));
        }
    }
    files
}

#[test]
fn an_online_bpo_run_labels_with_the_judge_and_repeats_from_its_cache() {
    let server = JudgeServer::start(byte_answer);
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model_dir(dir.path(), 4);
    let run = |out: &Path, cache: Option<PathBuf>| {
        let mut c = OnlineConfig {
            model: model.clone(),
            device: "flex".into(),
            prompts: prompts(dir.path()).to_str().unwrap().into(),
            annotator: AnnotatorConfig::OpenaiJudge(config(&server, cache)),
            budget: 12,
            phases: 2,
            ..OnlineConfig::default()
        };
        c.reference.mode = ReferenceMode::Behavior;
        c.sampling.max_new_tokens = 6;
        c.run.out = out.to_path_buf();
        c.run.batch_size = 4;
        train_online(&c, None, &mut Silent).unwrap()
    };
    let first = dir.path().join("first");
    let outcome = run(&first, None);
    let asked = server.requests().len();
    assert!(asked > 0);
    let labelled = pairs(&first);
    assert!(!labelled.is_empty());
    for pair in &labelled {
        let score = |r: &Content| byte_score(&r.render_response()) as f64;
        assert_eq!(pair.meta.chosen_score, Some(score(&pair.chosen)));
        assert_eq!(pair.meta.rejected_score, Some(score(&pair.rejected)));
        // The judge's raw replies sit beside each pair for audit.
        let reply = |r: &Content| serde_json::json!([byte_score(&r.render_response()).to_string()]);
        assert_eq!(pair.meta.extra["chosen_judge_replies"], reply(&pair.chosen));
        assert_eq!(
            pair.meta.extra["rejected_judge_replies"],
            reply(&pair.rejected)
        );
    }
    let requests: u64 = outcome
        .phases
        .iter()
        .map(|p| p.annotator.as_ref().unwrap().requests)
        .sum();
    assert_eq!(requests as usize, asked);
    let phases = std::fs::read_to_string(first.join("phases.jsonl")).unwrap();
    assert!(phases.contains("\"annotator/requests\""), "{phases}");
    for (path, bytes) in contents(&first) {
        let text = String::from_utf8_lossy(&bytes);
        assert!(!text.contains(KEY), "{} holds the API key", path.display());
    }
    // The same run elsewhere, from the first run's cache: no request, the same pairs.
    let second = dir.path().join("second");
    run(&second, Some(first.join("judge-cache.jsonl")));
    assert_eq!(server.requests().len(), asked);
    assert_eq!(pairs(&second), labelled);
}

/// The stand-in pairwise judge: B when response B scores higher under `score`, else A (so a
/// tie always goes to the first shown: a position bias).
fn pairwise(score: fn(&str) -> usize) -> impl Fn(&str) -> String {
    move |content: &str| {
        let part = |tag: &str| {
            let text = content
                .split(tag)
                .nth(1)
                .and_then(|r| r.split("\n\n").next());
            score(text.unwrap_or_default())
        };
        match part("[Response B]\n") > part("[Response A]\n") {
            true => "B".into(),
            false => "A".into(),
        }
    }
}

#[test]
fn a_pairwise_judge_asks_both_orders_and_ties_a_disagreement() {
    use Preference::{First, Second, Tie};
    let server = JudgeServer::start(pairwise(e_score));
    let mut settings = config(&server, None);
    settings.mode = JudgeMode::Pairwise;
    let mut judge = OpenAiJudge::new(&settings, None).unwrap();
    let p = Content::text("p");
    let items = [(&p, "eee", "x"), (&p, "x", "eee"), (&p, "ee", "e e")];
    let preferences = judge.prefer_pairs(&items).unwrap().unwrap();
    assert_eq!(preferences, vec![First, Second, Tie]);
    // Six judge prompts, two of them the same (the second item swapped is the first): four asked.
    let requests = server.requests();
    assert_eq!(requests.len(), 4);
    assert!(
        requests[0]
            .content
            .contains("[Response A]\neee\n\n[Response B]\nx")
    );
    assert!(
        requests[1]
            .content
            .contains("[Response A]\nx\n\n[Response B]\neee")
    );
    // One order only: the position bias decides the equal pair.
    settings.both_orders = false;
    let mut once = OpenAiJudge::new(&settings, None).unwrap();
    assert_eq!(
        once.prefer_pairs(&items).unwrap().unwrap(),
        vec![First, Second, First]
    );
    // A reply other than A or B is a counted failure: a tie, never a guess.
    server.fail_next([Fault::Content("C".into())]);
    assert_eq!(
        once.prefer_pairs(&[(&p, "eeee", "y")]).unwrap().unwrap(),
        vec![Tie]
    );
    assert_eq!(once.take_usage().unwrap().failures, 1);
    assert_eq!(once.compare("p", "x", "eeeee").unwrap(), Second);
    let err = once.score(&[("p", "e")]).unwrap_err().to_string();
    assert!(err.contains("pairwise"), "{err}");
}

#[test]
fn an_online_run_labels_pairs_with_a_pairwise_judge() {
    let server = JudgeServer::start(pairwise(byte_score));
    let dir = tempfile::tempdir().unwrap();
    let mut settings = config(&server, None);
    settings.mode = JudgeMode::Pairwise;
    let mut c = OnlineConfig {
        model: tiny_model_dir(dir.path(), 5),
        device: "flex".into(),
        prompts: prompts(dir.path()).to_str().unwrap().into(),
        annotator: AnnotatorConfig::OpenaiJudge(settings),
        budget: 12,
        phases: 2,
        ..OnlineConfig::default()
    };
    c.sampling.max_new_tokens = 6;
    c.run.out = dir.path().join("run");
    c.run.batch_size = 4;
    c.sampling.samples_per_prompt = 3;
    let err = c.validate().unwrap_err().to_string();
    assert!(err.contains("samples_per_prompt must be 2"), "{err}");
    c.sampling.samples_per_prompt = 2;
    train_online(&c, None, &mut Silent).unwrap();
    let labelled = pairs(&c.run.out);
    assert!(!labelled.is_empty());
    for pair in &labelled {
        let (chosen, rejected) = (
            pair.chosen.render_response(),
            pair.rejected.render_response(),
        );
        assert!(
            byte_score(&chosen) > byte_score(&rejected),
            "{chosen:?} over {rejected:?}"
        );
        assert_eq!(
            (pair.meta.chosen_score, pair.meta.rejected_score),
            (Some(1.0), Some(0.0))
        );
        // Chosen shown first it is A, shown second B: both replies are kept.
        let replies = &pair.meta.extra["judge_replies"];
        let orders = [serde_json::json!(["A", "B"]), serde_json::json!(["B", "A"])];
        assert!(orders.contains(replies), "{replies}");
    }
}

#[test]
fn a_run_the_judge_stopped_resumes_without_asking_anything_twice() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model_dir(dir.path(), 8);
    let prompt_path = prompts(dir.path());
    let online = |server: &JudgeServer, out: &Path| {
        let mut settings = config(server, None);
        settings.max_attempts = 2;
        let mut c = OnlineConfig {
            model: model.clone(),
            device: "flex".into(),
            prompts: prompt_path.to_str().unwrap().into(),
            annotator: AnnotatorConfig::OpenaiJudge(settings),
            budget: 12,
            phases: 2,
            ..OnlineConfig::default()
        };
        c.sampling.max_new_tokens = 6;
        c.run.out = out.to_path_buf();
        c.run.batch_size = 4;
        c.run.save_every = 1;
        c.run.keep_checkpoints = 100;
        c
    };
    // The uninterrupted run, with its own judge.
    let steady = JudgeServer::start(byte_answer);
    let full_out = dir.path().join("full");
    let full = train_online(&online(&steady, &full_out), None, &mut Silent).unwrap();
    let first_phase = full.phases[0].annotator.as_ref().unwrap().requests as usize;
    let total = steady.requests().len();
    assert!(
        total > first_phase + 3,
        "{total} requests, {first_phase} in phase 1"
    );
    // The judge fails for good three judgments into phase 2: the run stops with its error.
    let flaky = JudgeServer::start(byte_answer);
    let out = dir.path().join("stopped");
    let c = online(&flaky, &out);
    let answers = std::iter::repeat_n(Fault::Answer, first_phase + 3);
    let failures = std::iter::repeat_n(Fault::Status(500, None, "down".into()), 100);
    flaky.fail_next(answers.chain(failures));
    let err = train_online(&c, None, &mut Silent)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("HTTP 500") && err.contains("down"), "{err}");
    // Back up, the run resumes from its last checkpoint and the judge's cache.
    flaky.clear_faults();
    let resumed = train_online(&c, Some(&out), &mut Silent).unwrap();
    let answered: Vec<String> = flaky
        .requests()
        .into_iter()
        .filter(|r| r.status == 200)
        .map(|r| r.content)
        .collect();
    let mut unique = answered.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(
        unique.len(),
        answered.len(),
        "a judgment was paid for twice"
    );
    assert_eq!(answered.len(), total);
    assert_eq!(pairs(&out), pairs(&full_out));
    assert_eq!(probe_logits(&resumed.model), probe_logits(&full.model));
}
