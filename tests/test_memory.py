import pytest
import torch

from come.data.cards import INVERSE_ACTIONS, generate_episode, render, simulate
from come.data.clips import cursor_pose, frames_to_tensor
from come.errors import InputError
from come.memory import LoRAMemory, change_weights, undone_history
from come.recipes import Recipe, parse_settings
from come.models.dit import DiTConfig, VideoDiT

from tiny import tiny_dit


def _net():
    return tiny_dit(jitter=0.1, width=48, max_frames=6, pose_dim=2)


def _episode(T=40):
    ep = generate_episode(0, 0, "train", T)
    return frames_to_tensor(ep["image"]), torch.from_numpy(ep["action"]), torch.from_numpy(cursor_pose(ep))


def test_memorize_lowers_loss_and_reset_is_bit_identical(tmp_path):
    frames, action, pose = _episode()
    mem = LoRAMemory(_net(), rank=8)
    x, t = frames[None, :6], torch.tensor([[0, 0, 500, 500, 500, 500]])
    before_out = mem.model(x, t, action[None, :6], pose[None, :6], context=2)
    before = mem.history_loss(frames, action, pose)
    assert before == mem.history_loss(frames, action, pose)  # fixed noise: repeatable
    with torch.no_grad():  # memorization must still train inside a caller's no_grad
        losses = mem.memorize(frames, action, pose, Recipe(steps=60, lr=1e-2, batch_size=4))
    assert len(losses) == 60
    after = mem.history_loss(frames, action, pose, adapter="ltm")
    assert mem.history_loss(frames, action, pose) == before  # adapters off: the base model's loss
    with pytest.raises(ValueError, match="does not exist"):
        mem.history_loss(frames, action, pose, adapter="typo")
    assert after < 0.85 * before  # an untrained network; the trained one's figure is in BENCHMARKS.md
    adapted = mem.model(x, t, action[None, :6], pose[None, :6], context=2)
    assert not torch.equal(adapted, before_out)
    path = mem.save(tmp_path / "episode.safetensors")
    assert path.stat().st_size < 5e6
    mem.reset()
    assert torch.equal(mem.model(x, t, action[None, :6], pose[None, :6], context=2), before_out)
    mem.load(path)
    torch.testing.assert_close(mem.model(x, t, action[None, :6], pose[None, :6], context=2), adapted)


def test_memorization_is_reproducible_and_leaves_the_global_generator_alone():
    frames, action, pose = _episode(20)
    memorized = []
    for draws in (0, 5):  # whatever the global generator did before, the same memory comes out
        net = _net()  # seeds the global generator: the draws come after it
        torch.rand(draws)
        state = torch.get_rng_state()
        mem = LoRAMemory(net, rank=4, targets=("qkv",))
        mem.adapter_for("episode1")
        mem.memorize(frames, action, pose, Recipe(steps=3, lr=1e-2, batch_size=2), adapter="episode1", seed=7)
        assert torch.equal(torch.get_rng_state(), state)  # init and memorization draw from their own generators
        memorized.append(mem.state("episode1"))
    assert memorized[0].keys() == memorized[1].keys()
    for k in memorized[0]:
        assert torch.equal(memorized[0][k], memorized[1][k]), k


def test_pose_dropout_in_memorization_hides_the_pose():
    """With every window's pose dropped the memory cannot depend on the poses given; without dropout it does."""
    frames, action, pose = _episode(20)
    other = pose.flip(0)

    def memorized(p, dropout):
        mem = LoRAMemory(_net(), rank=4, targets=("qkv", "pose_embed.0"))
        mem.memorize(frames, action, p, Recipe(steps=3, lr=1e-2, batch_size=2, p_pose_dropout=dropout))
        return mem.state(mem.adapter)

    for dropout, same in ((1.0, True), (0.0, False)):
        a, b = memorized(pose, dropout), memorized(other, dropout)
        assert all(torch.equal(a[k], b[k]) for k in a) == same, dropout


def test_base_weights_untouched_and_errors(tmp_path):
    net = _net()
    ref = {k: v.clone() for k, v in net.state_dict().items()}
    frames, action, pose = _episode(20)
    mem = LoRAMemory(net, rank=4)
    mem.memorize(frames, action, pose, Recipe(steps=3, batch_size=2))
    base_now = {k.replace("base_layer.", ""): v for k, v in mem.base.state_dict().items() if "lora_" not in k}
    for k, v in ref.items():
        assert torch.equal(base_now[k], v), k
    with pytest.raises(ValueError, match="shorter than one window"):
        mem.memorize(frames[:4], action[:4], pose[:4], Recipe(steps=1))
    with pytest.raises(ValueError, match="memory file not found"):
        mem.load(tmp_path / "none.safetensors")
    other = LoRAMemory(_net(), rank=2)
    p = other.save(tmp_path / "r2.safetensors")
    with pytest.raises(ValueError, match="rank"):
        mem.load(p)
    with pytest.raises(ValueError, match="already carries memory adapters"):
        LoRAMemory(net, rank=4)  # a second memory on the same network would share (and clash with) its adapters


