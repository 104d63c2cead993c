"""Licence gate: may a model whose backbone carries these licences be registered or promoted?

A backbone's origin (:func:`trainers.architectures.origin_of`) lists its licences as SPDX ids
(``LicenseRef-...`` for others, e.g. ``LicenseRef-Llama-2-Community`` for weights derived
from Llama 2).  :class:`LicencePolicy` allows OSI-approved licences by default; anything else
is refused with the reason, unless the operator accepts that backbone explicitly in the
``licences`` config section::

    licences:
      allowed: [MIT, Apache-2.0, BSD-3-Clause]        # default: OSI_APPROVED
      accept:                                           # backbone (package name) -> why it is accepted
        wordllama: "token embeddings derived from Llama 2; our use is under its community licence"

The decision, with the acceptance when there is one, is recorded in the version's provenance.

>>> pol = LicencePolicy()
>>> pol.check({"package": "wordllama", "licences": ["MIT", "LicenseRef-Llama-2-Community"]}).allowed
False
>>> LicencePolicy(accept={"wordllama": "reviewed"}).check({"package": "wordllama",
...     "licences": ["MIT", "LicenseRef-Llama-2-Community"]}).accepted
True
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping

#: OSI-approved licences (SPDX ids) allowed by default.  Data licences (CC-BY-4.0) are not
#: software licences and are recorded, not gated.
OSI_APPROVED: tuple[str, ...] = (
    "MIT", "Apache-2.0", "BSD-2-Clause", "BSD-3-Clause", "ISC", "MPL-2.0", "Zlib", "0BSD",
    "LGPL-2.1-only", "LGPL-2.1-or-later", "LGPL-3.0-only", "LGPL-3.0-or-later",
    "GPL-2.0-only", "GPL-2.0-or-later", "GPL-3.0-only", "GPL-3.0-or-later",
    "AGPL-3.0-only", "AGPL-3.0-or-later", "EPL-2.0", "Python-2.0", "PSF-2.0", "Unlicense", "UPL-1.0",
)


class LicenceError(ValueError):
    """A backbone's licence is not allowed by the policy and was not accepted in config."""


@dataclass(frozen=True)
class LicenceDecision:
    """What the policy said about one backbone (JSON-able; kept in provenance)."""

    allowed: bool
    licences: list[str]
    refused: list[str] = field(default_factory=list)  # licences outside ``allowed``
    accepted: bool = False  # allowed only because the operator accepted it in config
    acceptance: str | None = None  # the operator's reason, from config
    reason: str = ""
    checked_at: float = field(default_factory=time.time)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class LicencePolicy:
    """The ``licences`` config section: allowed SPDX ids and explicit acceptances per backbone."""

    allowed: tuple[str, ...] = OSI_APPROVED
    accept: Mapping[str, str] = field(default_factory=dict)  # backbone package (or sha256) -> reason

    def __post_init__(self) -> None:
        object.__setattr__(self, "allowed", tuple(str(x) for x in self.allowed))
        acc = dict(self.accept or {})
        bad = [k for k, v in acc.items() if not str(v or "").strip()]
        if bad:
            raise ValueError(f"licences.accept needs a reason for each backbone; empty for {bad}")
        object.__setattr__(self, "accept", {str(k): str(v) for k, v in acc.items()})

    @classmethod
    def from_config(cls, section: Mapping[str, Any] | None) -> "LicencePolicy":
        s = dict(section or {})
        unknown = set(s) - {"allowed", "accept"}
        if unknown:
            raise ValueError(f"unknown keys in the licences section: {sorted(unknown)}; use allowed and accept")
        return cls(tuple(s.get("allowed") or OSI_APPROVED), dict(s.get("accept") or {}))

    def check(self, origin: Mapping[str, Any]) -> LicenceDecision:
        """Judge one backbone origin (``package``, ``sha256``, ``licences`` or ``licence``)."""
        lic = origin.get("licences")
        if lic is None:
            lic = [origin["licence"]] if origin.get("licence") else []
        lic = [str(x) for x in lic]
        name = str(origin.get("package") or origin.get("source") or "the backbone")
        if not lic:
            refused = ["(none recorded)"]
        else:
            refused = [x for x in lic if x not in self.allowed]
        if not refused:
            return LicenceDecision(True, lic, reason=f"{name}: {', '.join(lic)} allowed")
        keys = [str(origin.get(k)) for k in ("package", "sha256", "source") if origin.get(k)]
        why = next((self.accept[k] for k in keys if k in self.accept), None)
        if why is not None:
            return LicenceDecision(True, lic, refused, True, why,
                                   f"{name}: {', '.join(refused)} not in the allowed list; accepted in config: {why}")
        return LicenceDecision(
            False, lic, refused,
            reason=(f"{name}: licence {', '.join(refused)} is not allowed (allowed: OSI-approved licences unless "
                    f"licences.allowed says otherwise); to use it anyway, add `licences: {{accept: {{{keys[0] if keys else name}: "
                    f"\"<why this use is permitted>\"}}}}` to the config"),
        )

    def require(self, origin: Mapping[str, Any]) -> LicenceDecision:
        """:meth:`check`, raising :class:`LicenceError` with the reason when not allowed."""
        d = self.check(origin)
        if not d.allowed:
            raise LicenceError(d.reason)
        return d
