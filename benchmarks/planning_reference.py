"""Our CEM planner on a V-JEPA 2-AC world model against the reference's, interleaved in one process, on the CPU.

    python benchmarks/planning_reference.py --reference /tmp/vjepa2                       # fp32 and bf16 rollouts
    python benchmarks/planning_reference.py --reference /tmp/vjepa2 --plans 7 --threads 2

The reference is `WorldModel.infer_next_action` from the vjepa2 notebooks (`notebooks/utils/world_model_wrapper.py`
and `mpc_utils.cem`, imported from the checkout at `--reference`, never copied; they need scipy and einops) with its
notebook's CPU settings: 25 samples, top 10, 2 CEM iterations, horizon 2, momentum 0.15 / 0.75, max norm 0.075.
Ours is what a user runs: `CEMPlanner` (25 samples, 10 elites, 2 iterations, horizon 2) over a `LatentCost` on an
`ACWorldModel`. Both predictors have the same size (`--dim` features and width, `--depth`, `--heads`, 256 tokens per
frame at 256 px / patch 16, 7-D actions and states) and the same random weights (ours loads the reference's
state dict). Each round plans one action with every variant in turn (the reference, ours in fp32, ours with bf16
rollouts, ...), so load hits all alike; medians over `--plans` rounds after one warm-up round.

It also prints where our time goes per CEM iteration (predictor forwards, the rest of the rollout, the energy, and
the planner's own sampling and sorting), and checks that the variants that must keep the answer do: the fp32 plan
against the plain fp32 path (same seed, max abs difference of the chosen actions), and by how much bf16 differs.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import torch

from benchmarks.external import importable_checkout
from benchmarks.train_step import git_commit
from jepa.hardware import cpu_bf16_native
from jepa.models.ac_predictor import ACWorldModel, VisionTransformerPredictorAC
from jepa.planning.energy import GoalEnergy
from jepa.planning.mpc import LatentCost
from jepa.planning.planners import ActionBounds, CEMPlanner

# the notebook's CPU settings (notebooks/energy_landscape_example.ipynb)
MPC_ARGS = {
    "rollout": 2,
    "samples": 25,
    "topk": 10,
    "cem_steps": 2,
    "momentum_mean": 0.15,
    "momentum_mean_gripper": 0.15,
    "momentum_std": 0.75,
    "momentum_std_gripper": 0.15,
    "maxnorm": 0.075,
    "verbose": False,
}


def reference_world_model(path: str, predictor_kwargs: dict):
    """The notebook's `WorldModel` around the reference's `vit_ac_predictor` (random weights)."""
    importable_checkout(path, "notebooks")
    from src.models.ac_predictor import vit_ac_predictor
    from utils.world_model_wrapper import WorldModel

    predictor = vit_ac_predictor(
        img_size=(predictor_kwargs["img_size"],) * 2,
        patch_size=predictor_kwargs["patch_size"],
        num_frames=predictor_kwargs["num_frames"],
        tubelet_size=predictor_kwargs["tubelet_size"],
        embed_dim=predictor_kwargs["embed_dim"],
        predictor_embed_dim=predictor_kwargs["predictor_embed_dim"],
        depth=predictor_kwargs["depth"],
        num_heads=predictor_kwargs["num_heads"],
        action_embed_dim=predictor_kwargs["action_dim"],
        use_rope=True,
        is_frame_causal=True,
    ).eval()
    tokens = (predictor_kwargs["img_size"] // predictor_kwargs["patch_size"]) ** 2
    wm = WorldModel(
        encoder=None, predictor=predictor, tokens_per_frame=tokens, transform=None, mpc_args=MPC_ARGS, device="cpu"
    )
    return wm, predictor


class Timers:
    """Wall time spent inside wrapped callables, by name (instrumentation for the breakdown)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def wrap(self, name: str, fn):
        def timed(*args, **kwargs):
            start = time.perf_counter()
            out = fn(*args, **kwargs)
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start
            return out

        return timed


def our_planner(action_dim: int) -> CEMPlanner:
    """`CEMPlanner` at the notebook's settings (samples, elites, iterations, horizon, momentum, bounds)."""
    a = MPC_ARGS
    return CEMPlanner(
        horizon=a["rollout"],
        action_dim=action_dim,
        samples=a["samples"],
        elites=a["topk"],
        iterations=a["cem_steps"],
        init_std=a["maxnorm"],
        momentum=a["momentum_mean"],
        bounds=ActionBounds(low=-a["maxnorm"], high=a["maxnorm"]),
    )


def plan_ours(world_model: ACWorldModel, z: torch.Tensor, goal: torch.Tensor, state: torch.Tensor, seed: int):
    # the reference's energy: mean absolute difference of the last predicted latent to the goal's
    cost = LatentCost(world_model, GoalEnergy(p=1, reduce="final"), z, goal, state)
    return our_planner(state.size(-1)).plan(cost, generator=torch.Generator().manual_seed(seed)).actions


