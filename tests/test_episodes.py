import numpy as np
import pytest

from come.data.episodes import EpisodeError, episode_files, load_episode, save_episode


def _ep(T=5, H=8):
    return {"image": np.zeros((T, H, H, 3), np.uint8), "action": np.zeros((T, 5), np.float32)}


def test_round_trip_and_no_temp_files(tmp_path):
    ep = _ep()
    ep["cursor"] = np.arange(10).reshape(5, 2)
    save_episode(tmp_path / "e.npz", ep)
    back = load_episode(tmp_path / "e.npz")
    assert set(back) == {"image", "action", "cursor"}
    np.testing.assert_array_equal(back["cursor"], ep["cursor"])
    assert [p.name for p in tmp_path.iterdir()] == ["e.npz"]


def test_an_episode_too_large_is_refused_before_it_is_read(tmp_path, monkeypatch):
    import come.data.episodes as episodes

    save_episode(tmp_path / "e.npz", _ep(T=50))  # 50 blank frames: a tiny file, 9.6 kB of arrays
    monkeypatch.setattr(episodes, "MAX_EPISODE_BYTES", 5000)
    monkeypatch.setattr(np, "load", lambda *a, **k: pytest.fail("read a refused episode"))
    with pytest.raises(EpisodeError, match="e.npz: its arrays take .* GiB, more than"):
        load_episode(tmp_path / "e.npz")


def test_truncated_file_names_the_file(tmp_path):
    save_episode(tmp_path / "e.npz", _ep())
    data = (tmp_path / "e.npz").read_bytes()
    (tmp_path / "e.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(EpisodeError, match="e.npz"):
        load_episode(tmp_path / "e.npz")


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"image": np.zeros((5, 8, 8), np.uint8)}, "'image' must be"),
        ({"image": np.zeros((5, 8, 8, 3), np.float32)}, "'image' must be"),
        ({"action": np.zeros((4, 5), np.float32)}, "'action' must be"),
        ({"action": np.where(np.arange(5)[:, None] >= 3, np.nan, np.zeros((5, 5))).astype(np.float32)},
         "'action' holds NaN or infinite values \\(first at index 3\\)"),
        ({"agent_pos": np.full((5, 2), np.inf)}, "'agent_pos' holds NaN"),
    ],
)
def test_misshaped_arrays(tmp_path, bad, message):
    save_episode(tmp_path / "e.npz", {**_ep(), **bad})
    with pytest.raises(EpisodeError, match=message):
        load_episode(tmp_path / "e.npz")


def test_missing_key_and_empty_folder(tmp_path):
    save_episode(tmp_path / "e.npz", {"image": _ep()["image"]})
    with pytest.raises(EpisodeError, match="missing array 'action'"):
        load_episode(tmp_path / "e.npz")
    (tmp_path / "empty").mkdir()
    with pytest.raises(EpisodeError, match="no .npz episodes"):
        episode_files(tmp_path / "empty")
