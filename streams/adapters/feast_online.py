"""Thin async adapter over Feast's online store for the parity check.

One :meth:`FeastOnlineClient.lookup` per micro-batch: entity keys are deduplicated,
answered from a bounded LRU cache with a TTL where possible, and the misses fetched
with one ``FeatureStore.get_online_features`` call per feature view.  The blocking
Feast call runs on a dedicated single thread under ``asyncio.wait_for``; a slow or
unreachable store raises :class:`StoreUnavailable` within ``timeout_s`` and is not
asked again for ``retry_after_s`` (and never while a timed-out call is still running),
so the caller can report "parity unknown" and carry on.

Feast is imported only when a store is opened (:meth:`FeastOnlineClient.from_repo`),
after ``feature_repo`` has set ``FEAST_USAGE=False``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Hashable, Mapping, Sequence

from streams.alerts.parity import ModelSchema

os.environ.setdefault("FEAST_USAGE", "False")


@dataclass(frozen=True)
class LookupConfig:
    """Online lookups of the parity check (the ``parity.lookup`` config section)."""

    #: longest wait for one batched lookup before parity is "unknown" for the batch
    timeout_s: float = 0.5
    #: entity rows kept per cache (per feature view and key)
    cache_size: int = 50_000
    #: how long a cached row is trusted; the store changes on materialisation and pushes
    cache_ttl_s: float = 30.0
    #: after a failure, answer "unavailable" at once for this long before trying the store again
    retry_after_s: float = 5.0
    #: entity rows per get_online_features call
    max_batch: int = 2_000
    #: longest time opening the store may take (importing Feast, loading the registry); meanwhile
    #: lookups answer "starting" at once instead of waiting
    open_timeout_s: float = 120.0
    #: warmup()/open_blocking() make one lookup of a missing entity (Feast's first online read is
    #: slow) and wait this long for it; 0 = no warm-up lookup
    warmup_lookup_s: float = 10.0

    def __post_init__(self) -> None:
        if self.timeout_s <= 0 or self.cache_ttl_s < 0 or self.retry_after_s < 0:
            raise ValueError("parity.lookup timeout_s must be > 0, cache_ttl_s and retry_after_s >= 0")
        if self.cache_size < 0 or self.max_batch < 1:
            raise ValueError("parity.lookup cache_size must be >= 0 and max_batch >= 1")


class StoreUnavailable(RuntimeError):
    """The online store did not answer in time or failed; ``reason`` says which."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class TTLCache:
    """Bounded LRU mapping whose entries expire ``ttl_s`` after they were stored.

    >>> now = [0.0]
    >>> c = TTLCache(2, 10.0, clock=lambda: now[0])
    >>> c.put("a", 1); c.put("b", 2); c.put("c", 3)
    >>> c.get("a") is TTLCache.MISS, c.get("c")
    (True, 3)
    >>> now[0] = 11.0
    >>> c.get("c") is TTLCache.MISS
    True
    """

    MISS = object()

    def __init__(self, max_size: int, ttl_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_size = max_size
        self.ttl_s = ttl_s
        self._clock = clock
        self._data: OrderedDict[Hashable, tuple[float, Any]] = OrderedDict()

    def get(self, key: Hashable) -> Any:
        item = self._data.get(key)
        if item is None:
            return self.MISS
        if item[0] <= self._clock():
            del self._data[key]
            return self.MISS
        self._data.move_to_end(key)
        return item[1]

    def put(self, key: Hashable, value: Any) -> None:
        if self.max_size <= 0:
            return
        self._data[key] = (self._clock() + self.ttl_s, value)
        self._data.move_to_end(key)
        while len(self._data) > self.max_size:
            self._data.popitem(last=False)

    def clear(self) -> None:
        self._data.clear()

    def __len__(self) -> int:
        return len(self._data)


@dataclass(frozen=True)
class ViewSpec:
    """One feature view of a model's service: its join keys and ``view:feature`` refs."""

    name: str
    join_keys: tuple[str, ...]
    key_types: tuple[str, ...]  # "string" | "int" | "other", per join key
    features: tuple[str, ...]

    @property
    def single_string_key(self) -> bool:
        return len(self.join_keys) == 1 and self.key_types[0] == "string"

    @property
    def refs(self) -> list[str]:
        return [f"{self.name}:{f}" for f in self.features]


@dataclass(frozen=True)
class ServiceSpec:
    model: str
    model_version: str
    service: str
    views: tuple[ViewSpec, ...]
    schema: ModelSchema


@dataclass
class LookupStats:
    calls: int = 0  # lookup() calls
    store_calls: int = 0  # get_online_features calls
    rows_requested: int = 0  # entity rows asked of the store
    cache_hits: int = 0  # distinct entity keys per batch and view found in the cache
    cache_misses: int = 0  # ... and fetched from the store
    failures: int = 0
    timeouts: int = 0
    skipped: int = 0  # lookups answered "unavailable" without asking (back-off or busy)
    last_latency_s: float = 0.0
    latencies_s: list[float] = field(default_factory=list)


class FeastOnlineClient:
    """Batched, cached, time-boxed online lookups of a model's feature service.

    ``store`` is a ``feast.FeatureStore`` or a zero-argument callable that opens one (called
    on the lookup thread the first time it is needed).
    """

    def __init__(self, store: Any, config: LookupConfig | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config or LookupConfig()
        self._store_or_factory = store
        self._store: Any = None if callable(store) and not hasattr(store, "get_online_features") else store
        self._clock = clock
        self._cache = TTLCache(self.config.cache_size, self.config.cache_ttl_s, clock)
        self._specs: dict[tuple[str, str], ServiceSpec | None] = {}
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="feast-lookup")
        self._inflight: concurrent.futures.Future | None = None
        self._opening: concurrent.futures.Future | None = None
        self._open_started = 0.0
        self._down_until = -float("inf")
        self.stats = LookupStats()

    @classmethod
    def from_repo(cls, repo_path: str | Path, online: str = "sqlite", redis_connection: str | None = None,
                  config: LookupConfig | None = None) -> "FeastOnlineClient":
        """A client on a feature repository (``feature_store.yaml`` or its Redis variant)."""

        def factory() -> Any:
            from feature_repo.store import open_store

            return open_store(repo_path, online, redis_connection)

        return cls(factory, config)

    # -- public ------------------------------------------------------------------------

    async def spec(self, model: str, version: str) -> ServiceSpec | None:
        """The model's service, views and schema (``None``: no service for it), resolved once."""
        key = (model, version)
        if key not in self._specs:
            self._specs[key] = await self._run(lambda: self._resolve(model, version))
        return self._specs[key]

    async def warmup(self, models: Sequence[tuple[str, str]] = (), timeout_s: float = 60.0) -> None:
        """Open the store and resolve ``models``' services ahead of traffic (importing Feast and
        loading the registry take seconds, longer than a lookup's timeout)."""
        fut = self._start_open(models)
        try:
            result = await asyncio.wait_for(asyncio.wrap_future(fut), timeout_s)
        except asyncio.TimeoutError:
            raise StoreUnavailable("timeout", f"feature store did not open within {timeout_s}s") from None
        except Exception as exc:
            raise _open_failed(exc) from exc
        warm = self._opened(models, result)
        if warm is not None:
            try:
                await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(warm)), self.config.warmup_lookup_s)
            except asyncio.TimeoutError:
                pass

    def open_blocking(self, models: Sequence[tuple[str, str]] = (), timeout_s: float | None = None) -> None:
        """Synchronous :meth:`warmup`, for callers without a running event loop (before the
        worker starts consuming)."""
        timeout_s = self.config.open_timeout_s if timeout_s is None else timeout_s
        fut = self._start_open(models)
        try:
            result = fut.result(timeout_s)
        except concurrent.futures.TimeoutError:
            raise StoreUnavailable("timeout", f"feature store did not open within {timeout_s}s") from None
        except Exception as exc:
            raise _open_failed(exc) from exc
        warm = self._opened(models, result)
        if warm is not None:
            try:
                warm.result(self.config.warmup_lookup_s)
            except concurrent.futures.TimeoutError:
                pass

    def _start_open(self, models: Sequence[tuple[str, str]]) -> concurrent.futures.Future:
        self._open_started = self._clock()
        fut = self._executor.submit(lambda: [self._open(), *(self._resolve(m, v) for m, v in models)])
        self._opening = fut
        return fut

    def _opened(self, models: Sequence[tuple[str, str]], result: list) -> concurrent.futures.Future | None:
        """Keep the resolved services; start the warm-up lookup (while it runs, lookups answer "busy",
        so a hung store stays unknown)."""
        for (m, v), spec in zip(models, result[1:]):
            self._specs[(m, v)] = spec
        if self.config.warmup_lookup_s <= 0:
            return None
        warm = self._executor.submit(_warm_lookup, self._store)
        self._inflight = warm
        return warm

    def cached_spec(self, model: str, version: str) -> ServiceSpec | None:
        return self._specs.get((model, version))

    async def lookup(self, model: str, version: str,
                     entities: Sequence[Mapping[str, Any] | None]) -> list[dict[str, Any] | None]:
        """Stored feature values per entity (``None`` where the entity gives no join key of any
        view of the service).  Raises :class:`StoreUnavailable` when the store does not answer."""
        self.stats.calls += 1
        spec = await self.spec(model, version)
        if spec is None:
            return [None] * len(entities)
        t0 = time.perf_counter()
        n = len(entities)
        # per view: the key of every event, then one cache probe per distinct key
        keys_by_view: list[list[tuple | None]] = []
        found: dict[str, dict[tuple, dict[str, Any]]] = {}
        wanted: dict[str, dict[tuple, None]] = {}
        for view in spec.views:
            if view.single_string_key:  # the common case, without a call per event
                k0 = view.join_keys[0]
                raw = [ent.get(k0) if ent else None for ent in entities]
                keys = [None if v is None else (v if type(v) is str else str(v),) for v in raw]
            else:
                keys = [_key(view, ent) for ent in entities]
            keys_by_view.append(keys)
            have: dict[tuple, dict[str, Any]] = {}
            miss: dict[tuple, None] = {}
            for key in set(keys):
                if key is None:
                    continue
                vals = self._cache.get((view.name, key))
                if vals is TTLCache.MISS:
                    miss[key] = None
                else:
                    have[key] = vals
            self.stats.cache_hits += len(have)
            self.stats.cache_misses += len(miss)
            found[view.name] = have
            if miss:
                wanted[view.name] = miss
        if wanted:
            fetched = await self._run(lambda: self._fetch(spec, wanted))
            for (vname, key), vals in fetched.items():
                self._cache.put((vname, key), vals)
                found[vname][key] = vals
        cols = []
        for v, keys in zip(spec.views, keys_by_view):
            vals_of = found[v.name]
            cols.append([None if k is None else vals_of[k] for k in keys])
        rows: list[dict[str, Any] | None]
        if len(cols) == 2 and None not in cols[0] and None not in cols[1]:  # the usual case, in one pass
            rows = [{**a, **b} for a, b in zip(cols[0], cols[1])]
        else:
            rows = [None] * n
            for col in cols:
                for i, vals in enumerate(col):
                    if vals is None:
                        continue
                    row = rows[i]
                    if row is None:
                        rows[i] = dict(vals)
                    else:
                        row.update(vals)
        self.stats.last_latency_s = time.perf_counter() - t0
        if len(self.stats.latencies_s) < 100_000:
            self.stats.latencies_s.append(self.stats.last_latency_s)
        return rows

    def invalidate(self) -> None:
        """Forget cached rows (after a materialisation or push you want seen at once)."""
        self._cache.clear()

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    # -- blocking work (lookup thread) ---------------------------------------------------

    async def _run(self, fn: Callable[[], Any]) -> Any:
        now = self._clock()
        if self._store is None:
            self._check_opening(now)
        if now < self._down_until:
            self.stats.skipped += 1
            raise StoreUnavailable("backoff", f"feature store failed recently; retrying after {self._down_until - now:.1f}s")
        if self._inflight is not None and not self._inflight.done():
            self.stats.skipped += 1
            raise StoreUnavailable("busy", "a previous feature store call is still running (store slow)")
        fut = self._executor.submit(fn)
        self._inflight = fut
        try:
            return await asyncio.wait_for(asyncio.wrap_future(fut), self.config.timeout_s)
        except asyncio.TimeoutError:
            self.stats.timeouts += 1
            self._down_until = self._clock() + self.config.retry_after_s
            raise StoreUnavailable("timeout", f"feature store did not answer within {self.config.timeout_s}s") from None
        except StoreUnavailable:
            raise
        except Exception as exc:
            self.stats.failures += 1
            self._down_until = self._clock() + self.config.retry_after_s
            raise StoreUnavailable("error", f"feature store lookup failed: {type(exc).__name__}: {exc}"[:500]) from exc

    def _check_opening(self, now: float) -> None:
        """Open the store in the background; until it is open, answer "starting" without waiting."""
        if self._opening is None:
            self._open_started = now
            self._opening = self._executor.submit(self._open)
        if not self._opening.done():
            self.stats.skipped += 1
            if now - self._open_started > self.config.open_timeout_s:
                raise StoreUnavailable("timeout", f"feature store did not open within {self.config.open_timeout_s}s")
            raise StoreUnavailable("starting", "feature store is still opening (importing Feast, loading the registry)")
        exc = self._opening.exception()
        if exc is not None:
            self._opening = None  # try again after the back-off
            self.stats.failures += 1
            self._down_until = now + self.config.retry_after_s
            raise StoreUnavailable("error", f"feature store could not be opened: {type(exc).__name__}: {exc}"[:500])

    def _open(self) -> Any:
        if self._store is None:
            store = self._store_or_factory()
            store.list_feature_services()  # load the registry now, not on the first lookup
            self._store = store
        return self._store

    def _resolve(self, model: str, version: str) -> ServiceSpec | None:
        from feast import ValueType

        from feature_repo.store import feature_service_for, request_features

        store = self._open()
        try:
            service = feature_service_for(store, model, version)
        except LookupError:
            return None
        views = []
        for proj in service.feature_view_projections:
            fv = store.get_feature_view(proj.name)
            join_keys, types = [], []
            for col in fv.entity_columns:
                join_keys.append(proj.join_key_map.get(col.name, col.name))
                vt = col.dtype.to_value_type()
                types.append("string" if vt == ValueType.STRING else "int" if vt in (ValueType.INT64, ValueType.INT32) else "other")
            views.append(ViewSpec(proj.name_to_use(), tuple(join_keys), tuple(types), tuple(f.name for f in proj.features)))
        feats = frozenset(f for v in views for f in v.features)
        schema = ModelSchema(feats, frozenset(request_features(service)), f"feast:{store.project}/{service.name}")
        return ServiceSpec(model, version, service.name, tuple(views), schema)

    def _fetch(self, spec: ServiceSpec, wanted: Mapping[str, Mapping[tuple, None]]) -> dict[tuple[str, tuple], dict[str, Any]]:
        store = self._open()
        out: dict[tuple[str, tuple], dict[str, Any]] = {}
        for view in spec.views:
            keys = list(wanted.get(view.name, ()))
            for lo in range(0, len(keys), self.config.max_batch):
                chunk = keys[lo: lo + self.config.max_batch]
                entity_rows = {k: [key[j] for key in chunk] for j, k in enumerate(view.join_keys)}
                resp = store.get_online_features(features=view.refs, entity_rows=entity_rows).to_dict()
                self.stats.store_calls += 1
                self.stats.rows_requested += len(chunk)
                for r, key in enumerate(chunk):
                    out[(view.name, key)] = {f: _plain(resp[f][r]) for f in view.features}
        return out


