"""Long-term memory: LoRA adapters fine-tuned at test time on an episode ("memorization").

:class:`LoRAMemory` wraps a trained network with ``peft`` LoRA adapters on the
modules it names in ``memory_targets`` (attention and MLP projections by default;
for a :class:`~come.models.dit.VideoDiT` with a cursor pose, the embedding of each
image place: see its comment), or on ``targets``. ``memorize`` runs the ordinary diffusion loss on
random windows of the history (context frames kept clean as conditioning),
with AdamW on the adapters only and an explicit ``torch.enable_grad()`` so it
also works when called under inference mode's cousin ``torch.no_grad()``.
Windows where the scene changes (something is revealed) are sampled more
often: the memorization signal is sparse otherwise (BENCHMARKS.md). ``reset``
restores the base model exactly; ``save``/``load`` keep an episode's memory
as a few-MB safetensors file.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from tqdm import tqdm

from .diffusion.loss import NoiseLevels, diffusion_loss
from .diffusion.sampling import autocast
from .diffusion.schedule import add_noise, alpha_bar, make_scheduler, velocity
from .data.places import relative_view_pose, views_before
from .errors import InputError
from .recipes import LR_SCHEDULES, Recipe

DEFAULT_TARGETS = ("qkv", "proj", "fc1", "fc2")
BASE_ADAPTER = "__base__"  # peft's name for "no adapter" in a mixed-adapter batch
ADAPTER_INIT_SEED = 0  # every adapter starts from the same random LoRA A (B is zero): runs are reproducible


@contextmanager
def _adapter_init_generator():
    """peft draws LoRA A from the global generator: draw it from a fixed one, and leave the global one alone."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(ADAPTER_INIT_SEED)
        yield


def change_weights(frames: torch.Tensor, window: int, boost: float, first: int = 0) -> np.ndarray:
    """Sampling weight per window start (from ``first``, see :func:`history_windows`): 1 + boost * (how much
    the window changes, scaled to [0, 1])."""
    frames = frames[_frame_index(len(frames), first, len(frames) - first)]
    diff = (frames[1:] - frames[:-1]).abs().flatten(1).mean(1)  # (N-1,)
    starts = len(frames) - window + 1
    change = torch.stack([diff[s : s + window - 1].sum() for s in range(starts)]).double()
    change = change / change.max().clamp(min=1e-12)
    w = 1 + boost * change.numpy()
    return w / w.sum()


def _check_history(frames: torch.Tensor, action: torch.Tensor, pose: torch.Tensor | None, window: int) -> None:
    if len(frames) < window:
        raise InputError(f"a history of {len(frames)} frames is shorter than one window of {window}")
    if len(action) != len(frames) or (pose is not None and len(pose) != len(frames)):
        raise InputError("frames, actions and poses of the history must have the same length")


def _frame_index(n: int, start: int, length: int) -> torch.Tensor:
    """Frame indices ``start .. start+length-1`` of an n-frame history, those before frame 0 set to 0."""
    return torch.arange(start, start + length).clamp(0, n - 1)


