"""The 1-D toy that shows why the experts must be contrastive.

Two experts are mixtures of Gaussians on the line whose masses decay
geometrically: the most mass on the true answer (the leftmost mode,
"dominant"), a little less on a wrong answer both share (a *shared spurious
mode*). Expert 1 remembers the true answer sharply (a narrow, tall kernel),
expert 2 only vaguely. Each expert's baseline ``p~_i`` has the same kernels
with equalised peak heights: what the expert would say without its memory,
every place alike.

* The naive product ``prod_i p_i`` keeps the shared spurious mode with nearly
  the dominant mode's mass: it weighs modes by mass, and the experts give
  both about the same ("spurious consensus").
* The product of contrastive experts ``prod_i p_i^(1+w) / p~_i^w`` reweights each
  component by how much the memory raises it above the baseline (Proposition
  1: for disjoint kernels, component k gets ``pi_k (pi_k / pi~_k)^w``), which
  keeps the dominant mode and removes the rest.

:func:`run_toy` computes both densities on a grid, then samples them with the
library's own composition (:func:`come.compose.compose_eps`) and sampler
(:func:`come.diffusion.sampling.run_sampler`) from the *exact* scores of the
noised mixtures, and compares the histograms with the grid densities.

:func:`gaussian_product` is the check that the naive product is sampled fairly:
three Gaussian experts of different means and widths, whose product is a known
Gaussian, sampled the way the world model samples ``poe``
(:func:`come.diffusion.sampling.sample_product`), beside plain DDIM on the same
summed scores, which throws the samples to the clip.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from .compose import compose_eps
from .diffusion.sampling import run_sampler, sample_product
from .diffusion.schedule import alpha_bar, make_scheduler
from .outputs import save_json
from .plotting import save_figure, subplots

# A sampler failed when its samples pile up at the clip (|x| >= 0.999, where DDIM clips x0) or its histogram
# is far from the density it should sample: its masses then describe the failure, not the rule.
MAX_AT_CLIP = 0.01
MAX_TOTAL_VARIATION = 0.1


@dataclass(frozen=True)
class GaussianMixture:
    """A 1-D mixture: component means, standard deviations and masses (normalised on use)."""

    means: tuple[float, ...]
    stds: tuple[float, ...]
    masses: tuple[float, ...]

    def _params(self, ab: torch.Tensor | float = 1.0):
        m, s, p = (torch.tensor(v, dtype=torch.float64) for v in (self.means, self.stds, self.masses))
        ab = torch.as_tensor(ab, dtype=torch.float64)
        return m * ab.sqrt(), (ab * s**2 + 1 - ab).sqrt(), p / p.sum()

    def log_prob(self, x: torch.Tensor, ab: torch.Tensor | float = 1.0) -> torch.Tensor:
        """log p_t(x) of the mixture noised to level ``ab`` (x_t = sqrt(ab) x0 + sqrt(1-ab) eps)."""
        m, s, p = self._params(ab)
        x = x.double()[..., None]
        comp = -0.5 * ((x - m) / s) ** 2 - s.log() - 0.5 * math.log(2 * math.pi) + p.log()
        return comp.logsumexp(-1)

    def eps(self, x: torch.Tensor, ab: float) -> torch.Tensor:
        """Exact noise prediction ``-sqrt(1-ab) * d/dx log p_t(x)`` at level ``ab``."""
        m, s, p = self._params(ab)
        xd = x.double()[..., None]
        comp = -0.5 * ((xd - m) / s) ** 2 - s.log() + p.log()
        resp = comp.softmax(-1)
        score = (resp * (m - xd) / s**2).sum(-1)
        return (-math.sqrt(1 - ab) * score).to(x.dtype)

    def equalised(self) -> "GaussianMixture":
        """The same kernels with equal peak heights (mass proportional to width): the baseline ``p~``."""
        return GaussianMixture(self.means, self.stds, tuple(self.stds))


def default_experts(ratio: float = 0.9, sharp: float = 0.015, medium: float = 0.08) -> list[GaussianMixture]:
    """Two experts over the dominant mode (-0.75) and a shared spurious mode (-0.25).

    Masses decay geometrically (1, ``ratio``). Expert 1 remembers the dominant
    mode sharply (std ``sharp``), expert 2 only vaguely; both are ``medium`` on
    the spurious mode. The vague width makes ``sum_i std_i**2`` equal for both
    modes: the product of the *noised* experts then gives the two modes the same
    relative mass at every noise level as the product of the clean ones, which
    is what lets a sampler that composes noised scores reproduce the grid
    density (with other widths the composed noised scores move mass between
    modes on the way down, and no corrector at low noise can move it back).
    """
    vague = math.sqrt(2 * medium**2 - sharp**2)
    means, masses = (-0.75, -0.25), (1.0, ratio)
    return [GaussianMixture(means, (sharp, medium), masses), GaussianMixture(means, (vague, medium), masses)]


def normalise(logp: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """Density on an evenly spaced ``grid`` from unnormalised log values."""
    p = (logp - logp.max()).exp()
    return p / (p.sum() * (grid[1] - grid[0]))


def naive_density(experts, grid: torch.Tensor) -> torch.Tensor:
    """Normalised ``prod_i p_i`` on ``grid``."""
    return normalise(sum(e.log_prob(grid) for e in experts), grid)


def contrastive_density(experts, weight: float, grid: torch.Tensor) -> torch.Tensor:
    """Normalised ``prod_i p_i^(1+w) / p~_i^w`` on ``grid`` (``p~_i``: the equalised baseline)."""
    logp = sum((1 + weight) * e.log_prob(grid) - weight * e.equalised().log_prob(grid) for e in experts)
    return normalise(logp, grid)


def toy_eps_fn(experts, weight: float, rule: str, scheduler):
    """eps hook for :func:`run_sampler`: the exact noised experts composed by :func:`compose_eps`.

    naive: ``sum_i eps_i``; contrastive: that product as the prior plus
    ``sum_i w (eps_i - eps~_i)``, i.e. ``prod_i p_i (p_i / p~_i)^w``.
    """
    baselines = [e.equalised() for e in experts]

    def eps_fn(x: torch.Tensor, t: int) -> torch.Tensor:
        ab = float(alpha_bar(scheduler, torch.tensor(t)))
        cond = [e.eps(x, ab) for e in experts]
        naive = compose_eps(None, cond, [None] * len(cond), [1.0] * len(cond), rule="poe")
        if rule == "poe":
            return naive
        null = [b.eps(x, ab) for b in baselines]
        return compose_eps(naive, cond, null, [weight] * len(cond), rule="contrastive")

    return eps_fn


GAUSSIAN_EXPERTS = ((-0.3, 0.25), (0.2, 0.35), (0.05, 0.3))  # (mean, std) of each expert


def gaussian_product(samples: int = 20000, ddim_steps: int = 10, seed: int = 0,
                     experts=GAUSSIAN_EXPERTS) -> dict:
    """The naive product of Gaussian experts ``(mean, std)`` sampled as the world model samples ``poe``
    (:func:`sample_product`, ``ddim_steps`` levels) and by plain DDIM on the same summed eps, against the
    analytic product (precision-weighted mean, variance ``1 / sum_i 1/std_i^2``)."""
    precision = sum(1 / s**2 for _, s in experts)
    mean, var = sum(m / s**2 for m, s in experts) / precision, 1 / precision
    mixtures = [GaussianMixture((m,), (s,), (1.0,)) for m, s in experts]
    scheduler = make_scheduler()
    eps_fn = toy_eps_fn(mixtures, 0.0, "poe", scheduler)
    gen = torch.Generator().manual_seed(seed)
    noise = torch.randn(samples, generator=gen, dtype=torch.float64)
    grid = torch.linspace(-1.2, 1.2, 4801, dtype=torch.float64)
    density = normalise(GaussianMixture((mean,), (var**0.5,), (1.0,)).log_prob(grid), grid)
    result = {"experts": [list(e) for e in experts], "mean": mean, "variance": var, "ddim_steps": ddim_steps}
    for name, x in (("product_sampler", sample_product(eps_fn, noise, scheduler, ddim_steps, generator=gen)),
                    ("plain_ddim", run_sampler(eps_fn, noise, scheduler, ddim_steps))):
        at_clip, tv = float((x.abs() >= 0.999).double().mean()), total_variation(x, density, grid)
        result[name] = {"mean": float(x.mean()), "variance_ratio": float(x.var()) / var, "at_clip": at_clip,
                        "total_variation": tv, "sampler_failed": at_clip > MAX_AT_CLIP or tv > MAX_TOTAL_VARIATION}
    return result


def mode_masses(density_or_samples: torch.Tensor, grid: torch.Tensor | None, centres: list[float]) -> list[float]:
    """Mass nearest each mode centre: from a grid density (with ``grid``) or from samples (``grid`` None)."""
    c = torch.tensor(centres, dtype=torch.float64)
    if grid is None:
        nearest = (density_or_samples.double()[:, None] - c).abs().argmin(-1)
        return [float((nearest == k).double().mean()) for k in range(len(c))]
    nearest = (grid.double()[:, None] - c).abs().argmin(-1)
    dx = float(grid[1] - grid[0])
    return [float(density_or_samples[nearest == k].sum() * dx) for k in range(len(c))]


def total_variation(samples: torch.Tensor, density: torch.Tensor, grid: torch.Tensor, bins: int = 100) -> float:
    """TV distance between the histogram of ``samples`` and ``density`` binned the same way over the grid's range."""
    lo, hi = float(grid[0]), float(grid[-1])
    edges = torch.linspace(lo, hi, bins + 1, dtype=torch.float64)
    hist = torch.histogram(samples.double().clamp(lo, hi), edges).hist / len(samples)
    idx = torch.bucketize(grid.double(), edges[1:-1])
    ref = torch.zeros(bins, dtype=torch.float64).index_add_(0, idx, density.double()) * float(grid[1] - grid[0])
    return 0.5 * float((hist - ref / ref.sum()).abs().sum())


