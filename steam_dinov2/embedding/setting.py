"""One way of embedding as one value: model, preset, pooling, weights identity and precision.

A ``Setting`` travels from the CLI (or a notebook) down to the cache folder name, so the group
(model, preset, pooling, pretrained, weights) is never passed around loose. Batch size, workers
and device are run options, not part of it: they change how fast, not which vectors.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace

from ..core import layout
from .models import load_model, select_device, weights_tag
from .precision import PRECISIONS, resolve_precision

PRETRAINED = "pretrained"
RANDOM = "random"
_FORM = "model__preset__pooling[__random|__w-HASH][__bf16|__fp16], e.g. dinov2_vits14__crop256__cls"


@dataclass(frozen=True)
class Setting:
    """One embedding setting.

    Attributes:
        model: a name for ``load_model`` (registry, timm or ``hub:...``).
        preset: preprocessing preset (``preprocess.PRESETS``).
        pooling: pooling strategy (``embed.POOLINGS``).
        weights: "pretrained", "random" or "w-<sha256 prefix>" of a local weights file.
        precision: "fp32", "bf16" or "fp16" (``precision``): vectors of two precisions are two
            settings, two caches, never mixed.
        weights_file: the local weights file behind a "w-..." tag, to load the model; not part
            of the identity (two copies of one file are one setting).
        auto_precision: the precision was chosen for this machine ("auto"), not asked for: a
            cache of the setting in another precision is then never silently left for a new
            one (``embed_folder`` says so and stops). Not part of the identity.
    """

    model: str = "dinov2_vits14"
    preset: str = "crop256"
    pooling: str = "cls"
    weights: str = PRETRAINED
    precision: str = "fp32"
    weights_file: str | None = field(default=None, compare=False, repr=False)
    auto_precision: bool = field(default=False, compare=False, repr=False)

    def __post_init__(self):
        if self.precision not in PRECISIONS:
            raise ValueError(
                f"unknown precision {self.precision!r}; available: {', '.join(PRECISIONS)}"
            )
        ok = self.weights in (PRETRAINED, RANDOM) or str(self.weights).startswith("w-")
        if not ok:
            raise ValueError(
                f"unknown weights {self.weights!r}; use pretrained, random or w-<hash>"
            )

    @classmethod
    def create(
        cls,
        model: str = "dinov2_vits14",
        preset: str = "crop256",
        pooling: str = "cls",
        *,
        pretrained: bool = True,
        weights: str | os.PathLike | None = None,
        precision: str = "auto",
        device="auto",
    ) -> Setting:
        """The setting ``load_model(model, pretrained=, weights=, device=, precision=)`` embeds
        with; precision "auto" is the device's (``precision.choose_precision``, reason logged)."""

        tag = weights_tag(pretrained=pretrained, weights=weights) or PRETRAINED
        chosen, _ = resolve_precision(precision, select_device(device))
        return cls(
            model,
            preset,
            pooling,
            weights=tag,
            precision=chosen,
            weights_file=None if weights is None else os.fspath(weights),
            auto_precision=precision == "auto",
        )

    @classmethod
    def from_name(cls, name: str) -> Setting:
        """Parse a folder name back (``name`` of a setting gives it again); a hub model's ':'
        and '/' come back as '-', as the folder name spells them."""
        parts = name.split("__")
        if len(parts) < 3 or not all(parts):
            raise ValueError(f"setting name {name!r} must look like {_FORM}")
        model, preset, pooling, *rest = parts
        weights = rest.pop(0) if rest and _is_weights_part(rest[0]) else PRETRAINED
        precision = rest.pop(0) if rest and rest[0] in PRECISIONS else "fp32"
        if rest:
            why = " (weights come before precision)" if _is_weights_part(rest[0]) else ""
            raise ValueError(
                f"setting name {name!r}: unexpected part {rest[0]!r}{why}; expected {_FORM}"
            )
        return cls(model, preset, pooling, weights=weights, precision=precision)

    @classmethod
    def from_meta(cls, meta: dict, *, weights_file: str | os.PathLike | None = None) -> Setting:
        """The setting a cache's ``meta.json`` (already checked by ``read_cache``) records;
        ``weights_file`` is the local file behind its ``w-`` weights, when the caller has it."""
        return cls(
            meta["model"],
            meta["preset"],
            meta["pooling"],
            weights=meta["weights"],
            precision=meta.get("precision", "fp32"),
            weights_file=None if weights_file is None else os.fspath(weights_file),
        )

    @property
    def name(self) -> str:
        """The cache folder name (``layout.setting_name``): unchanged for existing caches."""
        return layout.setting_name(
            self.model,
            self.preset,
            self.pooling,
            weights_tag="" if self.weights == PRETRAINED else self.weights,
            precision="" if self.precision == "fp32" else self.precision,
        )

    @property
    def pretrained(self) -> bool:
        return self.weights != RANDOM

    def key(self) -> dict:
        """What a cache records and checks before reusing vectors (``meta.json``)."""
        return {
            "model": self.model,
            "weights": self.weights,
            "preset": self.preset,
            "pooling": self.pooling,
            "precision": self.precision,
        }

    def load_model(self, *, device="auto"):
        """``load_model`` for this setting; ValueError when a weights file is needed but absent."""

        if self.weights.startswith("w-") and self.weights_file is None:
            raise ValueError(
                f"setting {self.name} was made with a local weights file ({self.weights}): "
                "pass that file as weights (--weights)"
            )
        return load_model(
            self.model,
            pretrained=self.pretrained,
            weights=self.weights_file,
            device=device,
            precision=self.precision,
        )

    def in_precision(self, precision: str) -> Setting:
        """The same setting in another precision (its own cache)."""
        return replace(self, precision=precision, auto_precision=False)

    def __str__(self) -> str:
        return self.name


