"""The engine's parts: gradient accumulation, a custom step, EMA, checkpointed generators,
lr multipliers, resumable launches and paired sampling."""

from __future__ import annotations

import pytest
import torch
from timm.utils import ModelEmaV3
from torch import nn
from torch.utils.data import TensorDataset

from podium.core import ddp, resume
from podium.core.config import ParameterError
from podium.core.device import resolve_runtime
from podium.core.optim import build_optimizer, build_scheduler
from podium.core.training import fit, seeded_loader, updates_per_epoch

CPU = resolve_runtime({"device": "cpu", "precision": "fp32", "num_workers": 0})


def _data(n: int = 32) -> TensorDataset:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 5, generator=g)
    return TensorDataset(x, (x @ torch.arange(5.0) > 0).long())


def _net(seed: int = 1) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 2))


def _train(batch_size: int, accumulate: int = 1, **kwargs) -> nn.Module:
    net = _net()
    loader = seeded_loader(_data(), batch_size, shuffle=False, seed=0, runtime=CPU)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    defaults = {"loss_fn": nn.functional.cross_entropy}
    fit(
        net,
        loader,
        optimizer=optimizer,
        epochs=2,
        device="cpu",
        progress=False,
        accumulate=accumulate,
        **{**defaults, **kwargs},
    )
    return net


def _close(a: nn.Module, b: nn.Module, atol: float = 1e-6) -> bool:
    return all(
        torch.allclose(x, y, atol=atol)
        for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True)
    )


def test_accumulating_two_half_batches_is_one_full_batch():
    full, accumulated = _train(8), _train(4, accumulate=2)
    assert _close(full, accumulated)
    assert not _close(full, _train(4))  # twice the optimizer steps: other weights


def test_an_epochs_short_last_group_is_stepped_and_averaged_over_its_batches():
    # 32 samples in batches of 8, groups of 3: 3 + 1 micro-batches, 2 optimizer steps
    loader = seeded_loader(_data(), 8, shuffle=False, seed=0, runtime=CPU)
    assert updates_per_epoch(loader, 3) == 2
    net = _net()
    steps = []
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    optimizer.register_step_post_hook(lambda *_: steps.append(1))
    fit(net, loader, loss_fn=nn.functional.cross_entropy, optimizer=optimizer, epochs=1,
        device="cpu", progress=False, accumulate=3)  # fmt: skip
    assert len(steps) == 2


def test_a_custom_step_equals_the_loss_path_and_logs_its_parts():
    def step(net, batch, num_updates):
        x, y = batch
        loss = nn.functional.cross_entropy(net(x), y)
        return loss, {"half": loss.detach() / 2}

    plain = _train(8)
    net = _net()
    loader = seeded_loader(_data(), 8, shuffle=False, seed=0, runtime=CPU)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    history = fit(net, loader, step_fn=step, optimizer=optimizer, epochs=2, device="cpu",
                  progress=False)  # fmt: skip
    assert _close(plain, net, atol=0)
    assert history[-1]["train_half"] == pytest.approx(history[-1]["train_loss"] / 2)
    with pytest.raises(TypeError, match="exactly one"):
        fit(net, loader, optimizer=optimizer, epochs=1, device="cpu")


def _noisy_ema_run(checkpoint, epochs: int, *, restore_generator: bool = True):
    """A step whose inputs get noise from its own generator, with an EMA of the weights."""
    net = _net()
    ema = ModelEmaV3(net, decay=0.9, use_warmup=True, warmup_gamma=1.0, warmup_power=1.0)
    noise = torch.Generator().manual_seed(7)
    seen = []

    def step(net, batch, num_updates):
        seen.append(num_updates)
        x, y = batch
        x = x + 0.1 * torch.randn(x.shape, generator=noise)
        return nn.functional.cross_entropy(net(x), y)

    loader = seeded_loader(_data(), 8, shuffle=True, seed=3, runtime=CPU)
    optimizer = torch.optim.AdamW(net.parameters(), lr=0.01)
    fit(net, loader, step_fn=step, optimizer=optimizer, epochs=epochs, device="cpu",
        progress=False, ema=ema, checkpoint_path=checkpoint,
        generators={"noise": noise} if restore_generator else None)  # fmt: skip
    return net, ema.module, seen


