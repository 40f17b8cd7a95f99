//! The Ollama backend, over the `ollama-rs` client: `/api/tags` at start (the
//! server must answer and have the model), `/api/chat` for chat prompts and
//! `/api/generate` with `raw: true` for completion prompts.

use super::ProposeError;
use super::llm::{Backend, BackendError, LlmConfig, Reply, Request, snippet};
use super::prompt::{Prompt, Role};
use ollama_rs::Ollama;
use ollama_rs::error::OllamaError;
use ollama_rs::generation::chat::ChatMessage;
use ollama_rs::generation::chat::request::ChatMessageRequest;
use ollama_rs::generation::completion::request::GenerationRequest;
use ollama_rs::generation::parameters::{FormatType, JsonStructure};
use ollama_rs::models::ModelOptions;
use std::time::Duration;

/// The default Ollama URL.
pub const DEFAULT_URL: &str = "http://127.0.0.1:11434";

/// The longest wait for the start-up check.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(10);

/// An Ollama server and the model to use on it.
#[derive(Clone, Debug)]
pub struct OllamaBackend {
    client: Ollama,
    url: String,
    model: String,
    timeout: Duration,
}

/// Parses a base URL, making sure its path ends in `/` (ollama-rs appends `api/…`).
pub(crate) fn base_url(url: &str) -> Result<reqwest::Url, ProposeError> {
    let mut parsed = reqwest::Url::parse(url.trim()).map_err(|e| ProposeError::BadUrl {
        url: url.to_string(),
        reason: e.to_string(),
    })?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.cannot_be_a_base() {
        return Err(ProposeError::BadUrl {
            url: url.to_string(),
            reason: "expected an http:// or https:// URL".to_string(),
        });
    }
    if !parsed.path().ends_with('/') {
        let path = format!("{}/", parsed.path());
        parsed.set_path(&path);
    }
    Ok(parsed)
}

/// The HTTP client: a connect timeout so a black-holed address fails fast, and an
/// overall timeout as a second line behind the proposer's own.
pub(crate) fn http_client(timeout: Duration) -> Result<reqwest::Client, ProposeError> {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5).min(timeout))
        .timeout(timeout + Duration::from_secs(1))
        .build()
        .map_err(|e| ProposeError::BadUrl {
            url: String::new(),
            reason: format!("cannot build the HTTP client: {e}"),
        })
}

impl OllamaBackend {
    /// Connects to `config.url`, checks that it answers `/api/tags` (with bounded
    /// retries) and lists `config.model`.
    pub async fn connect(config: &LlmConfig) -> Result<OllamaBackend, ProposeError> {
        let url = base_url(&config.url)?;
        let client = Ollama::builder()
            .url(url.clone())
            .reqwest_client(http_client(config.timeout)?)
            .build();
        let shown = config.url.trim_end_matches('/').to_string();
        // Listing models is quick; a server that takes longer is not answering.
        let limit = config.timeout.min(CHECK_TIMEOUT);
        let mut retries = 0;
        let models = loop {
            let result = match tokio::time::timeout(limit, client.list_local_models()).await {
                Ok(r) => r.map_err(|e| classify(e, &config.model, limit)),
                Err(_) => Err(BackendError::Timeout(limit)),
            };
            match result {
                Ok(models) => break models,
                Err(e) if e.retryable() && retries < config.retries => {
                    retries += 1;
                    tokio::time::sleep(super::backoff(config.backoff, retries)).await;
                }
                Err(e) => {
                    return Err(ProposeError::Unreachable {
                        protocol: "Ollama",
                        url: shown,
                        reason: format!(
                            "GET /api/tags: {e}{}",
                            if retries > 0 {
                                format!(" (after {retries} retries)")
                            } else {
                                String::new()
                            }
                        ),
                    });
                }
            }
        };
        let names: Vec<&str> = models.iter().map(|m| m.name.as_str()).collect();
        if !names.iter().any(|n| same_model(n, &config.model)) {
            return Err(ProposeError::ModelNotFound {
                model: config.model.clone(),
                url: shown,
                available: if names.is_empty() {
                    format!(
                        "; the server has no models (pull one with `ollama pull {}`)",
                        config.model
                    )
                } else {
                    format!("; available: {}", names.join(", "))
                },
            });
        }
        Ok(OllamaBackend {
            client,
            url: shown,
            model: config.model.clone(),
            timeout: config.timeout,
        })
    }
}

/// Whether two Ollama model names denote the same model (`x` is `x:latest`).
fn same_model(a: &str, b: &str) -> bool {
    let norm = |s: &str| {
        if s.contains(':') {
            s.to_string()
        } else {
            format!("{s}:latest")
        }
    };
    norm(a) == norm(b)
}

