//! Where the fine-tuning tools live and how they are run: the Python environment of
//! `scripts/finetune-env.sh`, llama.cpp's binaries and converter as
//! `scripts/local-llm.sh` builds and fetches them (all in caches outside the clone), and a
//! llama-server process owned for the length of a stage.

use super::FinetuneError;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The tools one fine-tune needs.
#[derive(Clone, Debug)]
pub struct Tools {
    /// The fine-tuning environment's interpreter.
    pub python: PathBuf,
    /// The folder with `llama-server`, `llama-export-lora` and `llama-quantize`.
    pub llama_bin: PathBuf,
    /// llama.cpp's `convert_lora_to_gguf.py`.
    pub converter: PathBuf,
}

fn home_cache(var: &str, name: &str) -> PathBuf {
    if let Some(v) = std::env::var_os(var).filter(|v| !v.is_empty()) {
        return PathBuf::from(v);
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default();
    home.join(".cache").join(name)
}

/// The cache of `scripts/local-llm.sh` (`$NAS_LLM_CACHE`, else `~/.cache/nas-llm`).
pub fn llm_cache() -> PathBuf {
    home_cache("NAS_LLM_CACHE", "nas-llm")
}

/// The cache of `scripts/finetune-env.sh` (`$NAS_FINETUNE_CACHE`, else
/// `~/.cache/nas-finetune`).
pub fn finetune_cache() -> PathBuf {
    home_cache("NAS_FINETUNE_CACHE", "nas-finetune")
}

/// The base model `scripts/local-llm.sh` installs (Gemma 3 270M, Q4_K_M).
pub fn default_base() -> PathBuf {
    llm_cache().join("model").join("gemma3-270m-q4_k_m.gguf")
}

/// The newest entry of `dir` whose name starts with `prefix` and that holds every
/// file of `needs` (by the modification time of the first), if any.
fn newest(dir: &Path, prefix: &str, needs: &[&str]) -> Option<PathBuf> {
    let entries = std::fs::read_dir(dir).ok()?;
    entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(prefix) && !n.ends_with(".part"))
        })
        .filter(|p| needs.iter().all(|f| p.join(f).is_file()))
        .filter_map(|p| {
            let t = std::fs::metadata(p.join(needs[0])).ok()?.modified().ok()?;
            Some((t, p))
        })
        .max()
        .map(|(_, p)| p)
}

impl Tools {
    /// Finds the tools (each may be given explicitly), or says how to install what
    /// is missing.
    pub fn locate(
        python: Option<PathBuf>,
        llama_bin: Option<PathBuf>,
        converter: Option<PathBuf>,
    ) -> Result<Tools, FinetuneError> {
        let python = match python {
            Some(p) if p.is_file() => p,
            Some(p) => {
                return Err(FinetuneError::NoEnvironment(format!(
                    "`{}` is not a file",
                    p.display()
                )));
            }
            None => {
                let cache = finetune_cache();
                newest(&cache, "venv-", &["COMPLETE", "bin/python"])
                    .map(|d| d.join("bin").join("python"))
                    .ok_or_else(|| {
                        FinetuneError::NoEnvironment(format!(
                            "no environment in {}",
                            cache.display()
                        ))
                    })?
            }
        };
        let tools = ["llama-server", "llama-export-lora", "llama-quantize"];
        let llama_bin = match llama_bin {
            Some(d) => {
                if let Some(t) = tools.iter().find(|t| !d.join(t).is_file()) {
                    return Err(FinetuneError::NoTools(format!(
                        "no `{t}` in {}",
                        d.display()
                    )));
                }
                d
            }
            None => {
                let cache = llm_cache();
                let mut needs = vec!["PROVED"];
                needs.extend(tools);
                newest(&cache, "bin-", &needs).ok_or_else(|| {
                    FinetuneError::NoTools(format!(
                        "no proved build with {} in {}",
                        tools.join(", "),
                        cache.display()
                    ))
                })?
            }
        };
        let converter = match converter {
            Some(c) if c.is_file() => c,
            Some(c) => {
                return Err(FinetuneError::NoTools(format!(
                    "`{}` is not a file",
                    c.display()
                )));
            }
            None => {
                let src = llm_cache().join("src");
                newest(
                    &src,
                    "llama_cpp_python-",
                    &["vendor/llama.cpp/convert_lora_to_gguf.py"],
                )
                .map(|d| d.join("vendor/llama.cpp/convert_lora_to_gguf.py"))
                .ok_or_else(|| {
                    FinetuneError::NoTools(format!(
                        "no llama.cpp sources with convert_lora_to_gguf.py in {}",
                        src.display()
                    ))
                })?
            }
        };
        Ok(Tools {
            python,
            llama_bin,
            converter,
        })
    }

