"""Profile the PyTorch cGAN training step on the CPU and time the variants that might speed it up.

One process, the report's architecture (Figure 4) at 128 px, width 1, random data, the project's step
(``torch_gan.train_step``). It prints:

1. the top ops by self CPU time (torch.profiler, one step after warm-up) and their shares grouped
   (convolution forward, convolution backward, BatchNorm, optimizer, allocation, ...);
2. each convolution layer timed alone at the step's shapes: forward and backward GFLOP/s against this
   machine's fp32 matmul rate (``benchmarks/_timing.fp32_peak_gflops``), to see which kernels hold the step back;
3. the plain step against each variant, interleaved round by round so that a change in machine load hits
   all alike, each variant step paired with a plain step just before it (speed-up = median of the pair
   ratios), after one warm-up step each: channels_last (models + inputs), Adam
   foreach / fused, 1 vs 2 threads, oneDNN (mkldnn) off, bf16 autocast, flush-denormal, and a malloc
   setting that keeps large blocks instead of returning them to the kernel after every step. Every case
   starts from the same weights, data and random stream, so the losses of its first step show whether
   it changes the numbers (bf16 does). A variant 5x slower than the plain step is timed once;
4. the best combination of the variants that helped, against the plain step, as a fraction of the peak.

    python -m benchmarks.investigations.profile_torch_step [--batch 32] [--repeats 3] [--quick] [--out FILE]

(from the repository root, with the package installed: ``pip install -e .``)

Run it without OMP_NUM_THREADS=1: the thread count is one of the variants. Note ``uptime`` beside it.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import ctypes
import json
import os
import statistics
import sys
import time
from pathlib import Path

from benchmarks._timing import fp32_peak_gflops, machine, median_time

# name -> options; "plain" is the project's step as torch_gan.train runs it on a CPU.
VARIANTS = {
    "plain": {},
    "channels_last": {"channels_last": True},
    "adam_foreach": {"adam": "foreach"},
    "adam_fused": {"adam": "fused"},
    "threads_other": {"threads": "other"},
    "no_mkldnn": {"mkldnn": False},
    "bf16_autocast": {"bf16": True},
    "flush_denormal": {"flush_denormal": True},
    "malloc_keep": {"malloc_keep": True},
}
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc mallopt parameters


def load_average() -> str:
    """The 1, 5, 15 minute load averages as text ('n/a' where the OS has none)."""
    try:
        return ", ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


@contextlib.contextmanager
def _malloc_keep(enabled: bool):
    """glibc: serve blocks up to 1 GiB from the heap and keep freed memory (no mmap/munmap + page faults per step)."""
    if not enabled:
        yield
        return
    libc = ctypes.CDLL("libc.so.6")
    libc.mallopt(M_MMAP_THRESHOLD, 1 << 30)
    libc.mallopt(M_TRIM_THRESHOLD, (1 << 31) - 1)
    try:
        yield
    finally:  # glibc's defaults (the dynamic threshold starts again from 128 KiB)
        libc.mallopt(M_MMAP_THRESHOLD, 128 * 1024)
        libc.mallopt(M_TRIM_THRESHOLD, 128 * 1024)


@contextlib.contextmanager
def _threads(n: int | None):
    import torch

    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextlib.contextmanager
def _flush_denormal(enabled: bool):
    import torch

    if enabled:
        torch.set_flush_denormal(True)
    try:
        yield
    finally:
        if enabled:
            torch.set_flush_denormal(False)


class Case:
    """One variant: its own models and optimizers (same initial weights as every case), data and random stream."""

    def __init__(self, name: str, opts: dict, size: int, width: float, batch: int, threads: int, seed: int = 0):
        import torch

        from covidgan_utils import torch_gan

        self.name, self.opts = name, dict(opts)
        torch.manual_seed(seed)
        self.g = torch_gan.build_generator(size, width=width).train()
        self.d = torch_gan.build_discriminator(size, width=width).train()
        fmt = torch.channels_last if opts.get("channels_last") else torch.contiguous_format
        self.g.to(memory_format=fmt)
        self.d.to(memory_format=fmt)
        adam = {"foreach": {"foreach": True}, "fused": {"fused": True}}.get(opts.get("adam"), {})
        self.g_opt = torch.optim.Adam(self.g.parameters(), lr=2e-4, betas=(0.5, 0.999), **adam)
        self.d_opt = torch.optim.Adam(self.d.parameters(), lr=2e-4, betas=(0.5, 0.999), **adam)
        gen = torch.Generator().manual_seed(seed + 1)
        ch = self.g.build_kwargs["channels"]
        self.real = torch.rand(batch, ch, size, size, generator=gen).contiguous(memory_format=fmt)
        self.y = torch.arange(batch) % self.g.build_kwargs["n_classes"]
        self.z = torch.randn(batch, self.g.build_kwargs["latent_dim"], generator=gen)
        self.rng = torch.get_rng_state()  # dropout's random stream, the same for every case
        self.threads = opts["threads"] if isinstance(opts.get("threads"), int) else threads
        self.times: list[float] = []
        self.pairs: list[float] = []  # plain / this case, from adjacent steps
        self.losses: list[float] | None = None
        self.first_losses: list[float] | None = None  # of the first step, from the state every case shares
        self.flops = torch_gan.train_flops_per_image(self.g, self.d) * batch

    def context(self) -> contextlib.ExitStack:
        import torch

        stack = contextlib.ExitStack()
        stack.enter_context(_threads(self.threads))
        stack.enter_context(torch.backends.mkldnn.flags(enabled=self.opts.get("mkldnn", True)))
        stack.enter_context(_flush_denormal(self.opts.get("flush_denormal", False)))
        stack.enter_context(_malloc_keep(self.opts.get("malloc_keep", False)))
        return stack

    def step(self, timed: bool = True) -> float:
        import torch

        from covidgan_utils import torch_gan

        autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=bool(self.opts.get("bf16")))
        with self.context(), torch.random.fork_rng(devices=[]):
            torch.set_rng_state(self.rng)
            t0 = time.perf_counter()
            with autocast:
                out = torch_gan.train_step(self.real, self.y, self.z, self.g, self.d, self.g_opt, self.d_opt)
            self.losses = out.tolist()  # the host sync that ends the step
            seconds = time.perf_counter() - t0
            if self.first_losses is None:
                self.first_losses = self.losses
            self.rng = torch.get_rng_state()
        if timed:
            self.times.append(seconds)
        return seconds

    def summary(self, plain: Case | None, peak: float) -> dict:
        med = statistics.median(self.times)
        row = {
            "variant": self.name,
            "step_s_median": round(med, 3),
            "step_s": [round(t, 3) for t in self.times],
            "gflops": round(self.flops / med / 1e9, 2),
            "fraction_of_peak": round(self.flops / med / 1e9 / peak, 3),
            "threads": self.threads,
            "first_step_losses": [round(v, 6) for v in self.first_losses],
        }
        if plain is not None:
            row["speedup_vs_plain"] = round(statistics.median(self.pairs), 3)
            row["pair_ratios"] = [round(x, 3) for x in self.pairs]
            diff = max(abs(a - b) for a, b in zip(self.first_losses, plain.first_losses))
            row["max_loss_diff_vs_plain"] = float(f"{diff:.2g}")  # first step: same weights, data, random stream
        return row


def interleave(cases: list[Case], repeats: int) -> None:
    """One untimed warm-up step per case, then ``repeats`` rounds of pairs: a plain step, then the variant's step.

    ``cases[0]`` is the plain case. Each variant's speed-up is the median over rounds of plain / variant
    from adjacent steps, so a machine load that changes within a round hits both sides of a pair alike.
    A variant 5x slower than the plain step (bf16 without bf16 hardware) is timed once: that settles it.
    """
    plain = cases[0]
    warm = {case.name: case.step(timed=False) for case in cases}
    for r in range(repeats):
        for case in cases[1:]:
            if r and warm[case.name] > 5 * warm[plain.name]:
                continue
            t_plain = plain.step()
            case.pairs.append(t_plain / case.step())
        if len(cases) == 1:
            plain.step()
        print(
            f"  round {r + 1}/{repeats}: "
            + ", ".join(f"{c.name} {c.times[-1]:.2f}s" for c in cases[1:])
            + f"; plain {statistics.median(plain.times[-max(len(cases) - 1, 1) :]):.2f}s",
            flush=True,
        )


# ----------------------------------------------------------------------------------------- profile

GROUPS = [  # (group, substrings of aten op names), first match wins
    ("convolution backward", ("convolution_backward", "conv_transpose2d_backward", "slow_conv2d_backward")),
    ("convolution forward", ("convolution", "conv2d", "conv_transpose", "mkldnn_conv")),
    ("batch norm", ("batch_norm",)),
    ("optimizer (Adam)", ("_foreach", "_fused_adam", "addcdiv", "addcmul", "lerp", "sqrt")),
    ("linear / matmul", ("addmm", "::mm", "::bmm", "matmul", "linear")),
    ("allocation / copies", ("empty", "zero_", "zeros", "ones", "fill_", "copy_", "clone", "contiguous", "to_dense")),
]


def profile_step(case: Case, row_limit: int = 15) -> dict:
    """torch.profiler over one step of ``case``: the op table (self CPU time) and the grouped shares."""
    from torch.profiler import ProfilerActivity, profile

    case.step(timed=False)  # warm
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        case.step(timed=False)
    averages = prof.key_averages()
    table = averages.table(sort_by="self_cpu_time_total", row_limit=row_limit, max_name_column_width=40)
    total = sum(e.self_cpu_time_total for e in averages)
    groups: dict[str, float] = {}
    top = []
    for e in sorted(averages, key=lambda e: -e.self_cpu_time_total):
        name = e.key
        group = next((g for g, keys in GROUPS if any(k in name for k in keys)), "other")
        groups[group] = groups.get(group, 0.0) + e.self_cpu_time_total
        if len(top) < row_limit:
            top.append({"op": name, "self_ms": round(e.self_cpu_time_total / 1e3, 1), "calls": e.count})
    shares = {g: round(t / total, 3) for g, t in sorted(groups.items(), key=lambda kv: -kv[1])}
    return {"table": table, "top_ops": top, "group_shares": shares, "self_cpu_total_s": round(total / 1e6, 3)}


def layer_rates(size: int, width: float, batch: int, peak: float, repeats: int = 2) -> list[dict]:
    """Every convolution of both models alone at the step's shapes: forward and backward (input + weight) GFLOP/s."""
    import torch
    from torch import nn

    from covidgan_utils import torch_gan

    torch.manual_seed(0)
    g = torch_gan.build_generator(size, width=width).train()
    d = torch_gan.build_discriminator(size, width=width).train()
    shapes: list[tuple[str, nn.Module, tuple]] = []

    def hook(name):
        return lambda m, inp, out: shapes.append((name, m, tuple(inp[0].shape)))

    handles = []
    for prefix, model in (("G", g), ("D", d)):
        for name, m in model.named_modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                handles.append(m.register_forward_hook(hook(f"{prefix}.{name}")))
    with torch.no_grad():
        y = torch.arange(batch) % 2
        d(g(torch.randn(batch, g.latent_dim), y), y)
    for h in handles:
        h.remove()
    rows = []
    for name, module, shape in shapes:
        m = copy.deepcopy(module)
        x = torch.randn(shape, requires_grad=True)
        with torch.no_grad():
            out_shape = m(x).shape
        k = m.kernel_size[0] * m.kernel_size[1]
        if isinstance(m, nn.ConvTranspose2d):
            macs = shape[0] * shape[2] * shape[3] * k * m.in_channels * m.out_channels
        else:
            macs = out_shape[0] * out_shape[2] * out_shape[3] * k * m.in_channels * m.out_channels
        grad = torch.randn(out_shape)

        def fwd(m=m, x=x):
            with torch.no_grad():
                m(x)

        def bwd(m=m, x=x, grad=grad):
            m(x).backward(grad)

        f_s = median_time(fwd, repeats)
        fb_s = median_time(bwd, repeats)
        b_s = max(fb_s - f_s, 1e-9)
        rows.append(
            {
                "layer": name,
                "type": type(m).__name__,
                "input": "x".join(map(str, shape)),
                "output": "x".join(map(str, out_shape)),
                "gflop_forward": round(2 * macs / 1e9, 2),
                "forward_s": float(f"{f_s:.3g}"),  # significant digits: a tiny layer is not rounded to 0
                "backward_s": float(f"{b_s:.3g}"),
                "forward_gflops": round(2 * macs / f_s / 1e9, 1),
                "backward_gflops": round(4 * macs / b_s / 1e9, 1),  # input and weight gradients: 2 x the forward
                "forward_fraction_of_peak": round(2 * macs / f_s / 1e9 / peak, 3),
                "backward_fraction_of_peak": round(4 * macs / b_s / 1e9 / peak, 3),
            }
        )
    return rows


