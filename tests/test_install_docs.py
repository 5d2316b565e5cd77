"""The install page says how to get the CPU build of torch, and CI installs it where there is no GPU (issue 31
item 17: the default install pulled the 3.4 GB CUDA build onto CPU-only machines without a word)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CPU = "pip install torch torchvision --index-url https://download.pytorch.org/whl/cpu"


def _blocks(text: str) -> list[str]:
    return re.findall(r"```bash\n(.*?)```", text, re.S)


def test_the_install_page_installs_the_cpu_build_before_cachesearch() -> None:
    text = (ROOT / "docs" / "install.md").read_text(encoding="utf-8")
    block = next(b for b in _blocks(text) if CPU in b)
    lines = [line.strip() for line in block.splitlines() if line.strip()]
    assert lines.index(CPU) < next(i for i, line in enumerate(lines) if 'pip install -e ".[search]"' in line)


def test_ci_installs_the_cpu_build_when_there_is_no_gpu() -> None:
    script = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "command -v nvidia-smi" in script and CPU in script
    assert script.index(CPU) < script.index('pip install -e ".[dev]"')
