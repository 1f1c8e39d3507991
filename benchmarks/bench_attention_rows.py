"""Which Numba attention kernel should serve a short sequence: the short-row kernel or the tiled one.

``kernels/numba/attention.py`` sends a call to ``attention_rows.py`` when
``attention_rows.serves(Nq, Nk, causal)``, else to its tiled FlashAttention kernel.
This times both kernels, forced, on the lecture models' shapes (4 heads of 16
dimensions, q, k, v as the head-split views ``MultiHeadAttention`` passes, so
the tiled kernel's copies are counted), forward and forward + backward, with
and without a causal mask, at sequence lengths from 9 to 129, and (unmasked)
with a few queries over many keys, as ViLBERT's region queries read the words,
beside torch's
``scaled_dot_product_attention`` on the same arrays; each result is validated
against the reference first. One thread; CPU time (``time.process_time``), so a
busy host inflates the figures less than wall time would; medians of 15 calls.

    python benchmarks/bench_attention_rows.py [--out benchmarks/results/attention_rows_cpu.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "attention_rows_cpu.json"
LENGTHS = (9, 13, 17, 33, 49, 65, 81, 97, 129)
CROSS = ((4, 20), (8, 20), (12, 20), (16, 20), (4, 65), (8, 65), (16, 65))  # (queries, keys)
HEADS, DIM = 4, 16
TOKENS = 64 * 65  # batch * N kept near ViT's benchmark batch (64 images of 65 tokens)


def _cpu_ms(fn, repeats=15):
    fn()
    times = []
    for _ in range(repeats):
        t = time.process_time()
        fn()
        times.append(time.process_time() - t)
    return 1e3 * statistics.median(times)


def _measure(causal, n, rng, nq=None):
    """One row of the table: both kernels forced, and torch, on ``nq`` (default ``n``) queries over ``n`` keys."""
    import numpy as np
    import torch
    import torch.nn.functional as TF
    from minivl.kernels import reference as ref
    from minivl.kernels.numba import attention, attention_rows

    nq = n if nq is None else nq
    batch = max(1, TOKENS // n)
    k, v = (rng.standard_normal((batch, n, HEADS, DIM)).astype(np.float32).transpose(0, 2, 1, 3)
            for _ in range(2))  # (B, H, N, D) views of (B, N, H, D) arrays
    q, do = (rng.standard_normal((batch, nq, HEADS, DIM)).astype(np.float32).transpose(0, 2, 1, 3)
             for _ in range(2))
    o_want, _ = ref.attention_forward(q, k, v, None, causal)
    row = {"causal": causal, "n": n, "queries": nq, "batch": batch, "heads": HEADS, "head_dim": DIM,
           "served_by": "rows" if attention_rows.serves(nq, n, causal) else "tiled"}
    for name in ("rows", "tiled"):
        with attention_rows.forced_kernel(name):
            o, lse = attention.attention_forward(q, k, v, causal=causal)
            np.testing.assert_allclose(o, o_want, rtol=1e-4, atol=1e-5)  # validate before timing
            forward = _cpu_ms(lambda: attention.attention_forward(q, k, v, causal=causal))
            backward = _cpu_ms(lambda o=o, lse=lse: attention.attention_backward(q, k, v, o, lse, do, causal=causal))
        row[f"{name}_forward_ms"], row[f"{name}_backward_ms"] = forward, backward
        row[f"{name}_ms"] = forward + backward
    tq, tk, tv = (torch.tensor(np.ascontiguousarray(x), requires_grad=True) for x in (q, k, v))
    tdo = torch.tensor(np.ascontiguousarray(do))

    def torch_forward():
        return TF.scaled_dot_product_attention(tq, tk, tv, is_causal=causal)

    row["torch_forward_ms"] = _cpu_ms(torch_forward)
    row["torch_ms"] = _cpu_ms(lambda: torch_forward().backward(tdo))
    row["faster"] = "rows" if row["rows_ms"] < row["tiled_ms"] else "tiled"
    return row


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    from minivl.threads import limit_threads

    limit_threads(1, 1)
    import numpy as np
    import torch

    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    rows = []
    cases = [(c, n, n) for c in (True, False) for n in LENGTHS] + [(False, nq, nk) for nq, nk in CROSS]
    for causal, nq, n in cases:
        row = _measure(causal, n, rng, nq)
        rows.append(row)
        print(f"{'causal' if causal else 'full  '} Nq={nq:4d} Nk={n:4d}  rows {row['rows_ms']:6.2f}  tiled "
              f"{row['tiled_ms']:6.2f}  torch {row['torch_ms']:6.2f} ms (fwd+bwd)  served by "
              f"{row['served_by']}, faster: {row['faster']}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "command": "python benchmarks/bench_attention_rows.py", "machine": f"{os.cpu_count()} cores",
        "torch": torch.__version__, "threads": 1, "clock": "process_time (CPU time)",
        "load_average_after": os.getloadavg(), "rows": rows}, indent=2) + "\n")
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
