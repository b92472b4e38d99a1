"""CycleGAN: podium's full training step against the CycleGAN authors' reference step.

Issue 18, part 4. Both sides do one whole CycleGAN iteration per step on the same
random photo and Monet batches (in [-1, 1], the generators' range), on the same device,
in the same precision (``runtime.precision``; ``--precision`` overrides it), in one
process:

- **podium**: ``podium.pipelines.monet.train.CycleGAN.step``, the object
  ``train_cyclegan`` builds (its four networks from ``model.py``, its two Adams, its
  image pools, its GradScaler, channels_last where the runtime asks for it): both
  generators, all six generator losses, the discriminator update from the pools;
- **reference**: the same iteration written here from the CycleGAN authors' published
  architecture and settings (Zhu et al. 2017, appendix 7.2, and their
  pytorch-CycleGAN-and-pix2pix code's defaults): ResnetGenerator (c7s1-64, two stride-2
  convolutions, residual blocks, two transposed convolutions, c7s1-3, tanh; instance norm
  without affine, reflection padding, biased convolutions), the 70x70 PatchGAN (ndf 64,
  3 layers), LSGAN, lambda_A = lambda_B = 10, lambda_identity 0.5, Adam 2e-4 (0.5, 0.999),
  50-image pools drawing from Python's ``random``, and the authors' order: forward both
  cycles, freeze the discriminators, the generator update, unfreeze, each discriminator's
  loss backpropagated on its own, one discriminator step. It keeps the default memory
  format (the authors' code has no channels_last) and uses the same autocast (and loss
  scaling where fp16) as podium, which the authors' code does not have.

Settings (``--gan-settings``): **base** is podium's own configuration (``--env`` chooses
it, conf/base by default: 64 px crops, ngf 16, 6 blocks, batch 4), the reference built at
the same size, widths, depth and batch; **reference** is the paper's (256 px, 9 blocks,
ngf 64, ndf 64, batch 1) for both sides. On CPU the reference setting runs at 128 px by
default (a 128 px step takes about 4 s on one core, a 256 px one about four times that),
2 timed steps a round; the table says so.
``--gan-size``, ``--gan-blocks`` and ``--gan-batch`` override every setting's crop size,
residual blocks and batch, ``--gan-steps`` and ``--gan-warmup`` the steps timed and not.

The check that the two are the same computation where they should be: the generators'
and the discriminators' parameter counts of both sides (``params`` in the table: equal
means the same layers), then podium's initial weights copied into the reference networks
(where every parameter's shape agrees), one step of each on the same batch, and the
largest relative difference of the losses (the generators' total and the
discriminators') and of the weights after that step. Both sides then go on from the same
weights, so neither is timed on, say, denormals the other does not have.

Timing: the copy-and-compare step and ``--gan-warmup`` more steps of each side run
untimed (allocator, cuDNN's autotuning), then ``--repeats`` rounds of ``--gan-steps`` steps
of each side, the order swapped every round, each window synchronised with the GPU at both
ends. Medians over the rounds; the ratio podium / reference is taken inside each round,
then its median (its range in brackets). Images/s counts photo-Monet pairs.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import math
import random
import statistics
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from podium.core.config import soft_merged

SETTINGS = ("base", "reference")
#: The paper's settings (and the authors' code defaults for CycleGAN), in podium's keys.
PAPER = {
    "data": {"crop_size": 256},
    "model": {
        "generator": "resnet",
        "padding": "reflect",
        "ngf": 64,
        "n_blocks": 9,
        "ndf": 64,
        "d_layers": 3,
        "init_gain": 0.02,
    },
    "loss": {"lambda_cycle": 10.0, "lambda_identity": 0.5},
    "optimizer": {"lr": 2e-4, "beta1": 0.5, "beta2": 0.999},
    "train": {"batch_size": 1, "pool_size": 50, "grad_clip": None},
}
#: The reference setting's crop on CPU unless --gan-size says otherwise.
CPU_REFERENCE_SIZE = 128
#: Timed steps per round and untimed ones, by (device type, setting).
STEPS = {("cpu", "base"): 5, ("cpu", "reference"): 2}
CUDA_STEPS, CPU_WARMUP, CUDA_WARMUP = 30, 1, 5


# ---------------------------------------------------------------------------- arguments


def _settings(text: str) -> list[str]:
    chosen = [s for s in text.split(",") if s]
    unknown = sorted(set(chosen) - set(SETTINGS))
    if not chosen or unknown:
        raise argparse.ArgumentTypeError(f"choose from {list(SETTINGS)}, got {text!r}")
    return list(dict.fromkeys(chosen))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("cyclegan suite")
    group.add_argument(
        "--gan-settings", type=_settings, default=list(SETTINGS), help="base,reference"
    )
    group.add_argument(
        "--gan-size",
        type=int,
        default=None,
        help="crop size of every setting (default: base's own; reference 256, on CPU 128)",
    )
    group.add_argument(
        "--gan-blocks", type=int, default=None, help="residual blocks, every setting"
    )
    group.add_argument("--gan-batch", type=int, default=None, help="batch of every setting")
    group.add_argument(
        "--gan-steps",
        type=int,
        default=None,
        help=f"timed steps per side and round (CPU: base 5, reference 2; CUDA {CUDA_STEPS})",
    )
    group.add_argument(
        "--gan-warmup",
        type=int,
        default=None,
        help=f"untimed steps per side after the check step (CPU {CPU_WARMUP}, CUDA {CUDA_WARMUP})",
    )


# ---------------------------------------------------------------------------- the reference


def _norm(channels: int) -> nn.Module:
    return nn.InstanceNorm2d(channels, affine=False, track_running_stats=False)


class ReferenceResidual(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        half = [nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3, bias=True), _norm(dim)]
        self.conv_block = nn.Sequential(*half, nn.ReLU(True), *copy.deepcopy(half))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv_block(x)


def reference_generator(ngf: int = 64, n_blocks: int = 9) -> nn.Module:
    """The paper's ResnetGenerator: c7s1-ngf, d2ngf, d4ngf, n_blocks x R4ngf, u2ngf, ungf,
    c7s1-3, tanh (every convolution biased, instance norm without affine)."""
    layers = [nn.ReflectionPad2d(3), nn.Conv2d(3, ngf, 7), _norm(ngf), nn.ReLU(True)]
    for width in (ngf, 2 * ngf):
        layers += [nn.Conv2d(width, 2 * width, 3, 2, 1), _norm(2 * width), nn.ReLU(True)]
    layers += [ReferenceResidual(4 * ngf) for _ in range(n_blocks)]
    for width in (4 * ngf, 2 * ngf):
        up = nn.ConvTranspose2d(width, width // 2, 3, 2, 1, output_padding=1)
        layers += [up, _norm(width // 2), nn.ReLU(True)]
    layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, 3, 7), nn.Tanh()]
    return nn.Sequential(*layers)


def reference_discriminator(ndf: int = 64, n_layers: int = 3) -> nn.Module:
    """The 70x70 PatchGAN: C64 (no norm), C128, C256 at stride 2, C512 at stride 1, a
    1-channel 4x4 convolution; LeakyReLU 0.2, widths capped at 8 ndf."""
    layers: list[nn.Module] = [nn.Conv2d(3, ndf, 4, 2, 1), nn.LeakyReLU(0.2, True)]
    width = ndf
    for n in range(1, n_layers + 1):
        wider = ndf * min(2**n, 8)
        stride = 2 if n < n_layers else 1
        layers += [nn.Conv2d(width, wider, 4, stride, 1), _norm(wider), nn.LeakyReLU(0.2, True)]
        width = wider
    layers.append(nn.Conv2d(width, 1, 4, 1, 1))
    return nn.Sequential(*layers)


def _normal_init(net: nn.Module, gain: float = 0.02) -> nn.Module:
    for m in net.modules():
        if isinstance(m, nn.Conv2d | nn.ConvTranspose2d):
            nn.init.normal_(m.weight, 0.0, gain)
            nn.init.zeros_(m.bias)
    return net


class ReferencePool:
    """Shrivastava et al.'s history: stored while not full, then a coin flip per image
    between returning it and swapping it for a random stored one (Python's ``random``)."""

    def __init__(self, size: int, seed: int) -> None:
        self.size, self.images, self.random = size, [], random.Random(seed)

    def query(self, images: torch.Tensor) -> torch.Tensor:
        if self.size == 0:
            return images
        out = []
        for image in images.detach():
            image = image.unsqueeze(0)
            if len(self.images) < self.size:
                self.images.append(image)
                out.append(image)
            elif self.random.uniform(0, 1) > 0.5:
                slot = self.random.randint(0, self.size - 1)
                out.append(self.images[slot].clone())
                self.images[slot] = image
            else:
                out.append(image)
        return torch.cat(out, 0)


class ReferenceCycleGAN:
    """The authors' optimize_parameters: G_A photo -> Monet, G_B back, D_A judges Monets
    (G_A's), D_B photos; same autocast and (fp16) loss scaling as podium's side."""

    def __init__(self, ngf: int, ndf: int, n_blocks: int, n_layers: int, pool: int, amp) -> None:
        device = amp.device
        self.g_a, self.g_b = (_normal_init(reference_generator(ngf, n_blocks)) for _ in "ab")
        self.d_a, self.d_b = (_normal_init(reference_discriminator(ndf, n_layers)) for _ in "ab")
        for net in self.nets:
            net.to(device).train()
        adam = {"lr": PAPER["optimizer"]["lr"], "betas": (0.5, 0.999)}
        self.opt_g = torch.optim.Adam([*self.g_a.parameters(), *self.g_b.parameters()], **adam)
        self.opt_d = torch.optim.Adam([*self.d_a.parameters(), *self.d_b.parameters()], **adam)
        self.pool_a, self.pool_b = ReferencePool(pool, 1), ReferencePool(pool, 2)
        self.amp = amp
        self.scaler = torch.amp.GradScaler(device.type, enabled=amp.dtype == torch.float16)
        self.ones = torch.tensor(1.0, device=device)
        self.zeros = torch.tensor(0.0, device=device)
        self.lambda_a = self.lambda_b = PAPER["loss"]["lambda_cycle"]
        self.lambda_idt = PAPER["loss"]["lambda_identity"]

    @property
    def nets(self) -> tuple[nn.Module, ...]:
        return self.g_a, self.g_b, self.d_a, self.d_b

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if not self.amp.enabled:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.amp.device.type, dtype=self.amp.dtype)

    def _gan(self, prediction: torch.Tensor, real: bool) -> torch.Tensor:  # LSGAN
        return F.mse_loss(prediction, (self.ones if real else self.zeros).expand_as(prediction))

    @staticmethod
    def _trainable(nets: Sequence[nn.Module], flag: bool) -> None:
        for net in nets:
            for p in net.parameters():
                p.requires_grad = flag

    def _backward_d(self, d: nn.Module, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        with self._autocast():
            loss = 0.5 * (self._gan(d(real), True) + self._gan(d(fake.detach()), False))
        self.scaler.scale(loss).backward()
        return loss.detach()

    def step(self, real_a: torch.Tensor, real_b: torch.Tensor) -> dict[str, torch.Tensor]:
        with self._autocast():
            fake_b = self.g_a(real_a)
            rec_a = self.g_b(fake_b)
            fake_a = self.g_b(real_b)
            rec_b = self.g_a(fake_a)
        self._trainable((self.d_a, self.d_b), False)
        self.opt_g.zero_grad()
        with self._autocast():
            idt_a = F.l1_loss(self.g_a(real_b), real_b) * self.lambda_b * self.lambda_idt
            idt_b = F.l1_loss(self.g_b(real_a), real_a) * self.lambda_a * self.lambda_idt
            loss_g = (
                self._gan(self.d_a(fake_b), True)
                + self._gan(self.d_b(fake_a), True)
                + F.l1_loss(rec_a, real_a) * self.lambda_a
                + F.l1_loss(rec_b, real_b) * self.lambda_b
                + idt_a
                + idt_b
            )
        self.scaler.scale(loss_g).backward()
        self.scaler.step(self.opt_g)
        self._trainable((self.d_a, self.d_b), True)
        self.opt_d.zero_grad()
        loss_d_a = self._backward_d(self.d_a, real_b, self.pool_b.query(fake_b))
        loss_d_b = self._backward_d(self.d_b, real_a, self.pool_a.query(fake_a))
        self.scaler.step(self.opt_d)
        self.scaler.update()
        return {"g": loss_g.detach().float(), "d": (loss_d_a + loss_d_b).float()}


# ---------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class Setting:
    name: str
    monet: dict  # podium's monet block for this setting
    size: int
    own_size: int  # the setting's own crop (conf or the paper's)
    size_from_flag: bool  # --gan-size chose ``size``
    batch: int
    steps: int
    warmup: int
    deterministic: bool

    @property
    def model(self) -> dict:
        return self.monet["model"]


def make_setting(name: str, monet: Mapping[str, Any], args: argparse.Namespace, cuda: bool):
    monet = (
        soft_merged(monet, copy.deepcopy(PAPER))
        if name == "reference"
        else copy.deepcopy(dict(monet))
    )
    own = int(monet["data"]["crop_size"])
    size = args.gan_size
    if size is None:
        size = CPU_REFERENCE_SIZE if name == "reference" and not cuda else own
    overrides: dict[str, Any] = {"data": {"crop_size": size, "load_size": size}}
    if args.gan_blocks is not None:
        overrides["model"] = {"n_blocks": args.gan_blocks}
    if args.gan_batch is not None:
        overrides["train"] = {"batch_size": args.gan_batch}
    monet = soft_merged(monet, copy.deepcopy(overrides))
    steps = args.gan_steps
    if steps is None:
        steps = CUDA_STEPS if cuda else STEPS[("cpu", name)]
    warmup = (
        args.gan_warmup if args.gan_warmup is not None else (CUDA_WARMUP if cuda else CPU_WARMUP)
    )
    if steps < 1 or warmup < 0 or size < 32:
        raise SystemExit("--gan-steps must be >= 1, --gan-warmup >= 0 and --gan-size >= 32")
    deterministic = False if name == "reference" else bool(monet.get("deterministic", False))
    batch = int(monet["train"]["batch_size"])
    flag = args.gan_size is not None
    return Setting(name, monet, size, own, flag, batch, steps, warmup, deterministic)


# ---------------------------------------------------------------------------- the check


def _count(nets: Sequence[nn.Module]) -> int:
    """Parameters of one network of the pair (the authors' code prints them so: 11.378 M
    a generator, 2.765 M a discriminator at the paper's settings); -1 if the two differ."""
    counts = {sum(p.numel() for p in net.parameters()) for net in nets}
    return counts.pop() if len(counts) == 1 else -1


def _copy_weights(source: Sequence[nn.Module], target: Sequence[nn.Module]) -> bool:
    """``source``'s parameters into ``target``'s, in order, if every shape agrees."""
    pairs = [
        (list(src.parameters()), list(tgt.parameters()))
        for src, tgt in zip(source, target, strict=True)
    ]
    shapes = [([p.shape for p in s], [p.shape for p in t]) for s, t in pairs]
    if any(a != b for a, b in shapes):
        return False
    with torch.no_grad():
        for s, t in pairs:
            for p, q in zip(s, t, strict=True):
                q.copy_(p)
    return True


def _relative(ours: nn.Module, theirs: nn.Module) -> float:
    """||ours - theirs|| / ||theirs|| over a network's whole parameter vector (per tensor,
    the biases before an instance norm, whose gradient is zero but for rounding, would
    make Adam's first step noise)."""
    with torch.no_grad():
        a = torch.cat([p.detach().float().flatten() for p in ours.parameters()])
        b = torch.cat([p.detach().float().flatten() for p in theirs.parameters()])
        return float((a - b).norm() / b.norm().clamp_min(1e-12))


@dataclass
class Check:
    generator_params_podium: int
    generator_params_reference: int
    discriminator_params_podium: int
    discriminator_params_reference: int
    same_weights: bool  # podium's initial weights copied into the reference
    loss_g_podium: float = math.nan
    loss_g_reference: float = math.nan
    loss_d_podium: float = math.nan
    loss_d_reference: float = math.nan
    loss_rel_diff: float = math.nan  # the larger of the two losses' relative differences
    weights_rel_diff: float = math.nan  # the largest over the four networks, after one step

    @property
    def params_match(self) -> bool:
        return (
            self.generator_params_podium == self.generator_params_reference
            and self.discriminator_params_podium == self.discriminator_params_reference
        )


def check(podium, podium_nets, reference, ours_batch, reference_batch) -> Check:
    """Parameter counts, then one step of each from the same weights on the same batch
    (podium's in its memory format)."""
    ours_g, ours_d = podium_nets[:2], podium_nets[2:]
    theirs = reference.nets
    same = _copy_weights(podium_nets, theirs)
    found = Check(_count(ours_g), _count(theirs[:2]), _count(ours_d), _count(theirs[2:]), same)
    ours = podium.step(*ours_batch)
    refs = reference.step(*reference_batch)
    if same:
        found.loss_g_podium = float(sum(v for k, v in ours.items() if not k.startswith("d_")))
        found.loss_d_podium = float(ours["d_monet"] + ours["d_photo"])
        found.loss_g_reference, found.loss_d_reference = float(refs["g"]), float(refs["d"])
        found.loss_rel_diff = max(
            abs(found.loss_g_podium - found.loss_g_reference) / abs(found.loss_g_reference),
            abs(found.loss_d_podium - found.loss_d_reference) / abs(found.loss_d_reference),
        )
        found.weights_rel_diff = max(
            _relative(a, b) for a, b in zip(podium_nets, theirs, strict=True)
        )
    return found


# ---------------------------------------------------------------------------- timing


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(step: Callable[[], Any], steps: int, device: torch.device) -> tuple[float, float]:
    """Wall seconds of ``steps`` calls of ``step`` and this process's CPU share over them."""
    _sync(device)
    begin, cpu = time.perf_counter(), time.process_time()
    for _ in range(steps):
        step()
    _sync(device)
    seconds = time.perf_counter() - begin
    return seconds, (time.process_time() - cpu) / seconds


@dataclass
class Round:
    podium_seconds: float
    reference_seconds: float
    podium_cpu: float
    reference_cpu: float
    podium_first: bool


def _median(values: Sequence[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return float(statistics.median(finite)) if finite else math.nan


@contextlib.contextmanager
def _torch_state(threads: int | None) -> Iterator[None]:
    """Threads and determinism flags set for the suite and put back afterwards."""
    saved = (
        torch.get_num_threads(),
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        torch.backends.cudnn.deterministic,
        torch.backends.cudnn.benchmark,
    )
    try:
        if threads:  # as the project's hook does before every run
            torch.set_num_threads(int(threads))
        yield
    finally:
        torch.set_num_threads(saved[0])
        torch.use_deterministic_algorithms(saved[1], warn_only=saved[2])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = saved[3:]


def measure(setting: Setting, runtime: Any, repeats: int, seed: int) -> dict:
    """One setting: build both sides, check them, time them; its table row."""
    from podium.core.device import to_channels_last
    from podium.core.seeding import make_generator, seed_everything
    from podium.pipelines.monet.train import SUB_MODELS, CycleGAN, check_training

    m = setting.monet
    check_training(m["data"], m["train"], m["loss"], m["optimizer"], m["model"])
    seed_everything(seed, setting.deterministic)
    device = runtime.device
    podium = CycleGAN(
        m["model"], m["loss"], m["optimizer"], m["train"], runtime, make_generator(seed)
    )
    podium.nets.train()
    podium_nets = [podium.nets[name] for name in SUB_MODELS]  # G_ab, G_ba, D_monet, D_photo
    model = m["model"]
    reference = ReferenceCycleGAN(
        model["ngf"], model["ndf"], model["n_blocks"], model["d_layers"], 50, runtime.amp
    )
    shape = (setting.batch, 3, setting.size, setting.size)
    random_images = torch.Generator().manual_seed(seed)
    real_a, real_b = ((torch.rand(shape, generator=random_images) * 2 - 1).to(device) for _ in "ab")
    ours_a, ours_b = real_a, real_b  # as CycleGAN.prepare hands them to the step
    if runtime.channels_last:
        ours_a, ours_b = (to_channels_last(x, device) for x in (real_a, real_b))

    print(f"==> cyclegan {setting.name}: checking at {setting.size} px", flush=True)
    found = check(podium, podium_nets, reference, (ours_a, ours_b), (real_a, real_b))

    def ours() -> None:
        podium.step(ours_a, ours_b)

    def theirs() -> None:
        reference.step(real_a, real_b)

    for _ in range(setting.warmup):
        ours()
        theirs()
    rounds: list[Round] = []
    for repeat in range(repeats):
        podium_first = repeat % 2 == 0
        if podium_first:
            (ps, pc), (rs, rc) = (
                timed(ours, setting.steps, device),
                timed(theirs, setting.steps, device),
            )
        else:
            (rs, rc), (ps, pc) = (
                timed(theirs, setting.steps, device),
                timed(ours, setting.steps, device),
            )
        rounds.append(Round(ps, rs, pc, rc, podium_first))
        images = setting.steps * setting.batch
        print(
            f"    cyclegan {setting.name} repeat {repeat + 1}/{repeats}: podium "
            f"{images / ps:8.2f} img/s, reference {images / rs:8.2f} img/s",
            flush=True,
        )
    return _row(setting, runtime, found, rounds)


def _row(setting: Setting, runtime: Any, found: Check, rounds: Sequence[Round]) -> dict:
    images = setting.steps * setting.batch
    ratios = [r.reference_seconds / r.podium_seconds for r in rounds]
    model = setting.model
    return {
        "case": setting.name,
        "model": (
            f"{model['generator']} {model['n_blocks']} blocks ngf{model['ngf']} "
            f"/ PatchGAN ndf{model['ndf']} x{model['d_layers']}"
        ),
        "size": setting.size,
        "own_size": setting.own_size,
        "size_from_flag": setting.size_from_flag,
        "batch_size": setting.batch,
        "n_blocks": int(model["n_blocks"]),
        "ngf": int(model["ngf"]),
        "ndf": int(model["ndf"]),
        "precision": runtime.amp.name,
        "channels_last": runtime.channels_last,
        "deterministic": setting.deterministic,
        "torch_threads": torch.get_num_threads(),
        "repeats": len(rounds),
        "timed_steps": setting.steps,
        "warmup_steps": setting.warmup,
        "podium_images_per_second": _median([images / r.podium_seconds for r in rounds]),
        "reference_images_per_second": _median([images / r.reference_seconds for r in rounds]),
        "podium_seconds_per_step": _median([r.podium_seconds / setting.steps for r in rounds]),
        "reference_seconds_per_step": _median(
            [r.reference_seconds / setting.steps for r in rounds]
        ),
        "ratio": _median(ratios),
        "ratio_min": min(ratios),
        "ratio_max": max(ratios),
        "podium_cpu_share": _median([r.podium_cpu for r in rounds]),
        "reference_cpu_share": _median([r.reference_cpu for r in rounds]),
        **asdict(found),
        "params_match": found.params_match,
        "samples": [asdict(r) for r in rounds],
    }


def run(args: argparse.Namespace, context: Any) -> list[dict]:
    from podium.core.device import resolve_runtime

    parameters = soft_merged(context.parameters, copy.deepcopy(getattr(args, "params", None) or {}))
    runtime_conf = dict(parameters.get("runtime") or {})
    runtime_conf |= {"device": context.device, "num_workers": 0}
    if getattr(args, "precision", None) is not None:
        runtime_conf["precision"] = args.precision
    runtime = resolve_runtime(runtime_conf)
    cuda = runtime.device.type == "cuda"
    monet = parameters["monet"]
    rows = []
    with _torch_state(runtime_conf.get("torch_threads")):
        for name in args.gan_settings:
            setting = make_setting(name, monet, args, cuda)
            begun = time.perf_counter()
            row = measure(setting, runtime, args.repeats, int(monet.get("seed", 0)))
            row["case_seconds"] = round(time.perf_counter() - begun, 1)
            rows.append(row)
            if cuda:
                torch.cuda.empty_cache()
    return rows


# ---------------------------------------------------------------------------- reporting


def _f(value: Any, digits: int = 2) -> str:
    if not isinstance(value, int | float) or not math.isfinite(value):
        return ""
    return f"{value:,.{digits}f}"


def _size(r: Mapping[str, Any]) -> str:
    if r["size"] == r["own_size"]:
        return str(r["size"])
    why = "--gan-size" if r.get("size_from_flag") else "CPU default"
    return f"{r['size']} (own {r['own_size']}; {why})"


def _params(podium: int, reference: int) -> str:
    return f"{podium:,}" if podium == reference else f"{podium:,} vs {reference:,}"


def markdown(rows: Sequence[dict]) -> str:
    lines = [
        "### CycleGAN: podium's training step against the authors' reference step",
        "",
        "One whole iteration per step (both generators and their six losses, both "
        "discriminators on the 50-image pools, both Adam updates) on the same random "
        "batches, device and precision. podium: `CycleGAN.step`; reference: the authors' "
        "architecture and `optimize_parameters` order (ResnetGenerator, 70x70 PatchGAN, "
        "LSGAN, lambda 10, identity 0.5, Adam 2e-4, requires_grad toggling), default memory "
        "format. base: podium's conf settings for both; reference: the paper's (256 px, "
        "9 blocks, ngf/ndf 64, batch 1), on CPU at a reduced size unless `--gan-size`. img/s: "
        "photo-Monet pairs a second (medians over interleaved rounds); ratio = podium / "
        "reference (its range in brackets). params: parameters of one generator / one "
        "discriminator, one number where both sides agree; same step: the largest relative difference of "
        "the losses and of the weights after one step from the same weights and batch.",
        "",
        "| settings | model | size | batch | precision | steps | podium img/s "
        "| reference img/s | ratio | params G / D | same step (loss, weights) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        spread = ""
        if r["repeats"] > 1:
            spread = f" ({_f(r['ratio_min'])}-{_f(r['ratio_max'])})"
        same = "weights not comparable"
        if r["same_weights"]:
            same = f"{r['loss_rel_diff']:.1e}, {r['weights_rel_diff']:.1e}"
        lines.append(
            f"| {r['case']} | {r['model']} | {_size(r)} | {r['batch_size']} "
            f"| {r['precision']}{' cl' if r['channels_last'] else ''} "
            f"| {r['repeats']} x {r['timed_steps']} "
            f"| {_f(r['podium_images_per_second'])} | {_f(r['reference_images_per_second'])} "
            f"| {_f(r['ratio'])}{spread} "
            f"| {_params(r['generator_params_podium'], r['generator_params_reference'])} / "
            f"{_params(r['discriminator_params_podium'], r['discriminator_params_reference'])} "
            f"| {same} |"
        )
    return "\n".join(lines)


METRICS = (
    "podium_images_per_second",
    "reference_images_per_second",
    "ratio",
    "podium_seconds_per_step",
    "reference_seconds_per_step",
    "generator_params_podium",
    "generator_params_reference",
    "discriminator_params_podium",
    "discriminator_params_reference",
    "loss_rel_diff",
    "weights_rel_diff",
)


def metrics(rows: Sequence[dict]) -> dict[str, float]:
    """``bench/cyclegan/<settings>/<metric>`` for every row, and ``params_match`` as 0 or 1."""
    out: dict[str, float] = {}
    for r in rows:
        for key in METRICS:
            value = r[key]
            if isinstance(value, int | float) and math.isfinite(value):
                out[f"bench/cyclegan/{r['case']}/{key}"] = float(value)
        out[f"bench/cyclegan/{r['case']}/params_match"] = float(r["params_match"])
    return out
