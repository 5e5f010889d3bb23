"""purge / purge_async and ``python -m fleetcache purge`` against a real Redis."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import subprocess
import sys
import threading
from typing import Any

import pytest
import redis
from redis import asyncio as aioredis

from fleetcache import Cache
from fleetcache.__main__ import main
from fleetcache.core._async.purge import purge_async
from fleetcache.core._sync.purge import purge
from fleetcache.core.keys import KeyLayout, request_hash
from fleetcache.errors import BackendError, CommandRefused
from fleetcache.testing import RedisNode

TTL_MS = 600_000


def req(i: int, tag: str = "") -> dict[str, Any]:
    """A distinct request."""
    return {"model": "m", "prompt": f"{tag}{i}"}


def keys_of(r: redis.Redis) -> set[bytes]:
    """Every key of the node (the tests own the flushed node)."""
    return set(r.scan_iter(count=1000))


def with_prefix(keys: set[bytes], prefix: str) -> set[bytes]:
    """The keys that start with ``prefix``."""
    return {k for k in keys if k.startswith(prefix.encode())}


def fill(r: redis.Redis, ns: str, gen: int, n: int, tag: str = "") -> None:
    """``n`` entries of ``ns`` in generation ``gen``, each with a lease, fence and lease
    counter, written with one pipeline (faster than a cache for thousands of keys)."""
    layout = KeyLayout(ns)
    pipe = r.pipeline(transaction=False)
    for i in range(n):
        keys = layout.entry(request_hash(req(i, tag)), gen)
        for key in (keys.value, keys.lock, keys.fence, keys.lock + ":fence"):
            pipe.set(key, b"x", px=TTL_MS)
    pipe.execute()


def dead_url() -> str:
    """A loopback URL where nothing listens."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"redis://127.0.0.1:{port}/0"


def test_purge_deletes_exactly_the_older_generations(r: redis.Redis) -> None:
    """Only keys of generations below the current one go; the current generation, the gen
    key, a newer generation, a look-alike namespace and unrelated keys stay; count is right."""
    gens: list[int] = []
    with Cache(r, namespace="llm") as cache, Cache(r, namespace="llm2") as other:
        for round_ in range(3):
            if round_:
                cache.invalidate()
                other.invalidate()
            assert cache.set(req(1, f"g{round_}"), "set")
            assert cache.get_or_set(req(2, f"g{round_}"), lambda: "computed") == "computed"
            assert other.get_or_set(req(2, f"g{round_}"), lambda: "other") == "other"
            assert cache.generation is not None
            gens.append(cache.generation)
    current = gens[-1]
    assert gens == sorted(set(gens))
    snapshot = keys_of(r)
    old = with_prefix(snapshot, f"fc:llm:{gens[0]}:{{") | with_prefix(
        snapshot, f"fc:llm:{gens[1]}:{{"
    )
    assert len(old) >= 8  # entries, fences and lease counters of two generations
    digest = request_hash(req(9))
    kept = [
        KeyLayout("llm").value_key(digest, current + 1),  # a newer generation
        f"fc:llm:{gens[0]}:{{{digest}}}x",  # does not parse
        f"fc:llm:0{gens[0]}:{{{digest}}}",
        f"fc:llm:{gens[0]}",
        "fc:llm:notes",
        "other:key",
    ]
    for key in kept:
        r.set(key, b"keep", px=TTL_MS)
    before = keys_of(r)

    deleted = purge(r, KeyLayout("llm"), current)

    assert deleted == len(old)
    assert keys_of(r) == before - old
    assert int(r.get("fc:llm:gen") or 0) == current
    assert len(with_prefix(before, "fc:llm2:")) == len(with_prefix(keys_of(r), "fc:llm2:")) > 3
    assert with_prefix(keys_of(r), f"fc:llm:{current}:{{")
    assert purge(r, KeyLayout("llm"), current) == 0


