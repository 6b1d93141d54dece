//! An OpenAI-compatible chat-completions stand-in on 127.0.0.1 for tests of LLM judges (and of
//! other JSON APIs such as reward servers): it answers each POST with what a closure makes of
//! the last message (or of the whole request), plays scripted faults first (statuses with
//! `Retry-After`, dropped connections, malformed JSON, slow replies, oversized bodies), and logs
//! every request.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::local_server::{LocalServer, read_headers};

/// A reply the server plays instead of the judge's answer.
#[derive(Debug, Clone)]
pub enum Fault {
    /// The judge's normal answer (to let requests through before later faults).
    Answer,
    /// This status with this body, and `Retry-After` seconds when given.
    Status(u16, Option<u32>, String),
    /// The connection closed without a reply.
    Drop,
    /// A 200 whose body is not JSON.
    Malformed,
    /// A 200 with this message content (the judge says something).
    Content(String),
    /// The normal answer after this delay.
    Slow(Duration),
    /// A 200 whose body has this many bytes.
    Huge(usize),
}

/// One request the server received.
#[derive(Debug, Clone)]
pub struct JudgeRequest {
    /// The content of the request's last message.
    pub content: String,
    /// The whole request body.
    pub body: String,
    /// The `Authorization` header, if any.
    pub authorization: Option<String>,
    /// The status the server answered with (0: the connection was dropped).
    pub status: u16,
}

/// The reply body to a request (its JSON and its last message's content).
type Answer = Box<dyn Fn(&serde_json::Value, &str) -> String + Send>;

struct State {
    faults: VecDeque<Fault>,
    log: Vec<JudgeRequest>,
    answer: Answer,
}

/// The running server; stopped when dropped.
pub struct JudgeServer {
    /// `http://127.0.0.1:PORT/v1`, for `base_url`.
    pub base_url: String,
    state: Arc<Mutex<State>>,
    _server: LocalServer,
}

impl JudgeServer {
    /// Starts a server whose judge answers `answer(content of the last message)` as a chat
    /// completion.
    pub fn start(answer: impl Fn(&str) -> String + Send + 'static) -> JudgeServer {
        Self::serve_with(Box::new(move |_, content| {
            completion(content, &answer(content))
        }))
    }

    /// Starts a server that replies `handler(request JSON)` to every request.
    pub fn start_json(
        handler: impl Fn(&serde_json::Value) -> serde_json::Value + Send + 'static,
    ) -> JudgeServer {
        Self::serve_with(Box::new(move |request, _| handler(request).to_string()))
    }

    fn serve_with(answer: Answer) -> JudgeServer {
        let state = Arc::new(Mutex::new(State {
            faults: VecDeque::new(),
            log: Vec::new(),
            answer,
        }));
        let shared = state.clone();
        let server = LocalServer::start(move |stream| serve(stream, &shared));
        JudgeServer {
            base_url: format!("http://{}/v1", server.address),
            state,
            _server: server,
        }
    }

    /// Plays `faults`, in order, for the next requests.
    pub fn fail_next(&self, faults: impl IntoIterator<Item = Fault>) {
        self.state.lock().unwrap().faults.extend(faults);
    }

    /// Forgets the faults not played yet.
    pub fn clear_faults(&self) {
        self.state.lock().unwrap().faults.clear();
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<JudgeRequest> {
        self.state.lock().unwrap().log.clone()
    }
}

fn serve(stream: TcpStream, state: &Mutex<State>) {
    let mut reader = BufReader::new(stream.try_clone().expect("stream clone"));
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    let headers = read_headers(&mut reader);
    let length: usize = headers
        .get("content-length")
        .and_then(|l| l.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; length];
    if reader.read_exact(&mut body).is_err() {
        return;
    }
    let body = String::from_utf8_lossy(&body).into_owned();
    let request: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    let content = request
        .pointer("/messages")
        .and_then(|m| m.as_array())
        .and_then(|m| m.last())
        .and_then(|m| m.get("content"))
        .and_then(|c| c.as_str())
        .unwrap_or_default()
        .to_owned();
    let (fault, answer) = {
        let mut state = state.lock().unwrap();
        let fault = state.faults.pop_front();
        let status = match &fault {
            Some(Fault::Status(status, _, _)) => *status,
            Some(Fault::Drop) => 0,
            _ => 200,
        };
        state.log.push(JudgeRequest {
            content: content.clone(),
            body,
            authorization: headers.get("authorization").cloned(),
            status,
        });
        (fault, (state.answer)(&request, &content))
    };
    let (status, retry_after, reply) = match fault {
        None | Some(Fault::Answer) => (200, None, answer),
        Some(Fault::Status(status, retry_after, text)) => (status, retry_after, text),
        Some(Fault::Drop) => return,
        Some(Fault::Malformed) => (200, None, "{\"choices\": [".to_owned()),
        Some(Fault::Content(text)) => (200, None, completion(&content, &text)),
        Some(Fault::Slow(delay)) => {
            std::thread::sleep(delay);
            (200, None, answer)
        }
        Some(Fault::Huge(bytes)) => (200, None, "x".repeat(bytes)),
    };
    let mut stream = stream;
    let mut head = format!(
        "HTTP/1.1 {status} X\r\nConnection: close\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n",
        reply.len()
    );
    if let Some(seconds) = retry_after {
        head.push_str(&format!("Retry-After: {seconds}\r\n"));
    }
    head.push_str("\r\n");
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(reply.as_bytes());
    let _ = stream.flush();
    let _ = stream.shutdown(std::net::Shutdown::Both);
}

/// A chat-completions reply body saying `text` to a request whose last message was `content`.
fn completion(content: &str, text: &str) -> String {
    serde_json::json!({
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}}],
        "usage": {"prompt_tokens": content.len() / 4, "completion_tokens": 1},
    })
    .to_string()
}
