"""Training shards: exact crops of a cache in one FLAC file, read back as a cache."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("soundfile")

from flowdec.train.data import AudioCache, CropSampler, synthetic_clips  # noqa: E402
from flowdec.train.shard import choose_crops, main, write_shard  # noqa: E402


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> AudioCache:
    clips = synthetic_clips(12, 3.0, seed=3)
    clips += [(x, d, "valid") for x, d, _ in synthetic_clips(6, 2.0, seed=4)]
    clips.append((np.zeros(3 * 48000, np.float32), "music", "train"))  # never chosen: silent
    return AudioCache.from_arrays(clips, tmp_path_factory.mktemp("cache"))


def test_shard_holds_exact_crops_within_its_size(cache: AudioCache, tmp_path: Path) -> None:
    folder = write_shard(cache, tmp_path / "shard", megabytes=0.8, crop_seconds=1.0,
                         valid_crops=2, seed=5)
    assert sorted(p.name for p in folder.iterdir()) == ["audio.flac", "index.json"]
    assert (folder / "audio.flac").stat().st_size <= 0.8e6
    shard = AudioCache(folder)
    by_path = {c["path"]: i for i, c in enumerate(cache.index)}
    starts = set()
    for k, c in enumerate(shard.index):
        i = by_path[c["path"]]
        src = cache.audio[cache.offsets[i] + c["start"]:][: c["length"]]
        np.testing.assert_array_equal(shard.audio[shard.offsets[k]:][: c["length"]], src)
        assert c["length"] == min(48000, cache.lengths[i])
        assert c["domain"] == cache.index[i]["domain"] and c["split"] == cache.index[i]["split"]
        assert np.abs(shard.clip(k)).max() > 0.01  # the silent clip is skipped
        starts.add((i, c["start"]))
    assert len(starts) == len(shard.index)  # no crop twice
    domains = {"music", "sound", "speech"}
    valid = [c["domain"] for c in shard.index if c["split"] == "valid"]
    assert sorted(valid) == sorted(list(domains) * 2)
    train = [c["domain"] for c in shard.index if c["split"] == "train"]
    assert set(train) == domains and len(train) > 3 * 2
    # the training sampler reads it like any cache
    batch = CropSampler(shard, "train", 0.5, seed=0).batch(4)
    assert batch.shape == (4, 24000) and np.isfinite(batch).all()


def test_domains_get_about_the_same_seconds(cache: AudioCache) -> None:
    crops = choose_crops(cache, "train", 3e5, 1.0, seed=0)
    seconds: dict[str, float] = {}
    for i, _, q in crops:
        d = cache.index[i]["domain"]
        seconds[d] = seconds.get(d, 0) + q.size / 48000
    assert set(seconds) == {"music", "sound", "speech"}
    assert max(seconds.values()) - min(seconds.values()) <= 2.0  # two 1 s crops at most


def test_bad_settings_say_what_to_change(cache: AudioCache, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="megabytes > 0"):
        write_shard(cache, tmp_path / "a", megabytes=0)
    with pytest.raises(ValueError, match="raise --megabytes"):
        write_shard(cache, tmp_path / "b", megabytes=0.001, valid_crops=0)
    assert not (tmp_path / "b").exists() or not any((tmp_path / "b").iterdir())
    with pytest.raises(SystemExit, match="error: .*raise --megabytes"):
        main(["--cache", str(Path(cache.audio.filename).parent), "--out", str(tmp_path / "c"),
              "--megabytes", "0.001", "--valid-crops", "0"])


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_gpu_prepare_fits_the_transfer_and_restores_the_index(cache: AudioCache,
                                                              tmp_path: Path) -> None:
    """scripts/gpu_prepare.sh in a clone: the ONNX files leave the index (not the disk), what
    a device call would send fits in 64 MiB, and --restore leaves a clean checkout."""
    root = Path(__file__).resolve().parents[1]
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(root), str(clone)], check=True)
    shutil.copy(root / "scripts" / "gpu_prepare.sh", clone / "scripts" / "gpu_prepare.sh")
    shutil.copy(root / ".gitignore", clone / ".gitignore")
    subprocess.run(["git", "-C", str(clone), "commit", "-qam", "as in the working tree",
                    "--allow-empty", "--no-verify"], check=True,
                   env=dict(os.environ, GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t",
                            GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@t"))
    env = dict(os.environ, CACHE=str(Path(cache.audio.filename).parent), WHEELS="0")
    res = subprocess.run(["bash", "scripts/gpu_prepare.sh"], cwd=clone, env=env,
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr
    onnx = ["python/flowdec/models/flowdec-75/encoder.onnx",
            "python/flowdec/models/flowdec-75/decoder.onnx"]

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(clone), *args], check=True,
                              capture_output=True, text=True).stdout

    tracked = git("ls-files").split()
    assert not set(onnx) & set(tracked)
    assert all((clone / f).is_file() for f in onnx)
    sent = git("ls-files", "--cached", "--others", "--exclude-standard").split()
    size = sum((clone / f).stat().st_size for f in sent if (clone / f).is_file())
    size += sum(f.stat().st_size for f in (clone / ".gpu").rglob("*") if f.is_file())
    assert size <= 64 * 2**20
    assert len(AudioCache(clone / ".gpu" / "shard").index) > 0
    res = subprocess.run(["bash", "scripts/gpu_prepare.sh", "--restore"], cwd=clone,
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr
    assert git("status", "--porcelain") == ""
    assert set(onnx) <= set(git("ls-files").split())
    assert "gpu_prepare" not in (clone / ".git" / "info" / "exclude").read_text()
