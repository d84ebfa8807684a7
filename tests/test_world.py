import copy
import re

import pytest
import torch
from safetensors.torch import load_file, save_file

from come.data.cards import generate_episode
from come.data.clips import cursor_pose, frames_to_tensor
from come.presets import TrainConfig
from come.data.places import relative_view_pose
from come.variants import VARIANT_EXPERTS, available_variants
from come.world import ExpertWeights, WorldModel

from tiny import tiny_dit


def _net(max_frames, seed, **kw):
    return tiny_dit(seed, jitter=0.1, **{"max_frames": max_frames, "pose_dim": 2, **kw})


def _cfg(model, context, future=2, pose="cursor", dataset="cards"):  # (future: the chunk each expert generates)
    return TrainConfig(preset="test", model=model.config.to_dict(), context=context, future=future, pose=pose,
                       dataset=dataset)


def _batch(B=2, N=12, F=3):
    eps = [generate_episode(5, i, "train", N + F) for i in range(B)]
    frames = torch.stack([frames_to_tensor(e["image"]) for e in eps])
    action = torch.stack([torch.from_numpy(e["action"]) for e in eps])
    pose = torch.stack([torch.from_numpy(cursor_pose(e)) for e in eps])
    return frames[:, :N], action[:, :N], pose[:, :N], action[:, N:], pose[:, N:], frames[:, N:]


def _world():
    base, stm, sltm = _net(4, 0), _net(10, 1), _net(4, 2, pose_in_image=False)
    return WorldModel(base, _cfg(base, 2), stm=(stm, _cfg(stm, 8)), sltm=(sltm, _cfg(sltm, 2)), rank=4, steps=2)


def test_every_variant_imagines_the_right_shape():
    world = _world()
    frames, action, pose, fa, fp, _ = _batch()
    world.observe(frames, action, pose)
    world.memorize(steps=3, batch_size=2)
    outs = {}
    for v, names in VARIANT_EXPERTS.items():
        if "place" in names and v not in ("come", "poe"):  # a cards world has no place memory (its own test below)
            continue
        stats = {}
        outs[v] = world.imagine(fa, fp, variant=v, stats=stats)
        assert outs[v].shape == (2, 3, 3, 32, 32) and torch.isfinite(outs[v]).all()
    assert not torch.allclose(outs["base"], outs["come"])
    assert not torch.allclose(outs["come"], outs["poe"])
    assert not torch.allclose(outs["base"], outs["sltm"])
    assert [e.name for e in world.experts("stm+ltm")[1]] == ["ltm", "stm"]  # a pair, in either order
    torch.testing.assert_close(world.imagine(fa, fp, variant="stm+ltm"), outs["ltm+stm"], rtol=0, atol=0)
    assert not torch.allclose(outs["ltm+stm"], outs["ltm"]) and not torch.allclose(outs["ltm+stm"], outs["stm"])
    with pytest.raises(ValueError, match="unknown variant 'ltm\\+ltm'"):
        world.experts("ltm+ltm")
    assert [e.name for e in world.experts("come")[1]] == ["ltm", "stm", "sltm"]


def test_the_naive_product_is_sampled_by_the_product_sampler(monkeypatch):
    from come.diffusion import sampling

    calls, real = [], sampling.SAMPLERS["product"]

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setitem(sampling.SAMPLERS, "product", counting)
    world = _world()
    frames, action, pose, fa, fp, _ = _batch()
    world.observe(frames, action, pose)
    world.memorize(steps=2, batch_size=2)
    world.imagine(fa, fp, variant="come")
    assert not calls  # the contrastive composition is a DDIM sampler
    world.imagine(fa, fp, variant="poe")
    assert len(calls) == 2  # one per chunk of 2 frames (3 frames)


def test_stm_variants_need_a_short_term_memory():
    base = _net(4, 0)
    world = WorldModel(base, _cfg(base, 2), rank=4, steps=2)
    frames, action, pose, *_ = _batch()
    world.observe(frames, action, pose)
    with pytest.raises(ValueError, match="unknown memorization setting.* stepz .*choose from .*high_min"):
        world.memorize(stepz=1)
    world.memorize(steps=1, batch_size=2)
    for variant in ("stm", "stm+ltm"):
        with pytest.raises(ValueError, match=re.escape(f"variant '{variant}' needs a short-term memory model")):
            world.experts(variant)


