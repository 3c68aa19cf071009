"""A stand-in Kubeflow Pipelines API on 127.0.0.1: the v2beta1 endpoints ``pipeline.py submit``
calls, answered from memory, every request recorded (method, path, query, headers, body), so
the tests drive kfp.Client through a real HTTP round trip."""

from __future__ import annotations

import json
import threading
import uuid
from email import policy
from email.parser import BytesParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


class FakeKfp:
    """The server's state: pipelines, versions, experiments, runs, and the requests seen."""

    def __init__(self, tag_name: str = "2.17.0") -> None:
        self.tag_name = tag_name
        self.requests: list[dict] = []
        self.pipelines: dict[str, dict] = {}
        self.versions: dict[str, list[dict]] = {}
        self.experiments: dict[str, dict] = {}
        self.runs: list[dict] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # quiet
                pass

            def _reply(self, body: dict, status: int = 200) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _record(self, body: bytes) -> tuple[str, dict]:
                url = urlsplit(self.path)
                query = {k: v[0] for k, v in parse_qs(url.query).items()}
                fake.requests.append(
                    {
                        "method": self.command,
                        "path": url.path,
                        "query": query,
                        "headers": {k.lower(): v for k, v in self.headers.items()},
                        "body": body,
                    }
                )
                return url.path, query

            def do_GET(self) -> None:
                path, query = self._record(b"")
                if path == "/apis/v2beta1/healthz":
                    return self._reply({"multi_user": False, "tag_name": fake.tag_name})
                if path == "/apis/v2beta1/experiments":
                    name = json.loads(query.get("filter", "{}") or "{}")
                    wanted = [p.get("string_value") or p.get("stringValue")
                              for p in name.get("predicates", [])]  # fmt: skip
                    found = [e for e in fake.experiments.values() if e["display_name"] in wanted]
                    return self._reply({"experiments": found, "total_size": len(found)})
                if path == "/apis/v2beta1/pipelines":
                    flt = json.loads(query.get("filter", "{}") or "{}")
                    wanted = [p.get("string_value") or p.get("stringValue")
                              for p in flt.get("predicates", [])]  # fmt: skip
                    found = [p for p in fake.pipelines.values() if p["display_name"] in wanted]
                    return self._reply({"pipelines": found, "total_size": len(found)})
                if path.startswith("/apis/v2beta1/pipelines/") and path.endswith("/versions"):
                    pid = path.split("/")[4]
                    versions = fake.versions.get(pid, [])
                    return self._reply({"pipeline_versions": versions, "total_size": len(versions)})
                return self._reply({"error": f"not here: {path}"}, 404)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                path, query = self._record(body)
                if path == "/apis/v2beta1/experiments":
                    doc = json.loads(body)
                    doc["experiment_id"] = uuid.uuid4().hex
                    fake.experiments[doc["experiment_id"]] = doc
                    return self._reply(doc)
                if path == "/apis/v2beta1/pipelines/upload":
                    self._file(body)
                    pid = uuid.uuid4().hex
                    fake.pipelines[pid] = {"pipeline_id": pid, "display_name": query["name"]}
                    fake.versions[pid] = [{"pipeline_id": pid, "pipeline_version_id": uuid.uuid4().hex,
                                           "display_name": query["name"]}]  # fmt: skip
                    return self._reply(fake.pipelines[pid])
                if path == "/apis/v2beta1/pipelines/upload_version":
                    self._file(body)
                    pid = query["pipelineid"]
                    version = {"pipeline_id": pid, "pipeline_version_id": uuid.uuid4().hex,
                               "display_name": query["name"]}  # fmt: skip
                    fake.versions[pid].append(version)
                    return self._reply(version)
                if path == "/apis/v2beta1/runs":
                    doc = json.loads(body)
                    doc["run_id"] = uuid.uuid4().hex
                    fake.runs.append(doc)
                    return self._reply(doc)
                return self._reply({"error": f"not here: {path}"}, 404)

            def _file(self, body: bytes) -> bytes:
                """The uploaded file of a multipart body (checked to be the pipeline YAML)."""
                head = f"Content-Type: {self.headers['Content-Type']}\r\n\r\n".encode()
                message = BytesParser(policy=policy.default).parsebytes(head + body)
                (data,) = [
                    part.get_payload(decode=True)
                    for part in message.iter_parts()
                    if part.get_param("name", header="content-disposition") == "uploadfile"
                ]
                assert b"pipelineInfo" in data
                return data

        return Handler


if __name__ == "__main__":  # python -m tests.fake_kfp: serve until killed, the URL on stdout
    import time

    fake = FakeKfp()
    print(fake.url, flush=True)
    while True:
        time.sleep(3600)
