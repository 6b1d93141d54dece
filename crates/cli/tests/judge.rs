//! A `bpo online` run labelled by an LLM judge (a stand-in on 127.0.0.1), killed with SIGKILL
//! in the middle of a phase's judging and resumed: nothing the run recorded is asked again
//! (only a judgment in flight at the kill may be), and the pairs and the model equal an
//! uninterrupted run's.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bpo_testkit::JudgeServer;
use common::{bpo, stdout, tiny_model};

/// The stand-in judge: 1 + the sum of the response's bytes mod 10, after `delay`.
fn judge(delay: Duration) -> JudgeServer {
    JudgeServer::start(move |content| {
        std::thread::sleep(delay);
        let response = content
            .split("[Response]\n")
            .nth(1)
            .and_then(|r| r.split("\n\n").next())
            .unwrap_or_default();
        (1 + response.bytes().map(usize::from).sum::<usize>() % 10).to_string()
    })
}

fn config(dir: &Path, model: &str, server: &JudgeServer, out: &Path) -> PathBuf {
    let prompts = dir.join("prompts.jsonl");
    let lines: Vec<String> = (0..12)
        .map(|i| format!("{{\"prompt\": \"the tree {i}\"}}"))
        .collect();
    std::fs::write(&prompts, lines.join("\n") + "\n").unwrap();
    let path = dir.join(format!(
        "{}.toml",
        out.file_name().unwrap().to_string_lossy()
    ));
    let text = format!(
        "model = \"{model}\"\ndevice = \"flex\"\nprompts = \"{}\"\nbudget = 12\nphases = 2\n\
         [annotator]\nkind = \"openai_judge\"\nbase_url = \"{}\"\nmodel = \"judge\"\n\
         concurrency = 1\nbackoff_s = 0.01\n[sampling]\nmax_new_tokens = 6\n\
         [run]\nout = \"{}\"\nbatch_size = 4\n",
        prompts.display(),
        server.base_url,
        out.display()
    );
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn a_judged_run_killed_mid_phase_resumes_without_paying_twice() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path());
    let steady = judge(Duration::ZERO);
    let full = dir.path().join("full");
    let c = config(dir.path(), &model, &steady, &full);
    stdout(&bpo(&["online", "--config", c.to_str().unwrap()]));
    let phases = std::fs::read_to_string(full.join("phases.jsonl")).unwrap();
    let first: serde_json::Value = serde_json::from_str(phases.lines().next().unwrap()).unwrap();
    let first_phase = first["annotator/requests"].as_u64().unwrap() as usize;
    let total = steady.requests().len();
    assert!(
        total > first_phase + 3,
        "{total} requests, {first_phase} in phase 1"
    );

    // The same run against a judge that takes 50 ms an answer, killed three judgments into
    // phase 2.
    let slow = judge(Duration::from_millis(50));
    let killed = dir.path().join("killed");
    let c = config(dir.path(), &model, &slow, &killed);
    let mut child = Command::new(env!("CARGO_BIN_EXE_bpo"))
        .args(["online", "--config", c.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while slow.requests().len() < first_phase + 3 {
        assert!(started.elapsed() < Duration::from_secs(120), "no judging");
        assert!(
            child.try_wait().unwrap().is_none(),
            "finished before the kill"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let resume = ["online", "--config", c.to_str().unwrap(), "--resume"];
    stdout(&bpo(&[&resume[..], &[killed.to_str().unwrap()]].concat()));

    let mut asked: Vec<String> = slow.requests().into_iter().map(|r| r.content).collect();
    let requests = asked.len();
    asked.sort();
    asked.dedup();
    assert!(
        requests - asked.len() <= 1,
        "{} judgments asked twice",
        requests - asked.len()
    );
    assert_eq!(asked.len(), total);
    for file in [
        "pairs/phase-01.jsonl",
        "pairs/phase-02.jsonl",
        "model/model.safetensors",
    ] {
        let read = |run: &Path| std::fs::read(run.join(file)).unwrap();
        assert!(read(&killed) == read(&full), "{file} differs");
    }
}
