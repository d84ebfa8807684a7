"""Video DiT: a diffusion transformer over patchified frames with per-frame conditioning.

Every frame carries its own noise level (diffusion-forcing style), its action and
optionally a pose; they condition the frame's tokens through adaLN-Zero (Peebles &
Xie 2023, "Scalable Diffusion Models with Transformers"). Attention is selectable
per layer: full over all frames, or a sliding window over frames, with chosen
global layers (the short-term-memory pattern); Mamba blocks may follow chosen layers
(``ssm_layers``, come.models.ssm). The network predicts ``v``.

A zero-initialised *anchor* path adds the patches of the last context frame to
every frame's tokens, which lets a small model use its context from the first
steps of training (BENCHMARKS.md). A pose also reaches every token
together with its offset from the token's place in the image and Gaussian bumps
of that distance, so that "the cursor is here" is a linear read-out: an MLP on
raw coordinates did not learn it in 2k steps (the model ignored the pose). With ``residual`` the network also
denoises each future frame as its change from that anchor frame: with
``r = x - a`` the noisy input is ``r_t = x_t - sqrt(ab) a`` (same noise), and the
returned ``v`` of ``x`` is ``v_r - sqrt(1 - ab) a``. Outside the network nothing
changes (eps is the same), so such a model composes with any other expert.

With ``prediction="x0"`` the last layer predicts the clean frame (its change from
the anchor, with ``residual``) and ``forward`` converts it to
``v = (sqrt(ab) x_t - x0) / sqrt(1 - ab)``. Then "nothing changes" is an output of
zero at every noise level, and the noise in the input never has to pass through
the network. A v-predicting network must carry it through: with 8x8-pixel patches
a token's 192 values fill a 192-wide residual stream. On Memory Cards at 1000
training steps, the x0 head's one-step clean-frame error at levels 150-600 was
20-60x lower than the v head's (BENCHMARKS.md). Either way ``forward`` returns v, and
at initialisation a residual model copies the last frame.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from ..diffusion.schedule import alpha_bar, make_scheduler
from ..errors import InputError


@dataclass
class DiTConfig:
    """Architecture of a :class:`VideoDiT` (saved beside every checkpoint)."""

    resolution: int = 32
    channels: int = 3
    patch: int = 8
    width: int = 192
    depth: int = 6
    heads: int = 4
    mlp_ratio: float = 4.0
    max_frames: int = 8
    action_dim: int = 5
    pose_dim: int = 0
    window: int | None = None  # frames each token sees on windowed layers (None: full attention everywhere)
    global_layers: list[int] = field(default_factory=list)  # layers with full attention when ``window`` is set
    ssm_layers: list[int] = field(default_factory=list)  # a Mamba block after each of these layers (come.models.ssm)
    ssm_block: int = 1  # side in tokens of the image blocks the Mamba blocks scan across the frames, each on its own
    anchor: bool = True
    pose_in_image: bool = True  # the pose's first two values are image coordinates (a cursor), not a map position
    local_action: bool = False  # also give each token its frame's action times "the cursor is here" (needs pose)
    residual: bool = True  # future frames are denoised as the change from the last context frame
    prediction: str = "v"  # what the last layer predicts: "v", or "x0" (converted to v, which forward returns)
    views: int = 0  # place memory: history frames seen from the nearest poses, given as extra tokens
    num_train_timesteps: int = 1000

    def __post_init__(self):
        sizes = ("resolution", "patch", "width", "depth", "heads", "max_frames", "num_train_timesteps")
        small = [f"{k}={getattr(self, k)!r}" for k in sizes if not isinstance(getattr(self, k), int)
                 or getattr(self, k) < 1]
        if small:
            raise InputError(f"model sizes must be positive integers, got {', '.join(small)}")
        if self.resolution % self.patch:
            raise InputError(f"resolution {self.resolution} is not divisible by patch size {self.patch}")
        if self.width % self.heads:
            raise InputError(f"width {self.width} is not divisible by heads {self.heads}")
        if self.local_action and not (self.pose_dim and self.pose_in_image):
            raise InputError("local_action needs a pose in image coordinates (pose_dim > 0 and pose_in_image)")
        if self.prediction not in ("v", "x0"):
            raise InputError(f"prediction must be 'v' or 'x0', got '{self.prediction}'")
        if self.views < 0:
            raise InputError(f"views must be >= 0, got {self.views}")
        for name in ("global_layers", "ssm_layers"):
            if any(not 0 <= i < self.depth for i in getattr(self, name)):
                raise InputError(f"{name} {getattr(self, name)} must lie in [0, {self.depth})")
            setattr(self, name, list(getattr(self, name)))
        side = self.resolution // self.patch
        if not isinstance(self.ssm_block, int) or self.ssm_block < 1 or side % self.ssm_block:
            raise InputError(f"ssm_block {self.ssm_block!r} must divide the frame's side in tokens ({side})")

    @property
    def tokens_per_frame(self) -> int:
        return (self.resolution // self.patch) ** 2

    def to_dict(self) -> dict:
        return asdict(self)


POSE_RBF_SCALES = (0.1, 0.25, 0.5)
VIEW_POSE_DIM = 4  # come.data.places.relative_view_pose: forward, left, cos and sin of the turn


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding of (possibly fractional) timesteps, any leading shape."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[..., None] * freqs
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Per-frame affine modulation: x (B,T*N,D) with shift/scale (B,T,D)."""
    B, T, D = shift.shape
    x = x.view(B, T, -1, D) * (1 + scale[:, :, None]) + shift[:, :, None]
    return x.view(B, -1, D)


