"""The registry's live evaluation: a candidate judged on live traffic before promotion (shadow), and a promoted
version watched after promotion (its parent in shadow) and rolled back or kept.

State in ``index.json``: ``shadow`` = ``{"version", "since", "actor", "reason"}`` (the candidate servers shadow), ``watch``
= ``{"version", "parent", "since"}`` (a promotion under watch; servers shadow the parent); at most one of them at a
time. Each version's entry keeps its ``live_verdict`` (:func:`trainers.registry_records.live_verdict`). Every change is
in the serving history (``changes``) with ``version`` = the live version, so ``served_at`` is unchanged by them.

Every method returns the :class:`~trainers.records.ModelUpdate` to publish, whose ``version`` is the live version and
``shadow`` what servers shadow from then on.  Redone after a crash (the same decision already recorded), ``start_shadow``,
``reject``, ``end_watch`` and ``rollback(version=...)`` change nothing and return None; a decision that contradicts the
registry's state raises :class:`RegistryError` saying what to do.
"""

from __future__ import annotations

import time
from typing import Any, Mapping

from trainers.licences import LicencePolicy
from trainers.records import ModelUpdate
from trainers.registry_records import RegistryError, _check_name, live_change, live_verdict, set_live_verdict


class LiveEvaluation:
    """Methods of :class:`trainers.registry.ModelRegistry` (a mixin: it uses the registry's index and lock)."""

    def shadow(self, model: str) -> dict[str, Any] | None:
        """The candidate in shadow (``{"version", "since", "actor", "reason"}``), or None."""
        s = self._read_index(model).get("shadow")
        return dict(s) if s else None

    def watch(self, model: str) -> dict[str, Any] | None:
        """The promotion under watch (``{"version", "parent", "since"}``: the parent is in shadow), or None."""
        w = self._read_index(model).get("watch")
        return dict(w) if w else None

    def _check_servable(self, model: str, version: str, licence_policy: LicencePolicy | None) -> None:
        """What a version must pass before it serves, live or in shadow: its files (hashes, signature) and its
        backbone's licence (:class:`LicenceError`)."""
        self.verify(model, version)
        base = self._info(model, version, self._read_index(model)).provenance.get("base_model") or {}
        if base:
            (licence_policy or LicencePolicy()).require(base)

    def start_shadow(self, model: str, version: str, *, actor: str = "", reason: str = "",
                     licence_policy: LicencePolicy | None = None) -> ModelUpdate | None:
        """Serve ``version`` in shadow of the live version (checked as :meth:`promote` checks it), replacing the
        candidate in shadow if there is one.  None when ``version`` is already in shadow."""
        version = _check_name("version", version)
        self._check_servable(model, version, licence_policy)
        with self._locked(model):
            index = self._read_index(model)
            live = _live(model, index, version)
            if version == live:
                raise RegistryError(f"version {version} of {model!r} is live; shadow a candidate other than the live version")
            watch = index.get("watch")
            if watch:
                raise RegistryError(
                    f"v{watch['version']} of {model!r} is watched after its promotion (v{watch['parent']} in shadow); "
                    "end the watch (end_watch) or roll back before shadowing another candidate")
            old = (index.get("shadow") or {}).get("version")
            if old == version:
                return None
            index["shadow"] = {"version": version, "since": time.time(), "actor": actor, "reason": reason}
            index.setdefault("changes", []).append(live_change("shadow", index, version, actor, reason, replaced=old))
            self._write_index(model, index)
            return self._live_update(model, index, "shadow", shadow=version)

    def reject(self, model: str, version: str, *, evidence: Mapping[str, Any], actor: str = "",
               reason: str = "") -> ModelUpdate | None:
        """Refuse the candidate in shadow on live evidence: nothing is shadowed any more and ``version`` keeps the
        verdict ``rejected`` with ``evidence``.  None when it was already rejected and is no longer in shadow."""
        version = _check_name("version", version)
        with self._locked(model):
            index = self._read_index(model)
            entry = _entry(model, index, version)
            shadow = (index.get("shadow") or {}).get("version")
            if shadow != version:
                if (entry.get("live_verdict") or {}).get("verdict") == "rejected":
                    return None
                raise RegistryError(
                    f"version {version} of {model!r} is not in shadow (in shadow: {shadow or 'nothing'}); only the "
                    "candidate in shadow can be rejected: start_shadow it first")
            set_live_verdict(entry, live_verdict("rejected", actor, reason, evidence))
            del index["shadow"]
            index.setdefault("changes", []).append(live_change("reject", index, version, actor, reason))
            self._write_index(model, index)
            return self._live_update(model, index, "reject")

    def end_watch(self, model: str, version: str, *, evidence: Mapping[str, Any], actor: str = "",
                  reason: str = "") -> ModelUpdate | None:
        """End the watch of the live ``version``: it stays live with the verdict ``kept`` (``evidence``) and its
        parent is no longer shadowed.  None when that watch already ended with it kept."""
        version = _check_name("version", version)
        with self._locked(model):
            index = self._read_index(model)
            entry = _entry(model, index, version)
            watch = index.get("watch") or {}
            live = index.get("current")
            if not (watch.get("version") == version == live):
                if (entry.get("live_verdict") or {}).get("verdict") == "kept" and watch.get("version") != version:
                    return None
                if version != live:
                    raise RegistryError(
                        f"version {version} of {model!r} is not live (live: {live}); a watch ends only on the live "
                        "version: if it was rolled back, its watch is over")
                raise RegistryError(f"version {version} of {model!r} is live but not watched; promote(..., watch=True) "
                                    "starts a watch")
            set_live_verdict(entry, live_verdict("kept", actor, reason, evidence))
            del index["watch"]
            index.setdefault("changes", []).append(
                live_change("watch_end", index, version, actor, reason, parent=watch.get("parent")))
            self._write_index(model, index)
            return self._live_update(model, index, "watch_end")

    def _live_update(self, model: str, index: Mapping[str, Any], action: str, shadow: str | None = None) -> ModelUpdate:
        live = index["current"]
        return ModelUpdate(model=model, version=live, previous_version=live, action=action,
                           sha256=index["versions"][live]["weights_sha256"], shadow=shadow)


def _entry(model: str, index: Mapping[str, Any], version: str) -> dict[str, Any]:
    entry = index["versions"].get(version)
    if entry is None:
        raise RegistryError(f"model {model!r} has no version {version!r}; see `driftloop models list {model}`")
    return entry


def _live(model: str, index: Mapping[str, Any], version: str) -> str:
    _entry(model, index, version)
    live = index.get("current")
    if live is None:
        raise RegistryError(f"model {model!r} has no live version to compare v{version} with; promote one first")
    return live
