import time

import numpy as np
import pytest

from come.data import cards
from come.data.episodes import load_episode


def test_same_seed_gives_byte_identical_files(tmp_path):
    a = cards.generate_dataset(tmp_path / "a", 3, seed=7, progress=False)
    b = cards.generate_dataset(tmp_path / "b", 3, seed=7, progress=False)
    c = cards.generate_dataset(tmp_path / "c", 3, seed=8, progress=False)
    for name in ["ep_00000.npz", "ep_00001.npz", "ep_00002.npz", "meta.json"]:
        assert (a / name).read_bytes() == (b / name).read_bytes()
    assert (a / "ep_00000.npz").read_bytes() != (c / "ep_00000.npz").read_bytes()


def test_episode_contents_and_meta(tmp_path):
    folder = cards.generate_dataset(tmp_path, 2, seed=0, length=50, progress=False)
    ep = load_episode(folder / "ep_00001.npz")
    assert ep["image"].shape == (50, 32, 32, 3) and ep["image"].dtype == np.uint8
    assert ep["action"].shape == (50, 5) and (ep["action"][0] == 0).all()
    assert (ep["action"][1:].sum(1) == 1).all()
    assert ep["cursor"].shape == (50, 2) and ep["covered"].shape == (50, 4, 4)
    assert sorted(np.bincount(ep["layout"].ravel())) == [2] * 8  # 8 objects, each twice
    assert (folder / "meta.json").read_text().count('"episodes": 2') == 1


def test_dynamics_follow_actions():
    layout = np.arange(16).reshape(4, 4) % 8
    # up into the border, right, toggle, toggle, left, left (border)
    covered, cursor = cards.simulate(layout, np.ones((4, 4), bool), (0, 0), np.array([0, 3, 4, 4, 2, 2]))
    assert cursor.tolist() == [[0, 0], [0, 0], [0, 1], [0, 1], [0, 1], [0, 0], [0, 0]]
    assert covered[3, 0, 1] == False and covered[4, 0, 1] == True  # noqa: E712
    assert covered[:, 1:].all()


def test_action_probabilities():
    ep = cards.generate_episode(0, 0, "train", length=20000)
    freq = ep["action"][1:].mean(0)
    np.testing.assert_allclose(freq, cards.ACTION_PROBS, atol=0.015)


@pytest.mark.parametrize("start_covered", [True, False])
def test_zigzag_structure(start_covered):
    for i in range(6):
        ep = cards.generate_episode(3, i, "zigzag")
        if bool(ep["start_covered"]) == start_covered:
            break
    else:
        pytest.skip("no episode with this start in the first six")
    phase, covered, cursor = ep["phase"], ep["covered"], ep["cursor"]
    observe, recall = phase == 0, phase == 1
    assert observe[0] and recall[-1] and (np.diff(phase) >= 0).all()
    # observe: every card face up in exactly the frames around its visit, everything ends covered
    seen = (~covered[observe]).any(0)
    assert seen.all()
    assert covered[observe][-1].all()
    # cursor walks the snake: row 0 left to right, row 1 right to left...
    visits = [tuple(c) for c in cursor[observe]]
    order = list(dict.fromkeys(visits))
    assert order == cards.boustrophedon()
    # recall: the snake backwards, everything face up at the end, each card uncovered once
    assert list(dict.fromkeys(tuple(c) for c in cursor[recall])) == cards.boustrophedon(reverse=True)
    assert (~covered[-1]).all()
    assert (np.diff(covered[recall].astype(int), axis=0) <= 0).all()


@pytest.mark.parametrize("res", [32, 48, 64])
def test_resolutions_and_distinct_objects(res):
    tiles = cards.card_tiles(res).astype(float) / 255
    assert tiles.shape == (9, res // 4, res // 4, 3)
    d = [((tiles[i] - tiles[j]) ** 2).mean() for i in range(9) for j in range(i + 1, 9)]
    assert min(d) > 0.03  # any two objects (and the back) are far apart in pixel space
    ep = cards.generate_episode(0, 0, "train", length=10, resolution=res)
    assert ep["image"].shape == (10, res, res, 3)


@pytest.mark.parametrize("res", [30, 8])
def test_bad_resolution(res):
    with pytest.raises(ValueError, match="resolution"):
        cards.card_tiles(res)


def test_generation_speed():
    t = time.perf_counter()
    n = sum(len(cards.generate_episode(0, i, "train", 250)["image"]) for i in range(8))
    assert n / (time.perf_counter() - t) > 2000
