"""The osteoscreen X-ray network (src/model/net.rs) in PyTorch, for the latency comparison
in `cargo bench --bench analysis` and the training throughput in `cargo bench --bench
training`. Same layers, same parameter names, so it loads the candle weights; it checks its
outputs against candle's before timing anything.

Usage: xray_torch.py WEIGHTS.safetensors INPUT.f32 CANDLE_OUT.json THREADS RUNS
Prints one JSON line: medians per image for batch 1 and 8, peak RSS, max output diff.
Usage: xray_torch.py train THREADS BATCH RUNS
Prints one JSON line: median images/s of forward + backward + AdamW step on random input.
Usage: xray_torch.py serve DEVICE [THREADS]
The peer of `cargo bench --bench analysis` (cpu) and `--features cuda --bench gpu` (cuda): one JSON line per command read from
stdin, so that the bench can alternate candle and PyTorch rounds in one run:
  check WEIGHTS INPUT.f32 CANDLE_OUT.json  -> max |output difference| vs candle
  infer BATCH RUNS                         -> median ms per call (host input to host output)
  train BATCH RUNS                         -> median images/s of a training step
TF32 is off on CUDA: both sides compute in full f32.
"""

import json
import resource
import statistics
import sys
import time

import numpy as np
import torch
from safetensors.torch import load_file
from torch import nn


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout, eps=1e-5)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout, eps=1e-5)
        self.has_down = stride != 1 or cin != cout
        if self.has_down:
            self.down_conv = nn.Conv2d(cin, cout, 1, stride, 0, bias=False)
            self.down_bn = nn.BatchNorm2d(cout, eps=1e-5)

    def forward(self, x):
        y = torch.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        skip = self.down_bn(self.down_conv(x)) if self.has_down else x
        return torch.relu(y + skip)


class Stem(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 16, 7, 2, 3, bias=False)
        self.bn = nn.BatchNorm2d(16, eps=1e-5)


class XrayNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = Stem()
        widths, cin = [16, 32, 64, 128], 16
        for i, w in enumerate(widths):
            setattr(self, f"layer{i + 1}", BasicBlock(cin, w, 1 if i == 0 else 2))
            cin = w
        self.pool = nn.MaxPool2d(2, 2)
        self.class_head = nn.Linear(128, 3)
        self.t_head = nn.Linear(128, 1)

    def forward(self, x):
        y = self.pool(torch.relu(self.stem.bn(self.stem.conv(x))))
        for i in range(4):
            y = getattr(self, f"layer{i + 1}")(y)
        pooled = y.mean(dim=(2, 3))
        return torch.softmax(self.class_head(pooled), dim=1), self.t_head(pooled).squeeze(1)


def median_ms(net, x, runs):
    with torch.inference_mode():
        for _ in range(5):
            net(x)
        times = []
        for _ in range(runs):
            t = time.perf_counter()
            net(x)
            times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)


def train(threads, batch, runs):
    torch.manual_seed(1)
    torch.set_num_threads(threads)
    net = XrayNet().train()
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=1e-4)
    x = torch.randn(batch, 1, 256, 256)
    labels = torch.randint(0, 3, (batch,))
    t_true = torch.randn(batch)
    times = []
    for i in range(runs + 2):
        start = time.perf_counter()
        probs, t = net(x)
        loss = nn.functional.nll_loss(torch.log(probs + 1e-9), labels) + 0.25 * ((t - t_true) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if i >= 2:
            times.append(time.perf_counter() - start)
    print(json.dumps({
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "batch": batch,
        "images_per_s": batch / statistics.median(times),
    }))


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def serve(device_name, threads):
    device = torch.device(device_name)
    torch.set_num_threads(threads)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    net, x = None, None
    for line in sys.stdin:
        cmd = line.split()
        if not cmd:
            continue
        if cmd[0] == "check":
            net = XrayNet().eval()
            missing, unexpected = net.load_state_dict(load_file(cmd[1]), strict=False)
            missing = [m for m in missing if not m.endswith("num_batches_tracked")]
            assert not missing and not unexpected, (missing, unexpected)
            net = net.to(device)
            x = torch.from_numpy(np.fromfile(cmd[2], dtype="<f4").reshape(-1, 1, 256, 256))
            with torch.inference_mode():
                probs, t = net(x[:8].to(device))
            ref = json.load(open(cmd[3]))
            diff = max(
                float(np.abs(probs.cpu().numpy() - np.array(ref["probabilities"])).max()),
                float(np.abs(t.cpu().numpy() - np.array(ref["t_score"])).max()),
            )
            reply = {"torch": torch.__version__, "device": str(device),
                     "name": torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu",
                     "threads": torch.get_num_threads(),
                     "max_output_diff_vs_candle": diff}
        elif cmd[0] == "infer":
            batch, runs = int(cmd[1]), int(cmd[2])
            xb = x[:batch].clone()
            times = []
            with torch.inference_mode():
                for i in range(runs + 5):
                    start = time.perf_counter()
                    probs, t = net(xb.to(device))
                    probs.cpu(), t.cpu()
                    if i >= 5:
                        times.append((time.perf_counter() - start) * 1e3)
            reply = {"ms": statistics.median(times)}
        elif cmd[0] == "train":
            batch, runs = int(cmd[1]), int(cmd[2])
            torch.manual_seed(1)
            tnet = XrayNet().to(device).train()
            opt = torch.optim.AdamW(tnet.parameters(), lr=1e-3, weight_decay=1e-4)
            xt = torch.randn(batch, 1, 256, 256, device=device)
            labels = torch.randint(0, 3, (batch,), device=device)
            t_true = torch.randn(batch, device=device)
            times = []
            for i in range(runs + 2):
                start = time.perf_counter()
                probs, t = tnet(xt)
                loss = nn.functional.nll_loss(torch.log(probs + 1e-9), labels) \
                    + 0.25 * ((t - t_true) ** 2).mean()
                opt.zero_grad()
                loss.backward()
                opt.step()
                probs.argmax(1).cpu()
                if i >= 2:
                    times.append(time.perf_counter() - start)
            reply = {"images_per_s": batch / statistics.median(times)}
        else:
            reply = {"error": f"unknown command {cmd[0]}"}
        print(json.dumps(reply), flush=True)


def main():
    if sys.argv[1] == "serve":
        serve(sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else torch.get_num_threads())
        return
    if sys.argv[1] == "train":
        train(int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))
        return
    weights, inputs, candle_out, threads, runs = sys.argv[1:6]
    torch.set_num_threads(int(threads))
    net = XrayNet().eval()
    missing, unexpected = net.load_state_dict(load_file(weights), strict=False)
    missing = [m for m in missing if not m.endswith("num_batches_tracked")]
    assert not missing and not unexpected, (missing, unexpected)
    x8 = torch.from_numpy(np.fromfile(inputs, dtype="<f4").reshape(8, 1, 256, 256))
    with torch.inference_mode():
        probs, t = net(x8)
    ref = json.load(open(candle_out))
    diff = max(
        float(np.abs(probs.numpy() - np.array(ref["probabilities"])).max()),
        float(np.abs(t.numpy() - np.array(ref["t_score"])).max()),
    )
    b1 = median_ms(net, x8[:1], int(runs))
    b8 = median_ms(net, x8, int(runs)) / 8
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "batch1_ms": b1,
        "batch8_ms_per_image": b8,
        "peak_rss_mb": peak_mb,
        "max_output_diff_vs_candle": diff,
    }))


if __name__ == "__main__":
    main()