def test_the_spatial_expert_offers_both_baselines():
    frames, action, pose, fa, fp, _ = _batch()
    outs = {}
    for null in ("pose_drop", "adapters_off"):
        base, sltm = _net(4, 0), _net(4, 2, pose_in_image=False)
        world = WorldModel(base, _cfg(base, 2), sltm=(sltm, _cfg(sltm, 2)), rank=4, steps=2, sltm_null=null)
        world.observe(frames, action, pose)
        world.memorize(steps=3, batch_size=2, lr=1e-2)
        assert world.experts("sltm")[1][0].null == null
        outs[null] = world.imagine(fa, fp, variant="sltm")
    assert not torch.allclose(outs["pose_drop"], outs["adapters_off"])
    with pytest.raises(ValueError, match="unknown sltm_null 'noise'"):
        WorldModel(base, _cfg(base, 2), sltm=(_net(4, 2, pose_in_image=False), _cfg(sltm, 2)), sltm_null="noise")


def _places(seed, n_frames, places=4):
    """Synthetic poses: the agent hops between ``places`` places, each with its own map pose
    (x, y, cos yaw, sin yaw) and its own colour; the frame shows the colour of where the agent is."""
    g = torch.Generator().manual_seed(seed)
    colours = torch.rand(places, 3, 1, 1, generator=g) * 1.6 - 0.8
    angles = torch.arange(places) * (2 * torch.pi / places)
    poses = torch.stack([angles.cos() * 0.6, angles.sin() * 0.6, angles.cos(), angles.sin()], dim=1)
    visit = torch.randint(0, places, (n_frames,), generator=g)
    frames = colours[visit].expand(-1, 3, 32, 32)
    return frames, poses[visit], visit, colours, poses


def test_spatial_memory_recalls_what_it_saw_at_a_pose():
    """Memorizing an episode on synthetic poses makes the SLTM draw, at a pose, what was seen there,
    whatever its context frames show (a revisit); before memorizing, or with the pose dropped, it cannot."""
    frames, poses, visit, colours, place_poses = _places(0, 24)
    sltm = _net(4, 3, pose_in_image=False, action_dim=6, pose_dim=4)
    base = _net(4, 4, action_dim=6, pose_dim=0)
    world = WorldModel(base, _cfg(base, 2, 1, "absolute", "maze"), sltm=(sltm, _cfg(sltm, 2, 1, "absolute", "maze")),
                       rank=8, steps=2)
    action = torch.zeros(1, 24, 6)
    world.observe(frames[None], action, poses[None])
    assert "pose_embed.0" in str(world.memories["sltm"].model.targeted_module_names)

    def x0_error(adapter, pose_on):
        """Clean-frame error at level 900 for every place, the context showing another place."""
        from come.diffusion.schedule import add_noise, alpha_bar, make_scheduler, v_to_x0

        errors = []
        for p in range(len(colours)):
            other = (p + 1) % len(colours)
            clip = torch.cat([colours[other].expand(2, 3, 32, 32), colours[p].expand(1, 3, 32, 32)])[None]
            t = torch.tensor([[0, 0, 900]])
            ab = alpha_bar(make_scheduler(), t)
            x_t = add_noise(clip, torch.randn(clip.shape, generator=torch.Generator().manual_seed(p)), ab)
            pose = torch.stack([place_poses[other], place_poses[other], place_poses[p]])[None]
            with torch.no_grad():
                posed = pose if pose_on else torch.zeros_like(pose)
                v = world.denoisers["sltm"](x_t, t, torch.zeros(1, 3, 6), posed, 2, [adapter])
            errors.append((v_to_x0(v, x_t, ab)[0, 2] - colours[p]).pow(2).mean())
        return float(torch.stack(errors).mean())

    before = x0_error("__base__", True)
    curves = world.memorize(steps=150, lr=1e-2, batch_size=8, high_fraction=0.5, high_min=800)
    assert len(curves) == 2  # the base's LTM and the SLTM, one episode each
    remembered, dropped = x0_error("episode0", True), x0_error("episode0", False)
    assert remembered < 0.4 * before  # measured 0.13 (this world) and 0.29 (another seed's)
    assert remembered < 0.6 * dropped  # 0.19 and 0.40
    world.observe(frames[None], action, poses[None])  # a new history forgets: back to the base SLTM
    assert x0_error("__base__", True) == pytest.approx(before, rel=1e-5)
    with pytest.raises(ValueError, match="needs the history's poses"):
        world.observe(frames[None], action, None)