def test_a_resumed_run_repeats_the_uninterrupted_one_with_its_ema_and_generators(tmp_path):
    net, teacher, seen = _noisy_ema_run(tmp_path / "once.pt", 3)
    assert seen == list(range(12))  # 4 steps an epoch, counted across epochs
    _noisy_ema_run(tmp_path / "split.pt", 1)
    resumed_net, resumed_teacher, resumed_seen = _noisy_ema_run(tmp_path / "split.pt", 3)
    assert resumed_seen == list(range(4, 12))
    assert _close(net, resumed_net, atol=0) and _close(teacher, resumed_teacher, atol=0)
    assert not _close(net, teacher)

    _noisy_ema_run(tmp_path / "lost.pt", 1, restore_generator=False)
    lost, _, _ = _noisy_ema_run(tmp_path / "lost.pt", 3, restore_generator=False)
    assert not _close(net, lost, atol=0)  # the noise generator restarted: another run


def test_a_checkpoint_without_an_expected_state_is_refused(tmp_path):
    _train(8, checkpoint_path=tmp_path / "plain.pt")
    net = _net()
    ema = ModelEmaV3(net, decay=0.9)
    loader = seeded_loader(_data(), 8, shuffle=False, seed=0, runtime=CPU)
    with pytest.raises(ValueError, match="holds no 'ema' state"):
        fit(net, loader, loss_fn=nn.functional.cross_entropy, ema=ema, epochs=3, device="cpu",
            optimizer=torch.optim.SGD(net.parameters(), lr=0.1),
            checkpoint_path=tmp_path / "plain.pt")  # fmt: skip


class EncoderDecoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4))
        self.decoder = nn.Linear(4, 2)


def test_lr_multipliers_give_a_submodule_its_own_rate_that_schedules_scale():
    spec = {"name": "adamw", "lr": 1e-3, "weight_decay": 0.01, "lr_multipliers": {"decoder": 10}}
    net = EncoderDecoder()
    optimizer = build_optimizer(net, spec)
    owner = {id(p): name for name, p in net.named_parameters()}
    rates = {
        owner[id(p)]: (g["lr"], g["weight_decay"])
        for g in optimizer.param_groups
        for p in g["params"]
    }
    assert rates["encoder.0.weight"] == (1e-3, 0.01)
    assert rates["encoder.0.bias"] == (1e-3, 0.0) and rates["encoder.1.weight"] == (1e-3, 0.0)
    assert rates["decoder.weight"] == pytest.approx((1e-2, 0.01))
    schedule = build_scheduler(optimizer, {"name": "poly", "per": "step", "power": 1.0},
                               epochs=2, steps_per_epoch=5)  # fmt: skip
    schedule.after_update(5)  # half-way: every rate halved, the ratio kept
    lrs = sorted({round(g["lr"], 8) for g in optimizer.param_groups})
    assert lrs == [5e-4, 5e-3]
    with pytest.raises(ParameterError, match=r"optimizer\.lr_multipliers.*head"):
        build_optimizer(net, {**spec, "lr_multipliers": {"head": 10}})


def test_fractional_warmup_only_per_step():
    optimizer = build_optimizer([nn.Parameter(torch.zeros(1))], {"name": "sgd", "lr": 1.0})
    spec = {"name": "cosine", "warmup_epochs": 0.5, "warmup_lr": 0.0}
    schedule = build_scheduler(optimizer, {**spec, "per": "step"}, epochs=2, steps_per_epoch=4)
    schedule.after_update(1)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.5)  # 1 of 2 warm-up steps
    with pytest.raises(ParameterError, match="warmup_epochs"):
        build_scheduler(optimizer, spec, epochs=2, steps_per_epoch=4)


def _job(job, checkpoints):
    job["calls"].append(checkpoints)
    return {"value": torch.tensor(job["value"])}


def test_launch_resumable_keeps_a_finished_result_and_drops_its_checkpoints(tmp_path):
    folder = resume.checkpoint_folder(tmp_path, {"lr": 1}, resume=False)
    assert (folder / resume.SETTINGS_FILE).exists()
    calls: list = []
    first = resume.launch_resumable(_job, {"value": 3, "calls": calls}, folder / "a")
    assert calls == [str(folder / "a" / resume.CHECKPOINTS)]
    assert not (folder / "a" / resume.CHECKPOINTS).exists()
    again = resume.launch_resumable(_job, {"value": 4, "calls": calls}, folder / "a")
    assert len(calls) == 1 and int(again["value"]) == int(first["value"]) == 3

    assert resume.checkpoint_folder(tmp_path, {"lr": 1}, resume=True) == folder
    assert (folder / "a" / resume.RESULT_FILE).exists()  # latest keeps it
    assert resume.checkpoint_folder(tmp_path, {"lr": 2}, resume=True) != folder
    resume.checkpoint_folder(tmp_path, {"lr": 1}, resume=False)
    assert not (folder / "a").exists()  # afresh empties it
    assert resume.launch_resumable(_job, {"value": 5, "calls": calls}, None)["value"] == 5
    assert calls[-1] is None


