"""A small client of redhat's yaml-language-server over its stdio JSON-RPC, for tests of what an
editor shows with unigen's JSON Schema: diagnostics and completions, as VS Code asks for them.

The server is the npm package `yaml-language-server`, installed outside the Python environment:

    npm install --prefix .cache/node yaml-language-server@1.25.0

`UNIGEN_YLS` names another install: its `--prefix` folder, or the `yaml-language-server`
executable itself. `server_command()` is None when there is none (the tests then skip).
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_PREFIX = ROOT / ".cache" / "node"
YLS_VERSION = "1.25.0"

# Settings as VS Code's YAML extension sends them, without the downloads: no schema store
# catalog and no Kubernetes CRD catalog (a test must not reach the network).
OFFLINE = {"validate": True, "completion": True, "hover": True, "schemaStore": {"enable": False}, "kubernetesCRDStore": {"enable": False}}


def server_command() -> list[str] | None:
    """The command that starts the server on stdio, or None when it is not installed."""
    given = os.environ.get("UNIGEN_YLS", "")
    where = Path(given) if given else DEFAULT_PREFIX
    exe = where if where.is_file() else where / "node_modules" / ".bin" / "yaml-language-server"
    if not exe.is_file() or shutil.which("node") is None:
        return None
    return [str(exe), "--stdio"]


def missing_reason() -> str:
    if shutil.which("node") is None:
        return "node is not installed; the editor tests drive yaml-language-server, a Node program"
    given = os.environ.get("UNIGEN_YLS", "")
    prefix = given or ".cache/node"
    where = f"UNIGEN_YLS={given}" if given else f"{DEFAULT_PREFIX} (set UNIGEN_YLS to use another install)"
    return f"yaml-language-server is not installed at {where}; install it with `npm install --prefix {prefix} yaml-language-server@{YLS_VERSION}`"


class LanguageServer:
    """One server process: requests wait for their answer; the diagnostics it publishes are kept
    by document, each new list after the last."""

    def __init__(self, command: list[str], root: Path, settings: dict[str, Any]) -> None:
        self.settings = {"yaml": {**OFFLINE, **settings}, "http": {}, "[yaml]": {}, "editor": {}}
        self.proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=root)
        self.answers: dict[int, queue.Queue[Any]] = {}
        self.published: dict[str, list[list[dict[str, Any]]]] = {}
        self.changed = threading.Condition()
        self.versions: dict[str, int] = {}
        self.marks: dict[str, int] = {}  # per document: the published lists before its last change
        self.next_id = 0
        self.lock = threading.Lock()
        threading.Thread(target=self._read, daemon=True).start()
        caps = {"workspace": {"configuration": True, "didChangeConfiguration": {"dynamicRegistration": False}},
                "textDocument": {"completion": {"completionItem": {"documentationFormat": ["markdown", "plaintext"], "snippetSupport": True}},
                                 "publishDiagnostics": {}}}
        self.request("initialize", {"processId": os.getpid(), "rootUri": root.as_uri(), "capabilities": caps,
                                    "workspaceFolders": [{"uri": root.as_uri(), "name": root.name}]})
        self.notify("initialized", {})
        self.notify("workspace/didChangeConfiguration", {"settings": self.settings})

    # ------------------------------------------------------------ the wire
    def _send(self, message: dict[str, Any]) -> None:
        body = json.dumps({"jsonrpc": "2.0", **message}).encode()
        assert self.proc.stdin is not None
        with self.lock:
            self.proc.stdin.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
            self.proc.stdin.flush()

    def _read(self) -> None:
        out = self.proc.stdout
        assert out is not None
        while True:
            length = 0
            while (line := out.readline()) not in (b"\r\n", b""):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            if not line:
                return  # the server ended
            message = json.loads(out.read(length))
            if "id" in message and "method" in message:  # the server asks the client
                self._send({"id": message["id"], "result": self._answer(message)})
            elif "id" in message:
                self.answers.setdefault(message["id"], queue.Queue()).put(message)
            elif message.get("method") == "textDocument/publishDiagnostics":
                with self.changed:
                    self.published.setdefault(message["params"]["uri"], []).append(message["params"]["diagnostics"])
                    self.changed.notify_all()

    def _answer(self, message: dict[str, Any]) -> Any:
        if message["method"] == "workspace/configuration":
            return [self.settings.get(item.get("section", ""), {}) for item in message["params"]["items"]]
        return None  # registerCapability, workDoneProgress/create: accepted

    # ------------------------------------------------------------ the protocol
    def request(self, method: str, params: dict[str, Any], timeout: float = 20) -> Any:
        self.next_id += 1
        box = self.answers.setdefault(self.next_id, queue.Queue())
        self._send({"id": self.next_id, "method": method, "params": params})
        answer = box.get(timeout=timeout)
        if "error" in answer:
            raise RuntimeError(f"{method}: {answer['error']}")
        return answer.get("result")

    def notify(self, method: str, params: dict[str, Any]) -> None:
        self._send({"method": method, "params": params})

    def open(self, path: Path, text: str) -> str:
        uri = path.resolve().as_uri()
        self.versions[uri] = 1
        self._mark(uri)
        self.notify("textDocument/didOpen", {"textDocument": {"uri": uri, "languageId": "yaml", "version": 1, "text": text}})
        return uri

    def change(self, uri: str, text: str) -> None:
        """Replace the document's whole text, as an editor with full sync does."""
        self.versions[uri] += 1
        self._mark(uri)
        self.notify("textDocument/didChange", {"textDocument": {"uri": uri, "version": self.versions[uri]}, "contentChanges": [{"text": text}]})

    def _mark(self, uri: str) -> None:
        with self.changed:
            self.marks[uri] = len(self.published.get(uri, []))

    def diagnostics(self, uri: str, until: Callable[[list[dict[str, Any]]], bool], timeout: float = 15) -> list[dict[str, Any]]:
        """The first diagnostics published for `uri` since its last open or change that satisfy
        `until` (the server validates after each change, and again once its settings arrive);
        the last ones published when none do within `timeout` seconds."""
        end = time.monotonic() + timeout
        with self.changed:
            last: list[dict[str, Any]] = []
            while True:
                for diags in self.published.get(uri, [])[self.marks.get(uri, 0):]:
                    last = diags
                    if until(diags):
                        return diags
                left = end - time.monotonic()
                if left <= 0 or self.proc.poll() is not None:
                    return last
                self.changed.wait(left)

    def completion(self, uri: str, line: int, character: int) -> list[dict[str, Any]]:
        result = self.request("textDocument/completion", {"textDocument": {"uri": uri}, "position": {"line": line, "character": character}})
        return result.get("items", []) if isinstance(result, dict) else list(result or [])

    def close(self) -> None:
        try:
            self.request("shutdown", {}, timeout=5)
            self.notify("exit", {})
            self.proc.wait(timeout=5)
        except Exception:  # noqa: BLE001 - a server that does not end is ended
            self.proc.kill()
            self.proc.wait()