def test_each_episode_has_its_own_memory():
    from come.compose import Expert, History, composed_eps_fn

    world = _world()
    frames, action, pose, fa, fp, _ = _batch()
    world.observe(frames, action, pose)
    world.memorize(steps=4, batch_size=2, lr=1e-2)
    x = torch.randn(2, 2, 3, 32, 32)
    act, pz = torch.cat([action, fa[:, :2]], 1), torch.cat([pose, fp[:, :2]], 1)
    prior = Expert("base", world.base, 2)

    def ltm_eps(b, adapters):
        ltm = Expert("ltm", world.base, 2, weight=1.5, adapter=adapters, null="adapters_off")
        return composed_eps_fn(prior, [ltm], History(frames[b], act[b], pz[b]), world.scheduler)(x[b], 500)

    with torch.no_grad():
        both = ltm_eps(slice(0, 2), ("episode0", "episode1"))
        one = ltm_eps(slice(1, 2), ("episode1",))
        other = ltm_eps(slice(1, 2), ("episode0",))
    torch.testing.assert_close(both[1:], one, atol=1e-5, rtol=1e-4)  # batched with another episode's memory
    assert not torch.allclose(one, other)  # and the memories differ


def test_world_errors():
    world = _world()
    frames, action, pose, fa, fp, _ = _batch()
    with pytest.raises(ValueError, match="observe"):
        world.imagine(fa, fp)
    world.observe(frames, action, pose)
    with pytest.raises(ValueError, match="memorize"):
        world.imagine(fa, fp, variant="come")
    with pytest.raises(ValueError, match="unknown variant"):
        world.imagine(fa, fp, variant="magic")


def test_stream_keeps_learning_across_iterations():
    world = _world()
    eps = [generate_episode(6, i, "train", 30) for i in range(2)]
    frames = torch.stack([frames_to_tensor(e["image"]) for e in eps])
    action = torch.stack([torch.from_numpy(e["action"]) for e in eps])
    pose = torch.stack([torch.from_numpy(cursor_pose(e)) for e in eps])
    out = world.stream(frames, action, pose, start=10, window=8, updates=2, horizon=2, iterations=3, lr=1e-2)
    assert [o["position"] for o in out] == [10, 12, 14]
    for o in out:
        assert o["prediction"].shape == o["truth"].shape == (2, 2, 3, 32, 32)
        assert torch.equal(o["truth"], frames[:, o["position"]:o["position"] + 2])
    learned = [p.detach().clone() for p in world.memory.parameters("episode0")]
    history = frames[0, 10:18], action[0, 10:18], pose[0, 10:18], world.cfg.context, world.cfg.future
    # memory was learned (adapters start with no effect)...
    assert learned and world.memory.history_loss(*history, adapter="episode0") != world.memory.history_loss(*history)
    world.observe(frames[:, 10:18], action[:, 10:18], pose[:, 10:18], keep_memory=True)
    assert all(torch.equal(p, q) for p, q in zip(learned, world.memory.parameters("episode0")))  # ...and kept
    with pytest.raises(ValueError, match="streaming"):
        world.stream(frames, action, pose, start=10, horizon=2, iterations=20)