def test_purge_under_concurrent_writes(r: redis.Redis) -> None:
    """While 4 threads write into the current generation, a purge with batch 10 removes every
    old key and none of theirs."""
    layout = KeyLayout("busy")
    with Cache(r, namespace="busy") as cache:
        assert cache.get_or_set(req(0, "warm"), lambda: 1) == 1
        first = cache.generation
        assert first is not None
        fill(r, "busy", first, 600)
        fill(r, "busy", first - 1, 150, tag="older")
        old = keys_of(r) - {layout.gen.encode()}
        assert len(old) >= 3000
        current = cache.invalidate()
        stop = threading.Event()
        started = threading.Barrier(5)
        written: list[list[dict[str, Any]]] = [[] for _ in range(4)]
        errors: list[BaseException] = []

        def writer(t: int) -> None:
            try:
                started.wait()
                i = 0
                while not stop.is_set():
                    request = req(i, f"t{t}-")
                    if not cache.set(request, i):
                        raise AssertionError(f"set of {request} was not stored")
                    written[t].append(request)
                    i += 1
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=writer, args=(t,)) for t in range(4)]
        for thread in threads:
            thread.start()
        calls: list[tuple[int, int]] = []
        started.wait()
        try:
            deleted = purge(
                r, layout, current, batch=10, progress=lambda s, d: calls.append((s, d))
            )
            during = [len(w) for w in written]
        finally:
            stop.set()
            for thread in threads:
                thread.join()

    assert errors == []
    assert all(n > 0 for n in during)  # every writer wrote while the purge ran
    assert deleted == len(old)
    assert len(calls) > 100  # one per SCAN page of about 10 keys
    assert calls == sorted(calls)
    assert calls[-1][1] == deleted
    assert not list(r.scan_iter(match=f"fc:busy:{first}:*"))
    assert not list(r.scan_iter(match=f"fc:busy:{first - 1}:*"))
    missing = [
        request
        for requests in written
        for request in requests
        if not r.exists(layout.value_key(request_hash(request), current))
    ]
    assert missing == []


def test_sync_and_async_behave_alike(r: redis.Redis, redis_node: RedisNode) -> None:
    """The generated sync purge and the asyncio source delete the same keys of identical
    namespaces, return the same count and report the same final deletions."""
    for ns in ("s", "a"):
        fill(r, ns, 10, 40)
        fill(r, ns, 11, 5)
        fill(r, ns, 12, 7)
        r.set(f"fc:{ns}:gen", 12)
        r.set(f"fc:{ns}:11:junk", 1)
    sync_calls: list[tuple[int, int]] = []
    async_calls: list[tuple[int, int]] = []
    deleted = purge(
        r, KeyLayout("s"), 12, batch=7, progress=lambda s, d: sync_calls.append((s, d))
    )

    async def run_async() -> int:
        client: aioredis.Redis = redis_node.async_client()
        try:
            return await purge_async(
                client, KeyLayout("a"), 12, batch=7,
                progress=lambda s, d: async_calls.append((s, d)),
            )
        finally:
            await client.aclose()

    assert asyncio.run(run_async()) == deleted == 4 * 45
    for calls in (sync_calls, async_calls):
        assert calls == sorted(calls)
        assert calls[-1][0] >= 4 * 52 + 2  # SCAN may repeat a key, never skip one
        assert calls[-1][1] == deleted
    left = keys_of(r)
    assert {k[len(b"fc:s:") :] for k in with_prefix(left, "fc:s:")} == {
        k[len(b"fc:a:") :] for k in with_prefix(left, "fc:a:")
    }
    assert len(with_prefix(left, "fc:s:12:")) == 4 * 7


def test_cli_purge_end_to_end(r: redis.Redis, redis_node: RedisNode) -> None:
    """``python -m fleetcache purge`` deletes the old generations, reports progress on
    stderr and the count on stdout; a second run with --json finds nothing left."""
    fill(r, "cli", 100, 30)
    fill(r, "cli", 200, 3)
    r.set("fc:cli:gen", 200)
    r.set("fc:cli2:100:{" + "0" * 64 + "}", 1)
    argv = [sys.executable, "-m", "fleetcache", "purge", "--redis", redis_node.url,
            "--namespace", "cli", "--batch", "16"]

    first = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() == "namespace 'cli': deleted 120 keys of generations below 200"
    scanned = re.findall(r"purge 'cli': scanned (\d+) keys, deleted 120$", first.stderr, re.M)
    assert scanned, first.stderr
    assert int(scanned[-1]) >= 133
    assert not list(r.scan_iter(match="fc:cli:100:*"))
    assert len(list(r.scan_iter(match="fc:cli:200:*"))) == 12
    assert r.exists("fc:cli:gen", "fc:cli2:100:{" + "0" * 64 + "}") == 2

    again = subprocess.run([*argv, "--json"], capture_output=True, text=True, timeout=60,
                           check=False)
    assert again.returncode == 0, again.stderr
    out = json.loads(again.stdout)
    assert out == {"namespace": "cli", "generation": 200, "scanned": out["scanned"], "deleted": 0}
    assert out["scanned"] >= 13


