"""``bench lock``, ``bench stampede --async / --lock redlock`` and ``bench hit --async``.

Every bench runs for real on real Redis with tiny parameters; the assertions read its
``--json`` output.
"""

from __future__ import annotations

import importlib.util
import json
import math
import random
import socket
import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis

from fleetcache.__main__ import main
from fleetcache.cli import BENCHES
from fleetcache.cli.fake_llm import sized_completion
from fleetcache.cli.fresh_worker import VARIANTS, Zipf
from fleetcache.cli.lock_series import round_order
from fleetcache.cli.lock_worker import fence_inversions
from fleetcache.cli.locks import parse_counts
from fleetcache.cli.stampede_worker import LOCKS
from fleetcache.testing import RedisNode

NodeFactory = Callable[..., list[RedisNode]]


def run_json(capsys: pytest.CaptureFixture[str], argv: list[str]) -> tuple[int, Any]:
    """Run the CLI with ``--json`` and return (exit status, the parsed JSON)."""
    status = main([*argv, "--json"])
    return status, json.loads(capsys.readouterr().out)


def cli(command: str, url: str, options: str = "") -> list[str]:
    """The argv of ``command`` against ``url`` with space-separated ``options``."""
    return [*command.split(), "--redis", url, *options.split()]


def leftovers(url: str, *patterns: str) -> list[bytes]:
    """Keys matching ``patterns`` on the node at ``url``."""
    client = redis.Redis.from_url(url, socket_timeout=2)
    try:
        return [k for p in patterns for k in client.scan_iter(match=p)]
    finally:
        client.close()


def dead_url() -> str:
    """A URL on a loopback port where nothing listens."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"redis://127.0.0.1:{port}/0"


def test_registries_list_the_new_benches() -> None:
    """bench lock is registered and --lock offers redlock to the stampede bench."""
    assert BENCHES["lock"] == "fleetcache.cli.bench_lock"
    assert set(LOCKS) == {"setnx", "fenced", "redlock"}


def test_helpers_order_counts_and_fences() -> None:
    """Round order rotates and alternates; counts parse; fence inversions are counted."""
    names = ["a", "b", "c"]
    assert [round_order(names, i) for i in range(3)] == [
        ["a", "b", "c"],
        ["a", "c", "b"],
        ["c", "a", "b"],
    ]
    assert parse_counts("5,3,3") == [3, 5]
    assert parse_counts("0") == parse_counts("none") == []
    with pytest.raises(ValueError, match="node counts"):
        parse_counts("3,-1")
    assert fence_inversions([1, 2, 5, 9]) == 0
    assert fence_inversions([1, 3, 3, 2]) == 2


def test_bench_lock_times_every_backend_and_contends_safely(
    redis_node: RedisNode, make_nodes: NodeFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every series runs against raw; contended runs see one holder at a time and rising fences."""
    nodes = make_nodes(3)
    urls = ",".join(n.url for n in nodes)
    status, out = run_json(
        capsys,
        cli(
            "bench lock",
            redis_node.url,
            f"--rounds 2 --ops 20 --redlock 3 --redlock-urls {urls} --try-acquire "
            "--contended-processes 2 --contended-seconds 0.5",
        ),
    )
    assert status == 0
    series = {s["series"]: s for s in out["uncontended"]["series"]}
    expected = {
        "raw SET NX + EVALSHA del",
        "setnx acquire",
        "fenced acquire",
        "setnx try_acquire",
        "fenced try_acquire",
        "python-redis-lock adapter",
        "redis-py Lock",
        "Redlock x3 acquire",
        "Redlock x3 try_acquire",
    }
    if importlib.util.find_spec("pottery") is not None:
        expected.add("pottery Redlock x3")
    assert set(series) == expected
    assert series["raw SET NX + EVALSHA del"]["ratio_vs_raw"] == 1.0
    assert series["setnx acquire"]["target"] == 1.1
    assert series["Redlock x3 acquire"]["target"] == 1.5
    assert series["Redlock x3 acquire"]["nodes"] == 3
    for s in series.values():
        assert s["median_op_s"] > 0
        assert len(s["per_round_op_s"]) == 2
    runs = {c["backend"]: c for c in out["contended"]}
    assert set(runs) == {"setnx", "fenced", "redlock"}
    for run in runs.values():
        assert run["acquisitions"] > 0
        assert run["violations"] == run["errors"] == run["occupancy_after"] == 0
        assert run["fences_recorded"] == run["acquisitions"]
        assert len(run["per_process"]) == 2
    assert runs["setnx"]["fences_increasing"] is None
    assert runs["fenced"]["fences_increasing"] is True
    assert runs["redlock"]["fences_increasing"] is True
    assert runs["redlock"]["nodes"] == 3
    ns = out["namespace"]
    for node in [redis_node, *nodes]:
        assert leftovers(node.url, f"*fcbench:{ns}:*") == []


