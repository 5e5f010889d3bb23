"""``python -m fleetcache``: every subcommand run for real, with tiny parameters, on real Redis."""

from __future__ import annotations

import json
import math
import socket
import statistics
import sys
from typing import Any

import orjson
import pytest
import redis

from fleetcache import MISS, Cache
from fleetcache.__main__ import main
from fleetcache.cli import BENCHES, COMMANDS, build_parser
from fleetcache.cli.common import format_table, local_redis, percentile
from fleetcache.cli.fake_llm import sized_completion
from fleetcache.cli.stampede_worker import LOCKS
from fleetcache.testing import RedisNode

REQ = {"model": "m", "messages": [{"role": "user", "content": "cli"}], "temperature": 0}


def run_json(capsys: pytest.CaptureFixture[str], argv: list[str]) -> tuple[int, Any]:
    """Run the CLI with ``--json`` and return (exit status, the parsed JSON)."""
    status = main([*argv, "--json"])
    return status, json.loads(capsys.readouterr().out)


def cli(command: str, url: str, options: str = "") -> list[str]:
    """The argv of ``command`` against ``url`` with space-separated ``options``."""
    return [*command.split(), "--redis", url, *options.split()]


def table_row(text: str, label: str) -> list[str]:
    """The cells after ``label`` on the table line that starts with it."""
    for line in text.splitlines():
        if line.startswith(label):
            return line[len(label) :].split()
    raise AssertionError(f"no row {label!r} in:\n{text}")


def dead_url() -> str:
    """A URL on a loopback port where nothing listens."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"redis://127.0.0.1:{port}/0"


def test_parser_has_every_registered_command() -> None:
    """Each registry entry becomes a subcommand bound to its module's runner."""
    parser = build_parser()
    for name in COMMANDS:
        args = parser.parse_args(
            [name, "--redis", "redis://127.0.0.1:1/0", "--namespace", "x"]
            if name in ("stats", "invalidate", "purge")
            else [name, "--redis", "redis://127.0.0.1:1/0"]
        )
        assert callable(args._run)
    for name in BENCHES:
        assert callable(parser.parse_args(["bench", name])._run)
    assert set(LOCKS) >= {"setnx", "fenced"}


def port_closed(url: str) -> bool:
    """Whether nothing listens any more at the host:port of the http ``url``."""
    host, port = url.split("//", 1)[1].split("/", 1)[0].rsplit(":", 1)
    with socket.socket() as sock:
        return sock.connect_ex((host, int(port))) != 0


def test_demo_makes_one_call_per_prompt(
    redis_node: RedisNode, capsys: pytest.CaptureFixture[str]
) -> None:
    """Through fleetcache, the LLM server counts exactly one call per distinct prompt asked."""
    status, out = run_json(
        capsys,
        cli(
            "demo",
            redis_node.url,
            "--workers 2 --threads 2 --requests 24 --prompts 3 --latency 0.05",
        ),
    )
    assert status == 0
    assert out["requests"] == 24
    assert out["errors"] == out["wrong_values"] == out["workers_failed"] == 0
    assert 1 <= out["distinct_prompts_asked"] <= 3
    assert out["upstream_calls"] == out["distinct_prompts_asked"]  # the server's count
    assert out["duplicate_upstream_calls"] == 0
    assert out["calls_saved"] == 24 - out["upstream_calls"]
    # The clients agree: each prompt asked was fetched by exactly one of them.
    assert out["calls_per_prompt"] == dict.fromkeys(out["calls_per_prompt"], 1)
    assert len(out["calls_per_prompt"]) == out["distinct_prompts_asked"]
    assert out["conclusion"] == "fleetcache: 0 duplicate upstream calls"
    assert port_closed(out["llm_server"])  # the demo stopped its LLM server
    client = redis_node.client()
    leftovers = [*client.scan_iter(f"fc:{out['namespace']}:*")]
    leftovers += [*client.scan_iter(f"fcdemo:{out['namespace']}:*")]
    client.close()
    assert leftovers == []  # the demo cleans up after itself


