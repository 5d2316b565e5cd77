"""``--executor ray --address`` that cannot work fails in one line before the model loads (issue 31 item 2), and
a local cluster gets its own token in the environment (item 7: no "Token authentication is enabled" line;
item 15: no ~/.ray/auth_token left). Only loopback addresses are used; nothing listens on port 1."""

from __future__ import annotations

import os
import time

import pytest
from typer.testing import CliRunner

import cachesearch.evaluate
from cachesearch.cli import app
from cachesearch.search import ray_address
from cachesearch.search.executors.ray_cluster import own_token

runner = CliRunner()


@pytest.fixture
def no_model(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*a, **k):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(cachesearch.evaluate, "Evaluator", refuse)


def _run(tmp_path, address: str) -> tuple[int, str, float]:
    t0 = time.monotonic()
    result = runner.invoke(app, ["run", "--executor", "ray", "--address", address, "--out", str(tmp_path / "runs"),
                                 "--cache-dir", str(tmp_path / "cache"), "-q"], env={"COLUMNS": "250"})
    return result.exit_code, result.output.strip(), time.monotonic() - t0


def test_nothing_listening_is_one_line_at_once(tmp_path, no_model) -> None:
    code, text, seconds = _run(tmp_path, "127.0.0.1:1")
    assert code == 2 and "\n" not in text, text
    assert text == ("error: --address 127.0.0.1:1: nothing answers at 127.0.0.1:1 (Connection refused); start the "
                    "cluster first (`ray start --head` on that host) or leave --address out to start a local Ray")
    assert seconds < 60 and not (tmp_path / "runs").exists()


def test_a_malformed_address_names_the_forms(tmp_path, no_model) -> None:
    code, text, _ = _run(tmp_path, "nonsense")
    assert code == 2
    assert text == ("error: --address 'nonsense': expected auto, HOST:PORT (a running cluster's address, e.g. "
                    "10.0.0.5:6379) or ray://HOST:PORT (Ray Client, e.g. ray://10.0.0.5:10001)")


def test_a_ray_client_address_without_ray_client_says_how_to_get_it(tmp_path, no_model, monkeypatch) -> None:
    monkeypatch.setattr(ray_address, "ray_client_installed", lambda: False)
    code, text, _ = _run(tmp_path, "ray://127.0.0.1:10001")
    assert code == 2
    assert text.startswith("error: --address ray://127.0.0.1:10001: a ray:// address needs Ray Client: pip install "
                           "'ray[client]'"), text


def test_a_ray_client_address_where_nothing_listens(tmp_path, no_model) -> None:
    pytest.importorskip("grpc")  # the [search] extra installs ray[client]
    code, text, _ = _run(tmp_path, "ray://127.0.0.1:1")
    assert code == 2 and text.startswith("error: --address ray://127.0.0.1:1: nothing answers at 127.0.0.1:1"), text


def test_a_local_cluster_gets_its_own_token_and_a_users_setting_is_kept(monkeypatch) -> None:
    for var in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"):
        monkeypatch.delenv(var, raising=False)
    own_token()
    assert os.environ["RAY_AUTH_MODE"] == "token" and len(os.environ["RAY_AUTH_TOKEN"]) == 64
    token = os.environ["RAY_AUTH_TOKEN"]
    own_token()
    assert os.environ["RAY_AUTH_TOKEN"] == token
    monkeypatch.delenv("RAY_AUTH_TOKEN")
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    own_token()
    assert os.environ["RAY_AUTH_MODE"] == "disabled" and "RAY_AUTH_TOKEN" not in os.environ
