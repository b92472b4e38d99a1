"""Albumentations 2.x pipelines built from a list in the parameters file.

``[{"name": "HorizontalFlip", "p": 0.5}, {"name": "OneOf", "p": 0.3, "transforms": [...]},
{"name": "Normalize"}, {"name": "ToTensorV2"}]`` becomes an ``A.Compose``. Names and
keyword arguments are checked against the installed albumentations (2.x renamed many
arguments), so a stale argument stops the run naming its entry, e.g. ``mask.augment.train[2]``.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Mapping, Sequence
from functools import cache
from typing import Any

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # no PyPI version check on import

import albumentations as A  # noqa: E402
import numpy as np  # noqa: E402
from albumentations.core.composition import BaseCompose  # noqa: E402
from albumentations.core.transforms_interface import BasicTransform  # noqa: E402
from pydantic import RootModel, model_validator  # noqa: E402

from podium.core.config import ParameterError, check_choice, check_keys  # noqa: E402
from podium.core.params import TypedBlock  # noqa: E402

#: Composes that take a nested ``transforms`` list.
COMPOSITES = ("OneOf", "SomeOf", "Sequential", "RandomOrder", "OneOrOther")
#: Classes that cannot be written in YAML (abstract bases, callables, nested Compose).
_EXCLUDED = {
    "BasicTransform",
    "DualTransform",
    "ImageOnlyTransform",
    "Transform3D",
    "NoOp",
    "Lambda",
}


@cache
def available_transforms() -> dict[str, type]:
    """Every transform and composite name usable in the parameters list."""
    names: dict[str, type] = {}
    for name, obj in vars(A).items():
        if not inspect.isclass(obj) or name in _EXCLUDED:
            continue
        if issubclass(obj, BasicTransform) or name in COMPOSITES:
            names[name] = obj
    names["NoOp"] = A.NoOp  # explicit "no augmentation" is handy for ablations
    return names


def _init_arguments(cls: type) -> set[str]:
    params = inspect.signature(cls.__init__).parameters
    skip = {"self", "strict"}
    return {n for n, p in params.items() if n not in skip and p.kind is not p.VAR_KEYWORD}


def _validates_arguments(cls: type) -> bool:
    """Whether albumentations' pydantic validation wraps this class (it then accepts ``strict``)."""
    return hasattr(cls.__init__, "__signature__")


def _build_one(entry: Any, path: str) -> BasicTransform | BaseCompose:
    if not isinstance(entry, Mapping):
        raise ParameterError(path, f"expected a mapping with a `name`, got {entry!r}")
    if "name" not in entry:
        raise ParameterError(path, f"missing `name` in {dict(entry)!r}")
    registry = available_transforms()
    name = check_choice(f"{path}.name", entry["name"], registry, hint="albumentations 2.x names")
    cls = registry[name]
    kwargs = {k: v for k, v in entry.items() if k != "name"}
    if name in COMPOSITES:
        children = kwargs.pop("transforms", None)
        if not isinstance(children, Sequence) or isinstance(children, str) or not children:
            raise ParameterError(
                f"{path}.transforms", f"{name} needs a non-empty `transforms` list"
            )
        kwargs["transforms"] = [
            _build_one(child, f"{path}.transforms[{i}]") for i, child in enumerate(children)
        ]
    check_keys(
        path,
        entry,
        {"name", *_init_arguments(cls)},
        hint=f"arguments of albumentations.{name} {A.__version__}",
    )
    if _validates_arguments(cls):
        # strict: an argument albumentations cannot validate raises instead of being replaced
        # by its default with a mere warning.
        kwargs["strict"] = True
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as error:
        shown = {k: v for k, v in entry.items() if k not in ("name", "transforms")}
        raise ParameterError(
            path, f"albumentations.{name}({shown}) rejected it: {error}"
        ) from error


def build_transforms(
    spec: Sequence[Mapping[str, Any]] | None,
    *,
    parameter: str = "augment",
    additional_targets: Mapping[str, str] | None = None,
    seed: int | None = None,
    p: float = 1.0,
    **compose_kwargs: Any,
) -> A.Compose:
    """Build an ``A.Compose`` from a parameters list (``None`` or ``[]``: identity).

    ``additional_targets`` maps extra input names to target types (e.g. ``{"image2":
    "image"}`` to augment a frame pair identically). albumentations 2 draws from its own
    generator, seeded from OS entropy when its seed is None; so ``seed=None`` here draws the
    seed from numpy's global RNG instead, which ``seeding.seed_everything`` controls: one run
    seed still fixes the augmentations. ``seeding.seed_worker`` reseeds per DataLoader worker.
    """
    if spec is None:
        spec = []
    if not isinstance(spec, Sequence) or isinstance(spec, str):
        raise ParameterError(parameter, f"expected a list of transforms, got {spec!r}")
    transforms = [_build_one(entry, f"{parameter}[{i}]") for i, entry in enumerate(spec)]
    if seed is None:
        seed = int(np.random.randint(0, 2**31 - 1))
    return A.Compose(
        transforms,
        additional_targets=dict(additional_targets) if additional_targets else None,
        seed=seed,
        p=p,
        **compose_kwargs,
    )


class Transforms(TypedBlock, RootModel[list[dict[str, Any]]]):
    """A transforms list as a typed block: every name and argument is checked against the
    installed albumentations when the session starts (``Transforms.at("mask.augment")``).
    It reads as the list it holds."""

    @model_validator(mode="after")
    def _builds(self) -> Transforms:
        # a ParameterError is a ValueError: pydantic reports it under its own full path
        build_transforms(self.root, parameter=type(self).block or "augment", seed=0)
        return self

    def __iter__(self):  # type: ignore[override]
        return iter(self.root)

    def __len__(self) -> int:
        return len(self.root)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.root[index]


Sequence.register(Transforms)
