from __future__ import annotations

import pytest
import torch

from jepa.data.transforms import VideoTransform, random_resized_crop_box

MEAN = torch.tensor((0.485, 0.456, 0.406)).view(3, 1, 1, 1)
STD = torch.tensor((0.229, 0.224, 0.225)).view(3, 1, 1, 1)


def random_clip(seed: int = 0, frames: int = 4, height: int = 40, width: int = 56) -> torch.Tensor:
    return torch.randint(0, 256, (frames, height, width, 3), generator=torch.Generator().manual_seed(seed)).byte()


def test_output_shape_dtype_and_reproducible():
    transform = VideoTransform(crop_size=24)
    clip = random_clip()
    a = transform(clip, torch.Generator().manual_seed(1))
    b = transform(clip, torch.Generator().manual_seed(1))
    c = transform(clip, torch.Generator().manual_seed(2))
    assert a.shape == (3, 4, 24, 24) and a.dtype == torch.float32
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_same_crop_and_flip_for_every_frame():
    frame = random_clip(frames=1)
    clip = frame.expand(5, -1, -1, -1)
    transform = VideoTransform(crop_size=16)
    for seed in range(10):
        out = transform(clip, torch.Generator().manual_seed(seed))
        assert torch.equal(out, out[:, :1].expand_as(out))


def test_normalisation_of_constant_clip():
    clip = torch.full((2, 20, 20, 3), 200, dtype=torch.uint8)
    out = VideoTransform(crop_size=8)(clip, torch.Generator().manual_seed(0))
    expected = ((200 / 255 - MEAN) / STD).expand(3, 2, 8, 8)
    torch.testing.assert_close(out, expected)


def test_flip_happens_sometimes_and_mirrors():
    clip = random_clip(height=16, width=16)
    transform = VideoTransform(crop_size=16, random_resize_scale=(1.0, 1.0), random_resize_aspect_ratio=(1.0, 1.0))
    plain = VideoTransform(crop_size=16, training=False)(clip)
    outs = [transform(clip, torch.Generator().manual_seed(s)) for s in range(20)]
    flipped = [torch.equal(o, plain.flip(-1)) for o in outs]
    assert all(f or torch.equal(o, plain) for f, o in zip(flipped, outs, strict=True))
    assert 0 < sum(flipped) < 20
    no_flip = VideoTransform(16, (1.0, 1.0), (1.0, 1.0), horizontal_flip=False)
    assert all(torch.equal(no_flip(clip, torch.Generator().manual_seed(s)), plain) for s in range(20))


def test_eval_is_center_crop_of_short_side():
    clip = random_clip(height=24, width=40)
    out = VideoTransform(crop_size=24, training=False)(clip)
    expected = (clip[:, :, 8:32].permute(3, 0, 1, 2).float() / 255 - MEAN) / STD
    torch.testing.assert_close(out, expected)


@pytest.mark.parametrize("training", [True, False])
def test_list_of_frames_gives_the_same_clip_as_the_stacked_tensor(training):
    # PyAV's decoder hands over separate frames so that only their crops are copied; the result must not change
    transform = VideoTransform(crop_size=24, training=training, normalize=False)
    clip = random_clip(frames=6, height=48, width=90)
    for seed in range(8):
        stacked = transform(clip, torch.Generator().manual_seed(seed))
        listed = transform(list(clip.unbind(0)), torch.Generator().manual_seed(seed))
        assert torch.equal(stacked, listed)


def test_training_requires_generator():
    with pytest.raises(ValueError, match="Generator"):
        VideoTransform(crop_size=8)(random_clip())


def test_crop_box_within_frame_and_scale():
    generator = torch.Generator().manual_seed(0)
    for _ in range(200):
        top, left, h, w = random_resized_crop_box(40, 56, (0.3, 1.0), (0.75, 1.35), generator)
        assert 0 <= top and top + h <= 40 and 0 <= left and left + w <= 56
        assert 0.25 <= h * w / (40 * 56) <= 1.0


def test_uint8_output_normalised_later_equals_normalising_in_the_worker():
    clip = random_clip(seed=3, frames=6)
    in_worker = VideoTransform(crop_size=24)(clip, torch.Generator().manual_seed(5))
    deferred = VideoTransform(crop_size=24, normalize=False)
    raw = deferred(clip, torch.Generator().manual_seed(5))
    assert raw.dtype == torch.uint8 and raw.shape == (3, 6, 24, 24) and raw.is_contiguous()
    assert torch.equal(deferred.normalize(raw), in_worker)
    assert torch.equal(deferred.normalize(raw[None].expand(2, -1, -1, -1, -1))[1], in_worker)  # batched


def test_datamodule_batches_are_uint8_until_the_device_hook(tmp_path):
    from jepa.data.datamodule import VideoDataModule
    from jepa.data.synthetic import make_synthetic_shards

    make_synthetic_shards(tmp_path, num_clips=4, frames=8, size=32, clips_per_shard=4, progress=False)
    kwargs = dict(shards=str(tmp_path / "shard-000000.tar"), batch_size=2, num_workers=0, frames_per_clip=4,
                  crop_size=16, steps_per_epoch=1)  # fmt: skip
    deferred, in_worker = VideoDataModule(**kwargs), VideoDataModule(**kwargs, normalize_on_device=False)
    for dm in (deferred, in_worker):
        dm.setup("fit")
    raw, ref = next(iter(deferred.train_dataloader())), next(iter(in_worker.train_dataloader()))
    assert raw["video"].dtype == torch.uint8 and ref["video"].dtype == torch.float32
    assert torch.equal(deferred.on_after_batch_transfer(raw, 0)["video"], ref["video"])