def gate(x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Per-frame gate: x (B,T*N,D) times g (B,T,D)."""
    B, T, D = g.shape
    return (x.view(B, T, -1, D) * g[:, :, None]).view(B, -1, D)


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Scaled dot-product attention; on the CPU in fp32 even under bf16 autocast, where the bf16 kernel's
    backward is 6x slower than the fp32 one (BENCHMARKS.md, "Attention on the CPU")."""
    if q.device.type != "cpu":
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    with torch.autocast("cpu", enabled=False):
        return F.scaled_dot_product_attention(q.float(), k.float(), v.float(), attn_mask=mask).to(q.dtype)


class Attention(nn.Module):
    """Multi-head self-attention with an optional boolean mask."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        q, k, v = rearrange(self.qkv(x), "b n (three h d) -> three b h n d", three=3, h=self.heads)
        out = attend(q, k, v, mask)
        return self.proj(rearrange(out, "b h n d -> b n (h d)"))


class Mlp(nn.Module):
    """Two-layer GELU MLP."""

    def __init__(self, width: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(width, hidden)
        self.fc2 = nn.Linear(hidden, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x), approximate="tanh"))


class DiTBlock(nn.Module):
    """Transformer block with adaLN-Zero conditioning per frame."""

    def __init__(self, width: int, heads: int, mlp_ratio: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.attn = Attention(width, heads)
        self.norm2 = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.mlp = Mlp(width, int(width * mlp_ratio))
        self.ada = nn.Linear(width, 6 * width)

    def forward(self, x: torch.Tensor, c: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        sh1, sc1, g1, sh2, sc2, g2 = self.ada(F.silu(c)).chunk(6, dim=-1)
        x = x + gate(self.attn(modulate(self.norm1(x), sh1, sc1), mask), g1)
        return x + gate(self.mlp(modulate(self.norm2(x), sh2, sc2)), g2)


class FinalLayer(nn.Module):
    """adaLN-modulated projection from tokens back to patches."""

    def __init__(self, width: int, patch_dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.ada = nn.Linear(width, 2 * width)
        self.linear = nn.Linear(width, patch_dim)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift, scale = self.ada(F.silu(c)).chunk(2, dim=-1)
        return self.linear(modulate(self.norm(x), shift, scale))


class VideoDiT(nn.Module):
    """Diffusion transformer over a clip of frames with per-frame noise level, action and pose."""

    def __init__(self, config: DiTConfig):
        super().__init__()
        self.config = cfg = config
        # modules a test-time memory adapts (come.memory). A scene fixed in the image (a pose in image
        # coordinates: Memory Cards' cursor) is remembered by place: the embedding of each image place,
        # so the memory of "what lies here" is the same whatever else the frame shows; a memory in the
        # blocks ties it to the frames it was memorized on (BENCHMARKS.md, "A place memory, not a memory in
        # the blocks"). Otherwise: every block's projections and, with a map pose, its path and the output layer.
        if cfg.pose_dim and cfg.pose_in_image:
            self.memory_targets: tuple[str, ...] = ("pos_space",)
        else:
            pose_path = ("pose_embed.0", "pose_embed.2", "final.linear") if cfg.pose_dim else ()
            self.memory_targets = ("qkv", "proj", "fc1", "fc2") + pose_path
        patch_dim = cfg.channels * cfg.patch**2
        w = cfg.width
        self.patch_embed = nn.Linear(patch_dim, w)
        self.anchor_embed = nn.Linear(patch_dim, w) if cfg.anchor else None
        # an embedding (not a bare parameter) so that a test-time memory can adapt it (see memory_targets)
        self.pos_space = nn.Embedding(cfg.tokens_per_frame, w)
        self.pos_time = nn.Parameter(torch.randn(cfg.max_frames, w) * 0.02)
        self.t_embed = nn.Sequential(nn.Linear(w, w), nn.SiLU(), nn.Linear(w, w))
        self.action_embed = nn.Sequential(nn.Linear(cfg.action_dim, w), nn.SiLU(), nn.Linear(w, w))
        self.pose_embed = (
            nn.Sequential(nn.Linear(cfg.pose_dim, w), nn.SiLU(), nn.Linear(w, w)) if cfg.pose_dim else None
        )
        # pose relative to each token's place in the image: lets a token tell "the cursor/agent is here"
        token_features = cfg.pose_dim + 2 + len(POSE_RBF_SCALES) + (cfg.action_dim if cfg.local_action else 0)
        self.pose_token = (
            nn.Sequential(nn.Linear(token_features, w), nn.SiLU(), nn.Linear(w, w))
            if cfg.pose_dim and cfg.pose_in_image else None
        )
        n = cfg.resolution // cfg.patch
        c = (torch.arange(n, dtype=torch.float32) + 0.5) / n * 2 - 1
        rows, cols = torch.meshgrid(c, c, indexing="ij")
        self.register_buffer("token_xy", torch.stack([rows, cols], -1).reshape(-1, 2), persistent=False)
        self.register_buffer("token_index", torch.arange(cfg.tokens_per_frame), persistent=False)
        self.blocks = nn.ModuleList(DiTBlock(w, cfg.heads, cfg.mlp_ratio) for _ in range(cfg.depth))
        self.ssm = nn.ModuleDict()  # Mamba blocks after some of the layers, by the layer's index
        if cfg.ssm_layers:
            from .ssm import SSMBlock

            side = cfg.resolution // cfg.patch
            self.ssm.update({str(i): SSMBlock(w, side, cfg.ssm_block) for i in sorted(set(cfg.ssm_layers))})
        self.final = FinalLayer(w, patch_dim)
        if cfg.views:  # the place memory: where each view was seen from, which slot, and its zero-init path
            self.view_pose_embed = nn.Sequential(nn.Linear(VIEW_POSE_DIM, w), nn.SiLU(), nn.Linear(w, w))
            self.view_slot = nn.Parameter(torch.randn(cfg.views, w) * 0.02)
            self.view_anchor = nn.Linear(patch_dim, w)
        ab = make_scheduler(cfg.num_train_timesteps).alphas_cumprod.float()
        self.register_buffer("alphas_cumprod", ab, persistent=False)
        self._init_weights()

    def _init_weights(self):
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:  # a Mamba mixer's projections have none
                    nn.init.zeros_(m.bias)
        for block in self.blocks:  # adaLN-Zero: every block starts as the identity
            nn.init.zeros_(block.ada.weight)
            nn.init.zeros_(block.ada.bias)
        nn.init.normal_(self.pos_space.weight, std=0.02)
        zero = [self.final.ada, self.final.linear]
        zero += [self.anchor_embed] if self.anchor_embed is not None else []
        zero += [self.pose_token[-1]] if self.pose_token is not None else []
        zero += [self.view_anchor] if self.config.views else []
        for m in zero:
            nn.init.zeros_(m.weight)
            nn.init.zeros_(m.bias)
        for block in self.ssm.values():
            block.reset_parameters()

    def pose_features(self, pose: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """Per token (B,T,N,·): the pose, its first two coordinates minus the token's image position
        (row, col in (-1, 1)), and Gaussian bumps of that distance: "the cursor/agent is here"; with
        ``local_action`` also the frame's action times the sharpest bump: "this action happens here"."""
        B, T, _ = pose.shape
        n = self.config.tokens_per_frame
        offset = pose[:, :, None, :2] - self.token_xy.to(pose.dtype)  # (B,T,N,2)
        dist2 = offset.pow(2).sum(-1, keepdim=True)
        bumps = [torch.exp(-dist2 / (2 * s**2)) for s in POSE_RBF_SCALES]
        local = [action[:, :, None].to(pose.dtype) * bumps[0]] if self.config.local_action else []
        return torch.cat([pose[:, :, None].expand(B, T, n, -1), offset, *bumps, *local], dim=-1)

    def patchify(self, x: torch.Tensor) -> torch.Tensor:
        p = self.config.patch
        return rearrange(x, "b t c (h p1) (w p2) -> b t (h w) (p1 p2 c)", p1=p, p2=p)

    def unpatchify(self, x: torch.Tensor) -> torch.Tensor:
        p, n = self.config.patch, self.config.resolution // self.config.patch
        return rearrange(x, "b t (h w) (p1 p2 c) -> b t c (h p1) (w p2)", h=n, w=n, p1=p, p2=p)

    def attention_mask(self, frames: int, layer: int, device, views: int = 0) -> torch.Tensor | None:
        """Boolean (tokens, tokens) mask for ``layer`` over ``frames`` clip frames then ``views`` place
        views (which every token sees, and which see every token); None means full attention."""
        cfg = self.config
        if cfg.window is None or layer in cfg.global_layers or cfg.window >= frames:
            return None
        f = torch.arange(frames + views, device=device).repeat_interleave(cfg.tokens_per_frame)
        view = f >= frames
        return ((f[:, None] - f[None, :]).abs() < cfg.window) | view[:, None] | view[None, :]

    def view_tokens(self, views: torch.Tensor, view_pose: torch.Tensor, place: torch.Tensor
                    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Tokens (B,R,N,D) and conditioning (B,R,D) of the place views (B,R,C,H,W), clean frames seen
        from ``view_pose`` (B,R,4) relative to the frame to generate."""
        R = views.shape[1]
        if R != self.config.views:
            raise InputError(f"{R} place views given; this model takes {self.config.views}")
        h = self.patch_embed(self.patchify(views)) + place[:, None] + self.view_slot[:R, None]
        clean = torch.zeros(views.shape[:2], device=views.device)
        c = self.t_embed(timestep_embedding(clean, self.config.width)) + self.view_pose_embed(view_pose)
        return h, c

    def add_views(self, h: torch.Tensor, c: torch.Tensor, place: torch.Tensor, context: int, views: torch.Tensor,
                  view_pose: torch.Tensor, view_keep: torch.Tensor | None
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """The clip's tokens (B,T,N,D) and conditioning (B,T,D) followed by those of the place views, the
        nearest view's patches added to the future frames' tokens, and the attention key mask (B,1,1,L)
        that hides the views of the samples ``view_keep`` drops (None when it drops none)."""
        if not self.config.views:
            raise InputError("place views given to a model without a place memory (views = 0)")
        B, T, n = h.shape[:3]
        keep = torch.ones(B, dtype=torch.bool, device=h.device) if view_keep is None else view_keep.bool()
        hv, cv = self.view_tokens(views.to(h.dtype), view_pose.to(h.dtype), place)
        nearest = self.view_anchor(self.patchify(views[:, :1].to(h.dtype)))
        future = (torch.arange(T, device=h.device) >= context).to(h.dtype)
        h = h + nearest * (future.view(1, T, 1, 1) * keep.to(h.dtype).view(B, 1, 1, 1))
        key_mask = None
        if view_keep is not None:
            key_mask = torch.cat([torch.ones(B, T * n, dtype=torch.bool, device=h.device),
                                  keep[:, None].expand(B, views.shape[1] * n)], dim=1)[:, None, None, :]
        return torch.cat([h, hv], dim=1), torch.cat([c, cv], dim=1), key_mask

    def forward(
        self,
        x: torch.Tensor,
        t: torch.Tensor,
        action: torch.Tensor,
        pose: torch.Tensor | None = None,
        context: int = 0,
        views: torch.Tensor | None = None,
        view_pose: torch.Tensor | None = None,
        view_keep: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Predict v for every frame.

        x: (B,T,C,H,W) frames, clean for context and noised for the rest; t: (B,T)
        noise level per frame (0 = clean); action: (B,T,A); pose: (B,T,P) or None
        (no pose information, the same as an all-zero pose); context: number of leading context frames, the
        last of which feeds the anchor path. A place memory (``config.views`` > 0) also takes ``views``
        (B,R,C,H,W), history frames seen from near the pose of the last frame, with ``view_pose`` (B,R,4)
        (:func:`come.data.places.relative_view_pose`); ``view_keep`` (B,) bool drops the views of the
        samples where it is False (their tokens are masked out: the same output as no views at all).
        Without views a place memory is exactly its own base model.
        """
        cfg = self.config
        B, T = x.shape[:2]
        if x.shape[2:] != (cfg.channels, cfg.resolution, cfg.resolution):
            raise InputError(
                f"frames of shape {tuple(x.shape[2:])} do not fit this model "
                f"({cfg.channels}x{cfg.resolution}x{cfg.resolution})"
            )
        if T > cfg.max_frames:
            raise InputError(f"clip of {T} frames is longer than this model's max_frames={cfg.max_frames}")
        ab = alpha_bar(self.alphas_cumprod, t).to(x.dtype).view(B, T, 1, 1, 1)
        shift = self.anchor_shift(x, t, context) if cfg.residual and context > 0 else None
        if shift is not None:
            x = x - ab.sqrt() * shift
        h, c, place = self.embed(x, t, action, pose, context)
        R, key_mask = 0, None
        if views is not None:
            h, c, key_mask = self.add_views(h, c, place, context, views, view_pose, view_keep)
            R = views.shape[1]
        n = cfg.tokens_per_frame
        h = h.reshape(B, (T + R) * n, -1)
        for i, block in enumerate(self.blocks):
            mask = self.attention_mask(T, i, x.device, R)
            if key_mask is not None:
                mask = key_mask if mask is None else mask & key_mask
            h = block(h, c, mask)
            if str(i) in self.ssm:
                h = self.ssm[str(i)](h, c)
        out = self.unpatchify(self.final(h[:, : T * n], c[:, :T]).reshape(B, T, n, -1))
        if cfg.prediction == "x0":  # v = (sqrt(ab) x_t - x0) / sqrt(1 - ab); a clean (level 0) frame: -x0
            noisy = (t > 0).view(B, T, 1, 1, 1)
            den = torch.where(noisy, (1 - ab).clamp(min=1e-12).sqrt(), torch.ones_like(ab))
            out = (ab.sqrt() * x * noisy - out) / den
        return out - (1 - ab).sqrt() * shift if shift is not None else out

    def anchor_shift(self, x: torch.Tensor, t: torch.Tensor, context: int) -> torch.Tensor:
        """The last context frame on every future frame, zero on the context (the residual
        parameterisation denoises the change from it); a dropped context (pure noise) gives none."""
        T = x.shape[1]
        kept = (t[:, context - 1] < self.config.num_train_timesteps - 1).to(x.dtype).view(-1, 1, 1, 1, 1)
        future = (torch.arange(T, device=x.device) >= context).to(x.dtype)
        return x[:, context - 1 : context] * kept * future.view(1, T, 1, 1, 1)

    def embed(self, x: torch.Tensor, t: torch.Tensor, action: torch.Tensor, pose: torch.Tensor | None,
              context: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Tokens (B,T,N,D), per-frame conditioning (B,T,D) and the image-place embedding (B,N,D)."""
        cfg, (B, T) = self.config, x.shape[:2]
        patches = self.patchify(x)
        place = self.pos_space(self.token_index.expand(B, -1))  # (B,N,D): per sample, for mixed-adapter batches
        h = self.patch_embed(patches) + place[:, None] + self.pos_time[:T, None]
        if self.anchor_embed is not None and context > 0:
            h = h + self.anchor_embed(patches[:, context - 1 : context])
        c = self.t_embed(timestep_embedding(t, cfg.width)) + self.action_embed(action)
        if self.pose_embed is not None:  # no pose is the zero pose, as in training's pose dropout
            pose = pose if pose is not None else x.new_zeros(B, T, cfg.pose_dim)
            c = c + self.pose_embed(pose)
            if self.pose_token is not None:
                h = h + self.pose_token(self.pose_features(pose, action))
        return h, c, place


# Fields that change the clip layout but not the weights (apart from ``pos_time``, see retime_positions).
LAYOUT_FIELDS = ("max_frames", "window", "global_layers")


def retime_positions(pos_time: torch.Tensor, old_context: int, old_frames: int, new_context: int,
                     frames: int) -> torch.Tensor:
    """Temporal position embeddings (frames, width) for a model with another context length, from those
    of a model trained on clips of ``old_frames`` frames with ``old_context`` context frames: each frame
    takes the embedding of the frame at the same offset from the first future frame in the old clip,
    clamped to the old clip (older context frames start from the oldest context position, later future
    frames from the last one). Lets a short-context model warm-start a long-context one (an STM)."""
    idx = (torch.arange(frames) - new_context + old_context).clamp(0, old_frames - 1)
    return pos_time[idx].clone()
