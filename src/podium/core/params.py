"""Typed parameter blocks: one pydantic model per block of ``conf/*/parameters*.yml``.

A node that takes a block annotates it with its model (``split: SplitParams``), and
Kedro's own parameter validation (Kedro >= 1.7) builds the model from the merged
configuration when the session starts, before the first node runs: a misspelt key, a value
outside its range or a choice that does not exist stops ``kedro run`` in seconds instead
of after hours of extraction. The model holds the defaults, the constraints and the
choices, so there is one place to read what a block accepts.

Errors read as :class:`~podium.core.config.ParameterError` always did: the full parameter
path (``deepfake.split.n_fold``), what is allowed with the closest match, and the file to
edit. A model also reads as a read-only mapping of its fields (``params["lr"]``,
``params.get("lr")``, ``dict(params)``), so building blocks written against plain
dictionaries take it unchanged and stay usable from a notebook with a dict.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterator, Mapping
from types import UnionType
from typing import Annotated, Any, ClassVar, Literal, Union, get_args, get_origin

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    Strict,
    StrictBool,
    ValidationError,
    field_validator,
)

from podium.core.config import ParameterError, describe_choices, parameter_file

#: An integer written as one: not ``1.5``, not ``true``, not ``"3"``.
Int = Annotated[int, Strict()]
#: A number (an integer is welcome), never ``true``/``false``.
Float = Annotated[float, Strict()]
Bool = StrictBool
PositiveInt = Annotated[int, Strict(), Field(ge=1)]
NonNegativeInt = Annotated[int, Strict(), Field(ge=0)]
PositiveFloat = Annotated[float, Strict(), Field(gt=0)]
NonNegativeFloat = Annotated[float, Strict(), Field(ge=0)]
Fraction = Annotated[float, Strict(), Field(ge=0, le=1)]


class Only:
    """Field metadata: the key means something only while the block's ``field`` is one of
    ``values`` (``n_blocks: Annotated[NonNegativeInt, Only("generator", "resnet")] = 6``).
    Under another choice it is still accepted, so an ablation can switch the choice alone,
    but it is left out of the logged parameters (:meth:`TypedBlock.not_applicable`)."""

    __slots__ = ("field", "values")

    def __init__(self, field: str, *values: Any) -> None:
        if not values:
            raise TypeError(f"Only({field!r}): name the choices the key applies to")
        self.field, self.values = field, values

    def __repr__(self) -> str:
        return f"Only({self.field!r}, {', '.join(map(repr, self.values))})"


class TypedBlock:
    """What every typed block shares: its place in the configuration and podium's errors.

    ``block`` is the block's path (``"deepfake.split"``) for the models Kedro builds from a
    node input; a model only ever nested in another has none.
    """

    block: ClassVar[str | None] = None
    #: ``(block, field, choices)``: the whole block means something only while that other
    #: block's ``field`` is one of ``choices`` (``deepfake.embedding`` under
    #: ``deepfake.split.strategy: person_cluster``); a node reading both logs it only then.
    only_when: ClassVar[tuple[str, str, tuple[Any, ...]] | None] = None

    @classmethod
    @functools.cache
    def at(cls, block: str) -> type:
        """This model for the block at ``block`` (errors name its paths): a shared shape
        such as the optimizer's, used by several pipelines (``OptimizerParams.at(
        "mask.optimizer")``)."""
        namespace = {"block": block, "__module__": cls.__module__, "__block_base__": cls}
        return type(cls.__name__, (cls,), namespace)

    def __reduce__(self):
        """A model of a class made by :meth:`at` pickles through its base and path (to
        Dask workers and DDP processes); the others as pydantic pickles them."""
        cls = type(self)
        base = cls.__dict__.get("__block_base__")  # the model a class made by at() copies
        if base is None:
            return super().__reduce__()
        return _rebuild_at, (base, cls.block, self.__getstate__())

    @classmethod
    def of(cls, value: Any) -> Any:
        """``value`` as this model: a model is returned as it is, a plain mapping (from a
        notebook or a test) validated, so a building block takes either."""
        return value if isinstance(value, cls) else cls.model_validate(value)

    @classmethod
    def model_validate(cls, obj: Any, *args: Any, **kwargs: Any) -> Any:
        """Kedro's entry point: a pydantic error becomes one :class:`ParameterError`
        listing every problem under its full path."""
        try:
            return super().model_validate(obj, *args, **kwargs)  # type: ignore[misc]
        except ValidationError as error:
            raise ParametersInvalid.from_validation(cls, error) from None

    def as_configured(self) -> Any:
        """What the configuration set: the keys written in the YAML or on the command line,
        not the defaults filled in for the others (JSON types: lists, not tuples)."""
        return self.model_dump(mode="json", exclude_unset=True)  # type: ignore[attr-defined]

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)  # type: ignore[misc]
        for name, only in _only_fields(cls):
            if only.field not in cls.model_fields:  # type: ignore[attr-defined]
                raise TypeError(f"{cls.__name__}.{name}: Only() names no field {only.field!r}")

    def not_applicable(self) -> set[str]:
        """Keys that mean nothing under the chosen options (a scheduler's ``step_size``
        under cosine): not logged, so the MLflow runs table shows what a run used. By
        default the fields marked :class:`Only` whose choice is another."""
        return {
            name
            for name, only in _only_fields(type(self))
            if getattr(self, only.field) not in only.values
        }

    def as_logged(self) -> Any:
        """:meth:`as_configured` without the keys that do not apply, nested blocks too:
        what the MLflow parameters show."""
        return _without_inapplicable(self, self.as_configured())


def _only_fields(cls: type) -> list[tuple[str, Only]]:
    return [
        (name, meta)
        for name, info in getattr(cls, "model_fields", {}).items()
        for meta in info.metadata
        if isinstance(meta, Only)
    ]


def _rebuild_at(base: type, block: str, state: dict[str, Any]) -> Any:
    cls = base.at(block)
    instance = cls.__new__(cls)
    instance.__setstate__(state)
    return instance


class Params(TypedBlock, BaseModel):
    """Base of every parameter block: unknown keys are errors, values are read-only."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, protected_namespaces=(), use_attribute_docstrings=True
    )

    # ------------------------------------------------ read-only mapping of the fields

    def __getitem__(self, key: str) -> Any:
        if key not in type(self).model_fields:
            raise KeyError(key)
        return getattr(self, key)

    def __iter__(self) -> Iterator[str]:  # type: ignore[override]  # keys, as a Mapping's
        return iter(type(self).model_fields)

    def __len__(self) -> int:
        return len(type(self).model_fields)

    def __contains__(self, key: object) -> bool:
        return key in type(self).model_fields

    def keys(self):
        return type(self).model_fields.keys()

    def values(self):
        return [getattr(self, k) for k in type(self).model_fields]

    def items(self):
        return [(k, getattr(self, k)) for k in type(self).model_fields]

    def get(self, key: str, default: Any = None) -> Any:
        return getattr(self, key) if key in type(self).model_fields else default

    def as_dict(self) -> dict[str, Any]:
        """Every field, nested blocks as dictionaries too (JSON types: lists, not tuples)."""
        return self.model_dump(mode="json")


