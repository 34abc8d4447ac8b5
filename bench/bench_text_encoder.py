"""PyTorch side of bench/bench_text_encoder.sh: transformers' CLIPTextModel with CLIP-L's text
configuration (SD1.5's text encoder) and random weights, batch 1, 77 tokens, the same ids as
bench_text_encoder.c.
    python bench/bench_text_encoder.py fwd|fwdbwd [THREADS] [REPEATS]
fwdbwd: as kohya trains TI: only the token embedding requires grad, the loss is
sum(hidden * g), backward. Prints the median seconds of REPEATS passes after one warm-up,
"seconds <t>", and their median CPU time, "cpu <t>"."""

import statistics
import sys
import time

import torch
from transformers import CLIPTextConfig, CLIPTextModel


def main():
    op = sys.argv[1]
    threads = int(sys.argv[2]) if len(sys.argv) > 2 else 2
    repeats = int(sys.argv[3]) if len(sys.argv) > 3 else 5
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    cfg = CLIPTextConfig(vocab_size=49408, hidden_size=768, intermediate_size=3072,
                         num_hidden_layers=12, num_attention_heads=12, max_position_embeddings=77,
                         hidden_act="quick_gelu", layer_norm_eps=1e-5)
    model = CLIPTextModel(cfg)
    model.resize_token_embeddings(49409, mean_resizing=False)  # one TI token
    ids = [49406] + [320 + 37 * i for i in range(1, 21)] + [49407] * 56
    ids[5] = 49408
    ids = torch.tensor([ids])
    grad = torch.rand(1, 77, 768) - 0.5
    model.requires_grad_(False)
    emb = model.get_input_embeddings().weight
    if op == "fwdbwd":
        emb.requires_grad_(True)
        model.train()
    else:
        model.eval()
    times, cpu = [], []
    for _ in range(repeats + 1):
        t0, c0 = time.perf_counter(), time.process_time()
        if op == "fwdbwd":
            emb.grad = None
            hidden = model(ids)[0]
            (hidden * grad).sum().backward()
        else:
            with torch.no_grad():
                model(ids)[0]
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    print(f"seconds {statistics.median(times[1:]):.4f}")
    print(f"cpu {statistics.median(cpu[1:]):.4f}")


if __name__ == "__main__":
    main()