def test_resume_from_is_checked():
    assert resume.check_resume_from("x.resume_from", "latest") is True
    assert resume.check_resume_from("x.resume_from", None) is False
    with pytest.raises(ParameterError, match="x.resume_from"):
        resume.check_resume_from("x.resume_from", "last")
    with pytest.raises(ParameterError, match="needs a checkpoint folder"):
        resume.check_resume_from("x.resume_from", "latest", None)


def test_zip_sampler_pairs_epoch_seeded_draws_and_rank_block_splits_in_order():
    source = ddp.DistributedWeightedSampler([0.0, 1.0, 1.0], 6, num_replicas=1, rank=0, seed=1)
    target = ddp.DistributedWeightedSampler([1.0] * 4, 6, num_replicas=1, rank=0, seed=2)
    pairs = ddp.ZipSampler(source, target)
    pairs.set_epoch(1)
    first = list(pairs)
    assert len(first) == len(pairs) == 6 and all(s in (1, 2) for s, _ in first)
    pairs.set_epoch(1)
    assert list(pairs) == first
    pairs.set_epoch(2)
    assert list(pairs) != first
    assert len(ddp.rank_block(list(range(5)))) == 5  # one process: everything


def _square_where(job, checkpoints):
    import os

    return {"value": job * job, "pid": os.getpid(), "checkpoints": checkpoints}


def test_jobs_strategy_runs_independent_trainings_side_by_side_in_job_order(tmp_path):
    settings = ddp.resolve_distributed({"nproc_per_node": 2, "strategy": "jobs"})
    assert settings.world_size == 1 and settings.parallel_jobs == 2 and not settings.enabled
    folders = [tmp_path / f"job{i}" for i in range(4)]
    results = resume.run_jobs(
        _square_where, [(i, f) for i, f in zip(range(4), folders, strict=True)], settings=settings
    )
    assert [r["value"] for r in results] == [0, 1, 4, 9]
    assert len({r["pid"] for r in results}) == 2  # two worker processes, neither this one
    assert all(r["pid"] != __import__("os").getpid() for r in results)
    assert all((f / resume.RESULT_FILE).exists() for f in folders)  # each result kept
    sequential = resume.run_jobs(_square_where, [(3, None)], settings=settings)
    assert sequential[0]["pid"] == __import__("os").getpid()  # one job: no cluster
    with pytest.raises(ParameterError, match="strategy"):
        ddp.resolve_distributed(
            {"nnodes": 2, "rdzv_endpoint": "h:1", "rdzv_id": "x", "strategy": "jobs"}
        )


class Augmented(torch.utils.data.Dataset):
    """Random crops' worth of augmentation drawn by albumentations' own generators."""

    def __init__(self) -> None:
        import albumentations as A

        g = torch.Generator().manual_seed(0)
        self.images = (torch.rand(16, 8, 8, 3, generator=g) * 255).to(torch.uint8).numpy()
        self.augment = A.Compose(
            [A.HorizontalFlip(p=0.5), A.RandomBrightnessContrast(p=1.0)], seed=0
        )

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        image = self.augment(image=self.images[i])["image"]
        x = torch.from_numpy(image.astype("float32") / 255).flatten()[:5]
        return x, int(i % 2)


def _augmented_run(checkpoint, epochs: int) -> nn.Module:
    net = _net()
    loader = seeded_loader(Augmented(), 4, shuffle=True, seed=2, runtime=CPU)  # no workers
    fit(net, loader, loss_fn=nn.functional.cross_entropy, epochs=epochs, device="cpu",
        optimizer=torch.optim.SGD(net.parameters(), lr=0.5), progress=False,
        checkpoint_path=checkpoint)  # fmt: skip
    return net


def test_without_loader_workers_a_resumed_run_draws_the_same_augmentations(tmp_path, monkeypatch):
    once = _augmented_run(tmp_path / "once.pt", 3)
    _augmented_run(tmp_path / "split.pt", 1)
    assert _close(once, _augmented_run(tmp_path / "split.pt", 3), atol=0)

    from podium.core import training

    monkeypatch.setattr(training, "reseed_main_process_transforms", lambda loader, epoch: None)
    unseeded_once = _augmented_run(tmp_path / "unseeded_once.pt", 3)
    _augmented_run(tmp_path / "unseeded.pt", 1)  # the transforms' streams restart on resume
    assert not _close(unseeded_once, _augmented_run(tmp_path / "unseeded.pt", 3), atol=0)