Mapping.register(Params)


# ------------------------------------------------------------------------------ errors


#: What :meth:`ParametersInvalid.told_where`'s source answers for a value set by --params.
RUNTIME_SOURCE = "--params"


class ParametersInvalid(ParameterError):
    """Every problem found in one or more blocks, each under its full parameter path."""

    def __init__(
        self, problems: list[tuple[str, str]], source: Callable[[str], str] = parameter_file
    ) -> None:
        self.problems = list(problems)
        self.parameter = self.problems[0][0]
        self.problem = "; ".join(text for _, text in self.problems)
        sources = {path: source(path) for path, _ in self.problems}
        given = sorted({parameter_file(p) for p, s in sources.items() if s == RUNTIME_SOURCE})
        self.where = " or ".join(sorted(set(sources.values()) - {RUNTIME_SOURCE}) or given)
        lines = "\n".join(f"  {path}: {text}" for path, text in self.problems)
        if not given:
            fix = f"edit {self.where} (or override with --params)"
        elif set(sources.values()) == {RUNTIME_SOURCE}:
            fix = f"correct the --params value (the block's file: {self.where})"
        else:
            fix = f"correct the --params value, and edit {self.where}"
        ValueError.__init__(self, f"Invalid parameters:\n{lines}\nFix: {fix}.")

    def told_where(self, source: Callable[[str], str]) -> ParametersInvalid:
        """The same problems, each fix naming where its value was set (``source(path)``:
        a parameters file, or :data:`RUNTIME_SOURCE`) instead of conf/base's file."""
        return type(self)(self.problems, source)

    @classmethod
    def from_validation(cls, model: type, error: ValidationError) -> ParametersInvalid:
        root = model.block or model.__name__
        return cls([_located_problem(root, model, e) for e in error.errors()])

    @classmethod
    def combine(cls, errors: list[ParametersInvalid]) -> ParametersInvalid:
        return cls([problem for error in errors for problem in error.problems])


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic models an annotation can hold (through Optional, unions, lists, dicts)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    origin = get_origin(annotation)
    if origin is Annotated:
        return _models_in(get_args(annotation)[0])
    if origin in (Union, UnionType, list, tuple, dict, Mapping) or origin is not None:
        return [m for arg in get_args(annotation) for m in _models_in(arg)]
    return []


