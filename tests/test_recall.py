
import numpy as np
import pytest
import torch

from come.data.cards import GRID, N_OBJECTS, generate_episode, render
from come.data.clips import frames_to_tensor
from come.metrics.cards import card_mse
from come.protocols.recall import (card_distances, recall_episode, recall_tau, random_layout_frame, tile_recall)


def _frame(layout, covered=None, cursor=(0, 0), res=32):
    covered = np.zeros((1, GRID, GRID), bool) if covered is None else covered[None]
    return frames_to_tensor(render(np.asarray(layout), covered, np.array([cursor]), res))[0]


@pytest.mark.parametrize("res", [32, 48, 64])
def test_tau_separates_right_from_every_wrong_card(res):
    tau = recall_tau(res)
    d = card_distances(res)
    assert d.diag().max() < tau  # a right card scores 0, under tau
    wrong = d[~torch.eye(N_OBJECTS + 1, dtype=torch.bool)]
    assert wrong.min() > tau  # every other object, and the back, is above
    # and on rendered frames, with the cursor drawn on the card under test
    layout = np.arange(16).reshape(4, 4) % N_OBJECTS
    truth = _frame(layout, cursor=(1, 2), res=res)
    for k in range(N_OBJECTS):
        other = layout.copy()
        other[1, 2] = k
        err = card_mse(_frame(other, cursor=(1, 2), res=res), truth)[1, 2]
        assert (err < tau) == (k == layout[1, 2])
    back = card_mse(_frame(layout, np.ones((4, 4), bool), (1, 2), res), truth)[1, 2]
    assert back > tau


def test_tile_recall_on_hand_made_frames():
    tau = recall_tau(32)
    layout = np.repeat(np.arange(N_OBJECTS), 2).reshape(4, 4)
    truth = _frame(layout)
    assert tile_recall(truth, truth, tau) == 1.0
    shifted = (layout + 1) % N_OBJECTS  # every card holds another object
    assert tile_recall(_frame(shifted), truth, tau) == 0.0
    assert tile_recall(_frame(layout, np.ones((4, 4), bool)), truth, tau) == 0.0  # all face down
    half = layout.copy()
    half[:2] = shifted[:2]
    assert tile_recall(_frame(half), truth, tau) == 0.5
    # batched, and a little noise on a right frame changes nothing
    noisy = (truth + 0.02 * torch.randn_like(truth)).clamp(-1, 1)
    out = tile_recall(torch.stack([truth, _frame(shifted), noisy]), truth.expand(3, -1, -1, -1), tau)
    assert out.tolist() == [1.0, 0.0, 1.0]


def test_random_layout_is_at_chance():
    tau = recall_tau(32)
    truth = _frame(np.repeat(np.arange(N_OBJECTS), 2).reshape(4, 4))
    rng = np.random.default_rng(0)
    r = [float(tile_recall(random_layout_frame(np.array([0, 0]), 32, rng), truth, tau)) for _ in range(400)]
    assert abs(np.mean(r) - 2 / 16) < 0.02  # each card holds the right object with probability 2/16


def test_recall_episode_splits_observe_and_recall():
    from come.presets import train_config

    cfg = train_config("test-micro")
    e = recall_episode(7, 3, cfg)
    raw = generate_episode(7, 3, "zigzag")
    n = int((raw["phase"] == 0).sum())
    assert len(e["history"]) == n and len(e["truth"]) == len(raw["image"]) - n
    assert e["action"].shape == (len(e["truth"]), 5) and e["pose"].shape == (len(e["truth"]), 2)
    # the history ends with every card face down, the recall ends with every card face up
    assert raw["covered"][n - 1].all() and not raw["covered"][-1].any()
    assert (e["covered"] == raw["covered"][n:]).all() and e["start_covered"] == bool(raw["start_covered"])
    truth_last = frames_to_tensor(raw["image"][-1:])[0]
    assert torch.equal(e["truth"][-1], truth_last)
    layout_frame = _frame(raw["layout"], cursor=tuple(raw["cursor"][-1]))
    assert tile_recall(layout_frame, e["truth"][-1], recall_tau(32)) == 1.0


def test_the_cli_memorizes_as_the_protocol_does():
    """One set of memorization settings: the command's defaults are the protocol's."""
    import inspect

    from come.cli import evaluate as cli
    from come.recipes import RECIPES

    params = inspect.signature(cli.eval_cards_recall).parameters
    assert params["memorize_steps"].default.default == RECIPES["cards"].steps
    assert params["memorize"].default == ""  # the recipe unchanged


def test_recall_rollouts_batch_every_episode_with_the_memory_of_its_own_history(micro_run, monkeypatch):
    """Episodes of two history lengths: memorized by length, rolled out in one batch from the last frames of
    each history (as many as the shortest has), each with the memory its own history gave; in one batch per
    length when an expert reads further back than the shortest history."""
    from come.protocols.recall import recall_rollouts
    from come.world import WorldModel

    world = WorldModel.from_pretrained(micro_run, rank=4, steps=2)
    eps = [recall_episode(1, i, world.cfg) for i in range(4)]
    lengths = [len(e["history"]) for e in eps]
    assert len(set(lengths)) == 2
    batches, imagine = [], world.imagine_variants
    monkeypatch.setattr(world, "imagine_variants", lambda action, *a: batches.append(
        (len(action), world.frames.shape[1])) or imagine(action, *a))
    settings = dict(batch_size=4, lr=1e-2)
    preds, seconds = recall_rollouts(world, eps, ("base", "ltm"), 2, 0, **settings)
    assert batches == [(4, min(lengths))] and seconds["memorize"] > 0
    assert all(p.shape == e["truth"].shape for name in preds for p, e in zip(preds[name], eps))
    used = world.memory_states()["ltm"]
    for length in sorted(set(lengths), key=lengths.index):  # memorized again, one length at a time
        members = [i for i, n in enumerate(lengths) if n == length]
        group = [eps[i] for i in members]
        world.observe(*(torch.stack([e[k] for e in group]) for k in ("history", "history_action", "history_pose")))
        world.memorize(recipe="cards", seed=0, steps=2, **settings)
        for i, state in zip(members, world.memory_states()["ltm"]):
            assert all(torch.equal(state[k], used[i][k]) for k in state)
    batches.clear()
    monkeypatch.setattr(world, "frames_read", lambda: max(lengths))
    recall_rollouts(world, eps, ("base", "ltm"), 2, 0, **settings)
    assert sorted(batches) == sorted((lengths.count(n), n) for n in set(lengths))
