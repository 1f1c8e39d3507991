"""The program ``tests/distributed/test_mpi.py`` starts under ``mpirun -n 2`` / ``-n 4``.

``python mpi_worker.py SCENARIO OUT.json``; rank 0 writes what the test
checks to OUT.json. Scenarios:

* ``step``: one data-parallel step of a tiny CLIP (full and local-loss
  InfoNCE) and a tiny GPT in float64; every rank's loss and gradients minus
  those of one process on the global batch;
* ``resume``: three AdamW steps of GPT uninterrupted, against two steps, a
  checkpoint written by rank 0, every rank rebuilt from it, one more step;
* ``fail``: rank 1 raises at the first step (the job must end, naming it);
* ``hang``: rank 1 never reaches the step (the others must time out, naming it);
* ``config``: rank 1 has another learning rate (refused before training).
"""

import json
import pickle
import sys
import time
from pathlib import Path

import numpy as np

import minivl as mv
from minivl.distributed import DataParallel, distributed_info_nce, init, on_rank0, shard
from minivl.models.clip import CLIP
from minivl.models.gpt import GPT
from minivl.optim import AdamW

GLOBAL_BATCH = 8


def f64(model):
    for p in model.parameters():
        p.data = p.data.astype(np.float64)
    return model


def tiny_clip():
    mv.manual_seed(0)
    return f64(CLIP(image_size=8, patch_size=4, vision_dim=8, vision_depth=1, vision_heads=2, vocab_size=16,
                    context_length=6, text_dim=8, text_depth=1, text_heads=2, embed_dim=8))


def tiny_gpt():
    mv.manual_seed(0)
    return f64(GPT(vocab_size=16, max_len=8, dim=8, depth=1, num_heads=2))


def clip_batch(step=0):
    rng = np.random.default_rng([1, step])
    images = rng.standard_normal((GLOBAL_BATCH, 3, 8, 8))
    ids = rng.integers(0, 15, (GLOBAL_BATCH, 6))
    ids[np.arange(GLOBAL_BATCH), rng.integers(1, 6, GLOBAL_BATCH)] = 15  # the end-of-text token
    return images, ids


def gpt_batch(step=0):
    return np.random.default_rng([2, step]).integers(0, 16, (GLOBAL_BATCH, 8))


def grads(model):
    return [p.grad.copy() for p in model.parameters()]


def worst(a, b):
    return max(float(np.max(np.abs(x - y))) for x, y in zip(a, b))


def scenario_step(comm):
    r, s = comm.rank, comm.size
    report = {}
    # -- CLIP, both ways of spreading the loss
    images, ids = clip_batch()
    reference = tiny_clip()
    ref_loss = reference.loss(images, ids)
    ref_loss.backward()
    ref_grads = grads(reference)
    for local in (False, True):
        model = tiny_clip()
        dp = DataParallel(model, comm, bucket_bytes=512)  # several buckets even for a tiny model
        my_images, my_ids = shard((images, ids), r, s)
        loss = distributed_info_nce(model.encode_image(my_images), model.encode_text(my_ids),
                                    model.logit_scale, comm, local_loss=local)
        dp.backward(loss)
        key = "clip_local" if local else "clip_full"
        report[key] = {"loss": abs(dp.average(loss.item()) - ref_loss.item()),
                       "grad": worst(grads(model), ref_grads), "buckets": len(dp.buckets)}
    # -- GPT
    ids = gpt_batch()
    reference = tiny_gpt()
    ref_loss = reference.loss(ids)
    ref_loss.backward()
    model = tiny_gpt()
    dp = DataParallel(model, comm, bucket_bytes=256)
    loss = model.loss(shard(ids, r, s))
    dp.backward(loss)
    report["gpt"] = {"loss": abs(dp.average(loss.item()) - ref_loss.item()),
                     "grad": worst(grads(model), grads(reference)), "buckets": len(dp.buckets)}
    return comm.allgather_object(report)


def gpt_steps(comm, model, optimizer, dp, first, last):
    for step in range(first, last + 1):
        optimizer.zero_grad()
        dp.backward(model.loss(shard(gpt_batch(step), comm.rank, comm.size)))
        optimizer.step()


def scenario_resume(comm, folder):
    model = tiny_gpt()
    optimizer = AdamW(model.parameters(), lr=1e-2)
    gpt_steps(comm, model, optimizer, DataParallel(model, comm), 1, 3)
    straight = [p.data.copy() for p in model.parameters()]

    model = tiny_gpt()
    optimizer = AdamW(model.parameters(), lr=1e-2)
    gpt_steps(comm, model, optimizer, DataParallel(model, comm), 1, 2)
    path = Path(folder) / "checkpoint.pkl"

    def save():
        path.write_bytes(pickle.dumps({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": 2}))
        return str(path)

    saved = on_rank0(comm, save)  # rank 0 writes; every rank waits for the file
    state = pickle.loads(Path(saved).read_bytes())
    model = tiny_gpt()
    model.parameters()[0].data += 1.0  # a wrong start, to be sure the checkpoint is what counts
    model.load_state_dict(state["model"])
    optimizer = AdamW(model.parameters(), lr=1e-2)
    optimizer.load_state_dict(state["optimizer"])
    gpt_steps(comm, model, optimizer, DataParallel(model, comm, broadcast=False), state["step"] + 1, 3)
    resumed = [p.data for p in model.parameters()]
    return comm.allgather_object({"resume": worst(straight, resumed)})


def main():
    scenario, out = sys.argv[1], sys.argv[2]
    comm = init(distributed=True)
    if scenario == "step":
        result = scenario_step(comm)
    elif scenario == "resume":
        result = scenario_resume(comm, Path(out).parent)
    elif scenario == "fail":
        if comm.rank == 1:
            raise RuntimeError("planted failure")
        comm.check_in("step 1")
        result = "unreachable"
    elif scenario == "hang":
        if comm.rank == 1:
            time.sleep(60)
        comm.check_in("step 1")
        result = "unreachable"
    elif scenario == "config":
        comm.check_same({"lr": 0.1 if comm.rank != 1 else 0.2, "steps": 3})
        result = "unreachable"
    else:
        raise ValueError(f"unknown scenario {scenario!r}")
    if comm.rank == 0:
        Path(out).write_text(json.dumps({"size": comm.size, "ranks": result}))


if __name__ == "__main__":
    main()
