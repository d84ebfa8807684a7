"""come play: key files, the real board, the game loop from a script and from a window's keys."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from come.cli import app
from come.data.cards import ACTIONS, generate_episode
from come.errors import InputError
from come.play import CardsBoard, CardsGame, play, read_keys
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
        frame = board.step(int(ep["action"][t].argmax()))
        assert np.array_equal(frame, ep["image"][t]), t


@pytest.fixture(scope="module")
def game_world(micro_run):
    return lambda: WorldModel.from_pretrained(micro_run, rank=4, steps=1)


def test_a_key_script_draws_one_frame_per_action_and_switches_the_memory(game_world, tmp_path):
    game = CardsGame(game_world(), seed=1, progress=False, steps=2)
    keys = ["right", "toggle", "memory", "toggle", "down"]
    history, (row, col) = len(game.world.frames[0]), game.board.cursor
    stats = play(game, keys, twin=True, record=tmp_path / "r.gif", scale=2)
    assert stats["frames"] == 4 and stats["memory_on"] == [True, True, False, False]
    assert len(game.world.frames[0]) == history + 4  # the model's own frames are its history
    assert len(stats["twin_psnr"]) == 4 and stats["frames_per_second"] > 0
    assert stats["mean_twin_psnr_memory_on"] is not None and stats["mean_twin_psnr_memory_off"] is not None
    assert tuple(game.board.cursor) == (min(row + 1, 3), min(col + 1, 3))  # the board moved under the keys
    assert (tmp_path / "r.gif").stat().st_size > 0


def test_the_window_plays_the_keys_pressed(game_world, monkeypatch):
    pygame = pytest.importorskip("pygame")
    from come.play import Window, screen

    monkeypatch.setenv("SDL_VIDEODRIVER", "dummy")
    game = CardsGame(game_world(), seed=2, progress=False, steps=2)
    height, width = screen(game, True, 2).shape[:2]
    window = Window(width, height)
    cursor = tuple(game.board.cursor)
    for key in (pygame.K_SPACE, pygame.K_m, pygame.K_SPACE, pygame.K_ESCAPE):
        pygame.event.post(pygame.event.Event(pygame.KEYDOWN, key=key))
    stats = play(game, twin=True, scale=2, window=window)
    assert stats["frames"] == 2 and stats["memory_on"] == [True, False]
    assert tuple(game.board.cursor) == cursor and game.board.covered[cursor]  # space twice: covered again
    assert set(ACTIONS) <= set(Window.PYGAME_KEYS)


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
