"""Write docs/cli.md from the ``cachesearch`` command itself (every command, argument, option, default and help).

The page is generated so that it cannot drift from the code: ``tests/docs/test_generated_pages.py`` fails when the
committed page differs from what this script writes. Run ``python docs/gen_cli.py`` after changing a command.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

DOCS = Path(__file__).resolve().parent
OUT = DOCS / "cli.md"

INTRO = """# CLI reference

Generated from the `cachesearch` command by `docs/gen_cli.py` (do not edit by hand; `python docs/gen_cli.py`
rewrites it). `cachesearch COMMAND --help` prints the same.

**Model specs** (`--model`): `embedded` (the default, = `embedded:shapes`), `embedded:scenes`,
`embedded:shapes-flux` (the shipped, trained [embedded models](models/index.md)); `arch:sd15`, `arch:sdxl`,
`arch:flux`, `arch:sd3`, `arch:pixart-sigma` (published architectures with random weights, for latency work only:
quality numbers are never reported for them), `arch:wan2.1-tiny`, `arch:wan2.2-a14b-tiny` (tiny random-weight
video pipelines); `arch:wan2.1-1.3b`, `arch:wan2.1-14b`, `arch:wan2.2-5b`, `arch:wan2.2-a14b`, `arch:qwen-image`,
`arch:flux2-dev`, `arch:hunyuanvideo`, `arch:ltx-video`, `arch:cogvideox-5b`, `arch:z-image`, `arch:sana`,
`arch:hidream` (published denoiser configurations on the meta device, for `cachesearch blocks` cost tables only);
a local diffusers pipeline folder; or a hub id already in the local Hugging Face cache (nothing
is downloaded: an uncached id gives an error that says how to get it).

The embedded models' trainers are not installed with the package (there is no `train-embedded` command): they are
the repository's `training/` scripts, `python -m training.shapes --out DIR` from a clone (see
[the embedded models](models/index.md#training)).
"""


def _cell(text: Any) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def _default(param: Any) -> str:
    if param.required or param.default is None or getattr(param, "is_flag", False) and param.default is False:
        return ""
    value = param.default
    if isinstance(value, (list, tuple)):
        return ", ".join(map(str, value)) if value else ""
    return f"`{value}`"


def _params(command: Any) -> list[str]:
    rows = []
    for p in command.params:
        if p.name == "help":
            continue
        if p.param_type_name == "argument":
            name = f"`{p.metavar or p.name.upper()}`"
        else:
            name = " / ".join(f"`{o}`" for o in [*p.opts, *p.secondary_opts])
        help_text = getattr(p, "help", "") or ""
        default = "" if "Default" in help_text else _default(p)
        rows.append(f"| {name} | {_cell(help_text)} | {default} |")
    if not rows:
        return []
    return ["| argument / option | meaning | default |", "|---|---|---|", *rows]


def render() -> str:
    """The page's markdown."""
    import typer

    from cachesearch.cli import app

    group = typer.main.get_command(app)
    out = [INTRO]
    for name in sorted(group.commands):
        command = group.commands[name]
        help_text = (command.help or "").strip()
        out += [f"## `cachesearch {name}`", "", " ".join(help_text.split()), ""]
        out += _params(command) + [""]
    return "\n".join(out).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    """Write the page (``--check``: only say whether the committed one is current; exit code 1 if not)."""
    text = render()
    if argv is None:
        argv = sys.argv[1:]
    if "--check" in argv:
        current = OUT.read_text(encoding="utf-8") if OUT.exists() else ""
        print("docs/cli.md is current" if current == text else "docs/cli.md is stale: run python docs/gen_cli.py")
        return 0 if current == text else 1
    OUT.write_text(text, encoding="utf-8")
    print(f"wrote {OUT.relative_to(DOCS.parent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
