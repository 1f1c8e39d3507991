"""``minivl dalle train-vae | train-prior | generate``: the command line over
``minivl.recipes.dvae`` (stage 1) and ``minivl.recipes.dalle`` (stage 2,
sampling and CLIP reranking; lecture S19-S28)."""

from __future__ import annotations

from pathlib import Path

from minivl.commands._options import write_results


def _dvae(path, folder, progress):
    """The dVAE named by ``--dvae``, else ``folder/dvae.safetensors`` (from train-vae), else the cached default."""
    from minivl.recipes.dvae import default_dvae, load_dvae

    beside = Path(folder) / "dvae.safetensors"
    if path is None and beside.is_file():
        path = beside
    return load_dvae(path) if path else default_dvae(progress=progress)


def _train_vae(args):
    from minivl.checkpoint import save_checkpoint
    from minivl.recipes.dvae import train_dvae

    r = train_dvae(steps=args.steps, seed=args.seed, progress=not args.quiet)
    m = r["metrics"]
    path = Path(args.out) / "dvae.safetensors"
    save_checkpoint(r["model"], path, **{k: v for k, v in m.items() if isinstance(v, (int, float, str))})
    print(f"dVAE: K={m['vocab_size']}, grid {m['grid']}, {m['steps']} steps in {m['train_seconds']:.0f} s; "
          f"held-out PSNR {m['psnr_test']:.1f} dB, code perplexity {m['perplexity']:.1f}")
    print(f"checkpoint: {path}")
    return 0


def _train_prior(args):
    from minivl.recipes.dalle import CHECKPOINT, train_prior

    r = train_prior(dvae=_dvae(args.dvae, args.out, not args.quiet), steps=args.steps, batch_size=args.batch_size,
                    lr=args.lr, dim=args.dim, depth=args.depth, heads=args.heads, attention=args.attention,
                    image_positions=args.image_positions, n_train=args.n_train, seed=args.seed,
                    caption_dropout=args.caption_dropout,
                    progress=not args.quiet, out=args.out)
    m = r["metrics"]
    print(f"DALL-E prior ({m['attention']} attention, {m['image_positions']} positions): "
          f"{m['parameters']:,} parameters, {m['steps']} steps of {m['batch_size']} in {m['train_seconds']:.0f} s")
    print(f"held-out scenes: text loss {m['held_out_scenes_text_loss']:.3f}, image loss "
          f"{m['held_out_scenes_image_loss']:.3f} nats/token")
    if args.results:
        print(f"results: {write_results(args.results, 'dalle train-prior', vars(args), m)}")
    print(f"checkpoint: {Path(args.out) / CHECKPOINT}")
    return 0


def _generate(args):
    from minivl.recipes.dalle import CHECKPOINT, GUIDANCE, check_pair, decode, generate_codes, load_prior, rerank
    from minivl.viz.images import image_grid

    if args.n < 1:
        raise SystemExit("--n must be >= 1")
    if args.guidance is None:
        args.guidance = GUIDANCE
    path = Path(args.checkpoint)
    try:
        model, bpe, words = load_prior(path / CHECKPOINT if path.is_dir() else path)
        dvae = _dvae(args.dvae, path if path.is_dir() else path.parent, not args.quiet)
        check_pair(model, dvae)
        codes = generate_codes(model, bpe, [args.caption], args.n, args.temperature, args.top_k, args.seed,
                               progress=not args.quiet, words=words, guidance=args.guidance)
    except ValueError as e:
        raise SystemExit(f"error: {e}") from None
    images = decode(dvae, codes)  # (1, n, S, S, 3)
    scores = None
    if args.rerank:
        from minivl.recipes.dalle import default_reranker

        order, scores = rerank(*default_reranker(progress=not args.quiet), images, [args.caption])
        images = images[:, order[0]]
        print("CLIP scores, best first: " + " ".join(f"{s:.2f}" for s in scores[0]))
    titles = [f"CLIP {s:.1f}" for s in scores[0]] if scores is not None else None
    fig = image_grid(images[0], captions=titles, ncols=min(8, args.n))
    fig.suptitle(args.caption, fontsize=9)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    print(f"{args.n} samples of {args.caption!r}" + (" (CLIP-reranked, best first)" if args.rerank else "")
          + f": {out}")
    return 0


def register(subparsers):
    p = subparsers.add_parser("dalle", help="DALL-E: dVAE, autoregressive prior, sampling, reranking (S19-S28)")
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    v = sub.add_parser("train-vae", help="train the discrete VAE (stage 1)")
    v.add_argument("--steps", type=int, default=None, help="default: the recipe's")
    v.add_argument("--seed", type=int, default=0)
    v.add_argument("--out", default="runs/dalle", help="folder for dvae.safetensors")
    v.add_argument("--quiet", action="store_true")
    v.set_defaults(func=_train_vae)
    t = sub.add_parser("train-prior", help="train the transformer over caption and image tokens (stage 2)")
    t.add_argument("--dvae", default=None,
                   help="a dVAE checkpoint (default: OUT/dvae.safetensors from train-vae, else the cached default)")
    t.add_argument("--steps", type=int, default=None)
    t.add_argument("--batch-size", type=int, default=None)
    t.add_argument("--lr", type=float, default=None)
    t.add_argument("--dim", type=int, default=None)
    t.add_argument("--depth", type=int, default=None)
    t.add_argument("--heads", type=int, default=None)
    t.add_argument("--attention", choices=["full", "row", "column", "conv", "sparse"], default=None)
    t.add_argument("--image-positions", choices=["flat", "axial"], default=None,
                   help="image tokens' position embeddings: one 1-D table, or row + column tables")
    t.add_argument("--n-train", type=int, default=None)
    t.add_argument("--caption-dropout", type=float, default=None,
                   help="probability that a training caption is replaced by the empty caption, for "
                   "classifier-free guidance (a later addition, not DALL-E 1; default: the recipe's)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--out", default="runs/dalle", help="folder for prior.safetensors + its tokenizer")
    t.add_argument("--results", default=None, help="write the metrics as JSON here")
    t.add_argument("--quiet", action="store_true")
    t.set_defaults(func=_train_prior)
    g = sub.add_parser("generate", help="draw images of a caption into a PNG grid")
    g.add_argument("caption")
    g.add_argument("--n", type=int, default=16, help="samples")
    g.add_argument("--rerank", action="store_true", help="order the samples by CLIP score, best first")
    g.add_argument("--checkpoint", default="runs/dalle", help="a train-prior folder or prior file")
    g.add_argument("--dvae", default=None,
                   help="the prior's dVAE (default: dvae.safetensors beside the prior, else the cached default)")
    g.add_argument("--temperature", type=float, default=1.0)
    g.add_argument("--top-k", type=int, default=None)
    g.add_argument("--guidance", type=float, default=None,
                   help="classifier-free guidance scale S (a later addition, not DALL-E 1; 1 = the paper's "
                   "sampling; needs a prior trained with caption dropout; default: the recipe's)")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--out", default="dalle.png")
    g.add_argument("--quiet", action="store_true")
    g.set_defaults(func=_generate)
