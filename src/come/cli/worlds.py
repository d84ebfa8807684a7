"""The world a command runs, from its base run and the expert options of :func:`~come.cli.common.expert_options`."""

from __future__ import annotations

from functools import partial

from .common import UserError, parse_choice, parse_names


def world_maker(ckpt, expert_runs: dict, expert_weights: dict, variants: str | None, rank: int,
                come_experts: str | None = None, sltm_null: str = "pose_drop", protocol: str | None = None,
                **options):
    """``make_world(rank=...)`` on the base run ``ckpt`` with the expert runs and weights of the command line, one
    world it made (unused) and the variants asked for (``variants``: comma-separated, None for every memory variant).
    The base must be of a dataset that ``protocol`` fits; every model, weight and variant is checked (a world is
    built) before any work. ``options`` go to :meth:`~come.world.WorldModel.from_pretrained`."""
    from ..checkpoint import load_model
    from ..datasets import dataset_spec, require_protocol
    from ..experts import EXPERTS
    from ..variants import choose_variants
    from ..world import SLTM_NULLS, ExpertWeights, WorldModel

    cfg = load_model(ckpt)[1]
    spec = require_protocol(cfg.dataset, protocol, str(ckpt)) if protocol else dataset_spec(cfg.dataset, str(ckpt))
    parse_choice(sltm_null, "--sltm-null", SLTM_NULLS)
    _check_poses(variants, spec)
    chosen = parse_names(come_experts, "--come", tuple(EXPERTS)) if come_experts else None
    make_world = partial(WorldModel.from_pretrained, ckpt, rank=rank, sltm_null=sltm_null, come_experts=chosen,
                         weights=ExpertWeights.of_dataset(cfg.dataset, **expert_weights), **expert_runs, **options)
    world = make_world()
    try:
        return make_world, world, choose_variants(variants, set(world.denoisers))
    except ValueError as e:
        flags = ", ".join(f"--{name}" for name, e in EXPERTS.items() if e.own_network)
        raise UserError(f"--variants: {e} ({flags} give the expert models)") from None


def baseline_runs(baselines: str | None, dataset: str | None) -> list[str]:
    """The run folders of a --baselines option (comma-separated), each checked to be a world model of the base's
    dataset before any work."""
    from ..checkpoint import load_config, model_path

    runs = [r.strip() for r in (baselines or "").split(",") if r.strip()]
    for run in runs:
        cfg = load_config(model_path(run))
        if cfg.network != "dit" or cfg.dataset != dataset:
            raise UserError(f"--baselines {run}: a {cfg.network} run of {cfg.dataset}; the base is a world model of "
                            f"{dataset}")
    return runs


def _check_poses(variants: str | None, spec) -> None:
    """Refuse a variant of one expert that needs a pose the dataset does not give (a place memory on cards)."""
    from ..experts import EXPERTS
    from ..variants import COMPOSITIONS, experts_of

    for variant in filter(None, (v.strip() for v in (variants or "").split(","))):
        if variant in COMPOSITIONS:  # they compose whichever experts there are
            continue
        misfit = [EXPERTS[e] for e in experts_of(variant) or () if EXPERTS[e].pose not in (None, spec.pose)]
        if misfit:
            raise UserError(f"--variants {variant}: the {misfit[0].label} needs the {misfit[0].pose} pose; "
                            f"{spec.name} has the {spec.pose or 'no'} pose")


def world_settings(world, ckpt, expert_runs: dict) -> dict:
    """The world's settings and the runs a result came from, for its JSON: the base run and each expert's run
    (the base run where the base serves as the expert)."""
    served = {name: ckpt for name, d in world.denoisers.items() if d is world.base and name != "ltm"}
    runs = {"checkpoint": ckpt, **expert_runs, **served}
    return {"come_experts": list(world.come_experts), "sltm_null": world.sltm_null, "sampler": world.sampler,
            **{f"{name}_weight": w for name, w in world.weights.items()}, **{k: run_name(v) for k, v in runs.items()}}


def run_name(run) -> str | None:
    return str(run) if run is not None else None
