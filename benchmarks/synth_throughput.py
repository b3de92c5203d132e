"""Documents per second through the OpenAI-compatible client against a loopback server.

The server answers every chat request after ``--latency`` seconds (as a remote model would);
the same requests are sent at concurrency 1 and 16. Prints docs/s for each and their ratio.

    python benchmarks/synth_throughput.py [--requests 256] [--latency 0.05]
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from alignpt.llm.base import GenRequest
from alignpt.llm.openai_compat import ChatClient
from alignpt.suite.schema import load_suite
from alignpt.synth.forms import instruction


def serve(latency: float) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_POST(self):
            self.rfile.read(int(self.headers["Content-Length"]))
            time.sleep(latency)
            raw = json.dumps({"choices": [{"message": {"content": "A document. " * 200}}],
                              "usage": {"prompt_tokens": 300, "completion_tokens": 400}}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=256)
    parser.add_argument("--latency", type=float, default=0.05)
    args = parser.parse_args()
    items = load_suite("bundled").items
    requests = [GenRequest(f"r{i}", instruction(items[i % len(items)], "aligned", "blog_post"))
                for i in range(args.requests)]
    httpd = serve(args.latency)
    url = f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    rates = {}
    for concurrency in (1, 16):
        client = ChatClient(url, model="bench", concurrency=concurrency)
        start = time.perf_counter()
        results = client.generate(requests)
        assert all(r.text for r in results)
        rates[concurrency] = len(requests) / (time.perf_counter() - start)
    httpd.shutdown()
    print(f"requests={args.requests} server_latency_s={args.latency}")
    print(f"docs_per_s_concurrency_1={rates[1]:.1f} docs_per_s_concurrency_16={rates[16]:.1f} "
          f"ratio={rates[16] / rates[1]:.1f}")


if __name__ == "__main__":
    main()
