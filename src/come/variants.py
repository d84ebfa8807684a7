"""The variant table, derived from the expert registry (:data:`come.experts.EXPERTS`): which experts each
variant of a world composes on top of the prior, and which variants a world with a given set of experts can run.

Every expert is a variant of its own name (the prior and it); ``come`` composes every expert of the world's
``come_experts`` that it has, ``poe`` is their naive product, ``base`` the prior alone and ``hg`` history
guidance on the base model. ``VARIANTS`` and ``VARIANT_EXPERTS`` are read anew on each use, so an expert
registered later is in them.
"""

from __future__ import annotations

from .errors import InputError
from .experts import EXPERTS

COMPOSITIONS = ("come", "poe")  # compose every expert of the world's come_experts that it has
ON_REQUEST = ("poe", "hg")  # the naive product and history guidance: baselines, run when asked for


def variant_experts() -> dict[str, tuple[str, ...]]:
    """Each variant and the experts it composes on top of the prior: the prior alone, each expert, each pair of
    experts (``ltm+place``: the ablation rows of the paper's Table 2), the compositions and history guidance. Any
    other ``+``-joined set of experts is a variant too (:func:`experts_of`)."""
    every = tuple(EXPERTS)
    pairs = {f"{a}+{b}": (a, b) for i, a in enumerate(every) for b in every[i + 1:]}
    return {"base": (), **{name: (name,) for name in EXPERTS}, **pairs, "come": every, "poe": every, "hg": ()}


def experts_of(variant: str) -> tuple[str, ...] | None:
    """The experts a variant composes (a ``+``-joined set in any order, e.g. ``stm+ltm``, in the registry's
    order); None when no variant has that name."""
    table = variant_experts()
    if variant in table:
        return table[variant]
    parts = variant.split("+")
    if len(parts) < 2 or len(set(parts)) < len(parts) or not set(parts) <= set(EXPERTS):
        return None
    return tuple(e for e in EXPERTS if e in parts)


def needs_memory(variant: str) -> bool:
    """Whether a variant composes an expert memorized at test time."""
    return any(EXPERTS[e].memorized for e in experts_of(variant) or ())


def __getattr__(name: str):
    if name == "VARIANT_EXPERTS":
        return variant_experts()
    if name == "VARIANTS":
        return tuple(variant_experts())
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def available_variants(experts: set[str] | tuple[str, ...]) -> tuple[str, ...]:
    """The variants a world with these experts can run: each single-expert variant needs its experts,
    the compositions take whichever there are."""
    return tuple(v for v, names in variant_experts().items() if v in COMPOSITIONS or set(names) <= set(experts))


def choose_variants(requested: str | None, experts: set[str] | tuple[str, ...]) -> tuple[str, ...]:
    """The variants named in ``requested`` (comma-separated), each one a world with these ``experts`` can
    run; with ``requested`` None, every memory variant it can run (not the baselines in ``ON_REQUEST``)."""
    available = available_variants(experts)
    if requested is None:
        return tuple(v for v in available if v not in ON_REQUEST)
    names = tuple(v.strip() for v in requested.split(",") if v.strip())
    unknown = [v for v in names if experts_of(v) is None]
    if unknown or not names:
        raise InputError(f"unknown variant {', '.join(unknown) or '(none given)'} (choose from "
                         f"{', '.join(variant_experts())}, or experts joined by +)")
    for v in names:
        needed = [e for e in experts_of(v) if e not in experts]
        if v not in COMPOSITIONS and needed:
            raise InputError(f"{v} needs the {' and '.join(EXPERTS[e].label for e in needed)} model")
    return names