def test_cli_purge_without_a_generation_or_with_bad_options(
    r: redis.Redis, redis_node: RedisNode, capsys: pytest.CaptureFixture[str]
) -> None:
    """No generation key: nothing to purge, status 0; a bad namespace, batch or generation
    value is refused with a non-zero status and nothing deleted."""
    fill(r, "nogen", 5, 2)
    assert main(["purge", "--redis", redis_node.url, "--namespace", "nogen"]) == 0
    assert "nothing to purge" in capsys.readouterr().out
    assert main(["purge", "--redis", redis_node.url, "--namespace", "nogen", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["generation"] is None
    assert main(["purge", "--redis", redis_node.url, "--namespace", "a:b"]) == 2
    with pytest.raises(SystemExit) as exit_info:
        main(["purge", "--redis", redis_node.url, "--namespace", "nogen", "--batch", "0"])
    assert exit_info.value.code == 2
    r.set("fc:nogen:gen", b"soon")
    assert main(["purge", "--redis", redis_node.url, "--namespace", "nogen"]) == 1
    assert "not a generation" in capsys.readouterr().err
    assert main(["purge", "--redis", dead_url(), "--namespace", "nogen"]) == 1
    assert len(list(r.scan_iter(match="fc:nogen:5:*"))) == 8


@pytest.mark.parametrize(
    ("current", "batch", "error"),
    [(0, 10, ValueError), (-1, 10, ValueError), (True, 10, TypeError), (None, 10, TypeError),
     (5, 0, ValueError), (5, -3, ValueError), (5, 2.5, TypeError), (5, "10", TypeError),
     (5, False, TypeError)],
)
def test_bad_arguments_raise_at_once(current: Any, batch: Any, error: type[Exception]) -> None:
    """Bad ``current`` or ``batch`` raise before any I/O (the client points nowhere), in
    the sync and the async function alike."""
    url = dead_url()
    calls: list[tuple[int, int]] = []
    with pytest.raises(error):
        purge(redis.Redis.from_url(url), KeyLayout("ns"), current, batch=batch,
              progress=lambda *c: calls.append(c))
    with pytest.raises(error):
        asyncio.run(purge_async(aioredis.Redis.from_url(url), KeyLayout("ns"), current,
                                batch=batch))
    with pytest.raises(ValueError, match="namespace"):
        purge(redis.Redis.from_url(url), KeyLayout("a:b"), 5)
    assert calls == []


def test_redis_errors_leave_as_backend_errors(r: redis.Redis, redis_node: RedisNode) -> None:
    """An unreachable server raises BackendError; a refused UNLINK raises CommandRefused."""
    with pytest.raises(BackendError):
        purge(redis.Redis.from_url(dead_url(), socket_connect_timeout=1), KeyLayout("ns"), 5)
    with pytest.raises(BackendError):
        asyncio.run(purge_async(aioredis.Redis.from_url(dead_url()), KeyLayout("ns"), 5))
    fill(r, "acl", 1, 1)
    r.acl_setuser("nounlink", enabled=True, passwords=["+pw"], keys=["*"],
                  commands=["+@all", "-unlink"])
    try:
        limited = redis_node.client(username="nounlink", password="pw")
        with pytest.raises(CommandRefused) as refused:
            purge(limited, KeyLayout("acl"), 5)
        assert refused.value.reply == "NOPERM"
        limited.close()
    finally:
        r.acl_deluser("nounlink")
    assert len(list(r.scan_iter(match="fc:acl:1:*"))) == 4
