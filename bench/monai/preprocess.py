"""MONAI's preprocessing chain on one image + label, timed in-process the way shared/baselines.md
measured it (median of `repeat` runs after one warm-up run):
    LoadImaged, EnsureChannelFirstd, Orientationd(RAS), Spacingd(1.5 mm, bilinear / nearest),
    ScaleIntensityRanged(-175..250 -> 0..1, clip), CropForegroundd(image)
Run by bench/preprocess.ts when MONAI imports:
    python3 bench/monai/preprocess.py --image ct.nii.gz --label seg.nii.gz --threads 2 --repeat 3
Prints one JSON line: seconds (median), output shape.
"""
import argparse
import json
import time

import torch
from monai.transforms import (
    Compose,
    CropForegroundd,
    EnsureChannelFirstd,
    LoadImaged,
    Orientationd,
    ScaleIntensityRanged,
    Spacingd,
)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--image", required=True)
    parser.add_argument("--label", required=True)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    keys = ["image", "label"]
    chain = Compose([
        LoadImaged(keys=keys),
        EnsureChannelFirstd(keys=keys),
        Orientationd(keys=keys, axcodes="RAS"),
        Spacingd(keys=keys, pixdim=(1.5, 1.5, 1.5), mode=("bilinear", "nearest")),
        ScaleIntensityRanged(keys=["image"], a_min=-175, a_max=250, b_min=0.0, b_max=1.0, clip=True),
        CropForegroundd(keys=keys, source_key="image"),
    ])
    case = {"image": args.image, "label": args.label}
    chain(case)
    times = []
    shape = None
    for _ in range(args.repeat):
        start = time.perf_counter()
        out = chain(case)
        times.append(time.perf_counter() - start)
        shape = list(out["image"].shape[1:])
    print(json.dumps({"seconds": sorted(times)[len(times) // 2], "shape": shape, "runs": times}))


if __name__ == "__main__":
    main()
