//! The OpenAI-compatible backend (llama.cpp's llama-server, vLLM, LM Studio, …)
//! over plain `reqwest`: `/v1/models` at start, `/v1/chat/completions` for chat
//! prompts and `/v1/completions` for completion prompts. An API key is read from
//! `OPENAI_API_KEY` when set.

use super::ProposeError;
use super::llm::{Backend, BackendError, LlmConfig, Reply, Request, snippet};
use super::ollama::{CHECK_TIMEOUT, base_url, http_client};
use super::prompt::Prompt;
use serde_json::{Value, json};
use std::time::Duration;

/// The default OpenAI-compatible URL (llama-server's default port).
pub const DEFAULT_URL: &str = "http://127.0.0.1:8080";

/// An OpenAI-compatible server and the model to ask for.
#[derive(Clone, Debug)]
pub struct OpenAiBackend {
    client: reqwest::Client,
    /// The base URL ending in `/v1/`.
    api: reqwest::Url,
    url: String,
    model: String,
    api_key: Option<String>,
    timeout: Duration,
}

impl OpenAiBackend {
    /// Connects to `config.url` (with or without a trailing `/v1`) and checks that
    /// it answers `GET /v1/models` (with bounded retries). A server that lists
    /// models but not `config.model` is refused; one without the route is accepted.
    pub async fn connect(config: &LlmConfig) -> Result<OpenAiBackend, ProposeError> {
        let trimmed = config.url.trim().trim_end_matches('/');
        let root = trimmed.strip_suffix("/v1").unwrap_or(trimmed);
        let api = base_url(&format!("{root}/v1/"))?;
        let backend = OpenAiBackend {
            client: http_client(config.timeout)?,
            api,
            url: root.to_string(),
            model: config.model.clone(),
            api_key: std::env::var("OPENAI_API_KEY")
                .ok()
                .filter(|k| !k.is_empty()),
            timeout: config.timeout,
        };
        let limit = config.timeout.min(CHECK_TIMEOUT);
        let mut retries = 0;
        let listed = loop {
            let result = match tokio::time::timeout(limit, backend.get_json("models")).await {
                Ok(r) => r,
                Err(_) => Err(BackendError::Timeout(limit)),
            };
            match result {
                Ok(v) => break Some(v),
                // No `/v1/models` route: the server may still serve completions.
                Err(BackendError::Status {
                    status: Some(404), ..
                }) => break None,
                Err(e) if e.retryable() && retries < config.retries => {
                    retries += 1;
                    tokio::time::sleep(super::backoff(config.backoff, retries)).await;
                }
                Err(e) => {
                    return Err(ProposeError::Unreachable {
                        protocol: "OpenAI-compatible",
                        url: backend.url.clone(),
                        reason: format!(
                            "GET /v1/models: {e}{}",
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
        if let Some(ids) = listed.as_ref().map(model_ids)
            && !ids.is_empty()
            && !model_accepted(&ids, &config.model)
        {
            return Err(ProposeError::ModelNotFound {
                model: config.model.clone(),
                url: backend.url.clone(),
                available: format!("; available: {}", ids.join(", ")),
            });
        }
        Ok(backend)
    }

    fn endpoint(&self, path: &str) -> Result<reqwest::Url, BackendError> {
        self.api
            .join(path)
            .map_err(|e| BackendError::Connect(format!("bad endpoint `{path}`: {e}")))
    }

    fn authorize(&self, builder: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.api_key {
            Some(key) => builder.bearer_auth(key),
            None => builder,
        }
    }

    async fn get_json(&self, path: &str) -> Result<Value, BackendError> {
        let builder = self.authorize(self.client.get(self.endpoint(path)?));
        read_json(builder.send().await, self.timeout).await
    }

    async fn post_json(&self, path: &str, body: &Value) -> Result<Value, BackendError> {
        let builder = self.authorize(self.client.post(self.endpoint(path)?).json(body));
        read_json(builder.send().await, self.timeout).await
    }
}

/// The model ids of a `/v1/models` answer.
fn model_ids(v: &Value) -> Vec<String> {
    v.get("data")
        .and_then(Value::as_array)
        .map(|models| {
            models
                .iter()
                .filter_map(|m| m.get("id")?.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Whether the server will serve `model`: listed, or the server serves one model
/// (llama-server answers any name with its one model).
fn model_accepted(ids: &[String], model: &str) -> bool {
    ids.len() == 1 || ids.iter().any(|id| id == model)
}

async fn read_json(
    sent: Result<reqwest::Response, reqwest::Error>,
    timeout: Duration,
) -> Result<Value, BackendError> {
    let response = sent.map_err(|e| transport(e, timeout))?;
    let status = response.status();
    let body = response.text().await.map_err(|e| transport(e, timeout))?;
    if !status.is_success() {
        let message = serde_json::from_str::<Value>(&body)
            .ok()
            .and_then(|v| {
                let e = v.get("error")?;
                e.get("message")
                    .and_then(Value::as_str)
                    .or_else(|| e.as_str())
                    .map(str::to_string)
            })
            .unwrap_or_else(|| snippet(&body));
        return Err(BackendError::Status {
            status: Some(status.as_u16()),
            body: message,
        });
    }
    serde_json::from_str(&body)
        .map_err(|e| BackendError::Malformed(format!("{e} in `{}`", snippet(&body))))
}

fn transport(e: reqwest::Error, timeout: Duration) -> BackendError {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    if e.is_timeout() {
        BackendError::Timeout(timeout)
    } else if e.is_connect() {
        BackendError::Connect(text)
    } else if e.is_decode() || e.is_body() {
        BackendError::Malformed(text)
    } else {
        BackendError::Status {
            status: e.status().map(|s| s.as_u16()),
            body: text,
        }
    }
}

fn usage(v: &Value, key: &str) -> Option<u64> {
    v.get("usage")?.get(key)?.as_u64()
}

impl Backend for OpenAiBackend {
    fn name(&self) -> &'static str {
        "openai"
    }

    fn url(&self) -> &str {
        &self.url
    }

    async fn complete(&self, req: &Request) -> Result<Reply, BackendError> {
        let mut body = json!({
            "model": self.model,
            "temperature": req.temperature,
            "seed": req.seed,
            "max_tokens": req.max_tokens,
            "stream": false,
        });
        if !req.stop.is_empty() {
            body["stop"] = json!(req.stop);
        }
        if let Some(schema) = &req.format {
            // OpenAI's and vLLM's field, and llama-server's own (which its
            // `/v1/completions` reads; its chat route reads both).
            body["response_format"] = json!({
                "type": "json_schema",
                "json_schema": {"name": "widths", "strict": true, "schema": schema},
            });
            body["json_schema"] = schema.clone();
        }
        let (path, text_at): (&str, &[&str]) = match &req.prompt {
            Prompt::Chat { messages } => {
                body["messages"] = messages
                    .iter()
                    .map(|m| json!({"role": m.role.as_str(), "content": m.content}))
                    .collect();
                ("chat/completions", &["message", "content"])
            }
            Prompt::Completion { text } => {
                body["prompt"] = json!(text);
                ("completions", &["text"])
            }
        };
        let v = self.post_json(path, &body).await?;
        let choice = v.get("choices").and_then(|c| c.get(0)).ok_or_else(|| {
            BackendError::Malformed(format!("no `choices` in `{}`", snippet(&v.to_string())))
        })?;
        let mut text = choice;
        for key in text_at {
            text = text.get(key).unwrap_or(&Value::Null);
        }
        let text = match text {
            Value::String(s) => s.clone(),
            // Some servers send `null` content for an empty answer.
            Value::Null => String::new(),
            other => {
                return Err(BackendError::Malformed(format!(
                    "`{}` is not a string: {}",
                    text_at.join("."),
                    snippet(&other.to_string())
                )));
            }
        };
        Ok(Reply {
            text,
            prompt_tokens: usage(&v, "prompt_tokens"),
            completion_tokens: usage(&v, "completion_tokens"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_ids_and_acceptance() {
        let v = json!({"data": [{"id": "a"}, {"id": "b"}]});
        let ids = model_ids(&v);
        assert_eq!(ids, vec!["a", "b"]);
        assert!(model_accepted(&ids, "b"));
        assert!(!model_accepted(&ids, "c"));
        assert!(model_accepted(&["only".to_string()], "anything"));
        assert!(model_ids(&json!({"oops": 1})).is_empty());
    }
}