def breakdown(world_model: ACWorldModel, z, goal, state, rounds: int) -> dict:
    """Seconds per CEM iteration: predictor forwards, the rest of the rollout, the energy, the planner itself."""
    timers = Timers()
    predictor = world_model.predictor
    original = (predictor.forward_incremental, world_model.rollout, LatentCost.__call__)
    predictor.forward_incremental = timers.wrap("predictor", original[0])
    world_model.rollout = timers.wrap("rollout", original[1])
    LatentCost.__call__ = timers.wrap("cost", original[2])
    try:
        start = time.perf_counter()
        for r in range(rounds):
            plan_ours(world_model, z, goal, state, seed=r)
        total = time.perf_counter() - start
    finally:
        del predictor.forward_incremental, world_model.rollout
        LatentCost.__call__ = original[2]
    per = rounds * MPC_ARGS["cem_steps"]
    s = timers.seconds
    return {
        "iteration_s": round(total / per, 4),
        "predictor_forwards_s": round(s["predictor"] / per, 4),
        "rollout_python_s": round((s["rollout"] - s["predictor"]) / per, 4),
        "energy_s": round((s["cost"] - s["rollout"]) / per, 4),
        "planner_sampling_sorting_s": round((total - s["cost"]) / per, 4),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reference", required=True, help="path of a facebookresearch/vjepa2 checkout")
    parser.add_argument("--plans", type=int, default=5, help="timed rounds (one plan of each variant per round)")
    parser.add_argument("--dim", type=int, default=384, help="feature width = predictor width")
    parser.add_argument("--depth", type=int, default=6)
    parser.add_argument("--heads", type=int, default=6)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--variants", default="fp32,bf16", help="our rollout precisions to time")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    kwargs = dict(
        img_size=256,
        patch_size=16,
        num_frames=8,  # the reference's causal mask covers num_frames / tubelet latent frames: >= horizon + 1
        tubelet_size=2,
        embed_dim=args.dim,
        predictor_embed_dim=args.dim,
        depth=args.depth,
        num_heads=args.heads,
        action_dim=7,
        state_dim=7,
    )
    torch.manual_seed(0)
    reference, ref_predictor = reference_world_model(args.reference, kwargs)
    predictor = VisionTransformerPredictorAC(**kwargs).eval()
    state_dict = {k: v for k, v in ref_predictor.state_dict().items() if not k.startswith("extrinsics_encoder.")}
    predictor.load_state_dict(state_dict)  # the same weights, strictly
    world_model = ACWorldModel(torch.nn.Identity(), predictor).eval()
    variants = args.variants.split(",")

    g = torch.Generator().manual_seed(1)
    tokens = (kwargs["img_size"] // kwargs["patch_size"]) ** 2
    z = torch.nn.functional.layer_norm(torch.randn(1, 1, tokens, args.dim, generator=g), (args.dim,))
    goal = torch.nn.functional.layer_norm(torch.randn(tokens, args.dim, generator=g), (args.dim,))
    state = torch.randn(1, 1, 7, generator=g) * 0.1

    times: dict[str, list[float]] = {"reference": [], **{v: [] for v in variants}}
    plans: dict[str, torch.Tensor] = {}
    load_before = os.getloadavg()
    with torch.no_grad():
        for r in range(args.plans + 1):  # round 0 warms up
            start = time.perf_counter()
            reference.infer_next_action(z[:, 0], state, goal.unsqueeze(0))
            if r:
                times["reference"].append(time.perf_counter() - start)
            for v in variants:
                world_model.set_rollout_precision(v)
                start = time.perf_counter()
                plans[v] = plan_ours(world_model, z, goal, state, seed=r)
                if r:
                    times[v].append(time.perf_counter() - start)
        load_after = os.getloadavg()
        # the answer: the same seed through the plain fp32 path and every variant
        world_model.set_rollout_precision("fp32")
        plain = plan_ours(world_model, z, goal, state, seed=123)
        answers = {}
        for v in variants:
            world_model.set_rollout_precision(v)
            answers[v] = round(float((plan_ours(world_model, z, goal, state, seed=123) - plain).abs().max()), 6)
        where = {}
        for v in variants:
            world_model.set_rollout_precision(v)
            where[v] = breakdown(world_model, z, goal, state, rounds=2)

    median = {k: sorted(t)[len(t) // 2] for k, t in times.items()}
    row = {
        "settings": {k: MPC_ARGS[k] for k in ("samples", "topk", "cem_steps", "rollout")},
        "predictor": {k: kwargs[k] for k in ("embed_dim", "predictor_embed_dim", "depth", "num_heads", "action_dim")},
        "tokens_per_frame": tokens,
        "reference_s_per_action": round(median["reference"], 3),
        **{f"ours_{v}_s_per_action": round(median[v], 3) for v in variants},
        **{f"speedup_{v}": round(median["reference"] / median[v], 2) for v in variants},
        "times_s": {k: [round(x, 3) for x in t] for k, t in times.items()},
        "max_abs_plan_difference_vs_plain_fp32": answers,
        "per_cem_iteration": where,
        "load_avg_before": [round(x, 2) for x in load_before],
        "load_avg_after": [round(x, 2) for x in load_after],
        "threads": torch.get_num_threads(),
        "cpu_bf16_native": cpu_bf16_native(),
        "torch": torch.__version__,
        "commit": git_commit(),
    }
    print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
