import pytest
import torch
import torch.nn.functional as F

from come.models.dit import DiTConfig, attend
from come.presets import MODEL_PRESETS as PRESETS, build_model

from tiny import tiny_dit


def tiny(**kw):
    return tiny_dit(**{**dict(resolution=16, patch=4, depth=3, max_frames=6, pose_dim=2), **kw}).train()


def _inputs(B=2, T=5, res=16):
    return torch.randn(B, T, 3, res, res), torch.randint(0, 1000, (B, T)), torch.randn(B, T, 5), torch.randn(B, T, 2)


def _perturb_all(m):
    torch.manual_seed(0)
    with torch.no_grad():
        for p in m.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return m


def test_output_shape_and_zero_init():
    m = tiny(residual=False)
    x, t, a, p = _inputs()
    out = m(x, t, a, p, context=2)
    assert out.shape == x.shape
    assert out.abs().max() == 0  # adaLN-Zero: the untrained network predicts zero


def test_conditioning_reaches_each_frame():
    m = _perturb_all(tiny())
    x, t, a, p = _inputs()
    base = m(x, t, a, p, context=2)
    a2 = a.clone()
    a2[:, 3] += 1
    changed = (m(x, t, a2, p, context=2) - base).abs().amax(dim=(0, 2, 3, 4))
    assert changed[3] > 0  # the action conditions its own frame...
    p2 = p.clone()
    p2[:, 1] += 1
    assert (m(x, t, a, p2, context=2) - base).abs().amax(dim=(0, 2, 3, 4))[1] > 0  # ...and so does the pose
    assert not torch.allclose(m(x, t, a, None, context=2), base)  # pose dropped changes the prediction
    assert torch.equal(m(x, t, a, None, context=2), m(x, t, a, torch.zeros_like(p), context=2))  # as in training


def test_sliding_window_limits_what_a_frame_sees():
    m = _perturb_all(tiny(window=1, global_layers=[]))
    x, t, a, p = _inputs()
    x2 = x.clone()
    x2[:, 4] += 1
    diff = (m(x2, t, a, p) - m(x, t, a, p)).abs().amax(dim=(0, 2, 3, 4))
    assert diff[4] > 0 and torch.all(diff[:4] == 0)
    g = _perturb_all(tiny(window=1, global_layers=[1]))
    diff = (g(x2, t, a, p) - g(x, t, a, p)).abs().amax(dim=(0, 2, 3, 4))
    assert torch.all(diff[:4] > 0)  # a global layer lets every frame see every other


def test_anchor_feeds_the_last_context_frame():
    m = _perturb_all(tiny(residual=False))  # the anchor embedding alone (the residual path is tested below)
    x, t, a, p = _inputs()
    x2 = x.clone()
    x2[:, 1] += 1  # last context frame
    out1, out2 = m(x, t, a, p, context=2), m(x2, t, a, p, context=2)
    m.anchor_embed.weight.data.zero_()
    m.anchor_embed.bias.data.zero_()
    m.pos_time.data.zero_()
    for blk in m.blocks:  # cut attention so only the anchor path can carry frame 1 into frame 3
        blk.attn.proj.weight.data.zero_()
        blk.attn.proj.bias.data.zero_()
    assert torch.equal(m(x, t, a, p, context=2)[:, 3], m(x2, t, a, p, context=2)[:, 3])
    assert not torch.equal(out1[:, 3], out2[:, 3])


def test_presets_registry_and_errors():
    assert {"cards-tiny", "cards-stm", "dit-s", "dit-b"} <= set(PRESETS)
    with pytest.raises(ValueError, match="unknown model preset"):
        build_model("nope")
    with pytest.raises(ValueError, match="not divisible by patch"):
        DiTConfig(resolution=30, patch=8)
    m = tiny()
    x, t, a, p = _inputs(T=7)
    with pytest.raises(ValueError, match="max_frames"):
        m(x, t, a, p)
    x, t, a, p = _inputs(res=32)
    with pytest.raises(ValueError, match="do not fit"):
        m(x, t, a, p)


