"""Runs circuit-tracer 0.5.0 on a transcoder set; executed by the Python of circuit-tracer's own venv.

Standalone on purpose: circuit-tracer pins transformers<=4.57.3 while qwen3-scope needs transformers>=5.9, so this
script runs in another environment (`qwen3_scope.export.circuit_tracer.circuit_tracer_python()`) and imports nothing
of qwen3_scope. It reads one JSON request and writes its answers as files:

    python circuit_tracer_runner.py REQUEST.json

Request keys: `model` (a Hugging Face folder transformers 4.x reads), `transcoders` (a folder with circuit-tracer's
`config.yaml` and `layer_{i}.safetensors`), `out` (a folder for the answers), and the jobs:
- `logits`: {"tokens": [[ids...], ...]} -> `logits.safetensors` with, per sequence i, `clean_{i}` (circuit-tracer's
  replacement model run with its error terms, i.e. the clean model), `replacement_{i}` (every MLP output replaced by
  its transcoder's output, zero error terms) and `features_{i}` (the transcoder activations circuit-tracer computes,
  (n_layers, n_pos, d_transcoder), position 0 zeroed as its attribution does).
- `graph`: {"tokens": [ids...], "targets": [ids...] | null, "slug": str, "max_n_logits", "desired_logit_prob",
  "batch_size", "max_feature_nodes", "node_threshold", "edge_threshold", "top"} -> `graph/{slug}.json` (written by
  circuit-tracer's `create_graph_files`, the JSON Neuronpedia's graph upload accepts) and in `result.json` the
  features with the most influence on the target logits.
`result.json` always holds the versions of circuit-tracer, transformers and torch.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import circuit_tracer
import torch
import transformers
import yaml
from circuit_tracer import ReplacementModel, attribute
from circuit_tracer.graph import compute_node_influence
from circuit_tracer.utils import create_graph_files
from circuit_tracer.utils.hf_utils import load_transcoders
from nnsight import save
from safetensors.torch import save_file


def load_set(folder: Path):
    """circuit-tracer's own loader on a local set: its config.yaml, with the layer files it finds in the folder."""
    config = yaml.safe_load((folder / "config.yaml").read_text())
    if "transcoders" in config:
        config["transcoders"] = [str(folder / path) for path in config["transcoders"]]
    else:
        n_layers = len(list(folder.glob("layer_*.safetensors")))
        config["transcoders"] = [str(folder / f"layer_{i}.safetensors") for i in range(n_layers)]
    config.setdefault("scan", config.get("model_name", folder.name))
    return load_transcoders(config, device=torch.device("cpu"), dtype=torch.float32), config


def replacement_logits(model, tokens: torch.Tensor) -> torch.Tensor:
    """Logits with every MLP output replaced by its transcoder's output (no error terms), at circuit-tracer's hooks."""
    transcoders = getattr(model.transcoders, "_module", model.transcoders)  # nnsight wraps submodules in an Envoy
    with torch.inference_mode(), model.trace(tokens):
        for layer in range(model.cfg.n_layers):
            mlp_in = model.get_feature_input_loc(layer).output
            model.get_feature_output_loc(layer).output = transcoders[layer](mlp_in)
        logits = save(model.output.logits)
    return logits


def run_logits(model, job: dict, out: Path) -> None:
    tensors = {}
    for i, ids in enumerate(job["tokens"]):
        tokens = torch.tensor([ids], dtype=torch.long)
        clean, features = model.get_activations(tokens)
        tensors[f"clean_{i}"] = clean.detach().float().cpu().contiguous()
        tensors[f"features_{i}"] = features.detach().float().cpu().contiguous()
        tensors[f"replacement_{i}"] = replacement_logits(model, tokens).detach().float().cpu().contiguous()
    save_file(tensors, str(out / "logits.safetensors"))


def top_features(graph, top: int) -> list[dict]:
    """The feature nodes with the most influence on the target logits (direct and indirect, as circuit-tracer's
    pruning scores nodes), with their layer, position, feature index, activation and influence."""
    n_features = len(graph.selected_features)
    n_logits = len(graph.logit_targets)
    matrix = graph.adjacency_matrix
    logit_weights = torch.zeros(matrix.shape[0], dtype=matrix.dtype)
    logit_weights[-n_logits:] = graph.logit_probabilities.to(matrix.dtype)
    influence = compute_node_influence(matrix, logit_weights)[:n_features]
    order = torch.argsort(influence, descending=True)[:top]
    rows = []
    for node in order.tolist():
        active = graph.selected_features[node]  # activation_values is indexed like active_features (as in
        layer, pos, feature = graph.active_features[active].tolist()  # circuit-tracer's create_graph_files)
        rows.append(
            {
                "layer": int(layer),
                "position": int(pos),
                "feature": int(feature),
                "activation": float(graph.activation_values[active]),
                "influence": float(influence[node]),
            }
        )
    return rows


def run_graph(model, job: dict, out: Path, scan: str, result: dict) -> None:
    tokens = torch.tensor(job["tokens"], dtype=torch.long)
    targets = torch.tensor(job["targets"], dtype=torch.long) if job.get("targets") else None
    graph = attribute(
        tokens,
        model,
        attribution_targets=targets,
        max_n_logits=job.get("max_n_logits", 10),
        desired_logit_prob=job.get("desired_logit_prob", 0.95),
        batch_size=job.get("batch_size", 256),
        max_feature_nodes=job.get("max_feature_nodes"),
    )
    graph_dir = out / "graph"
    create_graph_files(
        graph,
        slug=job["slug"],
        output_path=str(graph_dir),
        scan=scan,
        node_threshold=job.get("node_threshold", 0.8),
        edge_threshold=job.get("edge_threshold", 0.98),
    )
    result["graph"] = {
        "file": f"graph/{job['slug']}.json",
        "n_active_features": int(graph.active_features.shape[0]),
        "n_selected_features": int(len(graph.selected_features)),
        "logit_targets": [int(t.vocab_idx) for t in graph.logit_targets],
        "logit_probabilities": [float(p) for p in graph.logit_probabilities],
        "top_features": top_features(graph, int(job.get("top", 20))),
    }


def main(argv: list[str]) -> int:
    request = json.loads(Path(argv[1]).read_text())
    out = Path(request["out"])
    out.mkdir(parents=True, exist_ok=True)
    result: dict = {
        "circuit_tracer": circuit_tracer.__version__,
        "transformers": transformers.__version__,
        "torch": torch.__version__.split("+")[0],
    }
    if request.get("model"):
        torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
        transcoders, config = load_set(Path(request["transcoders"]))
        model = ReplacementModel.from_pretrained_and_transcoders(
            request["model"], transcoders, backend="nnsight", device=torch.device("cpu"), dtype=torch.float32
        )
        result["rope_theta"] = float(getattr(model.config, "rope_theta", 0.0) or 0.0)
        result["n_layers"] = int(model.cfg.n_layers)
        result["d_transcoder"] = int(transcoders.d_transcoder)
        if "logits" in request:
            run_logits(model, request["logits"], out)
        if "graph" in request:
            run_graph(model, request["graph"], out, str(config["scan"]), result)
    (out / "result.json").write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
