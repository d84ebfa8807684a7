import contextlib
import math

import pytest
import torch
from peft import LoraConfig, get_peft_model

from come.denoisers import FrameDenoiser
from come.compose import DiTDenoiser, Expert, History, compose_eps, composed_eps_fn
from come.diffusion.sampling import run_sampler
from come.diffusion.schedule import alpha_bar, make_scheduler, to_eps

from tiny import tiny_dit


def _net(max_frames=4, seed=0):
    return tiny_dit(seed, jitter=0.05, gates_only=False, resolution=16, max_frames=max_frames, pose_dim=2)


def _with_lora(m):
    cfg = LoraConfig(r=4, lora_alpha=4, target_modules=["qkv", "proj", "fc1", "fc2"], init_lora_weights=False)
    return get_peft_model(m, cfg, adapter_name="ltm").eval()


def _history(B=2, N=6, F=2):
    g = torch.Generator().manual_seed(1)
    return History(torch.rand(B, N, 3, 16, 16, generator=g) * 2 - 1, torch.randn(B, N + F, 5, generator=g),
                   torch.rand(B, N + F, 2, generator=g) * 2 - 1)


def test_compose_eps_formulas():
    p, c1, n1, c2, n2 = (torch.full((1,), v) for v in (1.0, 3.0, 2.0, 10.0, 4.0))
    with pytest.raises(ValueError, match="gamma"):  # a temperature is the naive product's, never silently dropped
        compose_eps(p, [c1], [n1], [1.0], gammas=[3.0])
    assert compose_eps(p, [c1, c2], [n1, n2], [2.0, 0.5]).item() == 1 + 2 * (3 - 2) + 0.5 * (10 - 4)
    assert compose_eps(p, [c1, c2], [None, None], [1, 1], rule="poe").item() == 1 + 3 + 10
    assert compose_eps(None, [c1, c2], [None, None], [1, 1], rule="poe", gammas=[2, 0.5]).item() == 6 + 5
    with pytest.raises(ValueError, match="finite"):
        compose_eps(p, [c1], [n1], [math.nan])
    with pytest.raises(ValueError, match="null"):
        compose_eps(p, [c1], [None], [1.0])
    with pytest.raises(ValueError, match="prior"):
        compose_eps(None, [c1], [n1], [1.0])


def test_batched_equals_one_by_one_and_dedups_identical_passes():
    s = make_scheduler()
    base = _with_lora(_net(4))
    stm = _net(8, seed=1)
    h = _history()
    d_base, d_stm = DiTDenoiser(base), DiTDenoiser(stm)
    prior = Expert("base", d_base, context=2)
    ltm = Expert("ltm", d_base, context=2, weight=1.5, adapter="ltm", null="adapters_off")
    st = Expert("stm", d_stm, context=6, weight=1.2, null="noise")
    sltm = Expert("sltm", d_base, context=2, weight=0.7, adapter="ltm", null="pose_drop")
    stats = {}
    fn = composed_eps_fn(prior, [ltm, st, sltm], h, s, stats=stats)
    # the LTM's null (adapters off, same context) is the prior's pass: computed once
    assert stats == {"passes": 5, "forwards": 2}
    x = torch.randn(2, 2, 3, 16, 16)
    got = fn(x, 600)

    # one by one, through the plain single-network eps function
    def one(net, ctx, pose=True, adapter=None, noised=False):
        k = ctx.shape[1]
        act = torch.cat([h.action[:, 6 - k : 6], h.action[:, 6:]], 1)
        pz = torch.cat([h.pose[:, 6 - k : 6], h.pose[:, 6:]], 1)
        pz = pz if pose else torch.zeros_like(pz)
        lv = torch.full((2, k + 2), 600)
        lv[:, :k] = 999 if noised else 0
        adapters_off = adapter is None and hasattr(net, "disable_adapter")
        with net.disable_adapter() if adapters_off else contextlib.nullcontext():
            out = net(torch.cat([ctx, x], 1), lv, act, pz, context=k)[:, k:]
        return to_eps(out, x, alpha_bar(s, lv[:, k:]), "v")

    with torch.no_grad():
        e0 = one(base, h.frames[:, 4:])
        e_ltm = one(base, h.frames[:, 4:], adapter="ltm")
        e_stm = one(stm, h.frames[:, 0:])
        noise = torch.randn(h.frames.shape, generator=torch.Generator().manual_seed(0))
        e_stm_null = one(stm, noise, noised=True)
        e_sltm_null = one(base, h.frames[:, 4:], pose=False, adapter="ltm")
    want = e0 + 1.5 * (e_ltm - e0) + 1.2 * (e_stm - e_stm_null) + 0.7 * (e_ltm - e_sltm_null)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)
    assert (e_ltm - e0).abs().max() > 1e-3  # the adapter really changes the prediction


