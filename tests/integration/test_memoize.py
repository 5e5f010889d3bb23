"""Cache.memoize / AsyncCache.memoize against a real Redis."""

from __future__ import annotations

import asyncio
import re
import threading
import time
import uuid
from typing import Any

import pytest
import redis

from fleetcache import AsyncCache, Cache, Policy
from fleetcache.core.keys import KeyLayout, request_hash

ENTRY = re.compile(r"fc:[^:]+:\d+:\{[0-9a-f]{64}\}")
CALLS: list[Any] = []


def module_level(x: int, y: str = "a") -> str:
    """A module-level function: memoized without name=."""
    CALLS.append((x, y))
    return f"{x}{y}"


def with_star(x: int, *rest: int, flag: bool = False, **extra: str) -> int:
    """A module-level function with *args and **kwargs parameters."""
    CALLS.append(x)
    return x + sum(rest)


def ns(label: str) -> str:
    """A namespace of this test alone."""
    return f"memo-{label}-{uuid.uuid4().hex[:8]}"


def keys_of(r: redis.Redis, namespace: str) -> list[str]:
    """Every key of ``namespace`` in Redis, as str."""
    return sorted(k.decode() if isinstance(k, bytes) else k
                  for k in r.scan_iter(f"fc:{namespace}:*"))


def entries(r: redis.Redis, namespace: str) -> list[str]:
    """The entry (value) keys of ``namespace``."""
    return [k for k in keys_of(r, namespace) if ENTRY.fullmatch(k)]


def entry_key(cache: Cache | AsyncCache, request: Any) -> str:
    """The Redis key of ``request``'s entry in the cache's current generation."""
    assert cache.generation is not None
    return KeyLayout(cache.namespace).entry(request_hash(request), cache.generation).value


def test_second_call_is_served_from_redis(r: redis.Redis) -> None:
    """A memoized sync function called twice with the same argument runs once."""
    calls = []
    with Cache(r, namespace=ns("twice")) as cache:

        @cache.memoize(name="t.double")
        def double(x: int) -> int:
            calls.append(x)
            return 2 * x

        assert double(21) == 42
        assert double(21) == 42
        assert calls == [21]
        assert cache.stats.hits == 1


def test_positional_keyword_and_default_share_an_entry(r: redis.Redis) -> None:
    """f(1, "a"), f(1), f(x=1) and f(y="a", x=1) are one entry and one upstream call."""
    CALLS.clear()
    namespace = ns("bind")
    with Cache(r, namespace=namespace) as cache:
        f = cache.memoize(module_level)
        assert {f(1, "a"), f(1), f(x=1), f(y="a", x=1)} == {"1a"}
        assert CALLS == [(1, "a")]
        assert len(entries(r, namespace)) == 1


def test_different_arguments_are_different_entries(r: redis.Redis) -> None:
    """Different argument values make different entries, each computed once."""
    CALLS.clear()
    namespace = ns("diff")
    with Cache(r, namespace=namespace) as cache:
        f = cache.memoize(module_level)
        assert [f(1), f(2), f(1, "b"), f(1), f(2), f(1, "b")] == ["1a", "2a", "1b"] * 2
        assert CALLS == [(1, "a"), (2, "a"), (1, "b")]
        assert len(entries(r, namespace)) == 3


def test_request_is_qualified_name_and_bound_arguments(r: redis.Redis) -> None:
    """wrapper.request shows the request: module.qualname and the arguments, defaults applied."""
    with Cache(r, namespace=ns("req")) as cache:
        f = cache.memoize(module_level)
        g = cache.memoize(with_star)
        assert f.request(1) == {"fn": f"{__name__}.module_level", "args": {"x": 1, "y": "a"}}
        assert g.request(1, 2, 3, z="q") == {
            "fn": f"{__name__}.with_star",
            "args": {"x": 1, "rest": [2, 3], "flag": False, "extra": {"z": "q"}},
        }
        CALLS.clear()
        assert g(1, 2, 3, z="q") == 6
        assert g(1, 2, 3, z="q") == 6
        assert CALLS == [1]
        assert cache.get(g.request(1, 2, 3, z="q")) == 6


