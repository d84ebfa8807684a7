import json
import math

import pytest
import torch

from come.diffusion.schedule import make_scheduler
from come.toy import (
    GaussianMixture,
    contrastive_density,
    default_experts,
    gaussian_product,
    mode_masses,
    naive_density,
    normalise,
    run_toy,
    toy_eps_fn,
    total_variation,
)

GRID = torch.linspace(-12, 12, 48001, dtype=torch.float64)


def _far_apart_mixture(seed: int, k: int = 4, equal_widths: bool = False) -> GaussianMixture:
    """Components 6 units apart with stds <= 0.25: their supports are disjoint to float64 precision."""
    g = torch.Generator().manual_seed(seed)
    stds = torch.full((k,), 0.2) if equal_widths else 0.05 + 0.2 * torch.rand(k, generator=g)
    masses = 0.05 + torch.rand(k, generator=g)
    means = [-9.0 + 6.0 * i for i in range(k)]
    return GaussianMixture(tuple(means), tuple(stds.tolist()), tuple(masses.tolist()))


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("w", [0.5, 1.0, 2.0])
def test_proposition_1_contrastive_expert_reweights_disjoint_kernels(seed, w):
    """p^(1+w) / p~^w keeps every kernel and reweights it by pi_k (pi_k / pi~_k)^w (p~: equal peak heights)."""
    p = _far_apart_mixture(seed)
    pi = torch.tensor(p.masses, dtype=torch.float64) / sum(p.masses)
    pi_tilde = torch.tensor(p.stds, dtype=torch.float64) / sum(p.stds)  # equal peak heights: mass proportional to width
    expected = GaussianMixture(p.means, p.stds, tuple((pi * (pi / pi_tilde) ** w).tolist()))
    got = contrastive_density([p], w, GRID)
    want = normalise(expected.log_prob(GRID), GRID)
    assert torch.allclose(got, want, atol=1e-6 * float(want.max()))
    # ...and the masses are not simply pi^(1+w) when the widths differ (the baseline matters)
    naive_power = (pi ** (1 + w)) / (pi ** (1 + w)).sum()
    masses = torch.tensor(mode_masses(got, GRID, list(p.means)), dtype=torch.float64)
    assert torch.allclose(masses, (pi * (pi / pi_tilde) ** w) / (pi * (pi / pi_tilde) ** w).sum(), atol=1e-6)
    assert not torch.allclose(masses, naive_power, atol=1e-3)


@pytest.mark.parametrize("seed", range(3))
def test_proposition_1_uniform_baseline_gives_pi_to_the_1_plus_w(seed):
    p = _far_apart_mixture(seed, equal_widths=True)
    pi = torch.tensor(p.masses, dtype=torch.float64) / sum(p.masses)
    masses = torch.tensor(mode_masses(contrastive_density([p], 2.0, GRID), GRID, list(p.means)), dtype=torch.float64)
    assert torch.allclose(masses, pi**3 / (pi**3).sum(), atol=1e-6)


@pytest.mark.parametrize("gamma", [0.5, 2.0, 3.0])
def test_tempering_narrows_a_gaussian_variance_by_1_over_gamma(gamma):
    sigma = 0.7
    logp = GaussianMixture((0.5,), (sigma,), (1.0,)).log_prob(GRID)
    tempered = normalise(gamma * logp, GRID)
    dx = GRID[1] - GRID[0]
    mean = (tempered * GRID).sum() * dx
    var = (tempered * (GRID - mean) ** 2).sum() * dx
    assert float(var) == pytest.approx(sigma**2 / gamma, rel=1e-6)


def test_mixture_eps_is_minus_sigma_times_the_score():
    m = GaussianMixture((-0.5, 0.4), (0.1, 0.2), (1.0, 2.0))
    x = torch.linspace(-1, 1, 7, dtype=torch.float64, requires_grad=True)
    ab = 0.6
    (score,) = torch.autograd.grad(m.log_prob(x, ab).sum(), x)
    assert torch.allclose(m.eps(x.detach(), ab), -math.sqrt(1 - ab) * score)