def test_change_weights_prefer_windows_where_something_changes():
    frames = torch.zeros(20, 3, 4, 4)
    frames[10:] = 1  # one change between frames 9 and 10
    w = change_weights(frames, window=4, boost=4.0)
    assert w.shape == (17,) and abs(w.sum() - 1) < 1e-9
    assert w[8] > w[0] and w[7] == w[0] * 5 and w[10] == w[0]


def test_memorize_makes_the_first_frames_targets_with_their_context_dropped(monkeypatch):
    """The first ``context`` frames are never a window's target unless memorization pads the window
    before frame 0; those windows must have their (missing) context dropped, and no others."""
    import come.memory as memory

    frames, action, pose = _episode(12)
    frames = frames + torch.arange(12.0)[:, None, None, None]  # frame i is recognisable by its offset
    seen = []

    def spy(model, batch, context, scheduler, *args, drop_context=None, **kw):
        seen.append((batch["frames"][:, context:, 0, 0, 0].round() - frames[0, 0, 0, 0].round(), drop_context))
        return model(batch["frames"], torch.zeros(batch["frames"].shape[:2], dtype=torch.long), batch["action"],
                     batch["pose"], context=context).float().pow(2).mean()

    monkeypatch.setattr(memory, "diffusion_loss", spy)
    mem = LoRAMemory(_net(), rank=2)
    for first_frames in (True, False):
        seen.clear()
        mem.memorize(frames, action, pose, Recipe(steps=40, batch_size=8, boost=0.0), context=2, future=1,
                     first_frames=first_frames)
        target = torch.cat([t[:, 0] for t, _ in seen])
        dropped = torch.cat([d for _, d in seen])
        assert set(target.long().tolist()) == set(range(0 if first_frames else 2, 12))
        assert torch.equal(dropped, target < 2)


def test_the_undone_history_is_the_episode_played_backwards_by_the_game_itself():
    """Memory Cards run from the history's last state under the undoing actions draws the history's frames
    backwards, moves into a wall (which change nothing) included."""
    ep = generate_episode(3, 0, "train", 60)
    frames, action = frames_to_tensor(ep["image"]), torch.from_numpy(ep["action"])
    pose = torch.from_numpy(cursor_pose(ep))
    wall = [t for t in range(1, 60) if action[t].argmax() < 4 and torch.equal(frames[t], frames[t - 1])]
    assert wall  # a move into a wall is among the actions undone
    undone_frames, undone_action, undone_pose = undone_history(frames, action, pose, INVERSE_ACTIONS)
    assert len(undone_frames) == len(undone_action) == len(undone_pose) == 119
    assert torch.equal(undone_frames[:60], frames) and torch.equal(undone_frames[59:], frames.flip(0))
    assert torch.equal(undone_pose[59:], pose.flip(0)) and torch.equal(undone_action[:60], action)
    covered, cursor = simulate(ep["layout"], ep["covered"][-1], tuple(ep["cursor"][-1]),
                               undone_action[60:].argmax(-1).numpy())
    assert (render(ep["layout"], covered, cursor, 32) == ep["image"][::-1]).all()
    with pytest.raises(InputError, match="4 inverse actions for actions of 5"):
        undone_history(frames, action, pose, INVERSE_ACTIONS[:4])


def test_memorize_with_undo_draws_windows_backwards_through_the_history(monkeypatch):
    """With ``undo`` the windows also step from a frame to the one before it, under the inverse action;
    no window is padded before frame 0 (the undone history ends there), and a model whose actions have
    no inverses is refused."""
    import come.memory as memory

    frames, action, pose = _episode(12)
    frames = frames + torch.arange(12.0)[:, None, None, None]  # frame i is recognisable by its offset
    steps = []  # (context frame, target frame, target's action, context dropped)

    def spy(model, batch, context, scheduler, *args, drop_context=None, **kw):
        index = batch["frames"][:, :, 0, 0, 0].round() - frames[0, 0, 0, 0].round()
        steps.extend(zip(index[:, 0].tolist(), index[:, 1].tolist(), batch["action"][:, 1].argmax(-1).tolist(),
                         drop_context.tolist()))
        return model(batch["frames"], torch.zeros(batch["frames"].shape[:2], dtype=torch.long), batch["action"],
                     batch["pose"], context=context).float().pow(2).mean()

    monkeypatch.setattr(memory, "diffusion_loss", spy)
    mem = LoRAMemory(_net(), rank=2)
    recipe = Recipe(steps=30, batch_size=8, boost=0.0, context=1, undo=True)
    mem.memorize(frames, action, pose, recipe, context=2, future=1, inverse_actions=INVERSE_ACTIONS)
    forward = {(c, t, a) for c, t, a, _ in steps if t == c + 1}
    backward = {(c, t, a) for c, t, a, _ in steps if t == c - 1}
    assert len(forward) + len(backward) == len({s[:3] for s in steps}) and not any(s[3] for s in steps)
    assert {t for _, t, _ in backward} == set(range(11)) and {t for _, t, _ in forward} <= set(range(1, 12))
    assert all(a == INVERSE_ACTIONS[int(action[int(c)].argmax())] for c, _, a in backward)
    with pytest.raises(InputError, match="no inverses"):
        mem.memorize(frames, action, pose, recipe, context=2, future=1)


