"""The planning-energy head: its loss, shapes and errors, the planner's use of it, and the reason it exists: on
patch latents whose raw distance is flat beyond one token, the trained head's distance grows with the path distance."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from jepa.checkpoints import load_energy_head
from jepa.losses import slow_feature_loss
from jepa.models.energy_head import LatentEnergyHead
from jepa.planning.energy import GoalEnergy, HeadEnergy, embedding_energy
from jepa.planning.mpc import LatentCost
from jepa.tasks.energy import CachedWindows, collect_latents, collect_predictions, train_energy_head

CELLS = 12  # a corridor of 12 tokens; the agent occupies one


def spearmanr(a: torch.Tensor, b: torch.Tensor) -> float:
    """Spearman's rank correlation with average ranks for ties (scipy is not a dependency)."""

    def ranks(x: torch.Tensor) -> torch.Tensor:
        x = x.double().flatten()
        below, equal = (x[None] < x[:, None]).sum(1), (x[None] == x[:, None]).sum(1)
        return below + (equal + 1) / 2

    ra, rb = ranks(a), ranks(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    return float((ra * rb).sum() / (ra.norm() * rb.norm()))


def corridor_latents(positions: torch.Tensor, generator: torch.Generator, noise: float = 0.05) -> torch.Tensor:
    """(...,) integer positions -> (..., CELLS, 4) patch latents: a fixed "agent" vector in the agent's token, a
    fixed background vector elsewhere, plus noise (raw distances are equal for any two different positions)."""
    background, agent = torch.tensor([1.0, 0.0, 0.0, 0.0]), torch.tensor([0.0, 1.0, 0.0, 0.0])
    onehot = torch.nn.functional.one_hot(positions, CELLS).unsqueeze(-1).float()  # (..., CELLS, 1)
    latents = onehot * agent + (1 - onehot) * background
    return latents + noise * torch.randn(latents.shape, generator=generator)


def random_walks(count: int, length: int, generator: torch.Generator) -> torch.Tensor:
    """(count, length) positions of +-1 random walks reflected at the corridor's ends."""
    start = torch.randint(0, CELLS, (count, 1), generator=generator)
    steps = torch.randint(0, 2, (count, length - 1), generator=generator) * 2 - 1
    walk = torch.cat([start, steps], dim=1).cumsum(1)
    period = 2 * (CELLS - 1)
    walk = walk.remainder(period)
    return torch.where(walk >= CELLS, period - walk, walk)


def head_spearman(head: LatentEnergyHead, offset: torch.Tensor, g: torch.Generator) -> float:
    """Mean Spearman correlation of the head's distance with the path distance, over goals, in one scene."""
    grid = corridor_latents(torch.arange(CELLS), g, noise=0.0) + offset
    with torch.no_grad():
        embeddings = head(grid)
    path = torch.arange(CELLS).float()
    rho = []
    for goal in range(CELLS):
        others = path != goal
        learned = (embeddings - embeddings[goal]).norm(dim=1)[others]
        rho.append(spearmanr(learned, (path - goal).abs()[others]))
    return float(np.mean(rho))


def test_slow_feature_loss_terms():
    still = torch.ones(4, 3, 2)  # every frame identical: no motion cost, no spread at all
    loss, parts = slow_feature_loss(still, sim_coeff=1.0, std_coeff=1.0, cov_coeff=1.0)
    assert parts["sim"].item() == 0.0
    assert parts["std"].item() == pytest.approx(1 - 1e-2, abs=1e-3)  # std sqrt(0 + 1e-4) against the target 1
    assert parts["cov"].item() == 0.0 and loss.item() == pytest.approx(parts["std"].item())
    moving = torch.arange(3.0).view(1, 3, 1).expand(4, 3, 2)  # each step moves by 1 in both dimensions
    _, parts = slow_feature_loss(moving)
    assert parts["sim"].item() == pytest.approx(2.0)  # ||(1, 1)||^2
    with pytest.raises(ValueError, match=r"\(B, T >= 2, K\)"):
        slow_feature_loss(torch.zeros(4, 1, 2))


def test_head_shapes_and_a_clear_error_for_other_latents():
    head = LatentEnergyHead(num_tokens=CELLS, embed_dim=4, hidden_dim=16, out_dim=3)
    assert head(torch.zeros(5, 7, CELLS, 4)).shape == (5, 7, 3)
    with pytest.raises(ValueError, match=r"12 tokens x 4 dims, got 16 x 4.*same encoder"):
        head(torch.zeros(2, 16, 4))


def test_trained_head_distance_grows_with_path_distance_where_raw_latents_are_flat():
    g = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    latents = corridor_latents(random_walks(256, 8, g), g)  # (256, 8, CELLS, 4)
    head = LatentEnergyHead(num_tokens=CELLS, embed_dim=4, hidden_dim=64, out_dim=8)
    log = train_energy_head(head, latents, steps=400, batch_size=32, lr=3e-3, seed=0)
    assert log[-1]["loss"] < log[0]["loss"]

    grid = corridor_latents(torch.arange(CELLS), g, noise=0.0)  # one clean frame per position
    for goal in range(CELLS):
        raw = (grid - grid[goal]).abs().mean((1, 2))[torch.arange(CELLS) != goal]
        assert torch.allclose(raw, raw[0].expand_as(raw))  # the raw latent distance does not see how far it is
    assert head_spearman(head, torch.zeros(4), g) > 0.9


class ShiftWorldModel:
    """latent + action added to every token: a known linear world model."""

    def rollout(self, latents: torch.Tensor, actions: torch.Tensor, states=None) -> torch.Tensor:
        return latents + actions.cumsum(1).unsqueeze(2)  # (S, 1, N, A) + (S, L, 1, A)


def test_latent_cost_scores_the_heads_embeddings():
    head = LatentEnergyHead(num_tokens=3, embed_dim=2, hidden_dim=8, out_dim=4).eval()
    latent, goal = torch.zeros(1, 1, 3, 2), torch.ones(3, 2)
    actions = torch.randn(5, 2, 2)
    cost = LatentCost(ShiftWorldModel(), HeadEnergy(head, reduce="sum"), latent, goal)
    with torch.no_grad():
        expected = embedding_energy(
            head(ShiftWorldModel().rollout(latent.expand(5, 1, 3, 2), actions)), head(goal), "sum"
        )
        assert torch.allclose(cost(actions), expected)
        # plus the raw latent energy, weighted
        mixed = LatentCost(ShiftWorldModel(), HeadEnergy(head, latent_weight=3.0, reduce="sum"), latent, goal)
        raw = LatentCost(ShiftWorldModel(), GoalEnergy(p=1, reduce="sum"), latent, goal)
        assert torch.allclose(mixed(actions), expected + 3.0 * raw(actions))
    assert embedding_energy(torch.zeros(2, 3, 4), torch.ones(4), "final").tolist() == [2.0, 2.0]


def test_conv_head_reads_the_token_grid_and_round_trips(tmp_path):
    from jepa.checkpoints import load_energy_head

    torch.manual_seed(0)
    head = LatentEnergyHead(num_tokens=16, embed_dim=3, hidden_dim=8, out_dim=4, conv_channels=5).eval()
    latents = torch.randn(2, 3, 16, 3)  # (B, T, N, D): any leading dims
    out = head(latents)
    assert out.shape == (2, 3, 4)
    assert torch.allclose(out[1, 2], head(latents[1, 2]))
    # token n sits at row n // 4, column n % 4 of the grid the convolutions slide over
    grid = latents[0, 0].T.reshape(1, 3, 4, 4)
    assert torch.allclose(out[0, 0], head.mlp(head.conv(grid).flatten(1))[0], atol=1e-6)
    torch.save(
        {
            "module_kwargs": {"energy_head": head.init_kwargs},
            "state_dict": {f"head.{k}": v for k, v in head.state_dict().items()},
        },
        tmp_path / "head.ckpt",
    )
    assert torch.allclose(load_energy_head(tmp_path / "head.ckpt")(latents), out)
    with pytest.raises(ValueError, match="square token grid"):
        LatentEnergyHead(num_tokens=12, embed_dim=3, conv_channels=5)


def test_collect_latents_keeps_the_first_windows():
    class MeanEncoder(torch.nn.Module):
        def forward(self, frames: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, 2, 3) tokens
            return frames.mean((2, 3)).unsqueeze(1).expand(-1, 2, -1) + torch.arange(2.0).view(1, 2, 1)

    batches = [{"video": torch.rand(3, 3, 4, 8, 8), "scene": torch.tensor([i, i, 7])} for i in range(3)]
    for i, batch in enumerate(batches):
        batch["actions"], batch["states"] = torch.full((3, 3, 2), float(i)), torch.full((3, 4, 2), float(i))
    latents, scenes, actions, states = collect_latents(MeanEncoder(), batches, num_windows=5, chunk=8)
    assert latents.shape == (5, 4, 2, 3) and scenes.tolist() == [0, 0, 7, 1, 1]
    assert actions.shape == (5, 3, 2) and states.shape == (5, 4, 2) and actions[:, 0, 0].tolist() == [0, 0, 0, 1, 1]
    assert torch.allclose(latents[3], collect_latents(MeanEncoder(), batches[1:], num_windows=1)[0][0])
    plain = collect_latents(MeanEncoder(), [{"video": torch.rand(2, 3, 2, 8, 8)}], num_windows=2)
    assert plain.scenes.tolist() == [-1, -1] and plain.actions is None  # no scene ids, no actions in the data


def test_collect_predictions_rolls_out_from_each_start():
    g = torch.Generator().manual_seed(0)
    latents, actions = torch.randn(5, 7, 3, 2, generator=g), torch.randn(5, 6, 2, generator=g)
    cached = CachedWindows(latents, torch.full((5,), -1), actions, torch.zeros(5, 7, 2))
    predicted = collect_predictions(ShiftWorldModel(), cached, starts=[0, 3], horizon=3, chunk=2)
    assert predicted.shape == (5, 2, 3, 3, 2)
    # [w, i, h] predicts frame starts[i] + 1 + h: ShiftWorldModel adds the actions taken since the start
    expected = latents[:, 3:4] + actions[:, 3:6].cumsum(1).unsqueeze(2)
    assert torch.allclose(predicted[:, 1], expected)
    with pytest.raises(ValueError, match="run past windows of 7 frames"):
        collect_predictions(ShiftWorldModel(), cached, starts=[4], horizon=3)
    with pytest.raises(ValueError, match="needs the windows' actions and states"):
        collect_predictions(ShiftWorldModel(), cached._replace(actions=None), starts=[0], horizon=1)


def test_prediction_term_teaches_the_head_what_blurred_predictions_mean():
    # The world model predicts a faded agent (a blend, as where it is unsure). Without the prediction term the
    # head places the faded frame far from the frame it predicts; with it, near.
    g = torch.Generator().manual_seed(0)
    positions = random_walks(256, 8, g)
    latents = corridor_latents(positions, g)  # (256, 8, CELLS, 4)
    starts, horizon = [0, 3], 4

    def faded(p: torch.Tensor) -> torch.Tensor:
        return 0.3 * corridor_latents(p, g, noise=0.0) + 0.7 * corridor_latents(torch.zeros_like(p), g, noise=0.0)

    targets = torch.stack([positions[:, s + 1 : s + 1 + horizon] for s in starts], 1)  # (256, 2, 4)
    predictions = faded(targets)
    grid, blurred = corridor_latents(torch.arange(CELLS), g, noise=0.0), faded(torch.arange(CELLS))
    ratios = {}
    for coeff in (0.0, 12.0):
        torch.manual_seed(0)
        head = LatentEnergyHead(num_tokens=CELLS, embed_dim=4, hidden_dim=64, out_dim=8)
        log = train_energy_head(head, latents, 400, 32, lr=3e-3, seed=0, predictions=predictions,
                                prediction_starts=starts, prediction_coeff=coeff)  # fmt: skip
        with torch.no_grad():
            clean, fade = head(grid), head(blurred)
        step = (clean[1:] - clean[:-1]).norm(dim=1).mean()  # one corridor cell
        ratios[coeff] = float((fade - clean).norm(dim=1).mean() / step)
    assert "pred" in log[-1] and ratios[12.0] < 0.5 and ratios[0.0] > 2 * ratios[12.0], ratios


def test_loading_a_checkpoint_without_a_head_is_a_clear_error(tmp_path):
    torch.save({"state_dict": {}, "module_kwargs": {"encoder": {}}}, tmp_path / "x.ckpt")
    with pytest.raises(KeyError, match="not an energy-head checkpoint.*train_energy_head"):
        load_energy_head(tmp_path / "x.ckpt")


def test_batches_by_scene_keep_the_agent_where_scenes_differ():
    # 8 scenes, each adding its own static pattern to every token (Two Rooms' random walls): mixed batches let the
    # head meet the variance term with the scene alone; batches drawn from one scene make it track the agent
    g = torch.Generator().manual_seed(1)
    torch.manual_seed(1)
    offsets = 2.0 * torch.randn(8, 1, 4, generator=g)  # (scenes, 1 token-broadcast, D)
    scenes = torch.arange(8).repeat_interleave(32)
    latents = corridor_latents(random_walks(256, 8, g), g) + offsets[scenes].unsqueeze(1)
    results = {}
    for by_scene in (False, True):
        torch.manual_seed(0)
        head = LatentEnergyHead(num_tokens=CELLS, embed_dim=4, hidden_dim=64, out_dim=8)
        train_energy_head(head, latents, 400, 32, lr=3e-3, seed=0, scenes=scenes if by_scene else None)
        results[by_scene] = np.mean([head_spearman(head, offsets[s], g) for s in range(8)])
    assert results[True] > 0.9 and results[True] > results[False] + 0.2, results