def test_toy_grid_shows_the_spurious_consensus_and_its_removal():
    grid = torch.linspace(-1.2, 1.2, 4801, dtype=torch.float64)
    experts = default_experts()
    centres = sorted(set(m for e in experts for m in e.means))
    naive = mode_masses(naive_density(experts, grid), grid, centres)
    contrastive = mode_masses(contrastive_density(experts, 2.0, grid), grid, centres)
    assert abs(naive[0] - naive[1]) < 0.15 and naive[0] + naive[1] > 0.99  # nearly equal: spurious consensus
    assert contrastive[0] > 0.9  # the dominant mode keeps (almost) everything


def test_toy_eps_fn_composes_with_the_library_formula():
    experts = default_experts()
    sch = make_scheduler()
    x = torch.linspace(-1, 1, 11, dtype=torch.float64)
    ab = float(sch.alphas_cumprod[300])
    naive = toy_eps_fn(experts, 2.0, "poe", sch)(x, 300)
    contrastive = toy_eps_fn(experts, 2.0, "contrastive", sch)(x, 300)
    eps = [e.eps(x, ab) for e in experts]
    null = [e.equalised().eps(x, ab) for e in experts]
    assert torch.allclose(naive, eps[0] + eps[1])
    assert torch.allclose(contrastive, 3 * (eps[0] + eps[1]) - 2 * (null[0] + null[1]))


def test_total_variation_of_a_perfect_histogram_is_small_and_of_a_wrong_one_large():
    grid = torch.linspace(-1, 1, 2001, dtype=torch.float64)
    density = normalise(GaussianMixture((0.0,), (0.2,), (1.0,)).log_prob(grid), grid)
    g = torch.Generator().manual_seed(0)
    right = 0.2 * torch.randn(20000, generator=g, dtype=torch.float64)
    assert total_variation(right, density, grid) < 0.03
    assert total_variation(right + 0.5, density, grid) > 0.7


def test_run_toy_samples_match_the_grid_and_write_outputs(tmp_path):
    result = run_toy(tmp_path, samples=2000, steps=300, langevin_steps=10)
    assert (tmp_path / "toy.png").stat().st_size > 0
    assert json.loads((tmp_path / "toy.json").read_text()) == json.loads(json.dumps(result))
    for rule in ("naive", "contrastive"):
        r = result["rules"][rule]
        assert all(abs(a - b) < 0.06 for a, b in zip(r["grid_mass"], r["sample_mass"])), (rule, r)
    assert result["rules"]["contrastive"]["sample_mass"][0] > 0.85
    assert result["rules"]["naive"]["sample_mass"][1] > 0.35
    assert not any(r["sampler_failed"] for r in result["rules"].values())


def test_a_failed_sampler_is_flagged_not_reported(tmp_path):
    from typer.testing import CliRunner

    from come.cli import app

    # 3 DDIM steps and no corrector: the naive product's summed eps scales the samples up to the clip
    res = CliRunner().invoke(app, ["toy", "--out", str(tmp_path), "--samples", "500", "--ddim-steps", "3",
                                   "--langevin-steps", "0"])
    assert res.exit_code == 0, res.output
    naive = json.loads((tmp_path / "toy.json").read_text())["rules"]["naive"]
    assert naive["sampler_failed"] and naive["at_clip"] > 0.1
    assert "SAMPLER FAILED" in res.output


@pytest.mark.parametrize("experts", [((-0.3, 0.25), (0.2, 0.35), (0.05, 0.3)), ((0.4, 0.1), (-0.2, 0.5), (0.1, 0.2))])
def test_the_naive_product_samples_its_gaussian_product(experts):
    """As the world model samples poe: the analytic product's mean and variance, nothing at the clip;
    plain DDIM on the same summed eps throws most samples to the clip."""
    r = gaussian_product(samples=4000, experts=experts)
    fair = r["product_sampler"]
    assert 0.8 < fair["variance_ratio"] < 1.2, fair
    assert abs(fair["mean"] - r["mean"]) < 0.1 * r["variance"] ** 0.5, (fair, r["mean"])
    assert fair["at_clip"] < 0.05 and fair["total_variation"] < 0.05 and not fair["sampler_failed"]
    assert r["plain_ddim"]["at_clip"] > 0.5 and r["plain_ddim"]["sampler_failed"]
