import pytest
import torch
from diffusers import DDPMScheduler

from come.diffusion.loss import diffusion_loss, sample_levels
from come.diffusion.sampling import SAMPLERS, run_sampler
from come.errors import InputError
from come.diffusion.schedule import SCHEDULERS, add_noise, alpha_bar, make_scheduler, to_eps, v_to_x0, velocity

from tiny import tiny_dit


def test_noising_matches_diffusers():
    s = make_scheduler()
    ref = DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2")
    x0, noise = torch.randn(6, 3, 4, 4), torch.randn(6, 3, 4, 4)
    t = torch.tensor([1, 10, 100, 500, 900, 999])
    ab = alpha_bar(s, t)
    torch.testing.assert_close(add_noise(x0, noise, ab), ref.add_noise(x0, noise, t))
    torch.testing.assert_close(velocity(x0, noise, ab), ref.get_velocity(x0, noise, t))
    assert alpha_bar(s, torch.tensor([0])).item() == 1.0  # level 0 is clean


def test_parameterisations_convert_to_the_same_eps():
    s = make_scheduler()
    x0, eps = torch.randn(4, 3, 4, 4), torch.randn(4, 3, 4, 4)
    ab = alpha_bar(s, torch.tensor([5, 200, 600, 950]))
    x_t = add_noise(x0, eps, ab)
    for kind, pred in (("eps", eps), ("v", velocity(x0, eps, ab)), ("x0", x0)):
        torch.testing.assert_close(to_eps(pred, x_t, ab, kind), eps, atol=1e-4, rtol=1e-4)
    v = velocity(x0, eps, ab)
    torch.testing.assert_close(v_to_x0(v, x_t, ab), x0, atol=1e-5, rtol=1e-5)
    last = alpha_bar(s, torch.tensor([999]))  # sqrt(ab) ~ 5e-5: still exact
    torch.testing.assert_close(v_to_x0(velocity(x0[:1], eps[:1], last), add_noise(x0[:1], eps[:1], last), last),
                               x0[:1], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("sampler", SCHEDULERS)
def test_every_sampler_with_exact_eps_recovers_a_point_mass(sampler):
    """For data concentrated on c the exact eps is (x_t - sqrt(ab) c) / sqrt(1-ab); every sampler must land on c."""
    s = make_scheduler(sampler=sampler)
    c = torch.rand(2, 1, 3, 4, 4) * 1.6 - 0.8
    calls = []

    def eps_fn(x, t):
        calls.append(t)
        ab = alpha_bar(s, torch.tensor(t))
        return (x - ab.sqrt() * c) / (1 - ab).sqrt()

    out = run_sampler(eps_fn, torch.randn(2, 1, 3, 4, 4), s, steps=10)
    torch.testing.assert_close(out, c, atol=1e-4, rtol=1e-4)
    assert len(calls) == 10 and calls[0] == 999 and calls == sorted(calls, reverse=True)


@pytest.mark.parametrize("sampler", SCHEDULERS)
def test_an_x0_network_ends_at_its_x0_at_any_step_count(sampler):
    """Level 0 is clean in the schedule and in the sampler: 1000 steps reach t = 0 (never evaluated),
    and step counts that do not divide 1000 land on level 0, which must not leave noise."""
    s = make_scheduler(sampler=sampler)
    assert float(alpha_bar(s, torch.tensor(0))) == 1.0
    x0 = torch.rand(2, 1, 3, 4, 4) * 1.6 - 0.8
    for steps in (1000, 700, 7, 10):
        seen = []

        def eps_fn(x, t, seen=seen):
            seen.append(t)
            return to_eps(x0, x, alpha_bar(s, torch.tensor(t)), "x0")  # an oracle x0 network

        out = run_sampler(eps_fn, torch.randn(2, 1, 3, 4, 4, generator=torch.Generator().manual_seed(0)), s, steps)
        torch.testing.assert_close(out, x0, atol=1e-4, rtol=1e-4)
        assert 0 not in seen and seen[0] == 999


def test_levels_context_clean_or_dropped():
    g = torch.Generator().manual_seed(0)
    lv = sample_levels(2000, 6, 2, 1000, 0.1, g)
    ctx = lv[:, :2]
    assert set(ctx.unique().tolist()) == {0, 999}
    dropped = (ctx == 999).all(1).float().mean().item()
    assert 0.07 < dropped < 0.13
    assert (lv[:, 2:] >= 1).all()
    shared = (lv[:, 2:] == lv[:, 2:3]).all(1).float().mean().item()
    assert 0.45 < shared < 0.56


def test_levels_drop_context_mask_forces_dropout_and_keeps_the_rest():
    mask = torch.zeros(500, dtype=torch.bool)
    mask[::3] = True
    plain = sample_levels(500, 3, 2, 1000, 0.1, torch.Generator().manual_seed(0))
    masked = sample_levels(500, 3, 2, 1000, 0.1, torch.Generator().manual_seed(0), drop_context=mask)
    assert (masked[mask, :2] == 999).all()
    assert torch.equal(masked[~mask], plain[~mask])  # the same draws elsewhere
    assert torch.equal(masked[:, 2:], plain[:, 2:])


def test_levels_high_fraction():
    g = torch.Generator().manual_seed(0)
    lv = sample_levels(4000, 3, 2, 1000, 0.1, g, high_fraction=0.8, high_min=800)
    future = lv[:, 2]
    assert (future >= 1).all() and (future <= 999).all()
    # 80% of the clips in [800, 1000), plus the uniform clips that land there by chance
    share = (future >= 800).float().mean().item()
    assert abs(share - (0.8 + 0.2 * 0.2)) < 0.03
    assert set(lv[:, :2].unique().tolist()) == {0, 999}  # context untouched


def test_levels_context_noise():
    g = torch.Generator().manual_seed(0)
    lv = sample_levels(3000, 4, 2, 1000, 0.1, g, context_noise_max=250)
    ctx = lv[:, :2]
    assert (ctx[:, 0] == ctx[:, 1]).all()  # one level per clip's context
    kept = ctx[:, 0] != 999
    assert 0.07 < (~kept).float().mean().item() < 0.13  # dropout still replaces the context by pure noise
    assert ctx[kept].min() == 0 and ctx[kept].max() == 250
    assert abs(ctx[kept].float().mean().item() - 125) < 8  # uniform over [0, 250]


def test_a_prior_sees_its_context_noised_once_at_its_level():
    from come.compose import Expert, History, composed_eps_fn
    from come.diffusion.sampling import noise_context

    seen = []

    class Spy:
        prediction, max_frames = "v", 8

        def __call__(self, x, t, a, p, context, adapter_names=None):
            seen.append((x[:, :context].clone(), t[:, :context].clone()))
            return torch.zeros_like(x)

    s = make_scheduler()
    ctx, x, a = torch.randn(1, 2, 3, 16, 16), torch.randn(1, 1, 3, 16, 16), torch.randn(1, 3, 5)
    assert noise_context(ctx, 0, s) is ctx
    noise = torch.randn(ctx.shape, generator=torch.Generator().manual_seed(3))
    fn = composed_eps_fn(Expert("model", Spy(), 2), [], History(ctx, a, context_noise=noise, context_level=100), s)
    fn(x, 900), fn(x, 500)
    (c1, t1), (c2, t2) = seen
    assert (t1 == 100).all() and torch.equal(c1, c2)  # the same noisy context at every denoising step
    torch.testing.assert_close(c1, noise_context(ctx, 100, s, noise=noise))
    assert 0.1 < (c1 - ctx).std() < 0.25  # level 100: noise std sqrt(1 - 0.97)


def _micro():
    return tiny_dit(resolution=16, residual=False).train()


def test_loss_ignores_context_targets_and_training_lowers_it():
    torch.manual_seed(0)
    m, s = _micro(), make_scheduler()
    colours = (torch.rand(8, 1, 3, 1, 1) * 2 - 1).expand(8, 4, 3, 1, 1)  # a flat colour per clip: the context tells it
    batch = {"frames": colours.expand(8, 4, 3, 16, 16).contiguous(), "action": torch.randn(8, 4, 5)}
    def blind(x, *args, **kwargs):  # a network that ignores its input: the loss is then a function of targets
        return torch.zeros_like(x)

    other = {**batch, "frames": batch["frames"].clone()}
    other["frames"][:, :2] = -batch["frames"][:, :2]  # other context frames, the same future frames
    a, b = (diffusion_loss(blind, x, 2, s, generator=torch.Generator().manual_seed(0)) for x in (batch, other))
    assert a.item() > 0 and a.item() == b.item()  # context frames are never targets
    opt = torch.optim.AdamW(m.parameters(), 3e-3)

    def loss(seed):
        return diffusion_loss(m, batch, 2, s, generator=torch.Generator().manual_seed(seed))

    first = torch.stack([loss(i) for i in range(4)]).mean().item()
    for i in range(100):  # fit four fixed draws of levels and noise
        opt.zero_grad()
        loss(i % 4).backward()
        opt.step()
    assert torch.stack([loss(i) for i in range(4)]).mean().item() < 0.6 * first


def test_a_prior_uses_its_clean_context():
    from come.compose import DiTDenoiser, Expert, History, composed_eps_fn

    m, s = _micro(), make_scheduler()
    ctx, x, a = torch.randn(1, 2, 3, 16, 16), torch.randn(1, 2, 3, 16, 16), torch.randn(1, 4, 5)
    eps = composed_eps_fn(Expert("model", DiTDenoiser(m), 2), [], History(ctx, a), s)(x, 500)
    assert eps.shape == x.shape
    # untrained adaLN-Zero network predicts v = 0, so eps = sqrt(1-ab) x_t
    torch.testing.assert_close(eps, (1 - alpha_bar(s, torch.tensor(500))).sqrt() * x)


def test_langevin_corrector_keeps_an_exact_gaussian_and_is_off_by_default():
    """With the exact score of N(0, s^2) noised, the corrector leaves the sampled variance right."""
    import pytest

    s = 0.3
    sch = make_scheduler()

    def eps_fn(x, t):
        ab = float(alpha_bar(sch, torch.tensor(t)))
        var = ab * s**2 + 1 - ab
        return (1 - ab) ** 0.5 * x / var  # -sqrt(1-ab) * score of N(0, var)

    x = torch.randn(40000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    plain = run_sampler(eps_fn, x, sch, 200)
    corrected = run_sampler(eps_fn, x, sch, 200, langevin_steps=3, generator=torch.Generator().manual_seed(1))
    assert float(plain.std()) == pytest.approx(s, rel=0.02)
    assert float(corrected.std()) == pytest.approx(s, rel=0.02)
    assert not torch.equal(plain, corrected)
    assert torch.equal(plain, run_sampler(eps_fn, x, sch, 200))  # off by default: deterministic DDIM
    with pytest.raises(ValueError, match="langevin"):
        run_sampler(eps_fn, x, sch, 5, langevin_steps=-1)


def test_levels_short_context_keeps_the_priors_frames():
    g = torch.Generator().manual_seed(0)
    lv = sample_levels(4000, 9, 8, 1000, 0.1, g, short_context=3, p_short_context=0.3)
    dropped = (lv[:, :8] == 999).all(1)
    short = (lv[:, :5] == 999).all(1) & (lv[:, 5:8] == 0).all(1)
    full = (lv[:, :8] == 0).all(1)
    assert (dropped | short | full).all()  # no other context pattern
    assert abs(dropped.float().mean().item() - 0.1) < 0.02
    assert abs(short.float().mean().item() - 0.3 * 0.9) < 0.03
    plain = sample_levels(500, 9, 8, 1000, 0.1, torch.Generator().manual_seed(1))
    same = sample_levels(500, 9, 8, 1000, 0.1, torch.Generator().manual_seed(1), short_context=3)
    assert torch.equal(plain, same)  # off (p = 0): the random stream of other runs is unchanged


@pytest.mark.parametrize("sampler", ["dpm++", "unipc"])
def test_multistep_solvers_sample_a_gaussian_closer_than_ddim(sampler):
    """On exact Gaussian scores at 20 steps, DPM-Solver++ and UniPC reach the data's mean, and its spread within
    10%, closer than DDIM at the same steps (which narrows it by 15%)."""
    mean, std = 0.3, 0.2
    noise = torch.randn(20000, 1, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    spread = {}
    for name in (sampler, "ddim"):
        scheduler = make_scheduler(sampler=name)

        def eps_fn(x, t, scheduler=scheduler):
            ab = alpha_bar(scheduler, torch.tensor(t)).double()
            return (1 - ab).sqrt() * (x - ab.sqrt() * mean) / (ab * std**2 + 1 - ab)

        x = run_sampler(eps_fn, noise, scheduler, 20)
        assert abs(float(x.mean()) - mean) < 0.01
        spread[name] = abs(float(x.std()) / std - 1)
    assert spread[sampler] < 0.1 and spread[sampler] < spread["ddim"], spread


def test_an_unknown_sampler_is_refused():
    with pytest.raises(ValueError, match="unknown sampler 'euler'.*ddim, dpm\\+\\+, unipc"):
        make_scheduler(sampler="euler")


@pytest.mark.parametrize("name", list(SAMPLERS))
def test_every_sampler_takes_the_same_arguments(name):
    """Each sampler of the table: (eps_fn, x, scheduler, steps, *, generator, callback), a clean sample back."""
    steps_seen = []
    x = torch.randn(2, 1, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    out = SAMPLERS[name](lambda x, t: 0.5 * x, x, make_scheduler(), 4, generator=torch.Generator().manual_seed(1),
                         callback=lambda info: steps_seen.append(info["t"]))
    assert out.shape == x.shape and torch.isfinite(out).all() and out.abs().max() <= 1
    assert len(steps_seen) >= 4 and steps_seen == sorted(steps_seen, reverse=True)


def test_a_rollout_by_an_unknown_sampler_is_refused():
    from come.diffusion.sampling import autoregress

    with pytest.raises(InputError, match="unknown sampler 'euler'"):
        autoregress(lambda known, f: None, torch.zeros(1, 2, 3, 4, 4), 1, 1, make_scheduler(), 2, sampler="euler")