def _is_weights_part(part: str) -> bool:
    """Whether a setting name's part names weights (``random`` or ``w-<hash>``)."""
    return part in (PRETRAINED, RANDOM) or part.startswith("w-")


def other_precisions(setting: Setting, cached: list[str]) -> list[Setting]:
    """The settings among ``cached`` (cache folder names) that are ``setting`` in another
    precision."""
    others = [setting.in_precision(p) for p in PRECISIONS if p != setting.precision]
    return [s for s in others if s.name in cached]


def how_to_use(setting: Setting) -> str:
    """How a user asks for ``setting``'s precision, on the CLI, in Python and in the notebooks."""
    p = setting.precision
    return (
        f"--precision {p} (Setting.create(..., precision={p!r}); PRECISION = {p!r} in a notebook)"
    )


def setting_of(setting: Setting | str) -> str:
    """The cache folder name of a ``Setting`` or of a name given as a string; ValueError for
    anything else."""
    if isinstance(setting, Setting):
        return setting.name
    if isinstance(setting, str):
        return setting
    raise ValueError(
        "setting must be a Setting, a setting name such as dinov2_vits14__crop256__cls, or "
        f"model:preset:pooling; got {type(setting).__name__}"
    )


def checked_name(setting: Setting | str) -> str:
    """``setting_of``, after ``Setting.from_name`` checked a name given as a string: a malformed
    name says so before anyone looks for its cache."""
    if isinstance(setting, str):
        Setting.from_name(setting)
    return setting_of(setting)


def as_setting(setting: Setting | str | None) -> Setting:
    """The one way in to a ``Setting`` from what a user passes: a ``Setting``; a setting (cache
    folder) name such as ``dinov2_vits14__crop256__cls``; ``"model:preset:pooling"`` (pretrained
    weights, the best device's precision); or None (``Setting.create()``). ValueError otherwise."""
    if setting is None:
        return Setting.create()
    if isinstance(setting, Setting):
        return setting
    name = setting_of(setting)
    parts = name.rsplit(":", 2)
    if "__" not in name and len(parts) == 3 and all(parts):
        return Setting.create(*parts)
    if "__" not in name:
        raise ValueError(
            f"setting {name!r} must be a Setting, a setting name (model__preset__pooling) or "
            "model:preset:pooling, e.g. dinov2_vits14:crop256:cls"
        )
    return Setting.from_name(name)