def run_toy(
    out: str | Path | None = None,
    weight: float = 2.0,
    samples: int = 20000,
    steps: int = 1000,
    langevin_steps: int = 10,
    langevin_size: float = 0.1,
    seed: int = 0,
    experts: list[GaussianMixture] | None = None,
    progress: bool = False,
) -> dict:
    """Grid densities and sampled histograms of the naive and contrastive products.

    Returns (and writes to ``out/toy.json``, with ``out/toy.png``) the mass of
    each mode under each rule on the grid and in the samples, and the total
    variation distance between each histogram and its grid density.
    """
    experts = experts or default_experts()
    grid = torch.linspace(-1.2, 1.2, 4801, dtype=torch.float64)
    centres = sorted(set(m for e in experts for m in e.means))
    scheduler = make_scheduler()
    gen = torch.Generator().manual_seed(seed)
    densities = {"naive": naive_density(experts, grid), "contrastive": contrastive_density(experts, weight, grid)}
    result = {
        "weight": weight, "samples": samples, "steps": steps, "langevin_steps": langevin_steps, "seed": seed,
        "mode_centres": centres, "rules": {},
    }
    drawn = {}
    for rule, density in densities.items():
        x = torch.randn(samples, generator=gen, dtype=torch.float64)
        eps_fn = toy_eps_fn(experts, weight, "poe" if rule == "naive" else "contrastive", scheduler)
        with tqdm(total=steps, desc=f"toy {rule}", unit="step", disable=not progress) as bar:
            x = run_sampler(eps_fn, x, scheduler, steps, callback=lambda _: bar.update(),
                            langevin_steps=langevin_steps, langevin_size=langevin_size, generator=gen)
        drawn[rule] = x
        tv, at_clip = total_variation(x, density, grid), float((x.abs() >= 0.999).double().mean())
        result["rules"][rule] = {
            "grid_mass": mode_masses(density, grid, centres),
            "sample_mass": mode_masses(x, None, centres),
            "total_variation": tv,
            "at_clip": at_clip,
            "sampler_failed": at_clip > MAX_AT_CLIP or tv > MAX_TOTAL_VARIATION,
        }
    result["experts"] = [{"means": e.means, "stds": e.stds, "masses": e.masses} for e in experts]
    result["gaussian_product"] = gaussian_product(samples, seed=seed)
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        save_json(out / "toy.json", result)
        _plot(out / "toy.png", experts, densities, drawn, grid, weight)
    return result


def _plot(path: Path, experts, densities, drawn, grid, weight: float) -> None:
    fig, axes = subplots(1, 3, figsize=(13, 3.4))
    g = grid.numpy()
    for i, e in enumerate(experts):
        axes[0].plot(g, normalise(e.log_prob(grid), grid).numpy(), label=f"expert {i + 1}")
        axes[0].plot(g, normalise(e.equalised().log_prob(grid), grid).numpy(), "--", lw=0.8, label=f"baseline {i + 1}")
    axes[0].set_title("experts and their baselines")
    axes[0].legend(fontsize=7)
    titles = {"naive": "naive product", "contrastive": f"product of contrastive experts (w={weight:g})"}
    for ax, (rule, density) in zip(axes[1:], densities.items()):
        ax.hist(drawn[rule].numpy(), bins=200, range=(-1.2, 1.2), density=True, alpha=0.5,
                label="sampled (DDIM + Langevin)")
        ax.plot(g, density.numpy(), "k", lw=1, label="grid density")
        ax.set_title(titles[rule])
        ax.legend(fontsize=7)
    for ax in axes:
        ax.set_xlim(-1.1, 1.1)
    save_figure(fig, path, dpi=120)
