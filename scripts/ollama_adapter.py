#!/usr/bin/env python3
"""A thin Ollama-protocol adapter in front of llama.cpp's llama-server.

TEST INFRASTRUCTURE: this stands in for a real Ollama, which is what users run.
Ollama cannot be installed from the registries these machines reach, and
llama-server no longer answers Ollama's /api/* routes, so tests and CI reach the
local model through this adapter with an unchanged Ollama client (ollama-rs, the
official Python client).

Routes (one model, named with --model):
  GET  /, HEAD /          "Ollama is running"
  GET  /api/version       {"version": ...}
  GET  /api/tags          the one model, with its file size
  POST /api/show          model details; 404 for any other model
  POST /api/generate      raw (or template-free) prompts -> llama-server /completion;
                          prompts to be templated -> /v1/chat/completions
  POST /api/chat          -> /v1/chat/completions
Unknown models answer 404 {"error": "model 'x' not found"} as Ollama does.
With "stream": true (Ollama's default) the answer is NDJSON, written so that each
HTTP chunk holds whole lines (ollama-rs parses every chunk on its own).
`options` map onto llama-server's sampling fields; `format` ("json" or a JSON
schema) maps onto `json_schema`.

Python standard library only.
"""

import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.request
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

VERSION = "0.0.0-nas-adapter"

# Ollama option name -> llama-server field name.
OPTION_MAP = {
    "temperature": "temperature",
    "top_k": "top_k",
    "top_p": "top_p",
    "min_p": "min_p",
    "typical_p": "typical_p",
    "seed": "seed",
    "num_predict": "n_predict",
    "stop": "stop",
    "repeat_penalty": "repeat_penalty",
    "repeat_last_n": "repeat_last_n",
    "presence_penalty": "presence_penalty",
    "frequency_penalty": "frequency_penalty",
    "mirostat": "mirostat",
    "mirostat_tau": "mirostat_tau",
    "mirostat_eta": "mirostat_eta",
    "num_keep": "n_keep",
}

CONFIG = {
    "upstream": "http://127.0.0.1:8080",
    "model": "gemma3:270m",
    "model_file": None,
    "timeout": 600.0,
}


def now_rfc3339():
    return datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")


def model_size():
    path = CONFIG["model_file"]
    try:
        return os.path.getsize(path) if path else 0
    except OSError:
        return 0


def model_entry():
    name = CONFIG["model"]
    return {
        "name": name,
        "model": name,
        "modified_at": now_rfc3339(),
        "size": model_size(),
        "digest": "",
        "details": {
            "format": "gguf",
            "family": "gemma3",
            "families": ["gemma3"],
            "parameter_size": "268M",
            "quantization_level": "Q4_K_M",
        },
    }


def known_model(name):
    """Accept the configured name with or without the `:latest` tag."""
    want = CONFIG["model"]
    return name in (want, want + ":latest") or (name + ":latest") == want


def sampling_fields(body):
    """Translate Ollama's `options` and `format` into llama-server fields."""
    out = {}
    options = body.get("options") or {}
    if isinstance(options, dict):
        for key, value in options.items():
            if key in OPTION_MAP and value is not None:
                out[OPTION_MAP[key]] = value
    fmt = body.get("format")
    if fmt == "json":
        out["json_schema"] = {"type": "object"}
    elif isinstance(fmt, dict):
        out["json_schema"] = fmt
    return out


class UpstreamError(Exception):
    def __init__(self, status, message):
        super().__init__(message)
        self.status = status
        self.message = message


def upstream_open(path, payload):
    req = urllib.request.Request(
        CONFIG["upstream"] + path,
        data=json.dumps(payload).encode(),
        headers={"Content-Type": "application/json"},
    )
    try:
        return urllib.request.urlopen(req, timeout=CONFIG["timeout"])
    except urllib.error.HTTPError as e:
        try:
            detail = json.loads(e.read() or b"{}")
            message = detail.get("error", {}).get("message") or str(detail)
        except (ValueError, AttributeError):
            message = str(e)
        raise UpstreamError(e.code, f"llama-server: {message}") from e
    except (urllib.error.URLError, OSError) as e:
        raise UpstreamError(502, f"llama-server unreachable at {CONFIG['upstream']}: {e}") from e


