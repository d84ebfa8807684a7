"""The real Memory Maze brought back to a frame of a recorded episode, and the reference that knows the maze.

:class:`ReplayedMaze` rebuilds an episode's maze from its environment seed (:func:`come.data.maze.episode_env_seed`),
replays the recorded actions to a frame and keeps the simulator's state there, so that plans can be executed from
that frame again and again; :class:`Oracle` drives the shortest path on the layout to a goal pose with the
explorer's controller.
"""

from __future__ import annotations

import copy
import math

import numpy as np

from .maze import ACTIONS, LEFT, NOOP, RIGHT, Explorer, MazeEnvError, shortest_path
from .places import wrap_angle

# the task's counters, restored with the physics so that a target reached in one execution is not in the next
TASK_STATE = ("_current_target_ix", "_rewarded_this_step", "_targets_obtained")


def observation_track(obs: dict) -> np.ndarray:
    """(x, y, yaw) of an environment observation."""
    d = obs["agent_dir"]
    return np.array([obs["agent_pos"][0], obs["agent_pos"][1], math.atan2(d[1], d[0])])


class ReplayedMaze:
    """The real environment at frame ``start`` of an episode: the episode's maze (its environment seed), reset,
    its recorded actions replayed up to ``start``; the replay must land on the recorded pose. The state there
    (MuJoCo's whole ``MjData`` and the task's counters) is kept, and :meth:`restore` returns to it exactly, so
    every execution starts from the same state without a new replay."""

    def __init__(self, size: str, env_seed: int, actions: np.ndarray, start: int, expected: np.ndarray):
        from ..data.maze import make_env

        self.env = make_env(size, env_seed)
        try:
            obs = self.env.reset().observation
            for a in actions[1 : start + 1]:
                obs = self.env.step(int(a)).observation
        except Exception as e:
            self.env.close()
            raise MazeEnvError(f"the Memory Maze environment failed ({type(e).__name__}: {e})") from None
        if not np.allclose(observation_track(obs)[:2], expected[:2], atol=1e-6):
            self.env.close()
            raise MazeEnvError(f"replaying the recorded actions reaches {observation_track(obs)[:2]} at frame "
                               f"{start}, not the recorded {expected[:2]}: was the episode made by another "
                               "memory-maze or come version?")
        self.observation = copy.deepcopy(obs)
        core = self.env
        while not hasattr(core, "physics"):
            core = getattr(core, "env", None) or core._env
        self.physics, self.task = core.physics, core.task
        self.saved = (copy.copy(self.physics.data.ptr),
                      {k: copy.deepcopy(getattr(self.task, k)) for k in TASK_STATE if hasattr(self.task, k)})

    def restore(self) -> dict:
        """Back to the state at ``start``; returns the observation there."""
        import mujoco

        data, task = self.saved
        mujoco.mj_copyData(self.physics.data.ptr, self.physics.model.ptr, data)
        for k, v in task.items():
            setattr(self.task, k, copy.deepcopy(v))
        return copy.deepcopy(self.observation)

    def step(self, action: int) -> dict:
        return self.env.step(int(action)).observation

    def close(self) -> None:
        self.env.close()


class Oracle(Explorer):
    """The reference that knows the maze: the shortest path on the layout to the goal cell, driven by the
    explorer's controller without noise (doorway waypoints, turning in place or arcing); in the goal cell it
    drives to within ``reach`` cells of the goal position, then turns to the goal heading and waits."""

    def __init__(self, layout: np.ndarray, goal: np.ndarray, reach: float = 0.25, aim_deg: float = 10.0):
        super().__init__(layout, np.random.default_rng(0), noise=0.0, patience=10**9)
        self.target, self.reach, self.aim = np.asarray(goal, float), reach, math.radians(aim_deg)
        self.goal = self.cell(self.target[:2])

    def _new_goal(self, here: tuple[int, int]) -> None:
        self.path = shortest_path(self.layout, here, self.goal)  # the goal stays

    def act(self, agent_pos, agent_dir) -> int:
        pos = np.asarray(agent_pos, float)
        if self.cell(pos) != self.goal:
            return super().act(pos, agent_dir)
        yaw, gap = math.atan2(agent_dir[1], agent_dir[0]), self.target[:2] - pos
        if np.linalg.norm(gap) > self.reach:
            err = wrap_angle(math.atan2(gap[1], gap[0]) - yaw)
            if abs(err) > self.turn:
                return LEFT if err > 0 else RIGHT
            return ACTIONS.index("forward_left" if err > self.arc else "forward_right" if err < -self.arc
                                 else "forward")
        err = wrap_angle(self.target[2] - yaw)
        return (LEFT if err > 0 else RIGHT) if abs(err) > self.aim else NOOP
