//! Transport faults against a local std TcpListener on 127.0.0.1: a refused
//! connection, a server that stalls, one that answers 500, one that answers
//! broken JSON, an unknown model. Every case ends within a bounded time with a
//! clear error (at start) or a recorded `timeout`/`server_error` attempt (later),
//! after the configured retries; nothing panics or hangs.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test helpers: a failure is a test failure"
)]

use nas_core::propose::{
    Budget, Context, LlmConfig, LlmProposer, OllamaBackend, OpenAiBackend, Outcome, ProposeError,
    Proposer, Style,
};
use nas_dsl::mutate::ValueSet;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What the fake server answers on one route.
#[derive(Clone, Copy, Debug)]
enum Answer {
    Json(&'static str),
    Status(u16, &'static str),
    /// 200 with a body cut mid-object.
    Broken,
    /// Reads the request, then says nothing until the test ends (at most 10 s).
    Stall,
}

/// The longest any fake server or connection lives.
const SERVER_LIFETIME: Duration = Duration::from_secs(30);

struct FakeServer {
    url: String,
    stop: Arc<AtomicBool>,
    hits: Arc<AtomicUsize>,
    handle: Option<JoinHandle<()>>,
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

fn serve(route: fn(&str) -> Answer) -> FakeServer {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let stop = Arc::new(AtomicBool::new(false));
    let hits = Arc::new(AtomicUsize::new(0));
    let (stop2, hits2) = (stop.clone(), hits.clone());
    let handle = std::thread::spawn(move || {
        let start = Instant::now();
        while !stop2.load(Ordering::SeqCst) && start.elapsed() < SERVER_LIFETIME {
            match listener.accept() {
                Ok((stream, _)) => {
                    hits2.fetch_add(1, Ordering::SeqCst);
                    let stop3 = stop2.clone();
                    std::thread::spawn(move || handle(stream, route, &stop3));
                }
                Err(_) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
    });
    FakeServer {
        url,
        stop,
        hits,
        handle: Some(handle),
    }
}

/// Reads one request's head and body; returns the path.
fn read_request(stream: &mut TcpStream) -> Option<String> {
    stream.set_nonblocking(false).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        let n = stream.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > 1 << 20 {
            return None;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    while buf.len() < head_end + length {
        let n = stream.read(&mut chunk).ok()?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    head.split_whitespace().nth(1).map(str::to_string)
}

fn handle(mut stream: TcpStream, route: fn(&str) -> Answer, stop: &AtomicBool) {
    let Some(path) = read_request(&mut stream) else {
        return;
    };
    let (status, body) = match route(&path) {
        Answer::Json(body) => (200, body.to_string()),
        Answer::Status(code, body) => (code, body.to_string()),
        Answer::Broken => (
            200,
            r#"{"model":"gemma3:270m","created_at":"x","respo"#.to_string(),
        ),
        Answer::Stall => {
            let start = Instant::now();
            while !stop.load(Ordering::SeqCst) && start.elapsed() < Duration::from_secs(10) {
                std::thread::sleep(Duration::from_millis(20));
            }
            return;
        }
    };
    let reply = format!(
        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(reply.as_bytes());
}

/// A URL on which nothing listens.
fn refused_url() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    url
}

const TAGS: &str =
    r#"{"models":[{"name":"gemma3:270m","modified_at":"2026-01-01T00:00:00Z","size":1}]}"#;
const MODELS: &str = r#"{"object":"list","data":[{"id":"gemma3:270m","object":"model"}]}"#;

fn config(url: &str) -> LlmConfig {
    LlmConfig {
        style: Style::Completion,
        timeout: Duration::from_millis(600),
        retries: 2,
        backoff: Duration::from_millis(20),
        ..LlmConfig::new("gemma3:270m", url)
    }
}

/// Three tries of 600 ms plus 60 ms of backoff, with room for a loaded machine.
const BOUND: Duration = Duration::from_secs(8);

fn ctx() -> Context {
    let seed = nas_dsl::check_str(
        "net Flat(input = [4], classes = 2) {\n    fc: linear(4 -> 8);\n    relu;\n    head: linear(8 -> 2);\n}",
    )
    .unwrap()
    .remove(0);
    Context::new(seed, Budget::default(), ValueSet::default())
}

async fn ollama_connect(url: &str) -> (Result<OllamaBackend, ProposeError>, Duration) {
    let start = Instant::now();
    let r = OllamaBackend::connect(&config(url)).await;
    (r, start.elapsed())
}

async fn openai_connect(url: &str) -> (Result<OpenAiBackend, ProposeError>, Duration) {
    let start = Instant::now();
    let r = OpenAiBackend::connect(&config(url)).await;
    (r, start.elapsed())
}

#[tokio::test]
async fn ollama_refused_connection_is_a_clear_error() {
    let url = refused_url();
    let (r, took) = ollama_connect(&url).await;
    let e = r.unwrap_err().to_string();
    assert!(took < BOUND, "{took:?}");
    assert!(
        e.contains("cannot reach the Ollama server at") && e.contains(&url),
        "{e}"
    );
    assert!(
        e.contains("connection failed") && e.contains("after 2 retries"),
        "{e}"
    );
}

#[tokio::test]
async fn ollama_stalled_server_times_out() {
    let server = serve(|_| Answer::Stall);
    let (r, took) = ollama_connect(&server.url).await;
    let e = r.unwrap_err().to_string();
    assert!(took < BOUND, "{took:?}");
    assert!(
        e.contains(&server.url) && e.contains("no answer within"),
        "{e}"
    );
    assert_eq!(
        server.hits.load(Ordering::SeqCst),
        3,
        "one try and two retries"
    );
}

#[tokio::test]
async fn ollama_500_and_broken_json_at_start_are_clear_errors() {
    let server = serve(|_| Answer::Status(500, r#"{"error":"out of memory"}"#));
    let (r, took) = ollama_connect(&server.url).await;
    let e = r.unwrap_err().to_string();
    assert!(took < BOUND);
    assert!(
        e.contains("GET /api/tags") && e.contains("out of memory"),
        "{e}"
    );

    let server = serve(|_| Answer::Broken);
    let (r, took) = ollama_connect(&server.url).await;
    let e = r.unwrap_err().to_string();
    assert!(took < BOUND);
    assert!(e.contains("malformed answer"), "{e}");
}

#[tokio::test]
async fn ollama_unknown_model_names_url_model_and_what_is_there() {
    let server = serve(|_| Answer::Json(TAGS));
    let mut c = config(&server.url);
    c.model = "llama3".to_string();
    let e = OllamaBackend::connect(&c).await.unwrap_err().to_string();
    assert!(
        e.contains("model `llama3` not found at") && e.contains(&server.url),
        "{e}"
    );
    assert!(e.contains("available: gemma3:270m"), "{e}");
}

fn ollama_route(path: &str, generate: Answer) -> Answer {
    if path == "/api/tags" {
        Answer::Json(TAGS)
    } else {
        generate
    }
}

async fn ollama_propose(server: &FakeServer) -> (nas_core::propose::Proposal, Duration) {
    let backend = OllamaBackend::connect(&config(&server.url)).await.unwrap();
    let mut p = LlmProposer::new(backend, config(&server.url));
    let start = Instant::now();
    let proposal = p.propose(&ctx()).await;
    (proposal, start.elapsed())
}

#[tokio::test]
async fn ollama_faults_during_generation_are_recorded_after_retries() {
    let server = serve(|p| ollama_route(p, Answer::Status(500, r#"{"error":"boom"}"#)));
    let (proposal, took) = ollama_propose(&server).await;
    assert!(took < BOUND, "{took:?}");
    assert_eq!(proposal.attempts.len(), 1, "no repair after a server error");
    let a = &proposal.attempts[0];
    assert_eq!((a.outcome, a.retries), (Outcome::ServerError, 2));
    assert!(a.diagnostics.as_deref().unwrap().contains("boom"));
    assert_eq!(server.hits.load(Ordering::SeqCst), 1 + 3);

    let server = serve(|p| ollama_route(p, Answer::Broken));
    let (proposal, took) = ollama_propose(&server).await;
    assert!(took < BOUND);
    let a = &proposal.attempts[0];
    assert_eq!((a.outcome, a.retries), (Outcome::ServerError, 2));
    assert!(
        a.diagnostics.as_deref().unwrap().contains("malformed"),
        "{a:?}"
    );

    let server = serve(|p| ollama_route(p, Answer::Stall));
    let (proposal, took) = ollama_propose(&server).await;
    assert!(took < BOUND, "{took:?}");
    let a = &proposal.attempts[0];
    assert_eq!((a.outcome, a.retries), (Outcome::Timeout, 2));
}

#[tokio::test]
async fn ollama_model_vanishing_is_not_retried() {
    let server = serve(|p| {
        ollama_route(
            p,
            Answer::Status(404, r#"{"error":"model 'gemma3:270m' not found"}"#),
        )
    });
    let (proposal, took) = ollama_propose(&server).await;
    assert!(took < BOUND);
    let a = &proposal.attempts[0];
    assert_eq!((a.outcome, a.retries), (Outcome::ServerError, 0));
    assert!(a.diagnostics.as_deref().unwrap().contains("not found"));
}

#[tokio::test]
async fn openai_faults_at_start_are_clear_errors() {
    let url = refused_url();
    let (r, took) = openai_connect(&url).await;
    let e = r.unwrap_err().to_string();
    assert!(took < BOUND);
    assert!(
        e.contains("OpenAI-compatible server at") && e.contains(&url),
        "{e}"
    );

    let server = serve(|_| Answer::Stall);
    let (r, took) = openai_connect(&server.url).await;
    assert!(took < BOUND, "{took:?}");
    assert!(r.unwrap_err().to_string().contains("no answer within"));

    let server = serve(|_| Answer::Status(502, r#"{"error":{"message":"bad gateway"}}"#));
    let (r, _) = openai_connect(&server.url).await;
    let e = r.unwrap_err().to_string();
    assert!(e.contains("HTTP 502") && e.contains("bad gateway"), "{e}");

    let server = serve(|_| Answer::Broken);
    let (r, _) = openai_connect(&server.url).await;
    assert!(r.unwrap_err().to_string().contains("malformed answer"));

    let server = serve(|_| Answer::Json(r#"{"data":[{"id":"a"},{"id":"b"}]}"#));
    let e = openai_connect(&server.url).await.0.unwrap_err().to_string();
    assert!(
        e.contains("model `gemma3:270m` not found") && e.contains("available: a, b"),
        "{e}"
    );
}

fn openai_route(path: &str, completion: Answer) -> Answer {
    if path == "/v1/models" {
        Answer::Json(MODELS)
    } else {
        completion
    }
}

async fn openai_propose(
    server: &FakeServer,
    style: Style,
) -> (nas_core::propose::Proposal, Duration) {
    let c = LlmConfig {
        style,
        ..config(&format!("{}/v1/", server.url))
    };
    let backend = OpenAiBackend::connect(&c).await.unwrap();
    let mut p = LlmProposer::new(backend, c);
    let start = Instant::now();
    let proposal = p.propose(&ctx()).await;
    (proposal, start.elapsed())
}

#[tokio::test]
async fn openai_faults_during_generation_are_recorded_after_retries() {
    for style in [Style::Completion, Style::Chat] {
        let server = serve(|p| openai_route(p, Answer::Status(500, "internal")));
        let (proposal, took) = openai_propose(&server, style).await;
        assert!(took < BOUND);
        let a = &proposal.attempts[0];
        assert_eq!(
            (a.outcome, a.retries),
            (Outcome::ServerError, 2),
            "{style:?}"
        );
        assert!(a.diagnostics.as_deref().unwrap().contains("HTTP 500"));

        let server = serve(|p| openai_route(p, Answer::Broken));
        let (proposal, _) = openai_propose(&server, style).await;
        assert_eq!(proposal.outcome(), Outcome::ServerError);
        assert!(
            proposal.attempts[0]
                .diagnostics
                .as_deref()
                .unwrap()
                .contains("malformed")
        );

        let server = serve(|p| openai_route(p, Answer::Json(r#"{"choices":[]}"#)));
        let (proposal, _) = openai_propose(&server, style).await;
        assert_eq!(proposal.outcome(), Outcome::ServerError);

        let server = serve(|p| openai_route(p, Answer::Stall));
        let (proposal, took) = openai_propose(&server, style).await;
        assert!(took < BOUND, "{took:?}");
        assert_eq!(proposal.outcome(), Outcome::Timeout);

        let server = serve(|p| openai_route(p, Answer::Status(400, "bad request")));
        let (proposal, _) = openai_propose(&server, style).await;
        assert_eq!(proposal.attempts[0].retries, 0, "4xx is not retried");
    }
}

#[tokio::test]
async fn openai_answer_is_judged_with_token_counts() {
    let server = serve(|p| {
        openai_route(
            p,
            Answer::Json(
                r#"{"choices":[{"text":"net A(input = [4], classes = 2) {\n    linear(4 -> 16);\n    relu;\n    linear(16 -> 2);\n}","message":{"role":"assistant","content":"```nas\nnet A(input = [4], classes = 2) {\n    linear(4 -> 16);\n    relu;\n    linear(16 -> 2);\n}\n```"}}],"usage":{"prompt_tokens":321,"completion_tokens":45}}"#,
            ),
        )
    });
    for style in [Style::Completion, Style::Chat] {
        let (proposal, _) = openai_propose(&server, style).await;
        let a = &proposal.attempts[0];
        assert_eq!(a.outcome, Outcome::Ok, "{a:?}");
        assert_eq!(
            (a.prompt_tokens, a.completion_tokens),
            (Some(321), Some(45))
        );
    }
}

#[tokio::test]
async fn a_server_without_a_models_route_is_accepted() {
    let server = serve(|p| {
        if p == "/v1/models" {
            Answer::Status(404, "no route")
        } else {
            Answer::Json(r#"{"choices":[{"text":"garbage"}]}"#)
        }
    });
    let (proposal, _) = openai_propose(&server, Style::Completion).await;
    assert_eq!(proposal.outcome(), Outcome::ParseError);
    assert_eq!(proposal.attempts.len(), 2, "the repair round was sent");
}

#[test]
fn cli_reports_an_unreachable_server_and_exits_non_zero() {
    let url = refused_url();
    let seed = concat!(env!("CARGO_MANIFEST_DIR"), "/../models/nas/small_cnn.nas");
    let start = Instant::now();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_nas-core"))
        .args(["propose", seed, "--proposer", "ollama", "--url", &url])
        .args(["--timeout", "1", "--retries", "1"])
        .output()
        .unwrap();
    assert!(start.elapsed() < Duration::from_secs(15));
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cannot reach the Ollama server at") && stderr.contains(&url),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}