def test_place_memory_sees_the_views_nearest_each_frame():
    base = _net(4, 0, pose_dim=0, action_dim=6)
    place = _net(4, 3, pose_dim=0, action_dim=6, views=2)
    with torch.no_grad():
        place.view_anchor.weight.normal_(0, 0.1)  # (zero at initialisation)
    cfg = TrainConfig(preset="test", model=base.config.to_dict(), context=2, future=1, dataset="maze")
    world = WorldModel(base, cfg, place=(place, cfg), rank=4, steps=2)
    g = torch.Generator().manual_seed(0)
    N, F = 12, 2
    yaw = torch.arange(N + F) * 0.5  # walking a circle: frame 13 is back near frame 0's pose
    pose = torch.stack([torch.cos(yaw), torch.sin(yaw), torch.cos(yaw + 1.57), torch.sin(yaw + 1.57)], -1)[None]
    frames = torch.rand(1, N, 3, 32, 32, generator=g) * 2 - 1
    action = torch.randn(1, N + F, 6, generator=g)
    with pytest.raises(ValueError, match="absolute poses"):
        world.observe(frames, action[:, :N])
    with pytest.raises(ValueError, match="a history of 3 frames has 1"):
        world.observe(frames[:, :3], action[:, :3], pose[:, :3])
    world.observe(frames, action[:, :N], pose[:, :N])
    views, rel = world.place_views_for(pose[:, N + 1])
    torch.testing.assert_close(views[0, 0], frames[0, 0])  # the frame seen from the nearest pose, not a recent one
    torch.testing.assert_close(rel[0, 0], relative_view_pose(pose[0, 0], pose[0, N + 1]))
    outs = {v: world.imagine(action[:, N:], pose[:, N:], variant=v) for v in ("base", "place")}
    assert not torch.allclose(outs["base"], outs["place"])
    world.memorize(steps=1, batch_size=2)
    assert [e.name for e in world.experts("come")[1]] == ["ltm", "place"]
    world.come_experts = ("stm", "place")  # the table: CoME composes the chosen experts the world has
    assert [e.name for e in world.experts("come")[1]] == ["place"] and not world.memories_for(["come"])
    assert world.memories_for(["ltm"]) == {"ltm"} and world.members("place") == ("place",)
    with pytest.raises(ValueError, match="needs a short-term memory model"):
        world.members("stm+ltm")
    assert available_variants({"ltm", "place"}) == ("base", "ltm", "place", "ltm+place", "come", "poe", "hg")
    with pytest.raises(ValueError, match="come_experts"):
        WorldModel(place, cfg, come_experts=("ltm", "magic"))
    with pytest.raises(ValueError, match="takes place views"):
        WorldModel(base, cfg, place=(base, cfg))
    # a base that is its own place memory is one network: the same frames, and one pass a step at w = 1
    own_net, base_net, place_net = (copy.deepcopy(place) for _ in range(3))
    at_1 = ExpertWeights(place=1.0)
    own = WorldModel(own_net, cfg, place=(own_net, cfg), rank=4, steps=2, weights=at_1)
    apart = WorldModel(base_net, cfg, place=(place_net, cfg), rank=4, steps=2, weights=at_1)
    passes = {}
    for name, w in (("own", own), ("apart", apart)):
        w.observe(frames, action[:, :N], pose[:, :N])
        stats = {}
        outs[name] = w.imagine(action[:, N:], pose[:, N:], variant="place", stats=stats)
        passes[name] = stats["passes"]
    torch.testing.assert_close(outs["own"], outs["apart"], atol=1e-4, rtol=1e-4)
    assert passes == {"own": 1, "apart": 3}  # apart: the prior, and the place memory with and without views


def test_memorize_follows_the_recipe_of_the_models_dataset(monkeypatch):
    """With no settings, memorize() fits as its dataset's protocol does (Memory Cards: the cursor pose); a
    named recipe and any changed setting are honoured, and an unknown recipe is refused."""
    from dataclasses import replace

    from come.memory import LoRAMemory
    from come.recipes import RECIPES

    seen = []

    def spy(self, frames, action, pose, recipe, context, future, levels, **kw):
        seen.append((recipe, levels))
        return [0.0]

    monkeypatch.setattr(LoRAMemory, "memorize", spy)
    base = _net(4, 0)
    cfg = _cfg(base, 2)
    world = WorldModel(base, cfg, rank=4, steps=2)
    frames, action, pose, *_ = _batch()
    world.observe(frames, action, pose)
    world.memorize()
    assert len(seen) == 2  # one adapter per episode
    assert seen[0] == (RECIPES["cards"], cfg.noise_levels())  # the network's own noise levels
    world.memorize("maze", lr=0.5, high_min=900)
    assert seen[-1] == (replace(RECIPES["maze"], lr=0.5), replace(cfg.noise_levels(), high_min=900))
    with pytest.raises(ValueError, match="recipe 'magic'"):
        world.memorize("magic")


def test_predict_memorizes_only_the_memories_its_variants_compose(monkeypatch):
    """A variant composing the SLTM alone fits the SLTM, not the LTM, and the LTM then refuses to run
    unmemorized; observing a new history forgets both."""
    frames, action, pose, fa, fp, _ = _batch()
    base, sltm = _net(4, 0), _net(4, 2, pose_in_image=False)
    world = WorldModel(base, _cfg(base, 2), sltm=(sltm, _cfg(sltm, 2)), rank=4, steps=2)
    preds, seconds = world.predict(frames, action, pose, fa, fp, ("base", "sltm"), steps=2, batch_size=2)
    assert world.memorized == {"sltm"} and set(preds) == {"base", "sltm"} and "memorize" in seconds
    with pytest.raises(ValueError, match=r"needs memorize\(\) first \(of ltm\)"):
        world.imagine(fa, fp, variant="ltm")
    world.predict(frames, action, pose, fa, fp, ("ltm",), steps=2, batch_size=2)
    assert world.memorized == {"ltm"}