def undone_history(frames: torch.Tensor, action: torch.Tensor, pose: torch.Tensor | None,
                   inverse_actions: Sequence[int] | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """The history followed by its undoing, for an environment where every action can be undone: after the
    last frame come the frames before it in reverse order, down to the first, each reached by the inverse of
    the action that left it (``inverse_actions[i]`` undoes one-hot action ``i``; an action that changed no
    pixel, a move into a wall, undoes itself). One trajectory of 2N-1 frames: every window of it is a true
    transition, and what the history covers, its undoing uncovers."""
    if inverse_actions is None:
        raise InputError("the memorization recipe undoes the history (undo=true), but this model's actions "
                         "have no inverses (Memory Cards' have)")
    if len(inverse_actions) != action.shape[-1]:
        raise InputError(f"{len(inverse_actions)} inverse actions for actions of {action.shape[-1]} values")
    taken = action[1:].argmax(-1)  # action t made frame t from frame t-1
    changed = (frames[1:] != frames[:-1]).flatten(1).any(1)
    undo = torch.where(changed, torch.as_tensor(inverse_actions, device=action.device)[taken], taken)
    undo_action = torch.nn.functional.one_hot(undo.flip(0), action.shape[-1]).to(action.dtype)
    return (torch.cat([frames, frames[:-1].flip(0)]), torch.cat([action, undo_action]),
            None if pose is None else torch.cat([pose, pose[:-1].flip(0)]))


def history_windows(frames, action, pose, starts, window: int, views: int = 0) -> dict[str, torch.Tensor]:
    """A batch of the history's windows beginning at ``starts``, as the diffusion loss takes it, with ``views``
    place views each (:func:`window_views`) for a place memory network.

    A start below 0 repeats the first frame in place of the missing context (memorization drops
    that context, so the first frames are targets too).
    """
    index = torch.stack([_frame_index(len(frames), int(s), window) for s in starts])
    batch = {"frames": frames[index], "action": action[index]}
    if pose is not None:
        batch["pose"] = pose[index]
    if views:
        retrieved = window_views(pose, starts, window, views)
        batch |= {"views": frames[retrieved.pop("view_index")], **retrieved}
    return batch


def _check_views(views: int, pose: torch.Tensor | None) -> None:
    if pose is None or pose.shape[-1] != 4 or not views:
        raise InputError("memorizing with place views needs a place memory network (views > 0) and the history's "
                         "absolute poses")


def window_views(pose: torch.Tensor, starts, window: int, k: int) -> dict[str, torch.Tensor]:
    """The place views of each history window beginning at ``starts``, as a place memory is trained with them:
    the indices (``view_index``, into the history) of the ``k`` frames before the window seen from nearest its
    last frame's pose, their poses relative to it and ``view_keep`` (False where fewer than ``k`` frames
    precede the window)."""
    poses = pose.detach().cpu().numpy()
    picks = [views_before(poses, max(int(s), 0), poses[int(s) + window - 1], k) for s in starts]
    index = torch.tensor([idx for idx, _ in picks], device=pose.device)
    target = pose[torch.tensor([int(s) + window - 1 for s in starts], device=pose.device)]
    return {"view_index": index, "view_pose": relative_view_pose(pose[index], target[:, None]),
            "view_keep": torch.tensor([ok for _, ok in picks], device=pose.device)}


class LoRAMemory:
    """LoRA adapters on a network, memorized on an episode at test time."""

    def __init__(
        self,
        network: torch.nn.Module,
        rank: int = 32,
        alpha: float | None = None,
        targets: Sequence[str] | None = None,
        adapter: str = "ltm",
    ):
        if rank < 1:
            raise InputError(f"LoRA rank must be at least 1, got {rank}")
        # peft (and transformers under it) takes seconds to import: loaded when a memory is made, so that
        # commands that never memorize (train, data, sample) start fast
        from peft import LoraConfig, get_peft_model
        from peft.tuners.tuners_utils import BaseTunerLayer

        if any(isinstance(m, BaseTunerLayer) for m in network.modules()):
            raise InputError("this network already carries memory adapters (another world model or memory is on "
                             "it): give each its own copy (load the model again, or copy.deepcopy it)")
        self.adapter = adapter
        targets = targets or getattr(network, "memory_targets", DEFAULT_TARGETS)
        self.config = LoraConfig(r=rank, lora_alpha=alpha or rank, target_modules=list(targets), lora_dropout=0.0)
        with _adapter_init_generator():
            self.model = get_peft_model(network, self.config, adapter_name=adapter)
        self.model.eval()
        self._initial = {adapter: self.state(adapter)}

    def state(self, adapter: str) -> dict[str, torch.Tensor]:
        """A copy of an adapter's weights (what :meth:`save` writes and :meth:`set_state` takes)."""
        from peft import get_peft_model_state_dict

        return {k: v.detach().clone() for k, v in get_peft_model_state_dict(self.model, adapter_name=adapter).items()}

    def set_state(self, state: dict[str, torch.Tensor], adapter: str | None = None) -> None:
        """Set an adapter's weights to those of :meth:`state` (of a memory of the same model, rank and targets)."""
        from peft import set_peft_model_state_dict

        set_peft_model_state_dict(self.model, state, adapter_name=self.adapter_for(adapter or self.adapter))

    def adapter_for(self, name: str) -> str:
        """Make sure adapter ``name`` exists (one per episode of a batch); returns it."""
        if name not in self._initial:
            with _adapter_init_generator():
                self.model.add_adapter(name, self.config)
            self._initial[name] = self.state(name)
        return name

    @property
    def adapters(self) -> list[str]:
        return list(self._initial)

    @property
    def base(self) -> torch.nn.Module:
        return self.model.get_base_model()

    def parameters(self, adapter: str | None = None) -> list[torch.nn.Parameter]:
        name = adapter or self.adapter
        # "<module>.lora_A.<name>.weight" on linear layers, "<module>.lora_embedding_A.<name>" on embeddings
        return [p for n, p in self.model.named_parameters()
                if any(part.startswith("lora_") and nxt == name for part, nxt in zip(n.split("."), n.split(".")[1:]))]

    def memorize(
        self,
        frames: torch.Tensor,
        action: torch.Tensor,
        pose: torch.Tensor | None = None,
        recipe: Recipe = Recipe(),
        context: int = 2,
        future: int = 4,
        levels: NoiseLevels = NoiseLevels(),
        grad_clip: float | None = 1.0,
        first_frames: bool = True,
        bf16: bool = False,
        seed: int = 0,
        progress: bool = False,
        adapter: str | None = None,
        inverse_actions: Sequence[int] | None = None,
    ) -> list[float]:
        """Fine-tune the adapters on windows of one episode: frames (N,C,H,W), action (N,A), pose (N,P), with
        the ``recipe``'s steps, learning rate and batch size, the loss's noise ``levels`` of the network's
        training (:class:`~come.world.WorldModel` passes them and the training ``context``, which a recipe's
        ``context`` replaces); returns the losses.

        Windows are drawn with weight ``1 + recipe.boost * score`` (score scaled to [0, 1]): with
        ``weighting="change"`` the score is how much the window's frames change; with ``"surprise"`` it is the
        base model's own loss on the window at high noise (what it cannot predict without memory: a revealed
        object, not a cursor move). ``p_context_dropout`` noises the context of that share of the windows, so
        the adapters must also draw the episode's frames without it; ``p_pose_dropout`` drops the pose of that
        share (a spatial expert whose baseline is its own adapters without the pose then learns that baseline
        too). ``grad_clip`` bounds the adapters' gradient norm as in training: the v-loss weighs the lowest
        noise levels by over 1000, and without it a learning rate above 1e-3 made the memorized loss worse.
        ``first_frames`` also draws windows whose targets are the history's first ``context`` frames, their
        missing context dropped: otherwise those frames are never a target, and on Memory Cards the first
        card uncovered is never memorized. ``recipe.undo`` memorizes the :func:`undone_history` instead, with
        ``inverse_actions``; its last frames are the history's first, targets with their context, so no window
        is padded then. ``adapter`` names the episode's adapter (default: the first one).
        """
        adapter = self.adapter_for(adapter or self.adapter)
        context = recipe.context or context
        window = context + future
        _check_history(frames, action, pose, window)
        if recipe.views:
            _check_views(self.base.config.views, pose)
        if recipe.undo:
            frames, action, pose = undone_history(frames, action, pose, inverse_actions)
        scheduler = make_scheduler(self.base.config.num_train_timesteps)
        first = -context if first_frames and not recipe.undo else 0
        if recipe.weighting == "change":
            probs = change_weights(frames, window, recipe.boost, first)
        else:
            probs = self.surprise_weights(frames, action, pose, context, future, recipe.boost, seed, first=first)
        rng = np.random.default_rng(seed)
        gen = torch.Generator().manual_seed(seed)

        def loss_of_a_batch() -> torch.Tensor:
            starts = first + rng.choice(len(probs), size=recipe.batch_size, p=probs)
            batch = history_windows(frames, action, pose, starts, window,
                                    self.base.config.views if recipe.views else 0)
            with autocast(bf16, frames.device):
                return diffusion_loss(self.model, batch, context, scheduler, recipe.p_context_dropout,
                                      recipe.p_pose_dropout, gen, levels, drop_context=torch.from_numpy(starts < 0))

        decay = LR_SCHEDULES[recipe.lr_schedule]
        return self._fit(adapter, loss_of_a_batch, recipe.steps, recipe.lr, decay, grad_clip, progress)

    def _fit(self, adapter: str, loss_of_a_batch, steps: int, lr: float, decay, grad_clip: float | None,
             progress: bool) -> list[float]:
        """``steps`` AdamW steps on ``adapter``'s parameters alone; returns the losses."""
        self.model.set_adapter(adapter)
        params = self.parameters(adapter)
        for p in params:
            p.requires_grad_(True)
        opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: decay(i, steps))
        losses = []
        self.model.train()
        with torch.enable_grad():  # memorization trains, even inside a caller's no_grad
            for _ in tqdm(range(steps), desc="memorize", unit="step", disable=not progress, leave=False):
                loss = loss_of_a_batch()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                if grad_clip:
                    torch.nn.utils.clip_grad_norm_(params, grad_clip)
                opt.step()
                sched.step()
                losses.append(loss.item())
        self.model.eval()
        self.model.set_adapter(self.adapter)
        return losses

    @torch.no_grad()
    def surprise_weights(self, frames, action, pose, context: int, future: int, boost: float, seed: int = 0,
                         levels: tuple[int, ...] = (800, 900, 950), first: int = 0) -> np.ndarray:
        """Sampling weight per window start (from ``first``): 1 + boost * (the base model's v-loss on
        the window's future frames at high ``levels``, fixed noise, scaled to [0, 1]).

        Windows that start before frame 0 are scored with their context dropped, scaled by the
        range of the others and capped at 1: without context every frame is a surprise.
        """
        window = context + future
        starts = list(range(first, len(frames) - window + 1))
        batch = history_windows(frames, action, pose, starts, window)
        x, B = batch["frames"], len(starts)
        padded = torch.tensor(starts) < 0
        gen = torch.Generator().manual_seed(seed)
        scheduler = make_scheduler(self.base.config.num_train_timesteps)
        score = torch.zeros(B)
        for level in levels:
            t = torch.zeros(B, window, dtype=torch.long)
            t[:, context:] = level
            t[padded, :context] = scheduler.config.num_train_timesteps - 1
            ab = alpha_bar(scheduler, t)
            noise = torch.randn(x.shape, generator=gen)
            x_t = add_noise(x, noise, ab)  # level 0 (context) has alpha_bar 1: left clean
            v = self.model(x_t, t, batch["action"], batch.get("pose"), context=context,
                           adapter_names=[BASE_ADAPTER] * B)
            score += (v.float() - velocity(x, noise, ab))[:, context:].pow(2).mean(dim=(1, 2, 3, 4))
        lo, hi = score[~padded].min(), score[~padded].max()
        score = ((score - lo) / (hi - lo).clamp(min=1e-12)).clamp(0, 1)
        w = 1 + boost * score.double().numpy()
        return w / w.sum()

    @torch.no_grad()
    def history_loss(
        self,
        frames: torch.Tensor,
        action: torch.Tensor,
        pose: torch.Tensor | None = None,
        context: int = 2,
        future: int = 4,
        adapter: str | None = None,
        repeats: int = 2,
        seed: int = 0,
        batch_size: int = 64,
        levels: NoiseLevels = NoiseLevels(),
    ) -> float:
        """The diffusion loss on every window of a history, with noise fixed by ``seed``.

        Evaluated with ``adapter`` on (None: the base model, adapters off), so
        calls before and after :meth:`memorize` compare the same noise draws.
        ``levels`` chooses the loss as in :func:`diffusion_loss` (default: the plain v-MSE at uniform
        levels; pass a model's ``noise_levels()`` to measure the loss it was trained with).
        """
        window = context + future
        _check_history(frames, action, pose, window)
        if adapter is not None and adapter not in self.adapters:
            raise InputError(f"adapter '{adapter}' does not exist (has: {self.adapters})")
        name = adapter or BASE_ADAPTER
        scheduler = make_scheduler(self.base.config.num_train_timesteps)
        gen = torch.Generator().manual_seed(seed)
        starts = [s for _ in range(repeats) for s in range(len(frames) - window + 1)]

        def net(x, t, a, p, context):
            return self.model(x, t, a, p, context=context, adapter_names=[name] * len(x))

        total = 0.0
        for i in range(0, len(starts), batch_size):
            chunk = starts[i : i + batch_size]
            batch = history_windows(frames, action, pose, chunk, window)
            total += len(chunk) * diffusion_loss(net, batch, context, scheduler, p_context_dropout=0.0,
                                                 p_pose_dropout=0.0, generator=gen, levels=levels).item()
        return total / len(starts)

    def reset(self, adapter: str | None = None) -> None:
        """Forget: one adapter (or all) back to its initial, zero-effect weights."""
        for name in [adapter] if adapter else self.adapters:
            self.set_state(self._initial[name], name)

    def save(self, path: str | Path, adapter: str | None = None) -> Path:
        """Save one episode's memorized adapter as safetensors."""
        name = adapter or self.adapter
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        state = {k: v.cpu().contiguous() for k, v in self.state(name).items()}
        save_file(state, str(path), metadata={"rank": str(self.config.r)})
        return path

    def load(self, path: str | Path, adapter: str | None = None) -> None:
        """Load a memory saved by :meth:`save` (same rank and targets) into ``adapter``."""
        name = self.adapter_for(adapter or self.adapter)
        path = Path(path)
        if not path.is_file():
            raise InputError(f"{path}: memory file not found")
        try:
            state = load_file(str(path))
        except Exception as e:  # safetensors raises SafetensorsError or ValueError, by version and fault
            raise InputError(f"{path}: not a readable memory file ({type(e).__name__}: {e})") from None
        if not all(torch.isfinite(v).all() for v in state.values()):
            raise InputError(f"{path}: the memory holds NaN or infinite values")
        expected = self._initial[name]
        missing = set(expected) - set(state)
        if missing:
            raise InputError(f"{path}: not a memory of this model (missing {sorted(missing)[:2]}...)")
        for k, v in state.items():
            if k in expected and v.shape != expected[k].shape:
                raise InputError(f"{path}: adapter '{k}' has shape {tuple(v.shape)}, expected "
                                 f"{tuple(expected[k].shape)} (another LoRA rank?)")
        self.set_state(state, name)