def sse_events(resp):
    """Yield the JSON objects of a server-sent-event stream."""
    for raw in resp:
        line = raw.decode("utf-8", "replace").strip()
        if not line.startswith("data:"):
            continue
        data = line[5:].strip()
        if data == "[DONE]":
            return
        try:
            yield json.loads(data)
        except ValueError:
            continue


def timing_fields(timings, started):
    """Ollama's six timing fields (all-or-nothing), from llama-server's timings."""
    timings = timings or {}
    prompt_ms = float(timings.get("prompt_ms") or 0.0)
    predicted_ms = float(timings.get("predicted_ms") or 0.0)
    return {
        "total_duration": int((time.monotonic() - started) * 1e9),
        "load_duration": 0,
        "prompt_eval_count": int(timings.get("prompt_n") or 0),
        "prompt_eval_duration": int(prompt_ms * 1e6),
        "eval_count": int(timings.get("predicted_n") or 0),
        "eval_duration": int(predicted_ms * 1e6),
    }


def chat_messages(body):
    messages = []
    for m in body.get("messages") or []:
        if isinstance(m, dict):
            messages.append({"role": m.get("role", "user"), "content": m.get("content", "")})
    return messages


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "ollama-adapter"

    def log_message(self, fmt, *args):
        sys.stderr.write("%s %s\n" % (self.log_date_time_string(), fmt % args))

    # ----- plumbing -------------------------------------------------------

    def send_json(self, status, obj):
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def send_error_json(self, status, message):
        self.send_json(status, {"error": message})

    def start_stream(self):
        self.send_response(200)
        self.send_header("Content-Type", "application/x-ndjson")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

    def stream_line(self, obj):
        # One chunk per NDJSON line: a client that parses each chunk on its own
        # never sees half an object.
        line = (json.dumps(obj) + "\n").encode()
        self.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))
        self.wfile.flush()

    def end_stream(self):
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def read_body(self):
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length > 0 else b""
        if not raw:
            return {}
        body = json.loads(raw)
        if not isinstance(body, dict):
            raise ValueError("request body must be a JSON object")
        return body

    # ----- routes ---------------------------------------------------------

    def do_HEAD(self):
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self):
        if self.path == "/":
            data = b"Ollama is running"
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        elif self.path == "/api/version":
            self.send_json(200, {"version": VERSION})
        elif self.path == "/api/tags":
            self.send_json(200, {"models": [model_entry()]})
        elif self.path == "/api/ps":
            self.send_json(200, {"models": [model_entry()]})
        else:
            self.send_error_json(404, f"no route {self.path}")

    def do_POST(self):
        try:
            body = self.read_body()
        except ValueError as e:
            self.send_error_json(400, f"invalid JSON body: {e}")
            return
        route = {
            "/api/generate": self.generate,
            "/api/chat": self.chat,
            "/api/show": self.show,
        }.get(self.path)
        if route is None:
            self.send_error_json(404, f"no route {self.path}")
            return
        try:
            route(body)
        except UpstreamError as e:
            self.send_error_json(e.status, e.message)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def check_model(self, body):
        name = body.get("model") or body.get("name") or ""
        if not known_model(name):
            self.send_error_json(404, f"model '{name}' not found")
            return None
        return name

    def show(self, body):
        if self.check_model(body) is None:
            return
        self.send_json(
            200,
            {
                "modelfile": f"FROM {CONFIG['model_file'] or ''}",
                "parameters": "",
                "template": "",
                "details": model_entry()["details"],
                "model_info": {"general.architecture": "gemma3"},
                "capabilities": ["completion"],
                "modified_at": now_rfc3339(),
            },
        )

    def generate(self, body):
        name = self.check_model(body)
        if name is None:
            return
        stream = body.get("stream", True) is not False
        prompt = body.get("prompt") or ""
        started = time.monotonic()
        fields = sampling_fields(body)
        if not prompt and not body.get("system"):
            # Ollama answers an empty prompt by loading the model.
            self.send_json(200, {"model": name, "created_at": now_rfc3339(), "response": "",
                                 "done": True, "done_reason": "load"})
            return
        if body.get("raw"):
            payload = dict(fields, prompt=prompt, stream=stream, cache_prompt=True)
            resp = upstream_open("/completion", payload)
            if stream:
                self.start_stream()
                final = {}
                for ev in sse_events(resp):
                    text = ev.get("content") or ""
                    if ev.get("stop"):
                        final = ev
                        if text:
                            self.stream_line({"model": name, "created_at": now_rfc3339(),
                                              "response": text, "done": False})
                        break
                    if text:
                        self.stream_line({"model": name, "created_at": now_rfc3339(),
                                          "response": text, "done": False})
                last = {"model": name, "created_at": now_rfc3339(), "response": "",
                        "done": True, "done_reason": done_reason(final.get("stop_type"))}
                last.update(timing_fields(final.get("timings"), started))
                self.stream_line(last)
                self.end_stream()
            else:
                out = json.loads(resp.read())
                reply = {"model": name, "created_at": now_rfc3339(),
                         "response": out.get("content") or "", "done": True,
                         "done_reason": done_reason(out.get("stop_type"))}
                reply.update(timing_fields(out.get("timings"), started))
                self.send_json(200, reply)
            return
        messages = []
        if body.get("system"):
            messages.append({"role": "system", "content": body["system"]})
        messages.append({"role": "user", "content": prompt})
        self.chat_upstream(name, messages, fields, stream, started, key="response")

    def chat(self, body):
        name = self.check_model(body)
        if name is None:
            return
        stream = body.get("stream", True) is not False
        messages = chat_messages(body)
        if not messages:
            self.send_json(200, {"model": name, "created_at": now_rfc3339(),
                                 "message": {"role": "assistant", "content": ""},
                                 "done": True, "done_reason": "load"})
            return
        self.chat_upstream(name, messages, sampling_fields(body), stream, time.monotonic(),
                           key="message")

    def chat_upstream(self, name, messages, fields, stream, started, key):
        """Run a chat completion upstream; answer as /api/chat (`message`) or
        /api/generate (`response`)."""

        def piece(text):
            if key == "message":
                return {"message": {"role": "assistant", "content": text}}
            return {"response": text}

        payload = dict(fields, messages=messages, stream=stream)
        resp = upstream_open("/v1/chat/completions", payload)
        if stream:
            self.start_stream()
            timings, finish = None, None
            for ev in sse_events(resp):
                choices = ev.get("choices") or [{}]
                delta = choices[0].get("delta") or {}
                text = delta.get("content") or ""
                finish = choices[0].get("finish_reason") or finish
                timings = ev.get("timings") or timings
                if text:
                    self.stream_line(dict({"model": name, "created_at": now_rfc3339(),
                                           "done": False}, **piece(text)))
            last = dict({"model": name, "created_at": now_rfc3339(), "done": True,
                         "done_reason": finish or "stop"}, **piece(""))
            last.update(timing_fields(timings, started))
            self.stream_line(last)
            self.end_stream()
            return
        out = json.loads(resp.read())
        choice = (out.get("choices") or [{}])[0]
        text = (choice.get("message") or {}).get("content") or ""
        reply = dict({"model": name, "created_at": now_rfc3339(), "done": True,
                      "done_reason": choice.get("finish_reason") or "stop"}, **piece(text))
        timings = out.get("timings")
        if not timings:
            usage = out.get("usage") or {}
            timings = {"prompt_n": usage.get("prompt_tokens"),
                       "predicted_n": usage.get("completion_tokens")}
        reply.update(timing_fields(timings, started))
        self.send_json(200, reply)


def done_reason(stop_type):
    return "length" if stop_type == "limit" else "stop"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=11434)
    parser.add_argument("--upstream", default=CONFIG["upstream"],
                        help="llama-server base URL")
    parser.add_argument("--model", default=CONFIG["model"],
                        help="the model name Ollama clients use")
    parser.add_argument("--model-file", default=None,
                        help="the GGUF file (for the size in /api/tags)")
    parser.add_argument("--timeout", type=float, default=CONFIG["timeout"],
                        help="seconds to wait for llama-server")
    args = parser.parse_args()
    CONFIG.update(upstream=args.upstream.rstrip("/"), model=args.model,
                  model_file=args.model_file, timeout=args.timeout)
    server = ThreadingHTTPServer((args.host, args.port), Handler)
    server.daemon_threads = True
    sys.stderr.write(f"ollama adapter on http://{args.host}:{args.port} -> {CONFIG['upstream']} "
                     f"(model {CONFIG['model']})\n")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