def _walk(
    model: type[BaseModel], loc: tuple[Any, ...], *, unknown_last: bool = False
) -> tuple[str, Any]:
    """``loc`` as a parameter path suffix (``.models[0].backbone``) and the field info at
    its end. Pydantic puts union branch names (``int``, ``list[int]``, a model's name) in a
    location; they are no part of the path. ``unknown_last``: the last part is a key the
    block does not know (kept, it is what the error is about)."""
    path = ""
    models: list[type[BaseModel]] = [model]
    info = None
    free_form = False  # inside a dict field: every key is the user's
    member_key = False  # a dict of models: the next part names a member
    for i, part in enumerate(loc):
        if isinstance(part, int):
            path += f"[{part}]"
            continue
        if member_key:
            path += f".{part}"
            member_key = False
            continue
        owner = next((m for m in models if part in m.model_fields), None)
        if owner is not None:
            info = owner.model_fields[part]
            path += f".{part}"
            models = _models_in(info.annotation)
            free_form = not models and _is_mapping(info.annotation)
            member_key = bool(models) and _is_mapping(info.annotation)
        elif free_form or (unknown_last and i == len(loc) - 1):
            path += f".{part}"
    return path, info


def _is_mapping(annotation: Any) -> bool:
    origin = get_origin(annotation)
    if origin is Annotated:
        return _is_mapping(get_args(annotation)[0])
    if origin in (Union, UnionType):
        return any(_is_mapping(a) for a in get_args(annotation))
    return origin in (dict, Mapping) or annotation is dict


def _parameter_path(root: str, model: type[BaseModel], error: Any) -> str:
    suffix, _ = _walk(model, error["loc"], unknown_last=error["type"] == "extra_forbidden")
    return root + suffix


