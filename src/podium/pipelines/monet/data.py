"""Photos and Monets read one jpg at a time: torch Datasets over the index table's paths.

Nothing here holds a domain's pixels: an image is decoded (and area-resized, once per
read) when a DataLoader asks for it, inside its workers, so memory stays at a few batches
whether there are 120 photos or 7,038. Images already in memory (a notebook, the tests)
go through :class:`ArrayImages`, which gives the very same tensors.

No kedro or mlflow imports.
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from podium.core.device import Runtime
from podium.core.seeding import dataloader_kwargs
from podium.layouts.monet import read_image

__all__ = [
    "ArrayImages",
    "JpegImages",
    "LazyEntries",
    "PairedBatches",
    "Tolerant",
    "UnreadableImageError",
    "ZipJpegs",
    "ImageChecks",
    "as_images",
    "decode_jpeg",
    "encode_jpeg",
    "make_loader",
    "to_chw_uint8",
    "to_tensor_images",
]


def encode_jpeg(image: np.ndarray, quality: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(image, dtype=np.uint8)).save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def decode_jpeg(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGB"))


class UnreadableImageError(ValueError):
    """A jpg the index said was readable could not be decoded."""


def to_chw_uint8(image: np.ndarray, size: int | None) -> torch.Tensor:
    """One uint8 (H, W, 3) image -> a uint8 (3, size, size) tensor, area-resized where its
    size differs (``size`` None: as it is)."""
    tensor = torch.tensor(np.asarray(image)).permute(2, 0, 1)  # a copy: inputs stay read-only
    if size is not None and tuple(tensor.shape[-2:]) != (size, size):
        resized = F.interpolate(tensor[None].float(), size=(size, size), mode="area")[0]
        tensor = resized.round().clamp(0, 255).to(torch.uint8)
    return tensor.contiguous()


class JpegImages(Dataset):
    """The jpgs at ``paths`` as uint8 (3, size, size) tensors, decoded on access.

    ``load(i)`` gives ``(tensor, None)`` or ``(None, reason)``; indexing raises
    :class:`UnreadableImageError` naming the file (the index was checked beforehand, so a
    failure here means the file changed under the run).
    """

    def __init__(self, paths: Sequence[str | os.PathLike], size: int | None = None) -> None:
        self.paths = [os.fspath(p) for p in paths]
        self.size = size

    def __len__(self) -> int:
        return len(self.paths)

    def load(self, index: int) -> tuple[torch.Tensor | None, str | None]:
        image, reason = read_image(self.paths[index])
        if image is None:
            return None, reason
        return to_chw_uint8(image, self.size), None

    def __getitem__(self, index: int) -> torch.Tensor:
        image, reason = self.load(index)
        if image is None:
            raise UnreadableImageError(f"{self.paths[index]}: {reason}")
        return image


class ArrayImages(Dataset):
    """Decoded uint8 (H, W, 3) images held by the caller, served like :class:`JpegImages`."""

    def __init__(self, images: Sequence[np.ndarray], size: int | None = None) -> None:
        self.images = images
        self.size = size

    def __len__(self) -> int:
        return len(self.images)

    def load(self, index: int) -> tuple[torch.Tensor | None, str | None]:
        return to_chw_uint8(self.images[index], self.size), None

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.load(index)[0]


def as_images(images: Dataset | Sequence[np.ndarray], size: int) -> Dataset:
    """A Dataset of uint8 (3, size, size) tensors: a Dataset (e.g. :class:`JpegImages` built
    with ``size``) as it is, decoded arrays wrapped in :class:`ArrayImages`."""
    return images if isinstance(images, Dataset) else ArrayImages(images, size)


def to_tensor_images(images: Sequence[np.ndarray], size: int) -> torch.Tensor:
    """uint8 (H, W, 3) images of any sizes -> one uint8 (N, 3, size, size) tensor, each
    image area-resized where its size differs (the same tensors the Datasets give)."""
    return torch.stack([to_chw_uint8(image, size) for image in images]).contiguous()


class Tolerant(Dataset):
    """``(index, image, reason)`` per item: an unreadable one comes back as a zero image and
    its reason (``""`` when fine), so a batch never fails for one bad file and the caller
    skips and reports it."""

    def __init__(self, images: JpegImages | ArrayImages, size: int) -> None:
        self.images, self.size = images, size

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[int, torch.Tensor, str]:
        image, reason = self.images.load(index)
        if image is None:
            return index, torch.zeros((3, self.size, self.size), dtype=torch.uint8), str(reason)
        return index, image, ""


class ImageChecks(Dataset):
    """Whether each jpg decodes: ``reason`` per path, ``""`` for a good one. The pixels stay
    in the worker that decoded them."""

    def __init__(self, paths: Sequence[str | os.PathLike]) -> None:
        self.paths = [os.fspath(p) for p in paths]

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> str:
        return read_image(self.paths[index])[1] or ""


class ZipJpegs(Dataset):
    """The jpgs ``names`` of a zip (a lazy ``{name: bytes}`` mapping) as uint8 (H, W, 3)."""

    def __init__(self, members: Mapping[str, bytes], names: Sequence[str]) -> None:
        self.members, self.names = members, list(names)

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, index: int) -> torch.Tensor:
        return torch.from_numpy(decode_jpeg(self.members[self.names[index]]).copy())


class PairedBatches(Dataset):
    """Step ``k`` of an epoch: the photos ``order_a[k*b:(k+1)*b]`` and the Monets
    ``order_b[k*b:(k+1)*b]``, each stacked into a uint8 (n, 3, size, size) batch. The order
    comes from the training's seeded generator; a worker only decodes."""

    def __init__(
        self,
        domain_a: Dataset,
        domain_b: Dataset,
        order_a: torch.Tensor,
        order_b: torch.Tensor,
        batch_size: int,
    ) -> None:
        self.domain_a, self.domain_b = domain_a, domain_b
        self.order_a, self.order_b = order_a.tolist(), order_b.tolist()
        self.batch_size = batch_size

    def __len__(self) -> int:
        return math.ceil(len(self.order_a) / self.batch_size)

    def __getitem__(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        window = slice(step * self.batch_size, (step + 1) * self.batch_size)
        batch_a = torch.stack([self.domain_a[i] for i in self.order_a[window]])
        batch_b = torch.stack([self.domain_b[i] for i in self.order_b[window]])
        return batch_a, batch_b


def make_loader(
    dataset: Dataset,
    runtime: Runtime,
    *,
    batch_size: int | None,
    seed: int = 0,
    collate_fn: Any = None,
) -> DataLoader:
    """A DataLoader in dataset order over ``runtime.num_workers`` seeded workers (pinned on
    CUDA). ``batch_size`` None: the dataset's items are whole batches already."""
    kwargs = dataloader_kwargs(seed, runtime.num_workers, pin_memory=runtime.pin_memory)
    if collate_fn is not None:
        kwargs["collate_fn"] = collate_fn
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, **kwargs)


class LazyEntries:
    """A re-iterable stream: each ``iter()`` calls ``produce()`` afresh. A node returns one
    so that its dataset writes the entries as they are produced."""

    def __init__(self, produce: Callable[[], Iterator[Any]]) -> None:
        self._produce = produce

    def __iter__(self) -> Iterator[Any]:
        return self._produce()
