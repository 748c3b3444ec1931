"""What the HTTP hop costs: one RM scoring batches of 64 responses in process, and the same RM behind
laser's server (`python -m laser.rewards.server`, a separate process on 127.0.0.1, vLLM's /classify shape)
scored by `VLLMClassifyRM`: with a local tokenizer (one request per batch of 64, the template applied
here), and without (vLLM's chat form: one request per response, `max_in_flight` at once). The RM is an
untrained Llama sequence classifier built locally (`laser.tiny.build_untrained_classifier`).

    python benchmarks/rm_http.py                      # RM hidden 256, 4 layers (rm_cost.py's RM)
    python benchmarks/rm_http.py --rm-hidden 32 --rm-layers 1   # a tiny RM: the hop itself dominates

Prints requests/s and responses/s per variant and the hop's cost per batch (remote minus in process).
There is no target: the figures are what docs/serving.md ("Serving reward models") quotes.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from _common import ROOT, header, load_note, median_times


def serve(folder: str, port: int, threads: int, work: Path) -> tuple[subprocess.Popen, str]:
    """laser's server in its own process, serving the classifier at `folder` as RM "rm", and its URL."""
    pool = work / "pool.yaml"
    pool.write_text("_target_: laser.rewards.pool.RewardModelPool\nmodels:\n  rm:\n"
                    "    _target_: laser.rewards.classifier.ClassifierRM\n"
                    f"    model_name_or_path: {folder}\n    use_chat_template: false\n    batch_size: 64\n"
                    "    max_length: 256\n")
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": str(ROOT)}
    server = subprocess.Popen([sys.executable, "-m", "laser.rewards.server", "--pool", str(pool), "--port", str(port)],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = server.stdout.readline()  # "serving ['rm'] at http://127.0.0.1:PORT" once it listens ("" if it died)
    if " at http" not in line:
        server.kill()
        sys.exit(f"the server did not start (python -m laser.rewards.server --pool {pool})")
    return server, line.rsplit(" at ", 1)[1].strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rm-hidden", type=int, default=256)
    parser.add_argument("--rm-layers", type=int, default=4)
    parser.add_argument("--batch", type=int, default=64, help="responses per scoring call")
    parser.add_argument("--max-in-flight", type=int, default=4, help="requests at once in the chat form")
    parser.add_argument("--port", type=int, default=0, help="the server's port (0: any free one)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    header(args.threads)

    from laser.rewards.base import ScoringBatch
    from laser.rewards.classifier import ClassifierRM
    from laser.rewards.vllm_classify import VLLMClassifyRM
    from laser.tasks.arithmetic import Arithmetic
    from laser.tiny import build_untrained_classifier

    task = Arithmetic(num_train=0, num_test=args.batch, seed=0)
    examples = task.test_examples()
    batch = ScoringBatch([task.format_prompt(e) for e in examples], [f" {e.answer}" for e in examples], examples)
    one_request = f"http, one request of {args.batch} (local tokenizer)"
    with tempfile.TemporaryDirectory() as work:
        folder = build_untrained_classifier(work, hidden_size=args.rm_hidden, num_layers=args.rm_layers)
        server, url = serve(folder, args.port, args.threads, Path(work))
        try:
            local = ClassifierRM(folder, use_chat_template=False, batch_size=64, max_length=256)
            batched = VLLMClassifyRM(url, "rm", tokenizer_name_or_path=folder, use_chat_template=False,
                                     batch_size=args.batch, retries=0)
            chat = VLLMClassifyRM(url, "rm", max_in_flight=args.max_in_flight, retries=0)
            seconds = median_times({"in process": lambda: local.score(batch),
                                    one_request: lambda: batched.score(batch),
                                    "http, chat form (one request per response)": lambda: chat.score(batch)},
                                   args.warmup, args.repeats)
        finally:
            server.terminate()
            server.wait(timeout=30)
    requests = {"in process": 0, one_request: 1,
                "http, chat form (one request per response)": args.batch}
    print(f"RM: untrained Llama classifier, hidden {args.rm_hidden}, {args.rm_layers} layers; batch {args.batch}")
    for name, value in seconds.items():
        rate = f"{requests[name] / value:8.1f} requests/s, " if requests[name] else " " * 22
        print(f"{name:44s} {value * 1000:8.1f} ms per batch  {rate}{args.batch / value:8.1f} responses/s")
    base = seconds["in process"]
    for name, value in list(seconds.items())[1:]:
        print(f"HTTP hop, {name}: +{(value - base) * 1000:.1f} ms per batch ({value / base:.2f}x in process)")
    load_note()


if __name__ == "__main__":
    main()