def test_predict_draws_each_composition_once(monkeypatch):
    """come composing the SLTM alone is the sltm variant: drawn once, the same frames for both."""
    frames, action, pose, fa, fp, _ = _batch()
    base, sltm = _net(4, 0), _net(4, 2, pose_in_image=False)
    world = WorldModel(base, _cfg(base, 2), sltm=(sltm, _cfg(sltm, 2)), rank=4, steps=2, come_experts=("sltm",))
    drawn, imagine = [], world.imagine
    monkeypatch.setattr(world, "imagine", lambda *a, variant, **k: drawn.append(variant) or imagine(*a, variant=variant,
                                                                                                 **k))
    preds, _ = world.predict(frames, action, pose, fa, fp, ("base", "sltm", "come", "poe"), steps=2, batch_size=2)
    assert drawn == ["base", "sltm", "poe"] and preds["come"] is preds["sltm"]
    assert world.composition("come") == world.composition("sltm") != world.composition("poe")


def test_frames_read_is_the_longest_context_any_expert_reads():
    from come.compose import DiTDenoiser, Expert

    assert _world().frames_read() == 8  # the STM's
    mine = DiTDenoiser(_net(4, 3))
    for context, reads in ((3, 3), ((-6, -1), 6), ((0, -1), None)):
        base = _net(4, 0)
        world = WorldModel(base, _cfg(base, 2), experts=[Expert("mine", mine, context)], rank=4, steps=2)
        assert world.frames_read() == reads, context
    maze_base, place = _net(4, 0, pose_dim=0, action_dim=6), _net(4, 4, pose_dim=0, action_dim=6, views=2)
    cfg = TrainConfig(preset="test", model=maze_base.config.to_dict(), context=2, future=1, dataset="maze")
    assert WorldModel(maze_base, cfg, place=(place, cfg), rank=4, steps=2).frames_read() is None


def test_memory_states_go_back_to_their_episodes_after_another_observe():
    base = _net(4, 0)
    world = WorldModel(base, _cfg(base, 2), rank=4, steps=2)
    frames, action, pose, fa, fp, _ = _batch()
    world.observe(frames, action, pose)
    world.memorize(steps=3, batch_size=2, lr=1e-2)
    recalled, states = world.imagine(fa, fp, variant="ltm"), world.memory_states()
    world.observe(frames, action, pose)  # forgets
    assert not torch.equal(world.imagine(fa, fp, variant="base"), recalled)
    with pytest.raises(ValueError, match="one memory per observed episode"):
        world.set_memory_states({"ltm": states["ltm"][:1]})
    world.set_memory_states(states)
    assert torch.equal(world.imagine(fa, fp, variant="ltm"), recalled)


def test_a_saved_memory_loads_into_a_later_world_and_recalls_the_same(tmp_path):
    base = _net(4, 0)
    world = WorldModel(base, _cfg(base, 2), rank=4, steps=2)
    frames, action, pose, fa, fp, _ = _batch()
    world.observe(frames, action, pose)
    with pytest.raises(ValueError, match="memorized nothing yet"):
        world.save_memories(tmp_path)
    world.memorize(steps=3, batch_size=2, lr=1e-2)
    recalled = world.imagine(fa, fp, variant="ltm")
    paths = world.save_memories(tmp_path)
    assert [p.name for p in paths] == ["ltm_0.safetensors", "ltm_1.safetensors"]
    world.observe(frames, action, pose)  # forgets
    with pytest.raises(ValueError, match="needs memorize"):
        world.imagine(fa, fp, variant="ltm")
    world.load_memories(tmp_path)
    assert torch.equal(world.imagine(fa, fp, variant="ltm"), recalled)
    weights = load_file(paths[1])
    save_file({k: v * float("nan") for k, v in weights.items()}, paths[1])
    with pytest.raises(ValueError, match="ltm_1.safetensors: the memory holds NaN"):
        world.load_memories(tmp_path)
    paths[1].write_bytes(b"garbage")
    with pytest.raises(ValueError, match="ltm_1.safetensors: not a readable memory file"):
        world.load_memories(tmp_path)
    with pytest.raises(ValueError, match="no sltm memory"):
        world.load_memories(tmp_path, expert="sltm")