def test_demo_compare_shows_naive_duplicates(
    redis_node: RedisNode, capsys: pytest.CaptureFixture[str]
) -> None:
    """--compare: naive duplicates server calls, fleetcache makes none; the last line says so."""
    status = main(
        cli(
            "demo",
            redis_node.url,
            "--workers 2 --threads 2 --requests 8 --prompts 1 --latency 0.2 --compare",
        )
    )
    text = capsys.readouterr().out
    assert status == 0
    assert table_row(text, "requests") == ["8", "8"]
    assert table_row(text, "distinct prompts asked") == ["1", "1"]
    assert table_row(text, "wrong values") == ["0", "0"]
    fleet, naive = (int(x) for x in table_row(text, "duplicate upstream calls"))
    assert fleet == 0
    assert naive >= 1  # 4 callers start together on one missing prompt
    calls = [int(x) for x in table_row(text, "upstream calls (server count)")]
    assert calls == [1, 1 + naive]
    assert text.rstrip().splitlines()[-1] == (
        f"naive: {naive} duplicate upstream call{'' if naive == 1 else 's'}; fleetcache: 0"
    )


def test_demo_without_the_openai_sdk(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without the OpenAI SDK the demo exits 1 with an install hint, no traceback, no I/O."""
    monkeypatch.setitem(sys.modules, "openai", None)  # `import openai` raises ImportError
    assert main(["demo", "--redis", dead_url()]) == 1
    captured = capsys.readouterr()
    assert captured.err.strip() == (
        "the demo needs the OpenAI SDK: pip install 'fleetcache[openai]'"
    )
    assert "Traceback" not in captured.out + captured.err


@pytest.mark.parametrize("lock", sorted(LOCKS))
def test_bench_stampede_one_call_per_round(
    redis_node: RedisNode, capsys: pytest.CaptureFixture[str], lock: str
) -> None:
    """Every round of the stampede bench makes one upstream call and gives equal values."""
    status, out = run_json(
        capsys,
        cli(
            "bench stampede",
            redis_node.url,
            f"--processes 2 --threads 2 --rounds 2 --upstream 0.05 --lock {lock}",
        ),
    )
    assert status == 0
    assert out["rounds_with_one_call"] == 2
    assert [rd["upstream_calls"] for rd in out["rounds"]] == [1, 1]
    assert out["all_values_equal"]
    assert out["errors"] == 0
    assert all(rd["callers"] == 4 for rd in out["rounds"])
    assert out["overhead_p99_s"] < 5.0


def test_bench_stampede_table(redis_node: RedisNode, capsys: pytest.CaptureFixture[str]) -> None:
    """The human-readable stampede report shows the per-round and overall tables."""
    status = main(
        cli(
            "bench stampede", redis_node.url, "--processes 1 --threads 2 --rounds 1 --upstream 0.02"
        )
    )
    text = capsys.readouterr().out
    assert status == 0
    assert table_row(text, "rounds with exactly 1 upstream call") == ["1/1"]
    assert "follower overhead p99" in text


HIT_SERIES = ["fleetcache get", "fleetcache get_or_set", "raw GET + orjson.loads"]


def test_bench_hit_one_round_trip(
    redis_node: RedisNode, capsys: pytest.CaptureFixture[str]
) -> None:
    """A hit is one client round trip and one server GET, returns the cached value, and the
    reported medians and ratios are those of the rounds it ran."""
    status, out = run_json(
        capsys,
        cli("bench hit", redis_node.url, "--rounds 3 --ops 50 --value-size 500"),
    )
    assert status == 0
    assert out["wrong_values"] == 0
    assert out["config"] == {
        "rounds": 3,
        "ops": 50,
        "value_size": 500,
        "value_json_bytes": len(orjson.dumps(sized_completion(500))),
        "freshness": False,
    }
    # Exactly one exchange per hit over rounds x ops hits: every op ran, none retried.
    for name in HIT_SERIES:
        assert out["round_trips_per_hit"][name] == 1.0
        # At least one GET per hit counted (rounds x ops): every op ran.  Above 1 only by
        # noise: other clients of the shared node could add GETs, never remove any.
        assert 1.0 <= out["server_commands_per_hit"][name]["get"] <= 1.05
    rounds = out["rounds"]
    # 3 rounds, the order rotating: each series goes first once; with 3 rounds a median
    # is not a mean, so the checks below tell the two apart.
    assert [(rd["round"], rd["first"]) for rd in rounds] == list(enumerate(HIT_SERIES, 1))
    medians = out["median_op_s"]
    assert set(medians) == set(HIT_SERIES)
    for name in HIT_SERIES:
        per_round = [rd[name] for rd in rounds]  # ops/s of the round
        assert all(math.isfinite(x) and x > 0 for x in per_round), per_round
        assert math.isfinite(medians[name])
        assert medians[name] > 0
        assert medians[name] == pytest.approx(statistics.median(1 / x for x in per_round), rel=1e-9)
    raw = medians[HIT_SERIES[2]]
    assert out["ratio_get_vs_raw"] == pytest.approx(medians[HIT_SERIES[0]] / raw, rel=1e-12)
    assert out["ratio_get_or_set_vs_raw"] == pytest.approx(medians[HIT_SERIES[1]] / raw, rel=1e-12)


def test_stats_counts_entries_and_generations(
    r: redis.Redis, redis_node: RedisNode, capsys: pytest.CaptureFixture[str]
) -> None:
    """stats counts a namespace's entries; after invalidate they move to an older generation."""
    with Cache(r, namespace="cli-stats") as cache:
        for i in range(3):
            assert cache.set({**REQ, "i": i}, {"answer": i})
    status, out = run_json(capsys, ["stats", "--redis", redis_node.url, "--namespace", "cli-stats"])
    assert status == 0
    entries = out["kinds"]["entries"]
    assert (entries["current_generation"], entries["older_generations"]) == (3, 0)
    assert 0 < entries["ttl_min_s"] <= entries["ttl_max_s"] <= 3600
    assert out["kinds"]["generation key"]["current_generation"] == 1

    status, inv = run_json(
        capsys, ["invalidate", "--redis", redis_node.url, "--namespace", "cli-stats"]
    )
    assert status == 0
    assert inv["new_generation"] > inv["old_generation"] == out["generation"]
    status, out = run_json(capsys, ["stats", "--redis", redis_node.url, "--namespace", "cli-stats"])
    entries = out["kinds"]["entries"]
    assert (entries["current_generation"], entries["older_generations"]) == (0, 3)
    assert out["generation"] == inv["new_generation"]


def test_stats_flags_a_key_without_ttl(
    r: redis.Redis, redis_node: RedisNode, capsys: pytest.CaptureFixture[str]
) -> None:
    """stats exits 1 and warns when a key of the namespace has no TTL."""
    r.set("fc:cli-nottl:7:{" + "0" * 64 + "}", b"x")
    status = main(["stats", "--redis", redis_node.url, "--namespace", "cli-nottl"])
    text = capsys.readouterr().out
    assert status == 1
    assert "1 key(s) without a TTL" in text
    assert table_row(text, "entries")[:2] == ["0", "1"]  # generation 7 is not current


def test_invalidate_makes_entries_unreachable(
    r: redis.Redis, redis_node: RedisNode, capsys: pytest.CaptureFixture[str]
) -> None:
    """After the invalidate command a new cache of the namespace finds nothing."""
    with Cache(r, namespace="cli-inv") as cache:
        assert cache.set(REQ, "old")
        assert cache.get(REQ) == "old"
    assert main(["invalidate", "--redis", redis_node.url, "--namespace", "cli-inv"]) == 0
    assert "invalidated: generation" in capsys.readouterr().out
    with Cache(r, namespace="cli-inv") as cache:
        assert cache.get(REQ) is MISS


def test_invalidate_rejects_a_bad_namespace(capsys: pytest.CaptureFixture[str]) -> None:
    """A namespace that cannot be a key component is refused before any I/O (status 2)."""
    assert main(["invalidate", "--redis", dead_url(), "--namespace", "a b*"]) == 2


def test_local_redis_is_stopped_afterwards() -> None:
    """The throwaway Redis of commands run without --redis answers, then its port closes."""
    with local_redis() as url:
        client = redis.Redis.from_url(url, socket_timeout=2)
        assert client.ping()
        client.close()
        port = int(url.rsplit(":", 1)[1].split("/")[0])
    with socket.socket() as sock:
        assert sock.connect_ex(("127.0.0.1", port)) != 0


def test_helpers_percentile_and_table() -> None:
    """percentile interpolates linearly; format_table aligns columns."""
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5
    assert percentile([5.0], 99) == 5.0
    assert format_table(["a", "bb"], [["x", 1], ["yy", 22]]).splitlines() == [
        "a   bb",
        "--  --",
        "x    1",
        "yy  22",
    ]