def tiny_unet(size: int = 16, channels: int = 3):
    """A diffusers UNet2DModel (not ours) of (noisy frame | previous frame), as :class:`FrameDenoiser` takes."""
    from diffusers import UNet2DModel

    torch.manual_seed(0)
    return UNet2DModel(sample_size=size, in_channels=2 * channels, out_channels=channels, layers_per_block=1,
                       block_out_channels=(8, 16), norm_num_groups=4, down_block_types=("DownBlock2D", "DownBlock2D"),
                       up_block_types=("UpBlock2D", "UpBlock2D")).eval()


def test_outside_model_as_expert_samples():
    s = make_scheduler()
    h = _history()
    prior = Expert("base", DiTDenoiser(_net(4)), context=2)
    outside = Expert("unet", FrameDenoiser(tiny_unet()), context=3, weight=1.0)
    with torch.no_grad():
        fn = composed_eps_fn(prior, [outside], h, s)
        out = run_sampler(fn, torch.randn(2, 2, 3, 16, 16), s, steps=3)
        assert out.shape == (2, 2, 3, 16, 16) and torch.isfinite(out).all()
        x = torch.randn(2, 2, 3, 16, 16)
        e = fn(x, 500)
        e0 = composed_eps_fn(prior, [], h, s)(x, 500)
        assert not torch.allclose(e, e0)


def test_misuse_errors():
    s = make_scheduler()
    h = _history()
    small = DiTDenoiser(_net(4))
    with pytest.raises(ValueError, match="accepts 4"):
        composed_eps_fn(Expert("base", small, context=2), [Expert("long", small, context=5)], h, s)(
            torch.randn(2, 2, 3, 16, 16), 500)
    with pytest.raises(ValueError, match="without any"):
        composed_eps_fn(Expert("base", small, context=2), [Expert("ltm", small, 2, adapter="ltm", null="adapters_off")],
                        h, s)(torch.randn(2, 2, 3, 16, 16), 500)
    with pytest.raises(ValueError, match="do not match"):
        composed_eps_fn(Expert("base", small, context=2), [], h, s)(torch.randn(2, 2, 3, 8, 8), 500)
    with pytest.raises(ValueError, match="finite"):
        Expert("bad", small, 2, weight=float("inf"))
    with pytest.raises(ValueError, match="the history has 6"):
        composed_eps_fn(Expert("base", small, context=7), [], h, s)


