"""Continual fine-tuning of a PyTorch classifier, one experience at a time.

:class:`ContinualLearner` trains on a new experience with a replay batch mixed into
every step (new batch + replay batch), DER++-style distillation on the logits stored
with the replayed rows, an asymmetric loss on the new batch (ER-ACE: the new data
only competes among its own classes, so old classes are not pushed down), optional
online EWC, early stopping on a validation split, and seeded everything. After
training it adds the experience, with the model's logits, to the replay buffer.

>>> import numpy as np, torch
>>> from trainers.training.models import ModelSpec, build_model
>>> rng = np.random.default_rng(0)
>>> X = rng.normal(size=(200, 4)).astype("float32"); y = (X[:, 0] > 0).astype("int64")
>>> learner = ContinualLearner(build_model(ModelSpec(list("abcd"), 2, hidden=(16,)), seed=0),
...                            replay=ReplayBuffer(50), epochs=5, device="cpu")
>>> report = learner.fit(X, y)
>>> report.replay_size_after, bool((learner.predict(X) == y).mean() > 0.9)
(50, True)
"""

from __future__ import annotations

import copy
import os
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Mapping

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from trainers.training.replay import ReplayBuffer
from trainers.training.transfer import (STRATEGIES, PreparedModel, TransferConfig, layers_of,  # noqa: F401
                                        prepare, trainable_parameters)

__all__ = ["ContinualLearner", "FitReport", "OPTIMIZERS", "ReplayBuffer", "STRATEGIES", "TransferConfig",
           "layers_of", "trainable_parameters"]

OPTIMIZERS = ("sgd", "adam", "adamw")
#: default learning rate per optimizer when ``lr`` is not given
DEFAULT_LR = {"sgd": 0.1, "adam": 1e-3, "adamw": 1e-3}


