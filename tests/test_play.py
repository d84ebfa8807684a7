"""come play: key files, the real board, the game loop from a script and from a window's keys."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from come.cli import app
from come.data import maze
from come.data.cards import ACTIONS, generate_episode
from come.data.clips import cursor_pose
from come.errors import InputError
from come.play import PYGAME_KEYS, CardsBoard, cards_game, maze_game, play, read_keys
from come.world import WorldModel


def test_key_files_skip_comments_and_refuse_unknown_keys(tmp_path):
    good = tmp_path / "k.txt"
    good.write_text("up\n\n# a comment\ntoggle  # uncover\nmemory\n")
    assert read_keys(good) == ["up", "toggle", "memory"]
    bad = tmp_path / "bad.txt"
    bad.write_text("up\njump\n")
    with pytest.raises(InputError, match=r"bad.txt:2: unknown key 'jump'"):
        read_keys(bad)
    with pytest.raises(InputError, match="key file not found"):
        read_keys(tmp_path / "none.txt")


def test_the_board_shows_what_the_generator_renders():
    ep = generate_episode(3, 0, "train", 30)
    board = CardsBoard(ep["layout"], ep["covered"][0], ep["cursor"][0], 32)
    for t in range(1, 30):
        frame, pose = board.step(int(ep["action"][t].argmax()))
        assert np.array_equal(frame, ep["image"][t]), t
        assert np.allclose(pose, cursor_pose(ep)[t]), t


@pytest.fixture(scope="module")
def game_world(micro_run):
    return lambda: WorldModel.from_pretrained(micro_run, rank=4, steps=1)


def test_a_key_script_draws_one_frame_per_action_and_switches_the_memory(game_world, tmp_path):
    game = cards_game(game_world(), seed=1, progress=False, steps=2)
    keys = ["right", "toggle", "memory", "toggle", "down"]
    history, (row, col) = len(game.world.frames[0]), game.env.cursor
    stats = play(game, keys, twin=True, record=tmp_path / "r.gif", scale=2)
    assert stats["frames"] == 4 and stats["memory_on"] == [True, True, False, False]
    assert len(game.world.frames[0]) == history + 4  # the model's own frames are its history
    assert len(stats["twin_psnr"]) == 4 and stats["frames_per_second"] > 0
    assert stats["mean_twin_psnr_memory_on"] is not None and stats["mean_twin_psnr_memory_off"] is not None
    assert tuple(game.env.cursor) == (min(row + 1, 3), min(col + 1, 3))  # the board moved under the keys
    assert (tmp_path / "r.gif").stat().st_size > 0


def test_the_memory_keeps_memorizing_the_stream_in_the_background(game_world):
    import time

    import torch

    game = cards_game(game_world(), seed=1, progress=False, steps=2, learner=game_world(), learn_steps=1)
    name, observed = game.world.episode_adapters[0], len(game.world.frames[0])
    before = game.world.memory.state(name)
    play(game, ["right", "toggle"])
    deadline = time.time() + 120
    while game.learning.rounds < 1 and time.time() < deadline:
        time.sleep(0.05)
    assert game.learning.rounds >= 1 and len(game.learning.learner.frames[0]) > observed  # the grown stream
    game.press("down")  # the learned memory is taken between frames
    after = game.world.memory.state(name)
    assert any(not torch.equal(before[k], after[k]) for k in before)
    game.learning.close()


def test_the_window_plays_the_keys_pressed(game_world, monkeypatch):
    pygame = pytest.importorskip("pygame")
    from come.play import Window, screen

    monkeypatch.setenv("SDL_VIDEODRIVER", "dummy")
    game = cards_game(game_world(), seed=2, progress=False, steps=2)
    height, width = screen(game, True, 2).shape[:2]
    window = Window(width, height, "cards")
    cursor = tuple(game.env.cursor)
    for key in (pygame.K_SPACE, pygame.K_m, pygame.K_SPACE, pygame.K_ESCAPE):
        pygame.event.post(pygame.event.Event(pygame.KEYDOWN, key=key))
    stats = play(game, twin=True, scale=2, window=window)
    assert stats["frames"] == 2 and stats["memory_on"] == [True, False]
    assert tuple(game.env.cursor) == cursor and game.env.covered[cursor]  # space twice: covered again
    assert set(PYGAME_KEYS["cards"]) == set(ACTIONS) and set(PYGAME_KEYS["maze"]) == set(maze.ACTIONS)


def test_play_cli_from_a_key_file(micro_run, tmp_path):
    keys = tmp_path / "k.txt"
    keys.write_text("toggle\nright\nmemory\ntoggle\n")
    out = tmp_path / "s.json"
    res = CliRunner().invoke(app, ["play", "cards", "--ckpt", str(micro_run), "--keys", str(keys), "--twin",
                                   "--ddim-steps", "1", "--memorize-steps", "2", "--json", str(out),
                                   "--record", str(tmp_path / "r.mp4"), "--save-memory", str(tmp_path / "mem")])
    assert res.exit_code == 0, res.output
    stats = json.loads(out.read_text())
    assert stats["frames"] == 3 and stats["twin"] and "frames/s" in res.output
    assert (tmp_path / "r.mp4").stat().st_size > 0 and list((tmp_path / "mem").glob("ltm_*.safetensors"))
    again = CliRunner().invoke(app, ["play", "cards", "--ckpt", str(micro_run), "--keys", str(keys),
                                     "--ddim-steps", "1", "--load-memory", str(tmp_path / "mem")])
    assert again.exit_code == 0, again.output
    assert "memorize" not in again.output  # the saved memory is loaded, not memorized again


def test_play_cli_bad_input_is_one_line(micro_run, tmp_path):
    def error(*args):
        res = CliRunner().invoke(app, ["play", "cards", "--ckpt", str(micro_run), *map(str, args)])
        assert res.exit_code == 2, res.output
        lines = [line for line in res.output.strip().splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: "), res.output
        return lines[0]

    assert "no display" in error()  # the tests run with SDL's dummy driver: nobody to press keys
    bad = tmp_path / "k.txt"
    bad.write_text("fly\n")
    assert "unknown key 'fly'" in error("--keys", bad)
    assert "--record" in error("--keys", bad, "--record", tmp_path / "r.txt")
    assert "not found" in error("--keys", tmp_path / "none.txt")


@pytest.fixture(scope="module")
def maze_world():
    pytest.importorskip("memory_maze")
    return lambda: WorldModel.from_pretrained("maze-place", come_experts=("place",), steps=1)


def test_the_maze_plays_from_the_window_keys_beside_the_real_maze(maze_world, monkeypatch, tmp_path):
    pygame = pytest.importorskip("pygame")
    from come.play import Window, screen

    monkeypatch.setenv("SDL_VIDEODRIVER", "dummy")
    game = maze_game(maze_world(), seed=3, observe=6)
    assert len(game.world.frames[0]) == 7 and game.world.frames.shape[-1] == 32  # the walk, at the model's size
    start = game.env.observation["agent_pos"].copy()
    height, width = screen(game, True, 2).shape[:2]
    window = Window(width, height, "maze")
    for key in (pygame.K_UP, pygame.K_UP, pygame.K_m, pygame.K_LEFT, pygame.K_q, pygame.K_ESCAPE):
        pygame.event.post(pygame.event.Event(pygame.KEYDOWN, key=key))
    stats = play(game, twin=True, scale=2, window=window, record=tmp_path / "r.gif")
    assert stats["frames"] == 4 and stats["memory_on"] == [True, True, False, False]
    assert len(game.world.frames[0]) == 7 + 4 and len(stats["twin_psnr"]) == 4
    assert np.abs(game.env.observation["agent_pos"] - start).max() > 0.05  # the real maze walked under the keys
    assert stats["mean_twin_psnr_memory_on"] > 10  # the model draws the maze, not noise
    game.env.close()


def test_play_maze_cli_from_a_key_file(tmp_path):
    pytest.importorskip("memory_maze")
    keys = tmp_path / "k.txt"
    keys.write_text("forward\nleft\nleft\nmemory\nforward_right\n")
    out, video = tmp_path / "s.json", tmp_path / "r.mp4"
    res = CliRunner().invoke(app, ["play", "maze", "--keys", str(keys), "--twin", "--observe", "6", "--ddim-steps", "1",
                                   "--json", str(out), "--record", str(video), "--scale", "2"])
    assert res.exit_code == 0, res.output
    stats = json.loads(out.read_text())
    assert stats["frames"] == 4 and stats["memory_on"] == [True, True, True, False] and stats["observe"] == 6
    assert video.stat().st_size > 0
    import imageio.v3 as iio

    shown = iio.imread(video)
    assert len(shown) == 5 and shown.shape[2] > shown.shape[1]  # the start and 4 frames, model | real
    keys.write_text("forward\njump\n")
    bad = CliRunner().invoke(app, ["play", "maze", "--keys", str(keys)])
    assert bad.exit_code == 2 and "k.txt:2: unknown key 'jump'" in bad.output