def test_a_recipes_context_replaces_the_networks_own(monkeypatch):
    import come.memory as memory
    from come.diffusion.loss import NoiseLevels

    frames, action, pose = _episode(12)
    seen = []

    def spy(model, batch, context, scheduler, p_context, p_pose, generator, levels, **kw):
        seen.append((levels, context, batch["frames"].shape[1]))
        return model(batch["frames"], torch.zeros(batch["frames"].shape[:2], dtype=torch.long), batch["action"],
                     batch["pose"], context=context).float().pow(2).mean()

    monkeypatch.setattr(memory, "diffusion_loss", spy)
    mem = LoRAMemory(_net(), rank=2)
    trained = NoiseLevels(high_fraction=0.5, high_min=800, max_weight=5.0)
    for recipe, (context, frames_a_window) in ((Recipe(steps=1, batch_size=2), (2, 3)),
                                               (Recipe(steps=1, batch_size=2, context=1), (1, 2))):
        seen.clear()
        mem.memorize(frames, action, pose, recipe, context=2, future=1, levels=trained)
        assert seen == [(trained, context, frames_a_window)]


def test_surprise_weights_favour_what_the_model_cannot_predict():
    """An untrained residual network predicts "nothing changes"; the window whose new frame is a
    surprise (a frame unlike the one before) must get the most weight, and boost 0 is uniform."""
    frames, action, pose = _episode(20)
    frames = frames[:1].expand(20, -1, -1, -1).clone()  # a still scene...
    frames[12:] = -frames[12:]  # ...that changes once, at frame 12
    mem = LoRAMemory(VideoDiT(DiTConfig(resolution=32, patch=8, width=32, depth=1, heads=2, max_frames=3,
                                        action_dim=5, pose_dim=2)), rank=2)
    w = mem.surprise_weights(frames, action, pose, context=2, future=1, boost=9.0)
    assert w.shape == (18,) and abs(w.sum() - 1) < 1e-9
    assert w.argmax() == 10  # the window whose future frame is frame 12
    assert w.max() / w.min() > 5
    flat = mem.surprise_weights(frames, action, pose, context=2, future=1, boost=0.0)
    assert abs(flat.max() - flat.min()) < 1e-12
    padded = mem.surprise_weights(frames, action, pose, context=2, future=1, boost=9.0, first=-2)
    assert padded.shape == (20,) and padded.argmax() == 12  # the same window, two starts later
    assert padded[:2].max() <= padded.max() + 1e-12  # no context: scored on the others' scale, capped
    surprise = Recipe(steps=2, batch_size=2, weighting="surprise")
    losses = mem.memorize(frames, action, pose, surprise, context=2, future=1)
    assert len(losses) == 2
    with pytest.raises(ValueError, match="weighting"):
        mem.memorize(frames, action, pose, Recipe(steps=1, weighting="typo"), context=2, future=1)


def test_memory_targets_follow_what_the_pose_is():
    """A cursor in the image: the place embedding only; a map pose: the blocks, the pose path and the
    output layer; no pose: the blocks' projections."""
    def adapted(mem):
        return {n.removeprefix("base_model.model.").split(".lora_")[0] for n, _ in mem.model.named_parameters()
                if ".lora_" in n}

    assert adapted(LoRAMemory(_net(), rank=4)) == {"pos_space"}
    cfg = dict(resolution=16, patch=8, width=32, depth=1, heads=2, max_frames=4, action_dim=5)
    mapped = adapted(LoRAMemory(VideoDiT(DiTConfig(**cfg, pose_dim=4, pose_in_image=False)), rank=4))
    assert {"pose_embed.0", "pose_embed.2", "final.linear", "blocks.0.mlp.fc1", "blocks.0.attn.qkv"} <= mapped
    assert "pos_space" not in mapped
    assert VideoDiT(DiTConfig(**cfg)).memory_targets == ("qkv", "proj", "fc1", "fc2")
    only_mlp = LoRAMemory(_net(), rank=4, targets=("fc1",))
    assert all(".fc1." in n for n, _ in only_mlp.model.named_parameters() if ".lora_A." in n)