/// Maps an ollama-rs error onto the transport classes the proposer retries on.
fn classify(e: OllamaError, model: &str, timeout: Duration) -> BackendError {
    match e {
        OllamaError::ReqwestError(e) => {
            if e.is_timeout() {
                BackendError::Timeout(timeout)
            } else if e.is_connect() {
                BackendError::Connect(chain(&e))
            } else if e.is_decode() || e.is_body() {
                BackendError::Malformed(chain(&e))
            } else {
                BackendError::Status {
                    status: e.status().map(|s| s.as_u16()),
                    body: chain(&e),
                }
            }
        }
        OllamaError::JsonError(e) => BackendError::Malformed(e.to_string()),
        // ollama-rs reports non-2xx answers as their body text, without the status.
        OllamaError::Other(body) => {
            let message = serde_json::from_str::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v.get("error")?.as_str().map(str::to_string))
                .unwrap_or_else(|| snippet(&body));
            if message.contains("not found") && message.contains("model") {
                BackendError::ModelNotFound {
                    model: model.to_string(),
                    detail: message,
                }
            } else {
                BackendError::Status {
                    status: None,
                    body: message,
                }
            }
        }
        OllamaError::InternalError(e) => BackendError::Status {
            status: None,
            body: e.message,
        },
        other => BackendError::Status {
            status: None,
            body: other.to_string(),
        },
    }
}

/// An error with its sources, one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

fn options(req: &Request) -> ModelOptions {
    let mut options = ModelOptions::default()
        .temperature(req.temperature)
        .seed((req.seed % i32::MAX as u64) as i32)
        .num_predict(i32::try_from(req.max_tokens).unwrap_or(i32::MAX));
    if !req.stop.is_empty() {
        options = options.stop(req.stop.clone());
    }
    options
}

/// The request's JSON schema as Ollama's `format`.
fn format(req: &Request) -> Result<Option<FormatType>, BackendError> {
    let Some(schema) = &req.format else {
        return Ok(None);
    };
    let schema = schemars::Schema::try_from(schema.clone())
        .map_err(|e| BackendError::Malformed(format!("not a JSON schema: {e}")))?;
    Ok(Some(FormatType::StructuredJson(Box::new(
        JsonStructure::new_for_schema(schema),
    ))))
}

impl Backend for OllamaBackend {
    fn name(&self) -> &'static str {
        "ollama"
    }

    fn url(&self) -> &str {
        &self.url
    }

    async fn complete(&self, req: &Request) -> Result<Reply, BackendError> {
        match &req.prompt {
            Prompt::Chat { messages } => {
                let messages = messages
                    .iter()
                    .map(|m| match m.role {
                        Role::System => ChatMessage::system(m.content.clone()),
                        Role::User => ChatMessage::user(m.content.clone()),
                        Role::Assistant => ChatMessage::assistant(m.content.clone()),
                    })
                    .collect();
                let mut request =
                    ChatMessageRequest::new(self.model.clone(), messages).options(options(req));
                if let Some(format) = format(req)? {
                    request = request.format(format);
                }
                let reply = self
                    .client
                    .send_chat_messages(request)
                    .await
                    .map_err(|e| classify(e, &self.model, self.timeout))?;
                let done = reply.final_data.as_ref();
                Ok(Reply {
                    text: reply.message.content,
                    prompt_tokens: done.map(|d| d.prompt_eval_count),
                    completion_tokens: done.map(|d| d.eval_count),
                })
            }
            Prompt::Completion { text } => {
                let mut request = GenerationRequest::new(self.model.clone(), text.as_str())
                    .raw(true)
                    .options(options(req));
                if let Some(format) = format(req)? {
                    request = request.format(format);
                }
                let reply = self
                    .client
                    .generate(request)
                    .await
                    .map_err(|e| classify(e, &self.model, self.timeout))?;
                Ok(Reply {
                    text: reply.response,
                    prompt_tokens: reply.prompt_eval_count,
                    completion_tokens: reply.eval_count,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_names_match_with_or_without_latest() {
        assert!(same_model("gemma3:270m", "gemma3:270m"));
        assert!(same_model("llama3", "llama3:latest"));
        assert!(!same_model("gemma3:270m", "gemma3"));
    }

    #[test]
    fn base_urls_get_a_trailing_slash_and_bad_ones_an_error() {
        assert_eq!(
            base_url("http://127.0.0.1:11434").unwrap().as_str(),
            "http://127.0.0.1:11434/"
        );
        assert_eq!(
            base_url("http://h:1/ollama").unwrap().as_str(),
            "http://h:1/ollama/"
        );
        assert!(base_url("not a url").is_err());
        assert!(base_url("ftp://h/").is_err());
    }
}