@dataclass
class FitReport:
    """What one :meth:`ContinualLearner.fit` call did."""

    experience: int
    strategy: str
    epochs_run: int
    steps: int
    train_loss: float
    val_accuracy: float | None
    time_s: float
    device: str
    replay_size_before: int
    replay_size_after: int
    replay_nbytes: int
    stopped_early: bool
    n_train: int = 0
    n_val: int = 0
    best_epoch: int = 0
    trainable_params: int = 0
    lr: float = 0.0
    checkpoint: str | None = None
    history: list[dict[str, float]] = field(default_factory=list)
    total_params: int = 0
    transfer: dict[str, Any] = field(default_factory=dict)
    optimizer: str = "sgd"
    #: whether logit adjustment was on (only for an experience that brings unseen classes)
    logit_adjusted: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _as_tensor(a: Any, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    if isinstance(a, torch.Tensor):
        return a.detach().to(device=device, dtype=dtype)
    arr = np.asarray(a)
    if not arr.flags.writeable:  # e.g. from Ray's object store: torch would warn (and must not write to it)
        arr = arr.copy()
    return torch.as_tensor(arr, dtype=dtype, device=device)


class ContinualLearner:
    """Learns a sequence of experiences with a PyTorch classifier without forgetting.

    Every step trains on ``batch_size`` new rows plus ``replay_batch_size`` rows drawn
    from the buffer. The loss is cross-entropy on the new rows, ``replay_ce`` x
    cross-entropy on the replayed rows and ``distill`` x MSE between the model's logits
    and the logits stored with the replayed rows (DER++), with logit adjustment
    (``logit_adjust``: the log-prior of the mixed batch is added to the training logits,
    so the new classes' majority in each step is not learned as a bias).

    Defaults (Adam at 1e-3, ``distill`` 1.0, ``restore_best``: roll back to the best
    validation epoch) were chosen on the product's own case, domain-incremental tabular
    streams (``bench/continual_tabular.py``: census by year and a variant whose later
    years leave the first one's scale, with shifting label priors), where SGD at 0.1
    collapsed to the majority class; they stay within 2 points of the digits-tuned
    settings on ``bench/continual_digits.py``. ``min_steps``: an experience too small
    for ``epochs`` to give that many optimiser steps gets more epochs (early stopping
    still applies), so a retrain on a few hundred labelled rows is not left underfit.

    Logit adjustment is only on for an experience that brings classes the learner has
    not seen (class-incremental); for one with known classes only (domain-incremental,
    shifting priors) it is off, since there the priors of the stream are real.

    Options that did not win and stay off by default: ``ace`` (ER-ACE masking of the
    new-batch loss), ``mask_unseen_logits`` (no distillation target for classes not yet
    seen when a row was stored), ``ewc`` (online EWC).

    ``transfer``: a :class:`~trainers.training.transfer.TransferConfig` (or its dict):
    which parameters train (``head``, ``layers``, ``last_n``, ``full``, ``lora``), the
    backbone's learning-rate scale, the BatchNorm policy and LoRA settings. The older
    ``strategy``/``last_n`` keywords still work and map to it (``last_n`` counts the
    weight layers that forward runs); give either them or ``transfer``. Without
    ``transfer``, ``full`` trains every layer at ``lr`` (backbone scale 1.0, as
    before: the learner also trains base models from scratch). After :meth:`fit` with
    ``lora`` the adapters are merged: ``self.model`` has its original architecture.

    ``optimizer``: ``sgd`` (``momentum``, ``weight_decay`` as L2), ``adam`` (L2
    ``weight_decay``) or ``adamw`` (decoupled ``weight_decay``); ``momentum`` is for
    ``sgd`` only. ``lr`` defaults to 0.1 for ``sgd`` and 1e-3 for ``adam``/``adamw``.
    """

    def __init__(
        self,
        model: nn.Module,
        replay: ReplayBuffer | None = None,
        strategy: str | None = None,
        last_n: int | None = None,
        epochs: int = 20,
        lr: float | None = None,
        batch_size: int = 32,
        replay_batch_size: int = 32,
        distill: float = 1.0,
        ewc: float = 0.0,
        val_fraction: float = 0.1,
        patience: int = 5,
        seed: int = 0,
        device: str | None = None,
        checkpoint_dir: str | None = None,
        replay_ce: float = 1.0,
        ace: bool = False,
        momentum: float = 0.0,
        weight_decay: float = 0.0,
        ewc_decay: float = 1.0,
        min_val_samples: int = 20,
        mask_unseen_logits: bool = False,
        logit_adjust: float = 1.0,
        restore_best: bool = True,
        transfer: TransferConfig | Mapping[str, Any] | None = None,
        optimizer: str = "adam",
        min_steps: int = 300,
    ) -> None:
        if transfer is not None:
            if strategy is not None or last_n is not None:
                raise ValueError("give either transfer=TransferConfig(...) or the older strategy/last_n keywords, not both")
            transfer = transfer if isinstance(transfer, TransferConfig) else TransferConfig.from_dict(transfer)
        else:
            if strategy is not None and strategy not in STRATEGIES:
                raise ValueError(f"unknown strategy {strategy!r}; use one of {STRATEGIES}")
            transfer = TransferConfig(strategy=strategy or "full", last_n=2 if last_n is None else last_n,
                                      backbone_lr_scale=1.0)
        if optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {optimizer!r}; use one of {OPTIMIZERS}")
        if optimizer != "sgd" and momentum:
            raise ValueError(f"momentum is for optimizer 'sgd' only ({optimizer} has its own betas); drop momentum or use sgd")
        lr = DEFAULT_LR[optimizer] if lr is None else float(lr)
        if not lr > 0:
            raise ValueError(f"lr must be > 0, got {lr}")
        if not 0.0 <= val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
        if epochs < 1 or batch_size < 1 or replay_batch_size < 0:
            raise ValueError("epochs and batch_size must be >= 1, replay_batch_size >= 0")
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        self.model = model.to(self.device)
        self.replay = replay
        self.transfer = transfer
        self.strategy = transfer.strategy
        self.last_n = transfer.last_n
        self.optimizer = optimizer
        self.epochs = int(epochs)
        self.min_steps = int(min_steps)
        self.lr = lr
        self.batch_size = int(batch_size)
        self.replay_batch_size = int(replay_batch_size)
        self.distill = float(distill)
        self.replay_ce = float(replay_ce)
        self.ace = bool(ace)
        self.ewc = float(ewc)
        self.ewc_decay = float(ewc_decay)
        self.val_fraction = float(val_fraction)
        self.patience = int(patience)
        self.min_val_samples = int(min_val_samples)
        self.mask_unseen_logits = bool(mask_unseen_logits)
        self.logit_adjust = float(logit_adjust)
        self.restore_best = bool(restore_best)
        self.momentum = float(momentum)
        self.weight_decay = float(weight_decay)
        self.seed = int(seed)
        self.checkpoint_dir = checkpoint_dir
        self.experiences_seen = 0
        self.seen_classes: set[int] = set()
        if replay is not None and len(replay):
            self.seen_classes.update(replay.class_counts())
        self._fisher: dict[str, torch.Tensor] | None = None
        self._anchor: dict[str, torch.Tensor] | None = None

    # ----------------------------------------------------------------- public
    def fit(self, X: Any, y: Any) -> FitReport:
        """Learn one new experience ``(X, y)``; returns a :class:`FitReport`.

        Seeded by ``seed`` and the experience number, Dropout included: the global
        torch RNG is seeded inside and restored afterwards."""
        experience = self.replay.n_experiences if self.replay is not None else self.experiences_seen
        dev = self.device
        cuda = [dev.index if dev.index is not None else torch.cuda.current_device()] if dev.type == "cuda" else []
        with torch.random.fork_rng(devices=cuda):
            seed = (self.seed * 1_000_003 + experience) * 2 + 1
            torch.random.default_generator.manual_seed(seed)
            if cuda:
                with torch.cuda.device(cuda[0]):
                    torch.cuda.manual_seed(seed)
            return self._fit(X, y)

    def _fit(self, X: Any, y: Any) -> FitReport:
        t0 = time.perf_counter()
        dev = self.device
        X_all = _as_tensor(X, torch.float32, dev)
        y_all = _as_tensor(y, torch.int64, dev)
        if X_all.ndim != 2:
            X_all = X_all.reshape(X_all.shape[0], -1)
        if y_all.ndim != 1 or y_all.shape[0] != X_all.shape[0]:
            raise ValueError(f"y must be 1-D with one label per row of X: X {tuple(X_all.shape)}, y {tuple(y_all.shape)}")
        if X_all.shape[0] == 0:
            raise ValueError("fit() needs at least one example")
        experience = self.replay.n_experiences if self.replay is not None else self.experiences_seen
        gen = torch.Generator(device="cpu").manual_seed(self.seed * 1_000_003 + experience)

        # validation split (seeded, stratification is not needed at these sizes)
        n = X_all.shape[0]
        n_val = int(round(n * self.val_fraction))
        if n_val < self.min_val_samples or n - n_val < 1:
            n_val = 0
        perm = torch.randperm(n, generator=gen).to(dev)
        val_idx, tr_idx = perm[:n_val], perm[n_val:]
        Xt, yt = X_all[tr_idx], y_all[tr_idx]
        Xv, yv = X_all[val_idx], y_all[val_idx]
        n_tr = Xt.shape[0]

        new_classes = sorted(set(y_all.unique().tolist()))
        n_out = self._n_outputs(Xt[:1])
        if max(new_classes) >= n_out or min(new_classes) < 0:
            raise ValueError(f"labels must be in [0, {n_out}) for this model, got {new_classes}")
        unseen_before = set(new_classes) - self.seen_classes
        self.seen_classes.update(new_classes)
        # ER-ACE: the new batch competes only among the classes of this experience
        new_mask = None
        if self.ace and self.replay is not None and len(self.replay):
            new_mask = torch.full((n_out,), float("-inf"), device=dev)
            new_mask[new_classes] = 0.0

        # replay rows on the device once; logits NaN = no target
        replay_before = len(self.replay) if self.replay is not None else 0
        use_replay = replay_before > 0 and self.replay_batch_size > 0
        if use_replay:
            rX, ry, rL = self.replay.arrays()
            Xr = _as_tensor(rX, torch.float32, dev)
            yr = _as_tensor(ry, torch.int64, dev)
            if rL is not None and self.distill > 0:
                L = _as_tensor(rL[:, :n_out], torch.float32, dev)
                Lmask = ~torch.isnan(L)
                Lr = torch.nan_to_num(L, nan=0.0)
                Lw = Lmask.float()
            else:
                Lr = None
        # logit adjustment (Menon et al. 2021): add tau*log(prior of the mixed stream) to the
        # training logits so that the new classes' majority in each step is not learned as bias.
        # Only when the experience brings unseen classes: with known classes only (domain shift)
        # the stream's priors are real and must be learned.
        bs, rbs = self.batch_size, self.replay_batch_size
        adjust = None
        if use_replay and self.logit_adjust > 0 and unseen_before:
            prior = torch.bincount(yt, minlength=n_out).float() / n_tr * bs
            prior += torch.bincount(yr, minlength=n_out).float() / len(yr) * min(rbs, len(yr))
            prior = prior / prior.sum()
            adjust = self.logit_adjust * torch.log(prior.clamp_min(1e-12))
            adjust = torch.where(prior > 0, adjust, torch.zeros_like(adjust))
            if new_mask is not None:
                new_mask = new_mask + adjust
        prepared = prepare(self.model, self.transfer, self.lr, Xt[:1], generator=gen)
        try:
            opt = self._optimizer(prepared.param_groups)
            ewc_terms = self._ewc_terms(prepared) if self.ewc > 0 else None
        except BaseException:
            prepared.finalize(merge=False)
            raise

        steps_per_epoch = (n_tr + bs - 1) // bs
        n_epochs = max(self.epochs, -(-self.min_steps // max(steps_per_epoch, 1)))  # small experiences: enough steps
        history: list[dict[str, float]] = []
        best_score, best_state, best_epoch, bad = -float("inf"), None, 0, 0
        steps, epochs_run, stopped_early, last_loss = 0, 0, False, float("nan")
        prepared.train_mode()
        try:
            for epoch in range(n_epochs):
                order = torch.randperm(n_tr, generator=gen).to(dev)
                if use_replay:
                    need = steps_per_epoch * rbs
                    reps = (need + len(yr) - 1) // len(yr)
                    rorder = torch.cat([torch.randperm(len(yr), generator=gen) for _ in range(reps)])[:need].to(dev)
                total = torch.zeros((), device=dev)
                for s in range(steps_per_epoch):
                    idx = order[s * bs : (s + 1) * bs]
                    xb, yb = Xt[idx], yt[idx]
                    b = xb.shape[0]
                    if use_replay:
                        ridx = rorder[s * rbs : (s + 1) * rbs]
                        out = self.model(torch.cat([xb, Xr[ridx]]))
                        out_new, out_rep = out[:b], out[b:]
                    else:
                        out_new = self.model(xb)
                    if new_mask is not None:
                        loss = F.cross_entropy(out_new + new_mask, yb)
                    elif adjust is not None:
                        loss = F.cross_entropy(out_new + adjust, yb)
                    else:
                        loss = F.cross_entropy(out_new, yb)
                    if use_replay:
                        if self.replay_ce > 0:
                            rep = out_rep + adjust if adjust is not None else out_rep
                            loss = loss + self.replay_ce * F.cross_entropy(rep, yr[ridx])
                        if Lr is not None:
                            w = Lw[ridx]
                            loss = loss + self.distill * (((out_rep - Lr[ridx]) ** 2) * w).sum() / w.sum().clamp_min(1.0)
                    if ewc_terms:
                        loss = loss + self._ewc_penalty(prepared, ewc_terms)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    total = total + loss.detach()
                    steps += 1
                epochs_run += 1
                last_loss = float(total) / max(steps_per_epoch, 1)
                rec = {"epoch": epoch + 1, "train_loss": last_loss}
                if n_val:
                    val_loss, val_acc = self._evaluate(Xv, yv)
                    rec.update(val_loss=val_loss, val_accuracy=val_acc)
                    score = val_acc - 1e-3 * val_loss  # accuracy first, loss breaks ties
                    if score > best_score + 1e-9:
                        best_score, best_epoch, bad = score, epoch + 1, 0
                        if self.restore_best:
                            best_state = copy.deepcopy(self.model.state_dict())
                    else:
                        bad += 1
                    prepared.train_mode()
                history.append(rec)
                if n_val and bad >= self.patience:
                    stopped_early = True
                    break
            if best_state is not None:
                self.model.load_state_dict(best_state)
        except BaseException:
            prepared.finalize(merge=False)  # a failed run leaves no adapters behind
            raise
        self.model = prepared.finalize()  # LoRA: adapters merged, original architecture
        self.model.eval()
        val_accuracy = self._evaluate(Xv, yv)[1] if n_val else None

        if self.ewc > 0:
            self._update_fisher(Xt, yt)
        if self.replay is not None:
            with torch.no_grad():
                logits = self._logits(X_all).cpu().numpy()
            unseen = [c for c in range(n_out) if c not in self.seen_classes]
            if self.mask_unseen_logits:
                logits[:, unseen] = np.nan  # no distillation target for classes not yet learned
            self.replay.add(X_all.cpu().numpy(), y_all.cpu().numpy(), logits, experience=experience)
        self.experiences_seen += 1
        ckpt = self._checkpoint(experience) if self.checkpoint_dir else None
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        return FitReport(
            experience=experience,
            strategy=self.strategy,
            epochs_run=epochs_run,
            steps=steps,
            train_loss=last_loss,
            val_accuracy=val_accuracy,
            time_s=time.perf_counter() - t0,
            device=str(dev) if dev.type != "cuda" else f"cuda:{torch.cuda.get_device_name(dev)}",
            replay_size_before=replay_before,
            replay_size_after=len(self.replay) if self.replay is not None else 0,
            replay_nbytes=self.replay.nbytes if self.replay is not None else 0,
            stopped_early=stopped_early,
            n_train=n_tr,
            n_val=n_val,
            best_epoch=best_epoch or epochs_run,
            trainable_params=prepared.n_trainable,
            lr=self.lr,
            checkpoint=ckpt,
            history=history,
            total_params=prepared.n_total,
            transfer=self.transfer.to_dict(),
            optimizer=self.optimizer,
            logit_adjusted=adjust is not None,
        )

    @torch.no_grad()
    def predict_proba(self, X: Any, batch_size: int = 4096) -> np.ndarray:
        """Class probabilities, shape ``(n, n_classes)``."""
        X = _as_tensor(X, torch.float32, self.device)
        was = self.model.training
        self.model.eval()
        try:
            return torch.softmax(self._logits(X, batch_size), dim=1).cpu().numpy()
        finally:
            self.model.train(was)

    def predict(self, X: Any) -> np.ndarray:
        """Predicted class per row."""
        return self.predict_proba(X).argmax(axis=1)

    # ---------------------------------------------------------------- helpers
    def _n_outputs(self, x1: torch.Tensor) -> int:
        with torch.no_grad():
            was = self.model.training
            self.model.eval()
            n = int(self.model(x1).shape[1])
            self.model.train(was)
        return n

    @torch.no_grad()
    def _logits(self, X: torch.Tensor, batch_size: int = 4096) -> torch.Tensor:
        return torch.cat([self.model(X[i : i + batch_size]) for i in range(0, X.shape[0], batch_size)])

    @torch.no_grad()
    def _evaluate(self, X: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
        self.model.eval()
        out = self._logits(X)
        return float(F.cross_entropy(out, y)), float((out.argmax(1) == y).float().mean())

    def _optimizer(self, groups: list[dict[str, Any]]) -> torch.optim.Optimizer:
        if self.optimizer == "sgd":
            return torch.optim.SGD(groups, lr=self.lr, momentum=self.momentum, weight_decay=self.weight_decay)
        if self.optimizer == "adam":
            return torch.optim.Adam(groups, lr=self.lr, weight_decay=self.weight_decay)
        return torch.optim.AdamW(groups, lr=self.lr, weight_decay=self.weight_decay)

    def _ewc_terms(self, prepared: PreparedModel) -> list[tuple[str, torch.Tensor, torch.Tensor]]:
        """(name, Fisher, anchor) for the trained weights (LoRA: the merged weights)."""
        if self._fisher is None or self._anchor is None:
            return []
        trained = prepared.effective_parameters()
        anchor = self._anchor
        return [(k, self._fisher[k], anchor[k]) for k in self._fisher if k in trained]

    def _ewc_penalty(self, prepared: PreparedModel, terms) -> torch.Tensor:
        current = prepared.effective_parameters()
        return 0.5 * self.ewc * sum((f * (current[k] - a) ** 2).sum() for k, f, a in terms)

    def _update_fisher(self, X: torch.Tensor, y: torch.Tensor, batch_size: int = 256) -> None:
        """Online EWC: decayed sum of the diagonal empirical Fisher (mean of squared
        per-example gradients, via ``torch.func``), anchored at the new weights."""
        from torch.func import functional_call, grad, vmap

        self.model.eval()
        named = {k: p.detach() for k, p in self.model.named_parameters()}
        buffers = {k: b.detach() for k, b in self.model.named_buffers()}

        def loss_one(p, x, t):
            out = functional_call(self.model, (p, buffers), (x.unsqueeze(0),))
            return F.cross_entropy(out, t.unsqueeze(0))

        per_example = vmap(grad(loss_one), in_dims=(None, 0, 0))
        fisher = {k: torch.zeros_like(p) for k, p in named.items()}
        n = X.shape[0]
        for i in range(0, n, batch_size):
            g = per_example(named, X[i : i + batch_size], y[i : i + batch_size])
            for k in fisher:
                fisher[k] += (g[k] ** 2).sum(0) / n
        if self._fisher is not None:
            fisher = {k: self.ewc_decay * self._fisher[k] + fisher[k] for k in fisher}
        self._fisher = fisher
        self._anchor = {k: p.clone() for k, p in named.items()}

    def _checkpoint(self, experience: int) -> str:
        os.makedirs(self.checkpoint_dir, exist_ok=True)
        path = os.path.join(self.checkpoint_dir, f"experience-{experience:04d}.pt")
        state = {k: v.detach().cpu() for k, v in self.model.state_dict().items()}
        torch.save(state, path + ".tmp")
        os.replace(path + ".tmp", path)
        if self.replay is not None:
            self.replay.save(os.path.join(self.checkpoint_dir, f"experience-{experience:04d}-replay.npz"))
        return path


def as_predict_proba(model: nn.Module | Callable[[np.ndarray], np.ndarray]) -> Callable[[np.ndarray], np.ndarray]:
    """A numpy ``X -> probabilities`` function for a torch module or such a callable."""
    if isinstance(model, nn.Module):
        def f(X: np.ndarray) -> np.ndarray:
            dev = next(model.parameters()).device
            was = model.training
            model.eval()
            try:
                with torch.no_grad():
                    return torch.softmax(model(_as_tensor(X, torch.float32, dev)), dim=1).cpu().numpy()
            finally:
                model.train(was)
        return f
    return model
