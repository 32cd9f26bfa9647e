from __future__ import annotations

import torch

from jepa.masks import VJEPA2_MASKS, MaskCollator, MaskSpec


def sample(seed: int, batch_size: int = 4, **kw):
    return MaskCollator(VJEPA2_MASKS, **kw)(batch_size, torch.Generator().manual_seed(seed))


def test_two_families_disjoint_sorted_equal_counts():
    out = sample(0, num_frames=16, crop_size=256)
    assert len(out["ctx_idx"]) == len(out["tgt_idx"]) == 2
    for ctx, tgt in zip(out["ctx_idx"], out["tgt_idx"], strict=False):
        assert ctx.dtype == tgt.dtype == torch.int64 and ctx.shape[0] == tgt.shape[0] == 4
        assert (ctx.diff(dim=1) > 0).all() and (tgt.diff(dim=1) > 0).all()
        for c, t in zip(ctx, tgt, strict=False):
            assert not set(c.tolist()) & set(t.tolist())
            assert 0 <= min(c.min(), t.min()) and max(c.max(), t.max()) < 8 * 16 * 16
    short, long = (t.shape[1] / 2048 for t in out["tgt_idx"])
    assert 0.3 < short < 0.95 and 0.6 < long < 0.99  # long-range masks hide more


def test_blocks_span_full_time():
    """V-JEPA 2 blocks cover every latent frame: a target's spatial position is masked in all frames."""
    mc = MaskCollator([MaskSpec(num_blocks=2, spatial_scale=(0.2, 0.2))], num_frames=8, crop_size=64, patch_size=8)
    keep = mc.sample_context(
        mc.specs[0], mc.block_size(mc.specs[0], torch.Generator().manual_seed(1)), torch.Generator().manual_seed(2)
    ).view(mc.grid)
    assert (keep == keep[0:1]).all() and not keep.all()


def test_seeded_and_reproducible():
    a, b, c = sample(3), sample(3), sample(4)
    assert all(torch.equal(x, y) for x, y in zip(a["ctx_idx"], b["ctx_idx"], strict=False))
    assert not all(torch.equal(x, y) for x, y in zip(a["ctx_idx"], c["ctx_idx"], strict=False))


def test_equalizing_does_not_favour_the_last_tokens():
    """The reference's truncation always drops the highest indices; random dropping keeps them in play."""
    counts = torch.zeros(8 * 16 * 16)
    for seed in range(20):
        for ctx in sample(seed, batch_size=8)["ctx_idx"]:
            counts += torch.bincount(ctx.flatten(), minlength=counts.numel())
    last_frame = counts.view(8, 256)[-1].mean()
    first_frame = counts.view(8, 256)[0].mean()
    assert last_frame > 0.8 * first_frame


def test_clip_length_can_change_per_batch():
    mc = MaskCollator(VJEPA2_MASKS, num_frames=16, crop_size=64)
    out = mc(2, torch.Generator().manual_seed(0), num_frames=4)
    assert all(
        int(t.max()) < 2 * 4 * 4 and int(c.max()) < 2 * 4 * 4
        for c, t in zip(out["ctx_idx"], out["tgt_idx"], strict=True)
    )


def test_fixed_counts_give_static_shapes_for_compile():
    collator = MaskCollator(num_frames=8, crop_size=64, patch_size=16, tubelet_size=2, fixed_counts=True)
    counts = collator.fixed_token_counts()
    shapes = set()
    for seed in range(20):
        out = collator(3, torch.Generator().manual_seed(seed))
        shapes.add(tuple((c.shape, t.shape) for c, t in zip(out["ctx_idx"], out["tgt_idx"], strict=True)))
        for (ctx, tgt), (kc, kt) in zip(zip(out["ctx_idx"], out["tgt_idx"], strict=True), counts, strict=True):
            assert ctx.shape == (3, kc) and tgt.shape == (3, kt)
            for c, t in zip(ctx, tgt, strict=True):  # sorted, unique, disjoint
                assert torch.equal(c, c.sort().values) and len(set(c.tolist())) == kc
                assert not set(c.tolist()) & set(t.tolist())
    assert len(shapes) == 1
    # counts per grid: an image batch (one latent frame) has its own, also fixed
    image = collator(2, torch.Generator().manual_seed(0), num_frames=1)
    assert [(c.size(1), t.size(1)) for c, t in zip(image["ctx_idx"], image["tgt_idx"], strict=True)] == (
        collator.fixed_token_counts((1, 4, 4))
    )


def test_default_counts_follow_the_batch_like_the_reference():
    collator = MaskCollator(num_frames=8, crop_size=64, patch_size=16, tubelet_size=2)
    sizes = {collator(3, torch.Generator().manual_seed(seed))["ctx_idx"][0].size(1) for seed in range(20)}
    assert len(sizes) > 1
