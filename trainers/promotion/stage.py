"""What happens to a candidate that passed the offline promotion gate: promoted (and watched), or served in shadow
first; pure apart from the registry it is given (used by :mod:`trainers.retrain_job`)."""

from __future__ import annotations

import logging
from typing import Any, Sequence

from trainers.records import ModelUpdate, RetrainRequest

log = logging.getLogger("driftloop.retrain_job")


def put_forward(registry: Any, req: RetrainRequest, version: str, reasons: Sequence[str], promotion: Any = None,
                licence_policy: Any = None) -> ModelUpdate | None:
    """Promote candidate ``version`` of ``req.model`` (watched when ``promotion.watch``), or with ``promotion.shadow``
    serve it in shadow until the live gate decides (:mod:`trainers.promotion.live_gate`); returns the model update
    to publish.  None when the live version moved while the candidate trained (it stays registered, not served)."""
    current = registry.current(req.model)
    if current not in (req.model_version, None):
        log.warning("current version of %s moved from %s to %s while training; candidate %s registered, not promoted",
                    req.model, req.model_version, current, version)
        return None
    why = "; ".join([f"passed the promotion gate on request {req.request_id} ({', '.join(req.kinds)})", *reasons])
    actor = f"retrain job (request {req.request_id})"
    if promotion is not None and promotion.shadow and current is not None:
        watch = registry.watch(req.model)
        if watch:  # the live version is still being judged against its parent: one comparison at a time
            log.warning("v%s of %s is watched after its promotion (v%s in shadow); candidate %s registered, not put in "
                        "shadow: promote it by hand once the watch ends, or retrain again", watch["version"], req.model,
                        watch["parent"], version)
            return None
        return registry.start_shadow(req.model, version, actor=actor, licence_policy=licence_policy,
                                     reason=why + "; in shadow until the live gate decides (promotion.shadow)")
    return registry.promote(req.model, version, licence_policy=licence_policy, actor=actor, reason=why,
                            watch=promotion is not None and promotion.watch and current is not None)
