"""MONAI's SwinUNETR on PyTorch CPU, timed the way `npm run bench:model` times the kit.

Run by bench/model.ts when MONAI imports (see ../shared/tools/monai-env.sh):
    python3 bench/monai/swinunetr.py --feature-size 12 --size 64 --threads 2 --repeat 1 [--no-train]
Prints one JSON line: forward and training-step seconds (each the median of `repeat` calls after
one warm-up call), 29 outputs, DiceLoss(sigmoid) + AdamW for the step, as in shared/baselines.md.
"""
import argparse
import json
import time

import torch
from monai.losses import DiceLoss
from monai.networks.nets import SwinUNETR


def median_seconds(run, repeat):
    run()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--feature-size", type=int, required=True)
    parser.add_argument("--size", type=int, required=True)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--no-train", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    size = args.size
    model = SwinUNETR(img_size=(size, size, size), in_channels=1, out_channels=29, feature_size=args.feature_size)
    x = torch.randn(1, 1, size, size, size)

    def forward():
        model.eval()
        with torch.no_grad():
            model(x)

    result = {"featureSize": args.feature_size, "size": size, "threads": args.threads, "torch": torch.__version__}
    result["forward"] = median_seconds(forward, args.repeat)
    if not args.no_train:
        target = (torch.randn(1, 29, size, size, size) > 1).float()
        loss_fn = DiceLoss(sigmoid=True)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

        def step():
            model.train()
            optimizer.zero_grad()
            loss = loss_fn(model(x), target)
            loss.backward()
            optimizer.step()

        result["step"] = median_seconds(step, args.repeat)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
