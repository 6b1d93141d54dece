//! External judges: a process speaking JSON lines over stdin and stdout, with an id per request
//! that each reply must echo, so that no score is ever attached to the wrong response.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError, channel};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::annotate::annotator::Annotator;
use crate::error::AlgoError;

/// The longest line read from a judge's stdout; a longer one is an error, not a buffer that
/// grows without bound.
pub const MAX_LINE_BYTES: usize = 1 << 20;

/// The tail of a judge's stderr kept for error messages.
const STDERR_TAIL: usize = 4096;

/// Reads one line of at most `max` bytes (without its newline); `None` at the end of input.
fn read_line(reader: &mut impl BufRead, max: usize) -> std::io::Result<Option<String>> {
    let mut buf = Vec::new();
    reader.take(max as u64 + 1).read_until(b'\n', &mut buf)?;
    if buf.is_empty() {
        return Ok(None);
    }
    if buf.last() == Some(&b'\n') {
        buf.pop();
        if buf.last() == Some(&b'\r') {
            buf.pop();
        }
    } else if buf.len() > max {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("printed a line longer than {max} bytes"),
        ));
    }
    String::from_utf8(buf)
        .map(Some)
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidData, "printed invalid UTF-8"))
}

/// An external judge: a process spawned once that reads one JSON object per line on stdin,
/// `{"id": 7, "prompt": ..., "response": ...}`, and answers each request, in order, with one
/// line on stdout that echoes its id: `{"id": 7, "score": 0.5}`. Ids increase over the judge's
/// life, so a reply that is missing, extra, out of order or left over from an earlier batch is
/// an error naming what happened, as is a judge that exits, answers garbage, prints a line over
/// [`MAX_LINE_BYTES`] or stays silent longer than the timeout. Never a silent label.
pub struct ExternalJudge {
    command: Vec<String>,
    child: Child,
    stdin: ChildStdin,
    lines: Receiver<std::io::Result<String>>,
    stderr: Arc<Mutex<Vec<u8>>>,
    timeout: Duration,
    next_id: u64,
}

impl ExternalJudge {
    /// Spawns `command` (program and arguments).
    pub fn spawn(command: &[String], timeout: Duration) -> Result<Self, AlgoError> {
        let Some((program, args)) = command.split_first() else {
            return Err(AlgoError::Config(
                "annotator.command must name a program".into(),
            ));
        };
        let mut child = Command::new(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| AlgoError::Annotator(format!("cannot start judge `{program}`: {e}")))?;
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr_pipe = child.stderr.take().expect("piped stderr");
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            loop {
                let line = read_line(&mut reader, MAX_LINE_BYTES).transpose();
                let stop = !matches!(line, Some(Ok(_)));
                if line.is_none_or(|l| tx.send(l).is_err()) || stop {
                    break;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&stderr);
        std::thread::spawn(move || {
            let mut pipe = stderr_pipe;
            let mut chunk = [0u8; 4096];
            while let Ok(n @ 1..) = pipe.read(&mut chunk) {
                let mut tail = sink.lock().unwrap_or_else(|p| p.into_inner());
                tail.extend_from_slice(&chunk[..n]);
                let excess = tail.len().saturating_sub(STDERR_TAIL);
                tail.drain(..excess);
            }
        });
        Ok(ExternalJudge {
            command: command.to_vec(),
            child,
            stdin,
            lines,
            stderr,
            timeout,
            next_id: 0,
        })
    }

    fn failure(&mut self, what: &str) -> AlgoError {
        std::thread::sleep(Duration::from_millis(50));
        let status = match self.child.try_wait() {
            Ok(Some(status)) => format!(" ({status})"),
            _ => String::new(),
        };
        let stderr =
            String::from_utf8_lossy(&self.stderr.lock().unwrap_or_else(|p| p.into_inner()))
                .into_owned();
        let stderr = if stderr.trim().is_empty() {
            String::new()
        } else {
            format!("; its stderr ends with:\n{}", stderr.trim_end())
        };
        AlgoError::Annotator(format!(
            "judge `{}` {what}{status}{stderr}",
            self.command.join(" ")
        ))
    }

    /// The id and score of a reply line, or what is wrong with it.
    fn parse_reply(line: &str) -> Result<(u64, f64), String> {
        let expected = "expected {\"id\": <the request's id>, \"score\": <finite number>}";
        let value: serde_json::Value = serde_json::from_str(line.trim())
            .map_err(|_| format!("answered {line:?}, {expected}"))?;
        let id = value.get("id").and_then(serde_json::Value::as_u64);
        let score = value.get("score").and_then(serde_json::Value::as_f64);
        match (id, score) {
            (Some(id), Some(score)) if score.is_finite() => Ok((id, score)),
            (None, _) => Err(format!(
                "answered {line:?} without the request's `id` (each reply must echo it), {expected}"
            )),
            _ => Err(format!("answered {line:?}, {expected}")),
        }
    }
}

impl Annotator for ExternalJudge {
    fn name(&self) -> String {
        format!("command `{}`", self.command.join(" "))
    }

    fn score(&mut self, items: &[(&str, &str)]) -> Result<Vec<f64>, AlgoError> {
        // Anything printed since the last batch was answered is a reply to no request.
        match self.lines.try_recv() {
            Ok(Ok(line)) => {
                return Err(self.failure(&format!(
                    "printed {line:?} after answering every request (more replies than requests)"
                )));
            }
            Ok(Err(e)) => return Err(self.failure(&format!("output unreadable: {e}"))),
            Err(TryRecvError::Empty | TryRecvError::Disconnected) => {}
        }
        let first = self.next_id;
        let mut request = String::new();
        for (i, (prompt, response)) in items.iter().enumerate() {
            let line =
                serde_json::json!({"id": first + i as u64, "prompt": prompt, "response": response});
            request.push_str(&line.to_string());
            request.push('\n');
        }
        self.next_id += items.len() as u64;
        if self
            .stdin
            .write_all(request.as_bytes())
            .and_then(|_| self.stdin.flush())
            .is_err()
        {
            return Err(self.failure("stopped reading its input"));
        }
        let mut scores = Vec::with_capacity(items.len());
        for i in 0..items.len() {
            let expected = first + i as u64;
            match self.lines.recv_timeout(self.timeout) {
                Ok(Ok(line)) => match Self::parse_reply(&line) {
                    Ok((id, score)) if id == expected => scores.push(score),
                    Ok((id, _)) => {
                        return Err(self.failure(&format!(
                            "answered request {id} where the reply to request {expected} was due (replies must come one per request, in order)"
                        )));
                    }
                    Err(message) => return Err(self.failure(&message)),
                },
                Ok(Err(e)) => return Err(self.failure(&format!("output unreadable: {e}"))),
                Err(RecvTimeoutError::Timeout) => {
                    let _ = self.child.kill();
                    return Err(self.failure(&format!(
                        "gave no answer within {:.1} s to request {expected} (killed; {} of {} answered)",
                        self.timeout.as_secs_f64(),
                        scores.len(),
                        items.len()
                    )));
                }
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(self.failure(&format!(
                        "exited before answering ({} of {} requests answered)",
                        scores.len(),
                        items.len()
                    )));
                }
            }
        }
        Ok(scores)
    }
}

impl Drop for ExternalJudge {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