def test_bench_lock_starts_its_own_redlock_nodes(
    redis_node: RedisNode, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without --redlock-urls the bench starts throwaway nodes for each Redlock size."""
    status, out = run_json(
        capsys,
        cli(
            "bench lock",
            redis_node.url,
            "--rounds 1 --ops 10 --redlock 1,3 --contended-seconds 0",
        ),
    )
    assert status == 0
    names = [s["series"] for s in out["uncontended"]["series"]]
    assert "Redlock x1 acquire" in names
    assert "Redlock x3 acquire" in names
    assert not any("try_acquire" in n for n in names)
    assert out["contended"] == []


@pytest.mark.parametrize(
    "options",
    [
        "--redlock x",
        "--redlock 3,-5",
        "--redlock 3 --redlock-urls redis://127.0.0.1:1/0",
        "--contended-backends nope",
        "--ops 0",
    ],
)
def test_bench_lock_rejects_bad_options(capsys: pytest.CaptureFixture[str], options: str) -> None:
    """Bad options exit with status 2 before any Redis is touched."""
    assert main(cli("bench lock", dead_url(), options)) == 2


@pytest.mark.parametrize("lock", ["setnx", "fenced"])
def test_bench_stampede_async_one_call_per_round(
    redis_node: RedisNode, capsys: pytest.CaptureFixture[str], lock: str
) -> None:
    """With --async, every round of event-loop tasks makes one upstream call, equal values."""
    status, out = run_json(
        capsys,
        cli(
            "bench stampede",
            redis_node.url,
            f"--async --processes 2 --tasks 4 --rounds 2 --upstream 0.05 --lock {lock}",
        ),
    )
    assert status == 0
    assert out["config"]["async"] is True
    assert out["config"]["threads"] == 4
    assert [rd["upstream_calls"] for rd in out["rounds"]] == [1, 1]
    assert all(rd["callers"] == 8 for rd in out["rounds"])
    assert out["all_values_equal"]
    assert out["errors"] == 0


@pytest.mark.parametrize("mode", ["threads", "async"])
def test_bench_stampede_redlock_on_given_nodes(
    redis_node: RedisNode,
    make_nodes: NodeFactory,
    capsys: pytest.CaptureFixture[str],
    mode: str,
) -> None:
    """--lock redlock --lock-urls runs the lock on those nodes and cleans its keys up."""
    nodes = make_nodes(3)
    urls = ",".join(n.url for n in nodes)
    flags = "--async --tasks 3" if mode == "async" else "--threads 2"
    status, out = run_json(
        capsys,
        cli(
            "bench stampede",
            redis_node.url,
            f"{flags} --processes 2 --rounds 2 --upstream 0.05 --lock redlock --lock-urls {urls}",
        ),
    )
    assert status == 0
    assert out["config"]["lock"] == "redlock"
    assert out["config"]["lock_nodes"] == 3
    assert out["rounds_with_one_call"] == 2
    assert out["all_values_equal"]
    assert out["errors"] == 0
    for node in nodes:
        assert leftovers(node.url, "fc:bench-stampede-*") == []


HIT_SERIES = ["fleetcache get", "fleetcache get_or_set", "raw GET + orjson.loads"]


@pytest.mark.parametrize("concurrency", [16, 150])
def test_bench_hit_async_is_one_get_per_hit(
    redis_node: RedisNode, capsys: pytest.CaptureFixture[str], concurrency: int
) -> None:
    """AsyncCache hits return the cached value with one server GET each, at a concurrency,
    and the reported medians and ratios are those of the rounds it ran."""
    status, out = run_json(
        capsys,
        cli(
            "bench hit",
            redis_node.url,
            f"--async --rounds 3 --ops 300 --concurrency {concurrency} --value-size 500",
        ),
    )
    assert status == 0
    assert out["wrong_values"] == 0  # past 100 tasks too: the pools are sized to match
    assert out["config"] == {
        "async": True,
        "rounds": 3,
        "ops": 300,
        "concurrency": concurrency,
        "value_size": 500,
        "value_json_bytes": len(orjson.dumps(sized_completion(500))),
        "freshness": False,
    }
    rounds = out["rounds"]
    # 3 rounds, the order rotating: each series goes first once; with 3 rounds a median
    # is not a mean, so the checks below tell the two apart.
    assert [(rd["round"], rd["first"]) for rd in rounds] == list(enumerate(HIT_SERIES, 1))
    medians = out["median_ops_per_s"]
    assert set(medians) == set(HIT_SERIES)
    for name in HIT_SERIES:
        # At least one GET per hit counted (rounds x ops): every op ran.  Above 1 only by
        # noise: other clients of the shared node could add GETs, never remove any.
        assert 1.0 <= out["server_commands_per_hit"][name]["get"] <= 1.05
        per_round = [rd[name] for rd in rounds]
        assert all(math.isfinite(x) and x > 0 for x in per_round), per_round
        assert math.isfinite(medians[name])
        assert medians[name] > 0
        assert medians[name] == pytest.approx(statistics.median(per_round), rel=1e-12)
    raw = medians[HIT_SERIES[2]]
    assert out["ratio_get_vs_raw"] == pytest.approx(medians[HIT_SERIES[0]] / raw, rel=1e-12)
    assert out["ratio_get_or_set_vs_raw"] == pytest.approx(medians[HIT_SERIES[1]] / raw, rel=1e-12)
    assert out["target_ratio"] == 0.85


def test_zipf_sampler_matches_its_distribution() -> None:
    """The Zipf sampler draws ranks 1..N with frequencies close to k^-s / H(N, s)."""
    zipf = Zipf(50, 1.1)
    assert math.fsum(zipf.probability(k) for k in range(1, 51)) == pytest.approx(1.0)
    assert zipf.probability(1) / zipf.probability(2) == pytest.approx(2**1.1)
    rng = random.Random(3)
    draws = [zipf.sample(rng) for _ in range(40_000)]
    assert min(draws) == 1
    assert max(draws) <= 50
    for k in (1, 2, 10):
        assert draws.count(k) / len(draws) == pytest.approx(zipf.probability(k), abs=0.01)


def test_bench_fresh_compares_plain_swr_xfetch_and_both(
    redis_node: RedisNode, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """bench fresh reports every variant, consistently: plain misses, SWR stale, XFetch early."""
    plot = tmp_path / "fresh.png"
    with_plot = importlib.util.find_spec("matplotlib") is not None
    options = "--processes 2 --threads 2 --prompts 50 --ttl 1 --upstream 0.05 --duration 4 "
    options += "--warmup 1.5 --seed 7" + (f" --plot {plot}" if with_plot else "")
    status, out = run_json(capsys, cli("bench fresh", redis_node.url, options))
    assert status == 0
    assert out["config"]["variants"] == list(VARIANTS)
    assert out["config"]["seed"] == 7
    assert out["config"]["stale_ttl_s"] == 1.0
    vs = {v["variant"]: v for v in out["variants"]}
    assert list(vs) == list(VARIANTS)
    counters = [
        "calls", "visible_misses", "cache_misses", "cache_hits", "upstream_calls",
        "keys_seen", "active_key_periods", "stale_served", "early_refreshes", "refreshes",
        "refresh_failures",
    ]
    for v in vs.values():
        assert all(v[k] >= 0 for k in counters), v
        assert v["calls"] > 0
        assert v["errors"] == v["wrong_values"] == 0
        assert v["visible_misses"] <= v["calls"]
        assert v["visible_miss_rate"] == pytest.approx(v["visible_misses"] / v["calls"])
        assert 1 <= v["keys_seen"] <= 50
        assert v["keys_seen"] <= v["active_key_periods"] <= 4 * v["keys_seen"]
        assert v["periods"] == 4.0
        assert v["upstream_calls"] <= v["upstream_calls_with_warmup"]
        assert v["upstream_per_key_period"] == pytest.approx(
            v["upstream_calls"] / (v["keys_seen"] * 4)
        )
        assert v["upstream_per_active_key_period"] == pytest.approx(
            v["upstream_calls"] / v["active_key_periods"]
        )
        assert v["hot_keys"] == 50
        assert v["upstream_per_key_period_hot"] <= v["upstream_per_period_hot_max"]
        assert v["latency_p50_s"] <= v["latency_p99_s"] <= v["latency_max_s"]
        assert len(v["calls_per_s"]) == len(v["visible_misses_per_s"]) == 6  # 5.5 s
        assert sum(v["calls_per_s"]) >= v["calls"]  # the timeline includes the warm-up
        assert all(m <= c for m, c in zip(v["visible_misses_per_s"], v["calls_per_s"], strict=True))
    plain = vs["plain"]
    assert plain["cache_misses"] > 0  # ttl 1 s over 4 s: keys expire
    assert plain["visible_misses"] > 0
    assert plain["stale_served"] == plain["early_refreshes"] == plain["refreshes"] == 0
    assert vs["swr"]["stale_served"] > 0
    assert vs["both"]["stale_served"] > 0
    assert vs["xfetch"]["early_refreshes"] > 0
    assert vs["both"]["early_refreshes"] > 0
    assert vs["swr"]["early_refreshes"] == vs["xfetch"]["stale_served"] == 0
    ns = out["config"]["namespace"]
    assert leftovers(redis_node.url, f"fc:{ns}-*", f"fcbench:{ns}:*") == []
    if with_plot:
        assert plot.read_bytes().startswith(b"\x89PNG")


@pytest.mark.parametrize(
    "options",
    ["--variants plain,nope", "--variants swr,swr", "--ttl 0", "--threads 0", "--warmup -1"],
)
def test_bench_fresh_rejects_bad_options(capsys: pytest.CaptureFixture[str], options: str) -> None:
    """Bad options exit with status 2 before any Redis is touched."""
    assert main(cli("bench fresh", dead_url(), options)) == 2


def test_bench_fresh_plot_without_matplotlib(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """--plot without matplotlib says which extra to install and exits 2 before running."""
    real = importlib.util.find_spec

    def find_spec(name: str, *args: Any) -> Any:
        return None if name == "matplotlib" else real(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    assert main(cli("bench fresh", dead_url(), "--plot out.png")) == 2
    assert "pip install 'fleetcache[plot]'" in capsys.readouterr().err


def test_bench_llm_hits_never_reach_the_server(redis_node: RedisNode,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    """bench llm: SDK hits return the stored completion without a server call, and its
    ratios are the quotients of the medians it reports; it leaves no keys behind."""
    status, out = run_json(capsys, cli("bench llm", redis_node.url,
                                       "--rounds 3 --ops 200 --value-size 800"))
    assert status == 0
    assert out["wrong_values"] == 0
    assert out["server_calls"] == 0
    medians = out["median_op_s"]
    raw = medians["raw GET + orjson.loads"]
    for name, ratio in out["time_vs_raw_get"].items():
        assert ratio == pytest.approx(medians[name] / raw, rel=1e-12)
    assert out["openai_time_vs_cache_get"] == pytest.approx(
        medians["cached(OpenAI()) create"] / medians["cache.get"], rel=1e-12)
    assert out["config"]["value_json_bytes"] == len(orjson.dumps(sized_completion(800)))
    assert leftovers(redis_node.url, "fc:bench-llm*", "fcbench:bench-llm*") == []