def _open_failed(exc: BaseException) -> "StoreUnavailable":
    return StoreUnavailable("error", f"feature store did not open: {type(exc).__name__}: {exc}"[:500])


def _warm_lookup(store: Any) -> None:
    """One online lookup of an entity that does not exist: Feast initialises its online read path
    lazily (imports, connections), which takes longer than a lookup's timeout the first time."""
    from feast import ValueType

    try:
        for fv in store.list_feature_views():
            if not fv.entity_columns or not fv.features:
                continue
            row = {c.name: (0 if c.dtype.to_value_type() in (ValueType.INT64, ValueType.INT32) else "__driftloop_warmup__")
                   for c in fv.entity_columns}
            store.get_online_features(features=[f"{fv.name}:{fv.features[0].name}"], entity_rows=[row]).to_dict()
            return
    except Exception as exc:  # the store may be down; lookups will say so
        import logging

        logging.getLogger(__name__).debug("warm-up lookup failed: %r", exc)


def _key(view: ViewSpec, entity: Mapping[str, Any] | None) -> tuple | None:
    if not entity:
        return None
    key = []
    for k, t in zip(view.join_keys, view.key_types):
        v = entity.get(k)
        if v is None:
            return None
        if t == "string":
            v = str(v)
        elif t == "int":
            try:
                v = int(v)
            except (TypeError, ValueError):
                return None
        key.append(v)
    return tuple(key)


def _plain(v: Any) -> Any:
    if hasattr(v, "item") and not isinstance(v, (str, bytes)):
        try:
            return v.item()
        except (AttributeError, ValueError):
            return v
    return v