def test_history_guidance_expands_to_dfot_formulas():
    from come.compose import history_guidance

    s = make_scheduler()
    net = DiTDenoiser(_net(8))
    h = _history()
    x = torch.randn(2, 2, 3, 16, 16)

    def cond(ctx):
        return composed_eps_fn(Expert("v", net, ctx), [], h, s)(x, 400)

    def null(ctx):  # prior - 1 * (cond - null) = the view with its frames replaced by noise
        return composed_eps_fn(Expert("p", net, ctx), [Expert("n", net, ctx, weight=-1.0)], h, s)(x, 400)

    with torch.no_grad():
        e_h, e_null, e_s, e_null_all = cond(4), null(4), cond((0, 2, 5)), null((0, 2, 3, 4, 5))
        assert (e_s - e_h).abs().amax() > 1e-3 and (e_null_all - e_null).abs().amax() > 1e-3  # it reads its context
        prior, experts = history_guidance(net, 4, weight=2.0)  # HG-v
        got = composed_eps_fn(prior, experts, h, s)(x, 400)
        torch.testing.assert_close(got, e_null + 2.0 * (e_h - e_null), atol=1e-5, rtol=1e-4)
        prior, experts = history_guidance(net, 4, subsets=[(2, 3, 4, 5), (0, 2, 5)], weights=[1.5, 0.5])  # HG-t
        got = composed_eps_fn(prior, experts, h, s)(x, 400)
        # one null for every subsequence (DFoT): the frames of all of them replaced by noise
        want = e_null_all + 1.5 * (e_h - e_null_all) + 0.5 * (e_s - e_null_all)
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)


def test_base_pass_ignores_the_active_adapter_and_missing_adapter_is_named():
    s = make_scheduler()
    plain = _net(4)
    h = _history()
    x = torch.randn(2, 2, 3, 16, 16)
    with torch.no_grad():
        want = composed_eps_fn(Expert("b", DiTDenoiser(plain), 2), [], h, s)(x, 300)
        lora = _with_lora(_net(4))  # same base weights, active adapter 'ltm' with non-zero weights
        got = composed_eps_fn(Expert("b", DiTDenoiser(lora), 2), [], h, s)(x, 300)
        torch.testing.assert_close(got, want)
        with pytest.raises(ValueError, match="do not exist"):
            composed_eps_fn(Expert("b", DiTDenoiser(lora), 2), [Expert("m", DiTDenoiser(lora), 2, adapter="nope",
                                                                         null="adapters_off")], h, s)(x, 300)


def test_experts_see_the_context_at_the_historys_level():
    from come.diffusion.sampling import noise_context

    calls = []

    class Spy:
        prediction, max_frames = "eps", 8

        def __call__(self, x, levels, action, pose, context, adapter_names=None):
            calls.append((x[:, :context].clone(), levels[:, :context].clone()))
            return torch.zeros_like(x)

    s, spy = make_scheduler(), Spy()
    h = _history()
    h.context_noise = torch.randn(h.frames.shape, generator=torch.Generator().manual_seed(4))
    h.context_level = 100
    prior = Expert("base", spy, context=2)
    hist = Expert("hist", spy, context=4, weight=1.0, null="noise")
    composed_eps_fn(prior, [hist], h, s)(torch.randn(2, 2, 3, 16, 16), 500)
    seen = noise_context(h.frames, 100, s, noise=h.context_noise)
    passes = {}  # (context frames, level) -> what the network saw; passes of one network come batched
    for ctx, lv in calls:
        for i in range(0, len(ctx), 2):
            passes[(ctx.shape[1], int(lv[i, 0]))] = ctx[i : i + 2]
    assert set(passes) == {(2, 100), (4, 100), (4, 999)}
    torch.testing.assert_close(passes[(2, 100)], seen[:, -2:])  # the prior: last 2 frames, noised at 100
    torch.testing.assert_close(passes[(4, 100)], seen[:, -4:])  # the expert's memory
    torch.testing.assert_close(passes[(4, 999)], h.context_noise[:, -4:])  # its null: pure noise

    # a null that keeps the prior's frames: the older frames are noise, the last two what the prior sees
    calls.clear()
    keep = Expert("stm", spy, context=4, weight=1.0, null="noise", null_keep=2)
    composed_eps_fn(prior, [keep], h, s)(torch.randn(2, 2, 3, 16, 16), 500)
    (ctx, lv), = [c for c in calls if c[0].shape[1] == 4]
    null = ctx[2:]  # the batch holds the conditional pass, then the null pass
    assert lv[2:].tolist() == [[999, 999, 100, 100]] * 2
    torch.testing.assert_close(null[:, :2], h.context_noise[:, 2:4])
    torch.testing.assert_close(null[:, 2:], seen[:, -2:])
    with pytest.raises(ValueError, match="null_keep"):
        Expert("x", spy, context=4, null="adapters_off", adapter="a", null_keep=2)