def _allowed_keys(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """The keys the block holding ``loc[-1]`` accepts."""
    models: list[type[BaseModel]] = [model]
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        owner = next((m for m in models if part in m.model_fields), None)
        if owner is None:
            continue
        models = _models_in(owner.model_fields[part].annotation)
    return sorted({k for m in models for k in m.model_fields})


def _literal_choices(annotation: Any) -> list[str]:
    origin = get_origin(annotation)
    if origin is Literal:
        return [str(a) for a in get_args(annotation)]
    if origin is not None:
        return [c for arg in get_args(annotation) for c in _literal_choices(arg)]
    return []


def _located_problem(root: str, model: type[BaseModel], error: Any) -> tuple[str, str]:
    """(parameter path, what is wrong). A validator that raised a ParameterError (a rule
    across keys, checked by a building block) already named its full path."""
    raised = error.get("ctx", {}).get("error")
    if isinstance(raised, ParameterError):
        return raised.parameter, raised.problem
    return _parameter_path(root, model, error), _problem(model, error)


def _problem(model: type[BaseModel], error: Any) -> str:
    """One pydantic error in podium's words."""
    kind, loc, given = error["type"], error["loc"], error.get("input")
    if kind == "extra_forbidden":
        allowed = _allowed_keys(model, loc)
        return f"unknown key; {describe_choices(str(loc[-1]), allowed, 'keys')}"
    if kind in ("literal_error", "enum"):
        _, info = _walk(model, loc)
        choices = _literal_choices(info.annotation) if info is not None else []
        if not choices:
            choices = re.findall(r"'([^']*)'", str(error.get("ctx", {}).get("expected", "")))
        return f"{given!r} is not allowed; {describe_choices(str(given), choices, 'values')}"
    if kind == "missing":
        return "required and not given"
    bounds = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<"}
    ctx = error.get("ctx", {})
    for key, sign in bounds.items():
        if kind.startswith(("greater", "less")) and key in ctx:
            return f"expected a value {sign} {ctx[key]}, got {given!r}"
    message = str(error["msg"])
    message = message.removeprefix("Value error, ").removeprefix("Assertion failed, ")
    if kind.endswith(("_type", "_parsing")) or kind.startswith(("greater", "less", "too_")):
        return f"{message[:1].lower()}{message[1:]}, got {given!r}"
    return message


# ------------------------------------------------------- the shared ``runtime`` block


class DistributedParams(Params):
    """``runtime.distributed``: DDP through torch.distributed (see podium.core.ddp)."""

    nproc_per_node: PositiveInt = 1
    nnodes: PositiveInt = 1
    rdzv_endpoint: Annotated[str, Field(min_length=1)] | None = None
    rdzv_id: Annotated[str, Field(min_length=1)] | None = None
    backend: Literal["auto", "gloo", "nccl"] = "auto"
    strategy: Literal["ddp", "jobs"] = "ddp"


class DaskParams(Params):
    """``runtime.dask``: a real cluster's address, or the size of a LocalCluster."""

    scheduler_address: str | None = None
    n_workers: NonNegativeInt = 2
    threads_per_worker: PositiveInt = 1


class RuntimeParams(Params):
    """``runtime`` (conf/base/parameters.yml): where and how every training node runs."""

    block: ClassVar[str] = "runtime"

    device: str = "auto"
    """auto | cpu | cuda | cuda:N | mps"""
    precision: Literal["auto", "bf16", "fp16", "fp32"] = "auto"
    """auto: bf16 (or fp16) autocast on a GPU, fp32 on a CPU."""
    num_workers: NonNegativeInt = 2
    """DataLoader worker processes."""
    torch_threads: PositiveInt | None = 1
    """Intra-op threads of this process (null: torch's default)."""
    channels_last: Bool = True
    """Applied on CUDA only."""
    deterministic: Bool = False
    """Set by each pipeline's own ``deterministic`` (not written in parameters.yml)."""
    distributed: DistributedParams = DistributedParams()
    dask: DaskParams = DaskParams()

    @field_validator("device")
    @classmethod
    def _known_device(cls, device: str) -> str:
        if not re.fullmatch(r"auto|cpu|cuda|cuda:\d+|mps", device):
            choices = describe_choices(device, ["auto", "cpu", "cuda", "cuda:N", "mps"], "values")
            raise ValueError(f"{device!r} is not a device; {choices}")
        return device


def configured(value: Any) -> Any:
    """What the configuration set, as plain data: a typed block's
    :meth:`~TypedBlock.as_configured`, anything else as it is. Settings digests (cache
    folders, checkpoints) hash this, so a typed block keys them exactly as the dictionary
    it was built from did."""
    return value.as_configured() if isinstance(value, TypedBlock) else value


def _without_inapplicable(model: Any, data: Any) -> Any:
    if isinstance(model, list | tuple) and isinstance(data, list) and len(model) == len(data):
        return [_without_inapplicable(m, d) for m, d in zip(model, data, strict=True)]
    if not isinstance(model, BaseModel) or not isinstance(data, dict):
        return data
    dropped = model.not_applicable() if isinstance(model, TypedBlock) else set()
    return {
        key: _without_inapplicable(getattr(model, key, None), value)
        for key, value in data.items()
        if key not in dropped
    }


def by_position(value: Any) -> dict[str, Any] | None:
    """A non-empty list of blocks (model entries, transforms) as ``{"0": ..., "1": ...}``,
    how MLflow logs one parameter per entry key; None for anything else."""
    if isinstance(value, list | tuple) and value and all(isinstance(v, Mapping) for v in value):
        return {str(i): item for i, item in enumerate(value)}
    return None