    /// A llama.cpp binary of the build.
    pub fn bin(&self, name: &str) -> PathBuf {
        self.llama_bin.join(name)
    }
}

/// A free TCP port on the loopback interface.
pub fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// The HTTP status of `GET path` on 127.0.0.1:`port`, if the server answers.
fn http_status(port: u16, path: &str) -> Option<u16> {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut head = [0u8; 16];
    let n = s.read(&mut head).ok()?;
    let line = std::str::from_utf8(&head[..n]).ok()?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// A llama-server this process started; stopped when dropped.
pub struct Server {
    child: Child,
    /// Its port on 127.0.0.1.
    pub port: u16,
    log: PathBuf,
}

impl Server {
    /// Starts `llama-server` on `model` (with `lora` adapters) with the chat template the
    /// search's server uses, and waits until it is healthy (at most `limit`).
    pub fn start(
        tools: &Tools,
        model: &Path,
        lora: Option<&Path>,
        chat_template: &str,
        log: &Path,
        limit: Duration,
    ) -> Result<Server, FinetuneError> {
        Server::start_named(tools, model, lora, chat_template, None, log, limit)
    }

    /// As [`Server::start`], serving the model under `alias` (the name clients ask
    /// `/v1/models` for) when given.
    pub fn start_named(
        tools: &Tools,
        model: &Path,
        lora: Option<&Path>,
        chat_template: &str,
        alias: Option<&str>,
        log: &Path,
        limit: Duration,
    ) -> Result<Server, FinetuneError> {
        let port = free_port().map_err(|e| FinetuneError::io("cannot find a free port", e))?;
        let out = std::fs::File::create(log)
            .map_err(|e| FinetuneError::io(format!("cannot create `{}`", log.display()), e))?;
        let err = out
            .try_clone()
            .map_err(|e| FinetuneError::io("cannot duplicate a log handle", e))?;
        let mut cmd = Command::new(tools.bin("llama-server"));
        cmd.arg("-m").arg(model);
        if let Some(l) = lora {
            cmd.arg("--lora").arg(l);
        }
        if let Some(a) = alias {
            cmd.args(["--alias", a]);
        }
        cmd.args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args([
                "-c",
                "4096",
                "-np",
                "1",
                "-t",
                "1",
                "--no-webui",
                "--no-jinja",
            ])
            .args(["--chat-template", chat_template])
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        let child = cmd.spawn().map_err(|e| {
            FinetuneError::io(
                format!("cannot start `{}`", tools.bin("llama-server").display()),
                e,
            )
        })?;
        let mut server = Server {
            child,
            port,
            log: log.to_path_buf(),
        };
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(Some(status)) = server.child.try_wait() {
                return Err(FinetuneError::Stage {
                    stage: "llama-server",
                    reason: format!(
                        "it exited ({status}) before it was healthy; {}",
                        server.tail()
                    ),
                });
            }
            if http_status(port, "/health") == Some(200) {
                return Ok(server);
            }
            if Instant::now() > deadline {
                return Err(FinetuneError::Stage {
                    stage: "llama-server",
                    reason: format!("not healthy after {} s; {}", limit.as_secs(), server.tail()),
                });
            }
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    /// The server's address.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The last lines of the server's log, for an error message.
    fn tail(&self) -> String {
        super::tail(&self.log, 8)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