@pytest.fixture
def recent_expert():
    """A toy built-in expert, added through the registry alone: a model over the last 3 frames, weight 0.5."""
    from come.experts import EXPERTS, BuiltinExpert, register_expert

    yield register_expert(BuiltinExpert(
        "recent", "recent-frames model", weight=0.5, option="A model over the last 3 frames.",
        build=lambda world: dict(denoiser=world.denoisers["recent"], context=3), reads=lambda world: 3))
    EXPERTS.pop("recent")


def test_a_built_in_expert_joins_through_the_registry_alone(recent_expert):
    """Registered, an expert is a variant of its own, joins come, has a default weight and is read as far back
    as its entry says; its variant composes exactly as the same network given as one's own Expert."""
    from come.compose import DiTDenoiser, Expert
    from come.variants import choose_variants

    base, recent = _net(4, 0), _net(5, 7)
    world = WorldModel(base, _cfg(base, 2), recent=(recent, _cfg(recent, 3)), rank=4, steps=2)
    assert world.members("recent") == ("recent",) and world.members("come") == ("ltm", "recent")
    assert world.weights["recent"] == 0.5 and world.frames_read() == 3
    assert "recent" in choose_variants("base,recent", set(world.denoisers))
    frames, action, pose, fa, fp, _ = _batch()
    world.observe(frames, action, pose)
    built = world.imagine(fa, fp, variant="recent", seed=3)
    base2 = _net(4, 0)
    own = Expert("mine", DiTDenoiser(copy.deepcopy(recent).eval()), 3, weight=0.5)
    by_hand = WorldModel(base2, _cfg(base2, 2), experts=[own], rank=4, steps=2)
    by_hand.observe(frames, action, pose)
    torch.testing.assert_close(built, by_hand.imagine(fa, fp, variant="mine", seed=3))
    assert not torch.allclose(built, world.imagine(fa, fp, variant="base", seed=3))


def test_the_registry_refuses_what_does_not_fit():
    from come.experts import BuiltinExpert, register_expert

    with pytest.raises(ValueError, match="taken by a variant"):
        register_expert(BuiltinExpert("come", "x", 1.0, build=dict, reads=lambda w: 1))
    with pytest.raises(ValueError, match="no expert named magic"):
        ExpertWeights(magic=1.0)
    base = _net(4, 0)
    with pytest.raises(ValueError, match="no expert 'ltm' runs on a network of its own"):
        WorldModel(base, _cfg(base, 2), ltm=(_net(4, 1), _cfg(base, 2)))
    with pytest.raises(ValueError, match="must be a model that takes place views"):
        WorldModel(base, _cfg(base, 2), place=(_net(4, 1), _cfg(base, 2)))
    assert ExpertWeights.of_dataset("cards")["stm"] == 0.25 and ExpertWeights.of_dataset("maze")["stm"] == 1.0
    assert ExpertWeights.of_dataset("cards", stm=None, ltm=2.0)["ltm"] == 2.0


def test_the_command_line_options_come_from_the_registry():
    from typer.testing import CliRunner

    from come.cli import app
    from come.experts import EXPERTS

    text = " ".join(CliRunner().invoke(app, ["eval", "maze", "--help"]).output.split())
    for name, expert in EXPERTS.items():
        assert f"--w-{name}" in text and (f"--{name} RUN" in text) == expert.own_network, name


def test_a_compiled_world_samples_what_the_plain_one_does():
    frames, action, pose, fa, fp, _ = _batch(B=1, N=6, F=2)
    outs = {}
    for compile in (False, True):
        base = _net(4, 0)  # the same weights each time
        world = WorldModel(base, _cfg(base, 2), rank=4, steps=2, compile=compile)
        assert (world.base.forward is world.base.network) != compile
        world.observe(frames, action, pose)
        world.memorize(steps=1, batch_size=2, lr=1e-2)
        outs[compile] = {v: world.imagine(fa, fp, variant=v) for v in ("base", "ltm")}
    assert not torch.allclose(outs[False]["base"], outs[False]["ltm"])  # the memory is in the compiled graph too
    for v in ("base", "ltm"):
        torch.testing.assert_close(outs[True][v], outs[False][v], atol=1e-4, rtol=0)
