"""The expert table: which experts each variant of a world composes on top of the prior, and which
variants a world with a given set of experts can run (``come.world.WorldModel`` builds them)."""

from __future__ import annotations

from .errors import InputError

EXPERTS = ("ltm", "stm", "place", "sltm")
MEMORIZED = ("ltm", "sltm")  # the experts whose memory is fitted at test time (memorize())
COMPOSITIONS = ("come", "poe")  # compose every expert of the world's come_experts that it has
# The expert table: which experts each variant composes on top of the prior. A variant outside
# COMPOSITIONS needs every expert it names; 'hg' is history guidance on the base model alone.
VARIANT_EXPERTS = {"base": (), "ltm": ("ltm",), "stm": ("stm",), "sltm": ("sltm",), "place": ("place",),
                   "stm+ltm": ("ltm", "stm"), "come": EXPERTS, "poe": EXPERTS, "hg": ()}
VARIANTS = tuple(VARIANT_EXPERTS)
MEMORY_VARIANTS = tuple(v for v, e in VARIANT_EXPERTS.items() if set(e) & set(MEMORIZED))  # may need memorize()
MODEL_NAMES = {"ltm": "base", "stm": "short-term memory", "place": "place memory", "sltm": "spatial memory"}
ON_REQUEST = ("poe", "hg")  # the naive product and history guidance: baselines, run when asked for


def available_variants(experts: set[str] | tuple[str, ...]) -> tuple[str, ...]:
    """The variants a world with these experts can run: each single-expert variant needs its experts,
    the compositions take whichever there are."""
    return tuple(v for v, names in VARIANT_EXPERTS.items() if v in COMPOSITIONS or set(names) <= set(experts))


def choose_variants(requested: str | None, experts: set[str] | tuple[str, ...]) -> tuple[str, ...]:
    """The variants named in ``requested`` (comma-separated), each one a world with these ``experts`` can
    run; with ``requested`` None, every memory variant it can run (not the baselines in ``ON_REQUEST``)."""
    available = available_variants(experts)
    if requested is None:
        return tuple(v for v in available if v not in ON_REQUEST)
    names = tuple(v.strip() for v in requested.split(",") if v.strip())
    unknown = [v for v in names if v not in VARIANTS]
    if unknown or not names:
        raise InputError(f"unknown variant {', '.join(unknown) or '(none given)'} (choose from {', '.join(VARIANTS)})")
    for v in names:
        if v not in available:
            needed = [e for e in VARIANT_EXPERTS[v] if e not in experts]
            raise InputError(f"{v} needs the {' and '.join(MODEL_NAMES[e] for e in needed)} model")
    return names