def test_wrapper_keeps_metadata_and_exposes_cache(r: redis.Redis) -> None:
    """The wrapper keeps the function's name, doc and __wrapped__, and exposes .cache."""
    with Cache(r, namespace=ns("meta")) as cache:
        f = cache.memoize(module_level)
        assert f.__name__ == "module_level"
        assert f.__qualname__ == "module_level"
        assert f.__doc__ == module_level.__doc__
        assert f.__wrapped__ is module_level
        assert f.cache is cache


@pytest.mark.parametrize("bad", [{1, 2}, object(), float("nan"), {1: "int key"}])
def test_non_json_argument_raises_before_anything(r: redis.Redis, bad: Any) -> None:
    """A non-JSON argument raises TypeError naming the function; nothing runs or is written."""
    calls = []
    namespace = ns("nonjson")
    with Cache(r, namespace=namespace) as cache:

        @cache.memoize(name="t.echo")
        def echo(x: Any) -> str:
            calls.append(x)
            return "never"

        before = r.dbsize()
        with pytest.raises(TypeError, match=r"memoized t\.echo: its arguments are not JSON"):
            echo(bad)
        with pytest.raises(TypeError, match=r"t\.echo"):
            echo.request(bad)
        assert calls == []
        assert r.dbsize() == before
        assert keys_of(r, namespace) == []


def test_wrong_arguments_raise_type_error_naming_the_function(r: redis.Redis) -> None:
    """Arguments that do not fit the signature raise TypeError naming the function."""
    with Cache(r, namespace=ns("sig")) as cache:
        f = cache.memoize(module_level)
        with pytest.raises(TypeError, match=r"module_level\(\): too many"):
            f(1, "a", "extra")  # type: ignore[call-arg]
        with pytest.raises(TypeError, match=r"module_level\(\): missing"):
            f()  # type: ignore[call-arg]


def test_async_twenty_concurrent_calls_make_one_call(r: redis.Redis, redis_node: Any) -> None:
    """20 concurrent calls of an AsyncCache-memoized coroutine function make one call."""

    async def body() -> None:
        calls = 0
        async with AsyncCache(redis_node.async_client(), namespace=ns("async")) as acache:

            @acache.memoize(name="t.complete")
            async def complete(prompt: str) -> dict[str, str]:
                nonlocal calls
                calls += 1
                await asyncio.sleep(0.1)
                return {"text": prompt.upper()}

            results = await asyncio.gather(*(complete("hi") for _ in range(20)))
            assert results == [{"text": "HI"}] * 20
            assert calls == 1
            assert await complete("hi") == {"text": "HI"}
            assert calls == 1
            assert asyncio.iscoroutinefunction(complete)

    asyncio.run(body())


