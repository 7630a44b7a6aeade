"""Real HTTP servers on 127.0.0.1 for backend tests: vLLM's OpenAI api_server on a local
model, and a scripted OpenAI-style server whose answers a test decides."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def vllm_server(model: Path, log_path: Path, served_name: str = "tiny", startup_timeout: float = 180) -> Iterator[str]:
    """Run `vllm.entrypoints.openai.api_server` on `model` (CPU, float32, eager) and yield
    its base URL (`http://127.0.0.1:<port>/v1`) once /health answers. The server runs in
    its own process group, which is terminated (then killed) on exit, engine core too.

    The KV cache size is given explicitly: vLLM's CPU backend otherwise sizes it from
    the first NUMA node's memory and fails to start on small machines."""
    port = free_port()
    command = [
        sys.executable, "-m", "vllm.entrypoints.openai.api_server",
        "--model", str(model),
        "--served-model-name", served_name,
        "--host", "127.0.0.1",
        "--port", str(port),
        "--dtype", "float32",
        "--enforce-eager",
        "--compilation-config", '{"mode": 0}',
        "--kv-cache-memory-bytes", str(1 << 30),
        "--max-model-len", "1024",
        "--seed", "0",
    ]
    env = dict(os.environ, HF_HUB_OFFLINE="1", VLLM_LOGGING_LEVEL="INFO")
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + startup_timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"vLLM server exited with {process.returncode}:\n{_tail(log_path)}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"vLLM server not healthy after {startup_timeout:.0f} s:\n{_tail(log_path)}")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        _stop_group(process)


def _tail(path: Path, lines: int = 40) -> str:
    return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])


def _stop_group(process: subprocess.Popen) -> None:
    """SIGTERM the server's process group, SIGKILL it if still there after 20 s."""
    for sig, wait in ((signal.SIGTERM, 20), (signal.SIGKILL, 10)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue


@dataclass
class Call:
    """One HTTP request the scripted server received."""

    path: str
    headers: dict  # lower-cased names
    body: dict
    attempt: int  # 1 for the first call with this body's prompt, 2 for the next, ...
    time: float  # time.monotonic() when it arrived

    @property
    def prompt(self) -> str:
        """The raw prompt, or the last message's content for chat."""
        if "messages" in self.body:
            return self.body["messages"][-1]["content"]
        return self.body["prompt"]


@dataclass
class Reply:
    status: int = 200
    body: dict | str = field(default_factory=dict)
    headers: dict = field(default_factory=dict)
    delay: float = 0.0  # seconds to wait before answering (a hang)


class ScriptedServer:
    """An OpenAI-style HTTP server on 127.0.0.1 whose every answer comes from
    `respond(call) -> Reply`. It records each call, and counts calls per prompt so a
    script can fail the first attempts and succeed later."""

    def __init__(self, respond: Callable[[Call], Reply]):
        self.respond = respond
        self.calls: list[Call] = []
        self._attempts: dict[str, int] = {}
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("content-length", 0))
                body = json.loads(self.rfile.read(length))
                prompt = json.dumps(body.get("messages", body.get("prompt")))
                with server._lock:
                    server._attempts[prompt] = server._attempts.get(prompt, 0) + 1
                    headers = {k.lower(): v for k, v in self.headers.items()}
                    call = Call(self.path, headers, body, server._attempts[prompt], time.monotonic())
                    server.calls.append(call)
                reply = server.respond(call)
                time.sleep(reply.delay)
                payload = reply.body if isinstance(reply.body, str) else json.dumps(reply.body)
                try:
                    self.send_response(reply.status)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(payload.encode())))
                    for name, value in reply.headers.items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(payload.encode())
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up waiting (a timeout test)

            def log_message(self, *args):
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def __enter__(self) -> ScriptedServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


def chat_response(texts: list[str], finish_reason: str = "stop", **message_fields) -> dict:
    """A chat.completion body with one choice per text, usage summed over choices like
    vLLM and OpenAI report it (each text counts one token per word here)."""
    return {
        "object": "chat.completion",
        "choices": [
            {
                "index": i,
                "message": {"role": "assistant", "content": text, **message_fields},
                "finish_reason": finish_reason,
            }
            for i, text in enumerate(texts)
        ],
        "usage": {"prompt_tokens": 7, "completion_tokens": sum(len(t.split()) for t in texts)},
    }