def test_a_place_memory_trains_and_mixes_with_other_episodes_in_one_batch():
    """The image-place embedding (an nn.Embedding, LoRA through peft) is memorized per episode, and a
    batch that mixes episodes' adapters gives each sample what its adapter alone gives."""
    frames, action, pose = _episode()
    mem = LoRAMemory(_net(), rank=4, targets=("pos_space",))
    assert len(mem.parameters()) == 2  # lora_embedding_A and _B
    before = mem.history_loss(frames, action, pose)
    mem.memorize(frames, action, pose, Recipe(steps=40, lr=3e-2, batch_size=4, lr_schedule="cosine"), adapter="ep0")
    assert mem.history_loss(frames, action, pose, adapter="ep0") < 0.95 * before
    mem.adapter_for("ep1")  # untouched: the base model
    x, t = frames[None, :6].expand(3, -1, -1, -1, -1), torch.tensor([[0, 0, 700, 700, 700, 700]] * 3)
    a, p = action[None, :6].expand(3, -1, -1), pose[None, :6].expand(3, -1, -1)
    with torch.no_grad():
        mixed = mem.model(x, t, a, p, context=2, adapter_names=["ep0", "ep1", "__base__"])
        alone = [mem.model(x[:1], t[:1], a[:1], p[:1], context=2, adapter_names=[n])
                 for n in ("ep0", "ep1", "__base__")]
    torch.testing.assert_close(mixed, torch.cat(alone))
    assert not torch.equal(alone[0], alone[2]) and torch.equal(alone[1], alone[2])
    with pytest.raises(ValueError, match="lr_schedule"):
        mem.memorize(frames, action, pose, Recipe(steps=1, lr_schedule="typo"))


def test_settings_from_text_take_their_fields_types_and_the_recipes_checks():
    text = (" lr=0.05,batch_size=96, high_fraction=0.8,max_weight=none,first_frames=false,weighting=change,context=1,"
            "undo=false")
    assert parse_settings(text) == {"lr": 0.05, "batch_size": 96, "high_fraction": 0.8, "max_weight": None,
                                    "first_frames": False, "weighting": "change", "context": 1, "undo": False}
    assert parse_settings("") == {}
    for text, message in (("lr", "expected name=value"), ("rate=1", "unknown memorization setting"),
                          ("batch_size=1.5", "expected a number"), ("first_frames=yes", "true or false"),
                          ("weighting=magic", "unknown window weighting"), ("batch_size=0", "batch_size >= 1"),
                          ("lr=nan", "positive number"), ("p_context_dropout=2", "[0, 1]"),
                          ("context=0", "at least 1 frame"), ("high_fraction=1.5", "high_fraction must lie")):
        with pytest.raises(InputError, match=message):
            parse_settings(text)


def test_memorized_windows_carry_the_views_a_place_memory_trains_with(monkeypatch):
    import math

    import come.memory as memory
    from come.data.places import relative_view_pose
    from come.memory import window_views

    yaw = torch.arange(20) * 0.7  # walking circles: the views of a window are frames of an earlier lap
    pose = torch.stack([torch.cos(yaw), torch.sin(yaw), torch.cos(yaw + math.pi / 2), torch.sin(yaw + math.pi / 2)], -1)
    views = window_views(pose, [0, 1, 12], window=3, k=2)
    assert views["view_keep"].tolist() == [False, False, True]  # fewer than 2 frames before the window
    index = views["view_index"][2].tolist()
    before = torch.cdist(pose[:12, :2], pose[14:15, :2])[:, 0]
    assert all(i < 12 for i in index) and before[index[0]] == before.min()  # before the window, nearest first
    torch.testing.assert_close(views["view_pose"][2], relative_view_pose(pose[index], pose[14]))

    seen = []
    real_loss = memory.diffusion_loss
    monkeypatch.setattr(memory, "diffusion_loss", lambda model, batch, *a, **kw: seen.append(batch) or
                        real_loss(model, batch, *a, **kw))
    frames = torch.rand(20, 3, 16, 16) * 2 - 1
    net = tiny_dit(jitter=0.1, resolution=16, patch=4, action_dim=6, views=2, max_frames=4)
    mem = LoRAMemory(net, rank=2)
    mem.memorize(frames, torch.zeros(20, 6), pose, Recipe(steps=1, batch_size=8, views=True), context=2, future=1)
    batch = seen[0]
    assert batch["views"].shape == (8, 2, 3, 16, 16) and batch["view_keep"].any()
    with pytest.raises(ValueError, match="place memory network"):
        LoRAMemory(_net(), rank=2).memorize(*_episode(12), Recipe(steps=1, views=True))