# --------------------------------------------------------------------------------------------- main


def run(
    batch: int = 32,
    repeats: int = 3,
    size: int = 128,
    width: float = 1.0,
    variants=None,
    layers: bool = True,
    peak_gflops: float | None = None,
) -> dict:
    """Profile, per-layer rates, variants vs plain, best combination vs plain; JSON-ready.

    The fraction of peak uses ``peak_gflops`` when given (e.g. measured on the idle machine), else the best of
    the matmul rates measured during the run (load only ever lowers them).
    """
    import torch

    threads = torch.get_num_threads()
    peak = peak_gflops or fp32_peak_gflops(1024)
    load_start = load_average()
    print(
        f"torch {torch.__version__}, {threads} threads, {os.cpu_count()} cpus, "
        f"fp32 matmul peak {peak:.1f} GFLOP/s; load average {load_start}",
        flush=True,
    )
    names = list(variants or VARIANTS)
    if "plain" not in names:
        names.insert(0, "plain")
    opts = {n: dict(VARIANTS[n]) for n in names}
    if "threads_other" in opts:
        opts["threads_other"]["threads"] = 1 if threads > 1 else 2
        if opts["threads_other"]["threads"] > (os.cpu_count() or 1):
            del opts["threads_other"]

    plain = Case("plain", {}, size, width, batch, threads)
    print(
        f"\n== profile of the plain step: {size} px, width {width}, batch {batch}, "
        f"{plain.flops / 1e9:.1f} GFLOP per step ==",
        flush=True,
    )
    prof = profile_step(plain)
    print(prof["table"])
    print("self CPU time by group: " + ", ".join(f"{g} {100 * s:.1f}%" for g, s in prof["group_shares"].items()))

    rates = []
    if layers:
        print(f"\n== every convolution alone at batch {batch} ({threads} threads) ==", flush=True)
        rates = layer_rates(size, width, batch, peak)
        for r in rates:
            print(
                f"  {r['layer']:16s} {r['type']:16s} in {r['input']:>16s}  fwd {r['forward_s']:7.3f}s "
                f"{r['forward_gflops']:6.1f} GFLOP/s ({100 * r['forward_fraction_of_peak']:3.0f}%)  bwd "
                f"{r['backward_s']:7.3f}s {r['backward_gflops']:6.1f} GFLOP/s ({100 * r['backward_fraction_of_peak']:3.0f}%)"
            )

    print(f"\n== variants, interleaved: warm-up + {repeats} rounds; load average {load_average()} ==", flush=True)
    plain = Case("plain", {}, size, width, batch, threads)
    cases = [plain] + [Case(n, opts[n], size, width, batch, threads) for n in names if n != "plain" and n in opts]
    interleave(cases, repeats)
    if not peak_gflops:  # the best of the measurements: load only ever lowers it
        peak = max(peak, fp32_peak_gflops(1024))
    rows = [c.summary(None if c is plain else plain, peak) for c in cases]
    for r in rows:
        print(
            f"  {r['variant']:15s} {r['step_s_median']:7.2f} s/step  {r['gflops']:6.1f} GFLOP/s "
            f"({100 * r['fraction_of_peak']:.0f}% of peak)  x{r.get('speedup_vs_plain', 1.0):.2f}  "
            f"first-step max |loss diff| {r.get('max_loss_diff_vs_plain', 0)}"
        )

    # The best combination: every variant that was >= 3% faster and keeps fp32 arithmetic (bf16 is reported apart).
    helped = [
        r["variant"]
        for r in rows
        if r["variant"] not in ("plain", "bf16_autocast") and r.get("speedup_vs_plain", 0) >= 1.03
    ]
    best = None
    if helped:
        fastest: dict[str, tuple[float, str]] = {}  # per option (adam: foreach or fused), the faster variant
        for r in rows:
            if r["variant"] in helped:
                for key in opts[r["variant"]]:
                    if key not in fastest or r["speedup_vs_plain"] > fastest[key][0]:
                        fastest[key] = (r["speedup_vs_plain"], r["variant"])
        helped = [n for n in helped if any(v == n for _, v in fastest.values())]
        combo = {}
        for n in helped:
            combo.update(opts[n])
        print(f"\n== best combination {'+'.join(helped)} vs plain; load average {load_average()} ==", flush=True)
        plain2 = Case("plain", {}, size, width, batch, threads)
        both = Case("+".join(helped), combo, size, width, batch, threads)
        interleave([plain2, both], repeats)
        if not peak_gflops:
            peak = max(peak, fp32_peak_gflops(1024))
        best = {"plain": plain2.summary(None, peak), "best": both.summary(plain2, peak), "variants": helped}
        print(
            f"  plain {best['plain']['fraction_of_peak']:.0%} of peak -> best {best['best']['fraction_of_peak']:.0%} "
            f"(x{best['best']['speedup_vs_plain']:.2f})"
        )
    else:
        print("\nno fp32 variant was 3% faster than the plain step: the plain step is the best combination")
    return {
        "image_size": size,
        "width": width,
        "batch_size": batch,
        "gflop_per_step": round(plain.flops / 1e9, 2),
        "peak_gflops": round(peak, 1),
        "threads": threads,
        "machine": machine(),
        "torch": str(torch.__version__),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "load_average_start": load_start,
        "load_average_end": load_average(),
        "profile": {k: v for k, v in prof.items() if k != "table"},
        "layers": rates,
        "variants": rows,
        "best_combination": best,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32, help="batch size (the paper profile uses 64)")
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds after the warm-up")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--width", type=float, default=1.0)
    parser.add_argument("--variants", default=None, help="comma list of " + ",".join(VARIANTS))
    parser.add_argument("--no-layers", action="store_true", help="skip the per-layer convolution rates")
    parser.add_argument("--quick", action="store_true", help="batch 8, 2 rounds (a code-path check, not a measurement)")
    parser.add_argument("--peak", type=float, default=None, help="fp32 GFLOP/s to use as the peak (default: measured)")
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    args = parser.parse_args(argv)
    if args.quick:
        args.batch, args.repeats = 8, 2
    out = run(
        args.batch,
        args.repeats,
        args.size,
        args.width,
        args.variants.split(",") if args.variants else None,
        layers=not args.no_layers,
        peak_gflops=args.peak,
    )
    if args.out:
        args.out.write_text(json.dumps(out, indent=2) + "\n")
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
