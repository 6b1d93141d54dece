//! External judge processes: replies are matched to requests by id, and every way a judge can
//! go wrong (crash, silence, garbage, extra, missing or out-of-order replies, endless lines) is
//! an error that says what happened, never a silent label.

use std::time::Duration;

use bpo_algos::annotate::{Annotator, ExternalJudge};

fn sh(script: &str) -> Vec<String> {
    vec!["sh".into(), "-c".into(), script.into()]
}

/// Shell that sets `$id` to the id of the request line `$l`.
const ID: &str = r#"id=$(printf '%s' "$l" | sed 's/^{"id":\([0-9]*\).*/\1/')"#;

fn judge(script: &str) -> ExternalJudge {
    ExternalJudge::spawn(&sh(script), Duration::from_millis(500)).unwrap()
}

#[test]
fn judge_processes_answer_or_fail_clearly() {
    let timeout = Duration::from_millis(500);
    let mut good = judge(&format!(
        r#"while read l; do {ID}; echo "{{\"id\": $id, \"score\": 1.5}}"; done"#
    ));
    assert_eq!(
        good.score(&[("p", "a"), ("p", "b")]).unwrap(),
        vec![1.5, 1.5]
    );
    // A second batch continues the ids.
    assert_eq!(good.score(&[("p", "c")]).unwrap(), vec![1.5]);
    let cases = [
        ("read l; echo oops >&2; exit 3", "exited before answering"),
        ("sleep 5", "gave no answer within 0.5 s"),
        ("read l; echo nope", "answered \"nope\""),
    ];
    for (script, expected) in cases {
        let err = judge(script).score(&[("p", "a")]).unwrap_err().to_string();
        assert!(err.contains(expected), "{script}: {err}");
    }
    let crashed = judge("read l; echo oops >&2; exit 3")
        .score(&[("p", "a")])
        .unwrap_err()
        .to_string();
    assert!(
        crashed.contains("oops") && crashed.contains("exit status: 3"),
        "{crashed}"
    );
    assert!(ExternalJudge::spawn(&["/no/such/judge".into()], timeout).is_err());
}

#[test]
fn replies_without_ids_are_refused() {
    let err = judge(r#"while read l; do echo '{"score": 1.0}'; done"#)
        .score(&[("p", "a")])
        .unwrap_err()
        .to_string();
    assert!(err.contains("without the request's `id`"), "{err}");
    let err = judge("while read l; do echo 2.0; done")
        .score(&[("p", "a")])
        .unwrap_err()
        .to_string();
    assert!(err.contains("without the request's `id`"), "{err}");
}

#[test]
fn a_judge_printing_two_lines_per_request_is_caught() {
    // The second line of request 0 arrives where request 1's reply is due.
    let err = judge(&format!(
        r#"while read l; do {ID}; echo "{{\"id\": $id, \"score\": 1}}"; echo "{{\"id\": $id, \"score\": -1}}"; done"#
    ))
    .score(&[("p", "a"), ("p", "b")])
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("answered request 0 where the reply to request 1 was due"),
        "{err}"
    );
    // With one request per batch, the extra line is still there when the next batch starts.
    let mut twice = judge(&format!(
        r#"while read l; do {ID}; echo "{{\"id\": $id, \"score\": 1}}"; echo "{{\"id\": $id, \"score\": -1}}"; done"#
    ));
    assert_eq!(twice.score(&[("p", "a")]).unwrap(), vec![1.0]);
    std::thread::sleep(Duration::from_millis(200));
    let err = twice.score(&[("p", "b")]).unwrap_err().to_string();
    assert!(err.contains("more replies than requests"), "{err}");
}

#[test]
fn a_judge_answering_fewer_requests_is_caught() {
    // Answers only the first request of each batch.
    let err = judge(&format!(
        r#"read l; {ID}; echo "{{\"id\": $id, \"score\": 1}}"; sleep 5"#
    ))
    .score(&[("p", "a"), ("p", "b")])
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("to request 1") && err.contains("1 of 2 answered"),
        "{err}"
    );
    // Answers out of order.
    let err = judge(
        r#"read a; read b; echo '{"id": 1, "score": 1}'; echo '{"id": 0, "score": 1}'; sleep 5"#,
    )
    .score(&[("p", "a"), ("p", "b")])
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("answered request 1 where the reply to request 0 was due"),
        "{err}"
    );
}

#[test]
fn a_judge_that_never_ends_its_line_is_bounded() {
    // `yes | tr -d '\n'` prints without newlines as fast as it can.
    let err = judge("read l; yes | tr -d '\\n'")
        .score(&[("p", "a")])
        .unwrap_err()
        .to_string();
    assert!(err.contains("line longer than 1048576 bytes"), "{err}");
}
