"""Action-conditioned predictor of V-JEPA 2-AC: a block-causal ViT over per-frame latents, actions and states.

Matches vjepa2 `src/models/ac_predictor.py::VisionTransformerPredictorAC` with `ACBlock` / `ACRoPEAttention`
(`src/models/utils/modules.py`): per latent frame, an action token, a state token (and optionally an extrinsics
token) are placed before that frame's patch tokens; patch tokens get 3D RoPE, the conditioning tokens only the
temporal rotation; a frame attends to itself and every earlier frame (`build_action_block_causal_attention_mask`).

Unlike the reference, which rotates the conditioning tokens in a separate pass, every token here goes through the
shared `Block`/`RoPEAttention`: a conditioning token sits at position (t, 0, 0), and a zero angle leaves the height
and width channels unrotated, which is exactly the reference's temporal-only rotation.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from jepa.models.preprocess import ImagePreprocessor
from jepa.models.rope import RoPE3D
from jepa.models.vit import Block, init_vit_weights, run_blocks


def block_causal_mask(num_frames: int, tokens_per_frame: int, device: torch.device | None = None) -> torch.Tensor:
    """(N, N) boolean attention mask, True = may attend: token i sees token j iff frame(j) <= frame(i).

    N = num_frames * tokens_per_frame; matches vjepa2 `build_action_block_causal_attention_mask`.
    """
    frame = torch.arange(num_frames, device=device).repeat_interleave(tokens_per_frame)
    return frame.unsqueeze(1) >= frame.unsqueeze(0)


class VisionTransformerPredictorAC(nn.Module):
    """Predicts the next latent frame from the latents, actions and states of the frames so far.

    Args:
        img_size, patch_size: frame geometry; each latent frame has (img_size // patch_size)^2 tokens.
        num_frames, tubelet_size: nominal clip geometry (recorded for checkpoints; any number of frames works).
        embed_dim: encoder width (input and output), D.
        predictor_embed_dim, depth, num_heads: predictor width, depth and heads (V-JEPA 2-AC: 1024, 24, 16).
        action_dim: A, width of one action (7 for DROID end-effector deltas, 2 for planar navigation).
        state_dim: S, width of one proprioceptive state.
        use_extrinsics: add a camera-extrinsics token per frame (needs `extrinsics` in forward).
        extrinsics_dim: width of the extrinsics vector (the reference uses action_dim - 1).
        is_frame_causal: block-causal attention over frames (True in V-JEPA 2-AC); False = full attention.
        tiled_rope: V-JEPA 2's tiled RoPE layout (True, needed by the released weights).
        action_scale: actions are divided by it before their embedding, so that callers (data, planners) pass
            raw units (px, m) while the embedding sees values of order 1 (default 1: the reference, unscaled).
        state_offset, state_scale: states enter as (state - state_offset) / state_scale (defaults 0, 1).
        output_scale: multiplies the output (default 1: the reference). A residual world model predicts latent
            changes, often far smaller than 1: at that scale one optimiser step of the output layer would move every
            token by more than the change to learn, so the change is parameterised in units of `output_scale`.
    """

    def __init__(
        self,
        img_size: int = 256,
        patch_size: int = 16,
        num_frames: int = 8,
        tubelet_size: int = 2,
        embed_dim: int = 1408,
        predictor_embed_dim: int = 1024,
        depth: int = 24,
        num_heads: int = 16,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        norm_eps: float = 1e-6,
        init_std: float = 0.02,
        action_dim: int = 7,
        state_dim: int = 7,
        use_extrinsics: bool = False,
        extrinsics_dim: int = 6,
        is_frame_causal: bool = True,
        tiled_rope: bool = True,
        use_activation_checkpointing: bool = False,
        action_scale: float = 1.0,
        state_offset: float = 0.0,
        state_scale: float = 1.0,
        output_scale: float = 1.0,
    ) -> None:
        super().__init__()
        self.init_kwargs: dict[str, Any] = {k: v for k, v in locals().items() if k not in ("self", "__class__")}
        self.grid_h = self.grid_w = img_size // patch_size
        self.action_dim, self.state_dim = action_dim, state_dim
        # plain floats, not buffers: the state dict stays the released layout
        self.action_scale, self.state_offset, self.state_scale = action_scale, state_offset, state_scale
        self.output_scale = output_scale
        self.use_extrinsics = use_extrinsics
        self.cond_tokens = 3 if use_extrinsics else 2
        self.is_frame_causal = is_frame_causal
        self.grad_checkpointing = use_activation_checkpointing

        self.predictor_embed = nn.Linear(embed_dim, predictor_embed_dim)
        self.action_encoder = nn.Linear(action_dim, predictor_embed_dim)
        self.state_encoder = nn.Linear(state_dim, predictor_embed_dim)
        if use_extrinsics:
            self.extrinsics_encoder = nn.Linear(extrinsics_dim, predictor_embed_dim)
        self.rope = RoPE3D(predictor_embed_dim // num_heads, tiled=tiled_rope)
        dpr = [drop_path_rate * i / max(depth - 1, 1) for i in range(depth)]  # stochastic depth rule
        self.predictor_blocks = nn.ModuleList(
            Block(predictor_embed_dim, num_heads, mlp_ratio, qkv_bias, drop_rate, attn_drop_rate, dpr[i], norm_eps)
            for i in range(depth)
        )
        self.predictor_norm = nn.LayerNorm(predictor_embed_dim, eps=norm_eps)
        self.predictor_proj = nn.Linear(predictor_embed_dim, embed_dim)
        init_vit_weights(self, self.predictor_blocks, init_std)

    @property
    def tokens_per_frame(self) -> int:
        """Patch tokens per latent frame, H' * W'."""
        return self.grid_h * self.grid_w

    def positions(self, num_frames: int, device: torch.device, first_frame: int = 0) -> torch.Tensor:
        """(T * (c + H'W'), 3) RoPE positions of the interleaved sequence: (t, 0, 0) for the c conditioning tokens
        of frame t (zero angles leave their height/width channels unrotated), (t, h, w) for its patch tokens; frames
        are numbered from `first_frame`."""
        t = torch.arange(first_frame, first_frame + num_frames, device=device).view(-1, 1, 1).float()
        h = torch.arange(self.grid_h, device=device).repeat_interleave(self.grid_w).float()
        w = torch.arange(self.grid_w, device=device).repeat(self.grid_h).float()
        patches = torch.stack((h, w), dim=-1).expand(num_frames, -1, -1)  # (T, H'W', 2)
        spatial = torch.cat((patches.new_zeros(num_frames, self.cond_tokens, 2), patches), dim=1)
        return torch.cat((t.expand(-1, spatial.size(1), 1), spatial), dim=-1).flatten(0, 1)

    def forward(
        self,
        z: torch.Tensor,
        actions: torch.Tensor,
        states: torch.Tensor,
        extrinsics: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Predicts, for every input frame t, the latent of frame t + 1.

        Args:
            z: (B, T * H'W', D) encoder features of T latent frames, frame-major.
            actions: (B, T, A) action taken after each frame.
            states: (B, T, S) state at each frame.
            extrinsics: (B, T, E) camera extrinsics per frame (only with `use_extrinsics`).

        Returns:
            (B, T * H'W', D) predicted features of frames 1..T (output frame t predicts input frame t + 1).
        """
        x, T = self._tokens(z, actions, states, extrinsics)
        rope = self.rope(self.positions(T, z.device))
        mask = (
            block_causal_mask(T, self.cond_tokens + self.tokens_per_frame, z.device) if self.is_frame_causal else None
        )
        x = run_blocks(self.predictor_blocks, x, rope, self.grad_checkpointing, attn_mask=mask)
        return self._output(x, T)

    def forward_incremental(
        self,
        z: torch.Tensor,
        actions: torch.Tensor,
        states: torch.Tensor,
        cache: list[dict[str, torch.Tensor]],
        first_frame: int,
        extrinsics: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """`forward` for new frames appended to those already in `cache` (block-causal models only).

        Equal to the last frames of `forward` on the whole sequence, at the cost of the new frames only: the keys and
        values of earlier frames are read from `cache` (one dict per block, filled by earlier calls; start with
        `[{} for _ in predictor_blocks]`). Used by auto-regressive rollouts and planners.

        Args:
            z, actions, states, extrinsics: as `forward`, for the new frames only (usually one).
            cache: per-block key/value caches, updated in place.
            first_frame: index of the first new frame (frames already cached).

        Returns:
            (B, T_new * H'W', D) predictions for the new frames.
        """
        if not self.is_frame_causal:
            raise ValueError("forward_incremental needs a block-causal predictor (is_frame_causal=True)")
        x, T = self._tokens(z, actions, states, extrinsics)
        rope = self.rope(self.positions(T, z.device, first_frame))
        # new frames see every cached (earlier) frame; among themselves, the block-causal rule
        mask = None
        if T > 1:
            new = block_causal_mask(T, self.cond_tokens + self.tokens_per_frame, z.device)
            cached = cache[0]["k"].size(2) if "k" in cache[0] else 0
            mask = torch.cat((new.new_ones(new.size(0), cached), new), dim=1)
        for blk, blk_cache in zip(self.predictor_blocks, cache, strict=True):
            x = blk(x, rope, mask, kv_cache=blk_cache)
        return self._output(x, T)

    def _tokens(
        self, z: torch.Tensor, actions: torch.Tensor, states: torch.Tensor, extrinsics: torch.Tensor | None
    ) -> tuple[torch.Tensor, int]:
        """(B, T * (c + H'W'), P) interleaved conditioning and patch tokens, and T."""
        B, N, _ = z.shape
        T = N // self.tokens_per_frame
        if T * self.tokens_per_frame != N or actions.shape[:2] != (B, T) or states.shape[:2] != (B, T):
            raise ValueError(
                f"expected z of T*{self.tokens_per_frame} tokens and (B, T, .) actions/states, got z {tuple(z.shape)}, "
                f"actions {tuple(actions.shape)}, states {tuple(states.shape)}"
            )
        x = self.predictor_embed(z).unflatten(1, (T, self.tokens_per_frame))  # (B, T, H'W', P)
        # a Linear's output is layer-normed in the next block: unscaled inputs far from 1 (positions of 0..64 px)
        # would make the token nearly constant in direction, i.e. carry almost nothing but the input's angle
        actions = actions / self.action_scale
        states = (states - self.state_offset) / self.state_scale
        cond = [self.action_encoder(actions), self.state_encoder(states)]
        if self.use_extrinsics:
            if extrinsics is None:
                raise ValueError("this predictor was built with use_extrinsics=True: pass extrinsics (B, T, E)")
            cond.append(self.extrinsics_encoder(extrinsics))
        x = torch.cat([c.unsqueeze(2) for c in cond] + [x], dim=2).flatten(1, 2)  # (B, T*(c+H'W'), P)
        return x, T

    def _output(self, x: torch.Tensor, T: int) -> torch.Tensor:
        x = x.unflatten(1, (T, -1))[:, :, self.cond_tokens :].flatten(1, 2)  # drop the conditioning tokens
        return self.predictor_proj(self.predictor_norm(x)) * self.output_scale

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.grad_checkpointing = enable

    def no_weight_decay(self) -> set[str]:
        return set()


def vit_ac_predictor(**kwargs: Any) -> VisionTransformerPredictorAC:
    """The V-JEPA 2-AC predictor (1024 wide, 24 deep, 16 heads, 7-D actions and states) unless overridden."""
    return VisionTransformerPredictorAC(**kwargs)


def frame_latents(encoder: nn.Module, observations: torch.Tensor) -> torch.Tensor:
    """(B, C, T, H, W) frames (or (B, C, H, W) one frame) -> (B, T, N, D) latents, each frame encoded alone as an
    image and layer-normed without affine parameters (V-JEPA 2-AC's frame latents)."""
    if observations.dim() == 4:
        observations = observations.unsqueeze(2)
    B, _, T = observations.shape[:3]
    frames = observations.transpose(1, 2).flatten(0, 1)  # (B*T, C, H, W)
    z = encoder(frames)
    return F.layer_norm(z, (z.size(-1),)).unflatten(0, (B, T))


class ACWorldModel(nn.Module):
    """The planning seam of V-JEPA 2-AC: `encode(observations)` and `rollout(latents, actions)`.

    Frames are encoded one at a time as images (repeated to one tubelet), as V-JEPA 2-AC does, and every latent
    (encoded or predicted) is layer-normed without affine parameters (vjepa2 `normalize_reps`). Future states are
    not observed during a rollout: with `integrate_states` the next state is `state + action` (right when actions
    are deltas of the state, as DROID's end-effector deltas and Two Rooms' displacements), otherwise the last known
    state is held.

    Args:
        encoder: frozen frame encoder, (B, C, H, W) -> (B, N, D).
        predictor: `VisionTransformerPredictorAC`.
        integrate_states: advance states by the actions during rollouts.
        residual: predict the change of each frame's latent (z_{t+1} = LN(z_t + predictor(...))) instead of the
            latent itself (the reference). Where consecutive latents differ little (a small agent on a static
            scene), the absolute form must first learn to copy its input to that precision; the residual form
            starts from "repeat the last latent" and learns only what the action changes.
    """

    def __init__(
        self,
        encoder: nn.Module,
        predictor: VisionTransformerPredictorAC,
        integrate_states: bool = True,
        residual: bool = False,
    ):
        super().__init__()
        self.encoder = encoder
        self.predictor = predictor
        self.integrate_states = integrate_states
        self.residual = residual
        # the trajectory shards' view of a frame: even size, centered square resized to the encoder's input, ImageNet
        self.preprocess = ImagePreprocessor(size=getattr(encoder, "img_size", None), even=True)

    @property
    def action_dim(self) -> int:
        return self.predictor.action_dim

    @torch.no_grad()
    def encode_frames(self, frames: torch.Tensor) -> torch.Tensor:
        """(B, C, T, H, W) normalised frames (or (B, C, H, W) one frame) -> (B, T, N, D) normalised latents, one
        per frame (training and offline evaluation, on batches the data pipeline already transformed)."""
        return frame_latents(self.encoder, frames)

    @torch.no_grad()
    def encode(self, observations: torch.Tensor) -> torch.Tensor:
        """(B, T, H, W, C) uint8 images as the environment renders them -> (B, T, N, D) normalised latents (the
        planning seam: exactly the frames the trajectory data showed the model)."""
        B, T = observations.shape[:2]
        device = next(self.encoder.parameters()).device
        frames = self.preprocess(observations.to(device)).unflatten(0, (B, T)).transpose(1, 2)  # (B, C, T, S, S)
        return frame_latents(self.encoder, frames)

    def step(self, z: torch.Tensor, actions: torch.Tensor, states: torch.Tensor) -> torch.Tensor:
        """(B, T, N, D) latents, (B, T, A) actions, (B, T, S) states -> (B, T, N, D) normalised predictions of
        frames 1..T (teacher forcing: every frame is predicted from the true frames before it)."""
        return self._finish(z, self.predictor(z.flatten(1, 2), actions, states).unflatten(1, z.shape[1:3]))

    def next_state(self, state: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return state + action if self.integrate_states else state

    def rollout(
        self, latents: torch.Tensor, actions: torch.Tensor, states: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Predicts L future latents auto-regressively, feeding each prediction back in.

        Args:
            latents: (B, T0, N, D) latents of the context frames (T0 >= 1, from `encode`).
            actions: (B, T0 - 1 + L, A): the actions after each context frame, then the L planned ones.
            states: (B, T0, S) states of the context frames; None = zeros (a model trained without states).

        Returns:
            (B, L, N, D) predicted latents of frames T0 .. T0 + L - 1.
        """
        B, T0, N = latents.shape[:3]
        L = actions.size(1) - T0 + 1
        if L < 1:
            raise ValueError(
                f"rollout needs at least T0 = {T0} actions (one per context frame), got {actions.size(1)}"
            )
        if states is None:
            states = latents.new_zeros(B, T0, self.predictor.state_dim)
        if not self.predictor.is_frame_causal or (self.predictor.grad_checkpointing and torch.is_grad_enabled()):
            return self._rollout_recompute(latents, actions, states, L)
        # block-causal: each step runs the predictor on the newest frame only, over cached keys/values
        cache: list[dict[str, torch.Tensor]] = [{} for _ in self.predictor.predictor_blocks]
        z, a, s = latents, actions[:, :T0], states
        preds = []
        for t in range(L):
            first = 0 if t == 0 else T0 + t - 1
            raw = self.predictor.forward_incremental(z.flatten(1, 2), a, s, cache, first).unflatten(1, (-1, N))
            z_next = self._finish(z[:, -1:], raw[:, -1:])
            preds.append(z_next)
            n = T0 + t  # frames known before this prediction
            s = self.next_state(s[:, -1:], actions[:, n - 1 : n])
            z, a = z_next, actions[:, n : n + 1]
        return torch.cat(preds, dim=1)

    def _finish(self, z: torch.Tensor, raw: torch.Tensor) -> torch.Tensor:
        """Predictor output -> normalised latent (adding the input frame's latent in the residual form)."""
        pred = z + raw if self.residual else raw
        return F.layer_norm(pred, (pred.size(-1),))

    def _rollout_recompute(
        self, latents: torch.Tensor, actions: torch.Tensor, states: torch.Tensor, L: int
    ) -> torch.Tensor:
        """`rollout` re-running the predictor over all frames at every step (full attention, or checkpointing)."""
        T0 = latents.size(1)
        z, s = latents, states
        preds = []
        for t in range(L):
            n = T0 + t  # frames known so far
            z_next = self.step(z, actions[:, :n], s)[:, -1:]
            preds.append(z_next)
            z = torch.cat((z, z_next), dim=1)
            s = torch.cat((s, self.next_state(s[:, -1:], actions[:, n - 1 : n])), dim=1)
        return torch.cat(preds, dim=1)
