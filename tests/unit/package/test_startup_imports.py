"""What a server process imports to start: the heavy packages only it needs are left out.

Every `serve` worker, `memanto-server worker` and admin command imports the app, so what the
app imports at start-up is paid by each of them.
"""

from __future__ import annotations

import subprocess
import sys

SERVE = "import memanto_server.cli.server, memanto_server.main, memanto_server.lifespan"


def test_a_server_without_an_embedder_imports_neither_numpy_nor_the_mcp_sdk_nor_onnx() -> None:
    script = f"import sys; {SERVE}; print(*sorted({{'numpy', 'mcp', 'onnx', 'onnxruntime'}} & set(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == []
