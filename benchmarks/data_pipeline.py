"""Does data ever bound a trial? The image cache's build rate, its read rate against ResNet-50
training on the same batches, and a trial's memory against the cache's size, measured in one run.

1. Writes generated photos in the AI-HUB layout at the real size (1280x960 JPEGs, about 1.2 MP).
2. Indexes them and builds the decoded cache at the paper's 256 px: reported in images/s.
3. Reads training batches from the cache (memory-mapped, with the default flip augmentation) and
   trains ResNet-50 on the same batches: the ratio of the two per-batch times must be >= 5.
4. Reads the whole cache once and reports how much anonymous (non-file-backed) memory the process
   gained: it should stay flat however large the cache is, the pages being the page cache's.

    .venv/bin/python benchmarks/data_pipeline.py [--per-class 240] [--valid-per-class 60] [--batch 16]

The paper's full set is --per-class 4160 --valid-per-class 720 (27,120 images over its six classes,
plus the unused seventh). Writes benchmarks/results/data_pipeline.{json,md}.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader

from results_file import publish  # benchmarks/, the script's own folder

TARGET = 5.0


def anonymous_memory_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-class", type=int, default=240)
    parser.add_argument("--valid-per-class", type=int, default=60)
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=3)
    args = parser.parse_args()

    from ablation.data import ArrayDataset, aihub_layout, augmentation, read_index
    from ablation.data.pipeline import materialize
    from ablation.models import build_model
    from ablation.core import DataSpec, ModelSpec

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        os.environ["ABLATE_CACHE_DIR"] = str(tmp / "cache")
        began = time.perf_counter()
        aihub_layout.write(tmp / "aihub", per_class=args.per_class, valid_per_class=args.valid_per_class, seed=0)
        written = time.perf_counter() - began
        spec = DataSpec(dataset="aihub", root=tmp / "aihub", image_size=args.image_size)
        began = time.perf_counter()
        index = read_index(spec)
        indexed = time.perf_counter() - began
        items = index.items
        began = time.perf_counter()
        cached = materialize(items, args.image_size)
        built = time.perf_counter() - began
        photos = sum(1 for _ in (tmp / "aihub").rglob("*.jpg"))
        cache_mb = cached.images.nbytes / 2**20

        dataset = ArrayDataset(cached.images, cached.labels, augment=augmentation(spec.augment, args.image_size))
        loader = DataLoader(dataset, batch_size=args.batch, shuffle=True, num_workers=0)
        before = anonymous_memory_mb()
        began = time.perf_counter()
        batches, early = [], None
        for i, batch in enumerate(loader):  # one whole pass: every page of the cache is read
            if i < args.steps:
                batches.append(batch)
            if i == len(loader) // 10:
                early = anonymous_memory_mb() - before
        read_all = time.perf_counter() - began
        read_per_batch = read_all / len(loader)
        # What a tenth of the pass allocated (batches, allocator pools) against what the whole pass did:
        # equal if nothing grows with the number of images read.
        grown = anonymous_memory_mb() - before

        torch.manual_seed(0)
        model = build_model(ModelSpec(arch="resnet50", attention="identity_cbam"), num_classes=len(index.classes))
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
        model.train()
        times = []
        for images, labels in [batches[0], *batches]:  # the first step warms up
            start = time.perf_counter()
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(images), labels).backward()
            optimizer.step()
            times.append(time.perf_counter() - start)
        train_per_batch = statistics.median(times[1:])

    ratio = train_per_batch / read_per_batch
    result = {
        "photos": photos, "photo_size": [1280, 960], "items": len(items), "image_size": args.image_size,
        "write_images_per_s": photos / written, "index_seconds": indexed,
        "cache_images_per_s": len(items) / built, "cache_mb": cache_mb, "workers": min(os.cpu_count() or 1, 8),
        "batch": args.batch, "read_seconds_per_batch": read_per_batch,
        "resnet50_identity_cbam_train_seconds_per_batch": train_per_batch, "train_over_read": ratio,
        "target": TARGET, "meets_target": ratio >= TARGET,
        "anonymous_memory_mb_after_a_tenth": early, "anonymous_memory_mb_after_all": grown,
    }
    lines = [
        f"{photos:,} generated AI-HUB photos (1280x960 JPEG) written at {photos / written:.0f}/s, "
        f"indexed in {indexed:.2f} s",
        f"cache build at {args.image_size} px: {len(items) / built:.0f} images/s "
        f"({result['workers']} processes, {cache_mb:.0f} MB cache)",
        f"read from the cache: {read_per_batch * 1000:.1f} ms per batch of {args.batch} (flip augmentation)",
        f"ResNet-50 + Identity-CBAM training: {train_per_batch * 1000:.0f} ms per batch of {args.batch}",
        f"training / reading = {ratio:.0f}x (target >= {TARGET:.0f}x: {'met' if ratio >= TARGET else 'NOT met'})",
        f"anonymous memory gained reading the {cache_mb:.0f} MB cache: {early:.1f} MB after a tenth of it, "
        f"{grown:.1f} MB after all of it (the rest is the page cache's, shared by every trial)",
    ]
    publish("data_pipeline", result, lines)


if __name__ == "__main__":
    main()