def test_residual_model_starts_by_copying_the_last_frame():
    """Untrained (v_r = 0), the clean-frame estimate is the anchor plus sqrt(ab) times the noisy change."""
    from come.diffusion.schedule import alpha_bar, make_scheduler, v_to_x0

    s = make_scheduler()
    m = tiny()
    x, _, a, p = _inputs()
    t = torch.tensor([[0, 0, 900, 500, 100]] * 2)
    ab = alpha_bar(s, t)[:, 2:, None, None, None]
    x0 = v_to_x0(m(x, t, a, p, context=2), x, alpha_bar(s, t))[:, 2:]
    anchor = x[:, 1:2]
    torch.testing.assert_close(x0, anchor + ab.sqrt() * (x[:, 2:] - ab.sqrt() * anchor), atol=1e-4, rtol=1e-4)
    noisy = t.clone()
    noisy[:, :2] = 200  # a context noised (not dropped) is still the anchor
    x0 = v_to_x0(m(x, noisy, a, p, context=2), x, alpha_bar(s, noisy))[:, 2:]
    torch.testing.assert_close(x0, anchor + ab.sqrt() * (x[:, 2:] - ab.sqrt() * anchor), atol=1e-4, rtol=1e-4)
    dropped = t.clone()
    dropped[:, :2] = 999  # context dropped: no anchor, plain v = 0
    assert m(x, dropped, a, p, context=2).abs().max() == 0


def test_x0_prediction_starts_by_copying_the_last_frame_exactly():
    """With prediction="x0" an untrained network's clean-frame estimate is the anchor itself at every level,
    and a trained one's v converts back to the x0 its last layer put out."""
    from come.diffusion.schedule import alpha_bar, make_scheduler, v_to_x0

    s = make_scheduler()
    x, _, a, p = _inputs()
    t = torch.tensor([[0, 0, 999, 500, 1]] * 2)
    m = tiny(prediction="x0")
    x0 = v_to_x0(m(x, t, a, p, context=2), x, alpha_bar(s, t))[:, 2:]
    torch.testing.assert_close(x0, x[:, 1:2].expand_as(x0), atol=1e-4, rtol=1e-4)
    m = _perturb_all(tiny(prediction="x0", residual=False))
    v = m(x, t, a, p, context=2)
    assert torch.isfinite(v).all()
    raw = {}

    def keep(module, inputs, output):  # the raw x0 the last layer predicts
        raw["x0"] = output

    handle = m.final.register_forward_hook(keep)
    with torch.no_grad():
        m(x, t, a, p, context=2)
    handle.remove()
    raw_x0 = m.unpatchify(raw["x0"].reshape(2, 5, m.config.tokens_per_frame, -1))[:, 2:]
    torch.testing.assert_close(v_to_x0(v, x, alpha_bar(s, t))[:, 2:], raw_x0, atol=1e-3, rtol=1e-3)
    with pytest.raises(ValueError, match="prediction"):
        tiny(prediction="eps")


def test_map_pose_conditions_frames_not_tokens():
    m = _perturb_all(tiny(pose_dim=4, pose_in_image=False))
    assert m.pose_token is None
    assert m.memory_targets == ("qkv", "proj", "fc1", "fc2", "pose_embed.0", "pose_embed.2", "final.linear")
    x, t, a, _ = _inputs()
    pose = torch.randn(2, 5, 4)
    moved = pose.clone()
    moved[:, 3, :2] += 1  # frame 3 somewhere else on the map
    out, out_moved = m(x, t, a, pose, context=2), m(x, t, a, moved, context=2)
    assert not torch.equal(out[:, 3], out_moved[:, 3])
    with pytest.raises(ValueError, match="local_action"):
        DiTConfig(pose_dim=4, pose_in_image=False, local_action=True)


def test_attention_runs_in_fp32_on_the_cpu_under_bf16_autocast():
    q, k, v = (torch.randn(4, 2, 12, 8, generator=torch.Generator().manual_seed(i)).bfloat16() for i in range(3))
    mask = torch.ones(12, 12, dtype=torch.bool).tril()
    exact = F.scaled_dot_product_attention(q.float(), k.float(), v.float(), attn_mask=mask).bfloat16()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = attend(q, k, v, mask)
        in_bf16 = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # what autocast alone computes
    assert out.dtype == torch.bfloat16 and torch.equal(out, exact)
    assert not torch.equal(in_bf16, exact)  # so the test tells the two kernels apart