def test_threads_behind_a_barrier_make_one_call(r: redis.Redis) -> None:
    """8 threads released together on one memoized sync function make one call."""
    calls = []
    barrier = threading.Barrier(8)
    results: list[Any] = []
    with Cache(r, namespace=ns("threads")) as cache:

        @cache.memoize(name="t.slow")
        def slow(q: str) -> str:
            calls.append(q)
            time.sleep(0.2)
            return q * 2

        def worker() -> None:
            barrier.wait()
            results.append(slow("ab"))

        threads = [threading.Thread(target=worker) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
    assert results == ["abab"] * 8
    assert calls == ["ab"]


def test_ttl_sets_the_entry_expiry(r: redis.Redis) -> None:
    """ttl= replaces the cache policy's TTL: the entry's PTTL is at most ttl."""
    with Cache(r, namespace=ns("ttl"), policy=Policy(ttl=3600)) as cache:

        @cache.memoize(ttl=30, name="t.f")
        def f(x: int) -> int:
            return x

        f(1)
        pttl = r.pttl(entry_key(cache, f.request(1)))
        assert 29_000 < pttl <= 30_000


@pytest.mark.parametrize(("ttl", "error"), [(-1, ValueError), (0, ValueError),
                                            (float("inf"), ValueError), ("60", TypeError)])
def test_bad_ttl_raises_at_decoration(r: redis.Redis, ttl: Any, error: type[Exception]) -> None:
    """A bad ttl= raises when memoize(...) is called, before any function is decorated."""
    with Cache(r, namespace=ns("badttl")) as cache, pytest.raises(error, match="ttl"):
        cache.memoize(ttl=ttl)


def test_policy_is_used_and_ttl_overrides_it(r: redis.Redis) -> None:
    """policy= governs the function's calls (TTL, cache_if); ttl= replaces only its TTL."""
    calls = []
    with Cache(r, namespace=ns("policy")) as cache:

        @cache.memoize(policy=Policy(ttl=45), name="t.p")
        def p(x: int) -> int:
            return x

        @cache.memoize(policy=Policy(ttl=45, stale_ttl=10), ttl=20, name="t.q")
        def q(x: int) -> int:
            return x

        @cache.memoize(policy=Policy(cache_if=lambda request, value: value != "no"), name="t.n")
        def n(x: str) -> str:
            calls.append(x)
            return x

        p(1)
        q(1)
        assert 44_000 < r.pttl(entry_key(cache, p.request(1))) <= 45_000
        assert 29_000 < r.pttl(entry_key(cache, q.request(1))) <= 30_000  # ttl + stale_ttl
        assert [n("no"), n("no"), n("yes"), n("yes")] == ["no", "no", "yes", "yes"]
        assert calls == ["no", "no", "yes"]
        with pytest.raises(TypeError, match="Policy"):
            cache.memoize(policy={"ttl": 5})  # type: ignore[call-overload]


class Client:
    """A client whose method is memoized with a key function."""

    def __init__(self, cache: Cache, model: str) -> None:
        self.model = model
        self.calls: list[str] = []
        self.complete = cache.memoize(
            key=lambda prompt: {"model": self.model, "prompt": prompt}, name="t.Client.complete"
        )(self._complete)

    def _complete(self, prompt: str) -> str:
        self.calls.append(prompt)
        return f"{self.model}:{prompt}"


def test_method_with_key_works(r: redis.Redis) -> None:
    """A method memoized with key= (self is not JSON) caches by the key; forget takes self."""
    with Cache(r, namespace=ns("method")) as cache:
        calls = []

        class Model:
            def __init__(self, name: str) -> None:
                self.name = name

            @cache.memoize(key=lambda self, prompt: [self.name, prompt], name="t.Model.ask")
            def ask(self, prompt: str) -> str:
                calls.append((self.name, prompt))
                return f"{self.name}:{prompt}"

        a, a2, b = Model("a"), Model("a"), Model("b")
        assert [a.ask("p"), a2.ask("p"), b.ask("p"), a.ask(prompt="p")] == [
            "a:p", "a:p", "b:p", "a:p"]
        assert calls == [("a", "p"), ("b", "p")]
        assert a.ask.request(a, "p") == {"fn": "t.Model.ask", "key": ["a", "p"]}
        assert Model.ask.forget(a, "p")
        assert a.ask("p") == "a:p"
        assert calls == [("a", "p"), ("b", "p"), ("a", "p")]

        client = Client(cache, "m")  # a bound method memoized per instance works too
        assert client.complete("x") == client.complete("x") == "m:x"
        assert client.calls == ["x"]


def test_method_without_key_raises(r: redis.Redis) -> None:
    """A method memoized without key= raises TypeError (self is not JSON); nothing runs."""
    calls = []
    namespace = ns("nokey")
    with Cache(r, namespace=namespace) as cache:

        class Model:
            @cache.memoize(name="t.Model.ask")
            def ask(self, prompt: str) -> str:
                calls.append(prompt)
                return prompt

        with pytest.raises(TypeError, match=r"memoized t\.Model\.ask: .*key=.*Model"):
            Model().ask("p")
        assert calls == []
        assert keys_of(r, namespace) == []


def test_key_returning_non_json_raises(r: redis.Redis) -> None:
    """A key= returning something that is not JSON data raises TypeError naming the function."""
    with Cache(r, namespace=ns("badkey")) as cache:

        @cache.memoize(key=lambda x: {x}, name="t.k")
        def k(x: int) -> int:
            return x

        with pytest.raises(TypeError, match=r"memoized t\.k: its key= returned"):
            k(1)


def test_forget_deletes_the_entry(r: redis.Redis) -> None:
    """forget(*args) deletes that call's entry (True, then False); the next call recomputes."""
    calls = []
    namespace = ns("forget")
    with Cache(r, namespace=namespace) as cache:

        @cache.memoize(name="t.f")
        def f(x: int) -> int:
            calls.append(x)
            return x

        f(1)
        f(2)
        assert f.forget(x=1) is True
        assert f.forget(1) is False
        assert len(entries(r, namespace)) == 1
        assert [f(1), f(2)] == [1, 2]
        assert calls == [1, 2, 1]


def test_async_forget_and_request(r: redis.Redis, redis_node: Any) -> None:
    """The async twin's forget is awaited and deletes; request is the same plain dict."""

    async def body() -> None:
        calls = []
        async with AsyncCache(redis_node.async_client(), namespace=ns("aforget")) as acache:

            @acache.memoize(ttl=60, name="t.af")
            async def af(x: int, y: int = 2) -> int:
                calls.append(x)
                return x * y

            assert af.request(3) == {"fn": "t.af", "args": {"x": 3, "y": 2}}
            assert af.cache is acache
            assert [await af(3), await af(x=3)] == [6, 6]
            assert await af.forget(3) is True
            assert await af.forget(3) is False
            assert await af(3) == 6
            assert calls == [3, 3]
            assert r.pttl(entry_key(acache, af.request(3))) <= 60_000

    asyncio.run(body())


def test_wrong_kind_raises_at_decoration(r: redis.Redis, redis_node: Any) -> None:
    """Cache.memoize refuses async functions, AsyncCache.memoize plain ones, both non-callables."""

    def plain(x: int) -> int:
        return x

    async def coro(x: int) -> int:
        return x

    def gen(x: int) -> Any:
        yield x

    async def body() -> None:
        async with AsyncCache(redis_node.async_client(), namespace=ns("akind")) as acache:
            with pytest.raises(TypeError, match="not an async def function"):
                acache.memoize(name="t.plain")(plain)  # type: ignore[arg-type]
            with pytest.raises(TypeError, match="memoize needs a function"):
                acache.memoize(60)  # type: ignore[call-overload]

    with Cache(r, namespace=ns("kind")) as cache:
        with pytest.raises(TypeError, match="async function"):
            cache.memoize(name="t.coro")(coro)
        with pytest.raises(TypeError, match="generator function"):
            cache.memoize(name="t.gen")(gen)
        with pytest.raises(TypeError, match="memoize needs a function"):
            cache.memoize(60)  # type: ignore[call-overload]
    asyncio.run(body())


def test_name_overrides_the_qualified_name(r: redis.Redis) -> None:
    """name= replaces module.qualname: a function renamed or moved keeps its entries."""
    with Cache(r, namespace=ns("name")) as cache:
        old = cache.memoize(name="svc.lookup")(lambda x: f"old {x}")
        assert old.request(1) == {"fn": "svc.lookup", "args": {"x": 1}}
        assert old(1) == "old 1"

        @cache.memoize(name="svc.lookup")
        def moved(x: int) -> str:
            raise AssertionError("the entry written under the same name must be used")

        assert moved(1) == "old 1"
        assert cache.memoize(module_level).request(1)["fn"].endswith(".module_level")


def test_nested_functions_and_lambdas_need_a_name(r: redis.Redis) -> None:
    """Closures share a qualified name, so lambdas and nested functions need name=."""

    def make(model: str) -> Any:
        def complete(prompt: str) -> str:
            return f"{model}:{prompt}"

        return complete

    with Cache(r, namespace=ns("nested")) as cache:
        with pytest.raises(TypeError, match=r"<locals>.*pass name="):
            cache.memoize(make("a"))
        with pytest.raises(TypeError, match=r"<lambda>.*pass name="):
            cache.memoize(lambda x: x)
        a = cache.memoize(name="t.complete.a")(make("a"))
        b = cache.memoize(name="t.complete.b")(make("b"))
        assert (a("p"), b("p")) == ("a:p", "b:p")
        with pytest.raises(ValueError, match="name must not be empty"):
            cache.memoize(name="")(module_level)