def test_place_expert_contrasts_its_views_with_none():
    from test_places import _place_model

    s, net = make_scheduler(), _place_model()
    g = torch.Generator().manual_seed(3)
    h = History(torch.rand(2, 5, 3, 16, 16, generator=g) * 2 - 1, torch.randn(2, 6, 6, generator=g))
    h.views, h.view_pose = torch.rand(2, 2, 3, 16, 16, generator=g) * 2 - 1, torch.randn(2, 2, 4, generator=g)
    d = DiTDenoiser(net)
    prior = Expert("base", d, context=3)
    place = Expert("place", d, context=3, weight=1.0, views=True, null="views_drop")
    x, t = torch.randn(2, 1, 3, 16, 16, generator=g), 400
    stats = {}
    got = composed_eps_fn(prior, [place], h, s, stats=stats)(x, t)
    assert stats == {"passes": 1, "forwards": 1}  # its null is the prior's pass, and at w = 1 they cancel
    ctx = torch.cat([h.frames[:, -3:], x], dim=1)
    lv = torch.tensor([[0, 0, 0, t]] * 2)
    ab = alpha_bar(s, torch.full((2, 1), t))
    with torch.no_grad():
        seen = to_eps(net(ctx, lv, h.action[:, 2:], None, context=3, views=h.views, view_pose=h.view_pose)[:, 3:],
                      x, ab, "v")
        blind = to_eps(net(ctx, lv, h.action[:, 2:], None, context=3)[:, 3:], x, ab, "v")
    torch.testing.assert_close(got, seen, atol=1e-4, rtol=1e-4)  # w = 1: the model with its views
    place.weight = 2.0
    torch.testing.assert_close(composed_eps_fn(prior, [place], h, s, stats=stats)(x, t), 2 * seen - blind,
                               atol=1e-4, rtol=1e-4)
    assert stats == {"passes": 2, "forwards": 1}
    # the same network under test-time adapters (a base that is its own place memory) sees the same views
    lora = DiTDenoiser(_with_lora(net))
    both = composed_eps_fn(Expert("base", lora, 3), [Expert("place", lora, 3, weight=2.0, views=True,
                                                            null="views_drop")], h, s)(x, t)
    torch.testing.assert_close(both, 2 * seen - blind, atol=1e-4, rtol=1e-4)
    h.views = None
    with pytest.raises(ValueError, match="has none"):
        composed_eps_fn(prior, [place], h, s)
    with pytest.raises(ValueError, match="views_drop"):
        Expert("p", d, context=3, null="views_drop")


def test_cancelled_passes_are_not_evaluated():
    """An expert at w = 1 against the prior's own pass is that expert alone: one pass, the same eps."""
    s = make_scheduler()
    d = DiTDenoiser(_with_lora(_net(4)))
    h = _history()
    x = torch.randn(2, 2, 3, 16, 16)
    prior = Expert("base", d, context=2)
    ltm = Expert("ltm", d, context=2, weight=1.0, adapter="ltm", null="adapters_off")
    stats = {}
    got = composed_eps_fn(prior, [ltm], h, s, stats=stats)(x, 300)
    assert stats == {"passes": 1, "forwards": 1}
    alone = composed_eps_fn(Expert("ltm", d, context=2, adapter="ltm"), [], h, s)(x, 300)
    torch.testing.assert_close(got, alone)
    ltm.weight = 1.5  # the prior and the null no longer cancel
    expected = composed_eps_fn(prior, [], h, s)(x, 300) * -0.5 + 1.5 * alone
    torch.testing.assert_close(composed_eps_fn(prior, [ltm], h, s, stats=stats)(x, 300), expected,
                               atol=1e-5, rtol=1e-5)
    assert stats == {"passes": 2, "forwards": 1}
