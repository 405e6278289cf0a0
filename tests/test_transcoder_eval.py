"""Transcoders evaluated as replacement MLPs on the organism: per-transcoder fidelity, sparsity and spliced CE/KL on
predicted positions, the whole replacement model, and the suite table / report / CLI (qwen3_scope.evaluation)."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
from sae_lens import SAE

from qwen3_scope import load_model
from qwen3_scope.cli import main
from qwen3_scope.core.errors import ConfigError
from qwen3_scope.evaluation.held_out import HeldOutTokens, organism_documents
from qwen3_scope.evaluation.suite_eval import SuiteEvalConfig, evaluate_suite
from qwen3_scope.evaluation.transcoders import TranscoderMismatchError, replacement_hooks
from qwen3_scope.model.chat import special_token_ids
from qwen3_scope.model.sites import UnknownHookError

pytestmark = pytest.mark.usefixtures("one_thread")

LAYERS = (0, 5)  # the organism's MLPs that matter most: zero-ablating them adds 10.4 and 0.10 nats on these tokens
CONFIG = SuiteEvalConfig(n_batches=2, batch_size_prompts=8, context_size=128, progress=False)
N_EVAL = CONFIG.n_batches * CONFIG.batch_size_prompts  # the held-out sequences evaluated; later ones train


def hooks(layer: int) -> tuple[str, str]:
    """The coordinator's hooked-backend transcoder hooks: MLP input before the RMSNorm weight -> MLP output."""
    return f"blocks.{layer}.ln2.hook_normalized", f"blocks.{layer}.hook_mlp_out"


ARCHITECTURES = (
    "transcoder",
    "skip_transcoder",
    "jumprelu_transcoder",
    "jumprelu_skip_transcoder",
    "topk_transcoder",
    "topk_skip_transcoder",
)


def make_transcoder(layer: int, d_sae: int = 256, arch: str = "transcoder", seed: int = 0, **extra) -> SAE:
    torch.manual_seed(seed)
    hook_in, hook_out = hooks(layer)
    return SAE.from_dict(
        {
            "architecture": arch,
            "d_in": 160,
            "d_sae": d_sae,
            "d_out": 160,
            "dtype": "float32",
            "device": "cpu",
            "apply_b_dec_to_input": False,
            "metadata": {
                "hook_name": hook_in,
                "hook_name_out": hook_out,
                "model_name": "organism",
                "prepend_bos": False,
            },
            **extra,
        }
    )


@pytest.fixture(scope="module")
def organism():
    return load_model("organism", backend="hooked")


@pytest.fixture(scope="module")
def tokens(organism):
    return HeldOutTokens.from_documents(organism.tokenizer, organism_documents(), 128, CONFIG.batch_size_prompts, 6)


@pytest.fixture(scope="module")
def special(organism):
    return torch.tensor(special_token_ids(organism.tokenizer))


@pytest.fixture(scope="module")
def train_acts(organism, tokens, special):
    """(input, target) of each layer on the non-special tokens of the sequences the evaluation does not use."""
    train = tokens.tokens[N_EVAL:]
    names = [h for layer in LAYERS for h in hooks(layer)]
    with torch.no_grad():
        _, cache = organism.run_with_cache(train, names_filter=names)
    keep = ~torch.isin(train, special)
    return {layer: (cache[hooks(layer)[0]][keep], cache[hooks(layer)[1]][keep]) for layer in LAYERS}


def fit(transcoder: SAE, x: torch.Tensor, y: torch.Tensor, steps: int) -> SAE:
    """Adam on MSE + a small L1 penalty over batches of 512 tokens, in plain torch (the ReLU transcoder's formula)."""
    with torch.no_grad():
        transcoder.b_dec.copy_(y.mean(0))
        transcoder.W_enc.mul_(0.1)
        transcoder.W_dec.mul_(0.01)
    opt = torch.optim.Adam(transcoder.parameters(), lr=1e-2)
    generator = torch.Generator().manual_seed(0)
    for _ in range(steps):
        idx = torch.randint(0, len(x), (512,), generator=generator)
        acts = torch.relu(x[idx] @ transcoder.W_enc + transcoder.b_enc)
        out = acts @ transcoder.W_dec + transcoder.b_dec
        loss = (out - y[idx]).pow(2).sum(-1).mean() + 1e-3 * acts.sum(-1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return transcoder.requires_grad_(False)


@pytest.fixture(scope="module")
def transcoders(train_acts):
    """One trained ReLU transcoder per layer of LAYERS. Once the bundled set exists this is
    `{L: SAE.from_pretrained("qwen3-instruct-sae", f"organism/transcoder/layer_{L}") for L in LAYERS}`."""
    return {layer: fit(make_transcoder(layer), *train_acts[layer], steps=200) for layer in LAYERS}


@pytest.fixture(scope="module")
def evaluated(organism, tokens, transcoders):
    entries = [(f"organism/transcoder/layer_{layer}", t) for layer, t in transcoders.items()]
    return evaluate_suite(entries, model=organism, tokens=tokens, config=CONFIG)


def eval_batch(tokens, special, n: int = N_EVAL):
    """The evaluated sequences, their kept (non-special) tokens and the positions CE/KL are scored at."""
    ids, mask = tokens.tokens[:n], tokens.loss_mask[:n]
    keep = ~torch.isin(ids, special)
    return ids, keep, mask[:, 1:] & keep[:, :-1]


def ce_at(logits: torch.Tensor, ids: torch.Tensor, scored: torch.Tensor) -> float:
    logp = torch.log_softmax(logits.float(), -1)
    return (-logp[:, :-1].gather(-1, ids[:, 1:, None])[..., 0])[scored].mean().item()


def spliced_by_hand(model, ids: torch.Tensor, keep: torch.Tensor, transcoder: SAE, layer: int) -> torch.Tensor:
    """Logits of the whole model with the transcoder's output in place of the MLP's at the kept tokens."""
    hook_in, hook_out = hooks(layer)
    seen: dict[str, torch.Tensor] = {}

    def capture(act, hook):
        seen["x"] = act

    def replace(act, hook):
        return torch.where(keep[..., None], transcoder(seen["x"]), act)

    with torch.no_grad():
        return model.run_with_hooks(ids, fwd_hooks=[(hook_in, capture), (hook_out, replace)])


def test_trained_transcoders_fit_and_their_rows_are_measured_by_hand(organism, tokens, special, transcoders, evaluated):
    table = evaluated.table.set_index("sae_id")
    ids, keep, scored = eval_batch(tokens, special)
    with torch.no_grad():
        _, cache = organism.run_with_cache(ids, names_filter=[h for layer in LAYERS for h in hooks(layer)])
    for layer, transcoder in transcoders.items():
        row = table.loc[f"organism/transcoder/layer_{layer}"]
        hook_in, hook_out = hooks(layer)
        assert (row.site, row.layer, row.hook_name, row.hook_name_out) == ("transcoder", layer, hook_in, hook_out)
        assert row.ce_scope == "predicted tokens" and row.ce_positions == int(scored.sum())
        # fidelity against the MLP output it predicts, on the non-special held-out tokens
        x, y = cache[hook_in][keep], cache[hook_out][keep]
        with torch.no_grad():
            out, acts = transcoder.forward_with_activations(x)
        ev = 1 - (y - out).pow(2).sum(-1).mean() / (y - y.mean(0)).pow(2).sum(-1).mean()
        assert row.explained_variance == pytest.approx(ev.item(), abs=1e-4) and row.explained_variance > 0.6
        assert row.fvu == pytest.approx(1 - row.explained_variance)
        assert row.mse == pytest.approx((y - out).pow(2).sum(-1).mean().item(), rel=1e-4)
        assert row.cossim == pytest.approx(torch.cosine_similarity(y, out, dim=-1).mean().item(), rel=1e-4)
        assert row.l0 == pytest.approx((acts > 0).sum(-1).float().mean().item(), rel=1e-5)
        density = (acts > 0).float().mean(0)
        torch.testing.assert_close(torch.tensor(evaluated.feature_metrics[row.name]["feature_density"]), density)
        assert row.dead_fraction == pytest.approx((density == 0).float().mean().item())
        assert row.dense_fraction == pytest.approx((density > CONFIG.dense_threshold).float().mean().item())
        # spliced CE: the whole model with the transcoder's output in place of the MLP's at non-special tokens
        logits = spliced_by_hand(organism, ids, keep, transcoder, layer)
        assert row.ce_loss_with_sae == pytest.approx(ce_at(logits, ids, scored), rel=1e-4)
        assert row.delta_lm_loss == pytest.approx(row.ce_loss_with_sae - row.ce_loss_without_sae)
        # a fitted transcoder recovers most of what zero- and mean-ablating the MLP loses
        assert row.ce_loss_with_sae < min(row.ce_loss_with_mean_ablation, row.ce_loss_with_ablation)
        assert row.ce_loss_score > 0.5 and row.ce_loss_score_mean_ablation > 0.5 and row.kl_div_score > 0.5


def test_replacement_model_is_saelens_splice_of_every_transcoder(organism, tokens, special, transcoders, evaluated):
    """The replacement model (both MLPs replaced at once, the layer-5 transcoder reading the patched model) is what
    SAELens' HookedSAETransformer computes with both transcoders attached, and costs more than either splice."""
    ids, keep, scored = eval_batch(tokens, special)
    with torch.no_grad():
        saelens = organism.run_with_saes(ids, saes=list(transcoders.values()), exclude_special_tokens=special.tolist())
        with organism.hooks(fwd_hooks=replacement_hooks(list(transcoders.values()), keep)):
            ours = organism(ids)
    torch.testing.assert_close(ours, saelens, rtol=1e-5, atol=1e-5)
    (row,) = evaluated.replacement.itertuples()
    assert (row.set, row.n_transcoders, row.layers, row.model_layers, row.all_layers) == (
        "organism/transcoder/layer_*",
        2,
        "0,5",
        6,
        False,
    )
    assert row.ce_loss_with_replacement == pytest.approx(ce_at(saelens, ids, scored), rel=1e-4)
    assert row.ce_loss_without_replacement == pytest.approx(ce_at(organism(ids), ids, scored), rel=1e-4)
    singles = evaluated.table.set_index("sae_id")
    assert row.ce_loss_with_replacement > singles.ce_loss_with_sae.max()
    assert row.delta_lm_loss == pytest.approx(row.ce_loss_with_replacement - row.ce_loss_without_replacement)
    assert 0.5 < row.ce_loss_score < 1 and row.kl_div_with_replacement > 0


def test_one_layer_replacement_equals_its_splice_and_the_mean_decoder_equals_mean_ablation(
    organism, tokens, transcoders, train_acts
):
    """A replacement model of one transcoder is its single splice; a transcoder that always outputs the held-out mean
    MLP output (zero decoder, b_dec = mean) explains no variance and scores exactly the mean ablation; a better fit
    (more steps) gives a lower CE."""
    every_token = SuiteEvalConfig(**{**CONFIG.__dict__, "exclude_special_tokens": False, "n_batches": 1})
    ids = tokens.tokens[: CONFIG.batch_size_prompts]
    with torch.no_grad():
        _, cache = organism.run_with_cache(ids, names_filter=hooks(0)[1])
    mean = make_transcoder(0)
    with torch.no_grad():
        mean.W_dec.zero_()
        mean.b_dec.copy_(cache[hooks(0)[1]].flatten(0, 1).double().mean(0).float())
    rough = fit(make_transcoder(0, seed=1), *train_acts[0], steps=15)
    entries = [("mean/layer_0", mean), ("rough/layer_0", rough), ("fit/layer_0", transcoders[0])]
    result = evaluate_suite(entries, model=organism, tokens=tokens, config=every_token)
    rows = result.table.set_index("sae_id")
    assert rows.loc["mean/layer_0"].explained_variance == pytest.approx(0.0, abs=1e-4)
    assert rows.loc["mean/layer_0"].ce_loss_with_sae == pytest.approx(
        rows.loc["mean/layer_0"].ce_loss_with_mean_ablation, rel=1e-5
    )
    assert rows.loc["mean/layer_0"].ce_loss_score_mean_ablation == pytest.approx(0.0, abs=1e-3)
    assert rows.loc["fit/layer_0"].explained_variance > rows.loc["rough/layer_0"].explained_variance
    ce = rows.ce_loss_with_sae
    # (at layer 0 the mean is no better than zero: the organism's first MLP is a per-token embedding)
    assert ce["fit/layer_0"] < ce["rough/layer_0"] < ce["mean/layer_0"]
    replacement = result.replacement.set_index("set")
    assert sorted(replacement.index) == ["fit/layer_*", "mean/layer_*", "rough/layer_*"]
    for name in ("mean", "rough", "fit"):
        assert replacement.loc[f"{name}/layer_*"].ce_loss_with_replacement == pytest.approx(
            ce[f"{name}/layer_0"], rel=1e-6
        )
        assert replacement.loc[f"{name}/layer_*"].kl_div_with_replacement == pytest.approx(
            rows.loc[f"{name}/layer_0"].kl_div_with_sae, rel=1e-5
        )


def test_every_transcoder_architecture_and_the_skip_connection(organism, tokens, special):
    """SAELens' four transcoder classes and the TopK ones registered by qwen3_scope.saes.transcoders are evaluated
    through their own encode/forward: the skip connection stays in (SAELens' splice, decode(encode(x)), drops W_skip)
    and a TopK transcoder fires exactly k latents per token."""
    made = {arch: make_transcoder(5, arch=arch) for arch in ARCHITECTURES}
    made["topk_transcoder"] = make_transcoder(5, arch="topk_transcoder", k=16)
    for transcoder in made.values():
        with torch.no_grad():
            transcoder.W_dec.mul_(0.01)
            if hasattr(transcoder, "W_skip"):
                transcoder.W_skip.copy_(torch.randn(160, 160) * 0.05)
            if hasattr(transcoder, "threshold"):
                transcoder.threshold.fill_(0.5)
    one_batch = SuiteEvalConfig(**{**CONFIG.__dict__, "n_batches": 1})
    result = evaluate_suite(list(made.items()), model=organism, tokens=tokens, config=one_batch)
    rows = result.table.set_index("sae_id")
    ids, keep, _ = eval_batch(tokens, special, n=CONFIG.batch_size_prompts)
    with torch.no_grad():
        _, cache = organism.run_with_cache(ids, names_filter=list(hooks(5)))
    x, y = cache[hooks(5)[0]][keep], cache[hooks(5)[1]][keep]
    for arch, transcoder in made.items():
        row = rows.loc[arch]
        assert row.architecture == arch and row.site == "transcoder" and row.layer == 5
        with torch.no_grad():
            out, acts = transcoder(x), transcoder.encode(x)
        assert row.mse == pytest.approx((y - out).pow(2).sum(-1).mean().item(), rel=1e-4)
        assert row.l0 == pytest.approx((acts != 0).sum(-1).float().mean().item(), rel=1e-5)
        if "skip" in arch:
            assert not torch.allclose(out, transcoder.decode(acts))  # W_skip carried weight
    assert rows.loc["topk_transcoder"].l0 == pytest.approx(16.0)
    assert rows.loc["topk_transcoder"].ce_positions == rows.loc["transcoder"].ce_positions > 0


def test_mixed_suite_folder_gets_one_table_report_and_cli(tmp_path, transcoders, capsys):
    """A suite folder with an SAE and transcoders: `qwen3-scope eval --suite` puts them in one table, plots and HTML
    report, with the replacement-model line; bad transcoders are clear errors."""
    suite = tmp_path / "suite"
    for layer, transcoder in transcoders.items():
        transcoder.save_model(suite / "transcoder" / f"layer_{layer}")
    sae = SAE.from_dict(
        {
            "architecture": "standard",
            "d_in": 160,
            "d_sae": 64,
            "dtype": "float32",
            "device": "cpu",
            "apply_b_dec_to_input": False,
            "metadata": {"hook_name": "blocks.3.hook_mlp_out", "model_name": "organism", "prepend_bos": False},
        }
    )
    sae.save_model(suite / "mlp_out" / "layer_3")
    out = tmp_path / "out"
    main(["eval", "--suite", str(suite), "--out", str(out), "--batches", "1", "--batch-size", "4"])
    printed = capsys.readouterr().out
    assert "Replacement model transcoder/layer_* (2 transcoders, layers 0,5 of 6" in printed
    table = pd.read_csv(out / "suite_eval.csv").set_index("sae_id")
    assert table.loc["transcoder/layer_0", "site"] == "transcoder" and table.loc["mlp_out/layer_3", "site"] == "mlp_out"
    assert table.loc["transcoder/layer_5", "layer"] == 5 and table["ce_positions"].nunique() == 1
    replacement = pd.read_csv(out / "replacement_model.csv")
    assert list(replacement["set"]) == ["transcoder/layer_*"]
    html = (out / "report.html").read_text()
    assert "Replacement model transcoder/layer_* (2 transcoders, layers 0,5 of 6" in html
    assert "transcoder/layer_5" in html and "mlp_out/layer_3" in html
    assert (out / "metrics_by_layer.png").stat().st_size > 0


def test_bad_transcoders_are_clear_errors(organism, tokens, transcoders):
    wide = make_transcoder(0)
    wide.cfg.d_out = 161
    with pytest.raises(TranscoderMismatchError, match="160 -> 160"):
        evaluate_suite([("wide", wide)], model=organism, tokens=tokens, config=CONFIG)
    missing = make_transcoder(0)
    missing.cfg.metadata.hook_name_out = "blocks.9.hook_mlp_out"
    with pytest.raises(UnknownHookError, match="blocks.9.hook_mlp_out"):
        evaluate_suite([("missing", missing)], model=organism, tokens=tokens, config=CONFIG)
    backwards = make_transcoder(0)
    backwards.cfg.metadata.hook_name = hooks(4)[0]
    with pytest.raises(ConfigError, match="input must come before its output"):
        evaluate_suite([("backwards", backwards)], model=organism, tokens=tokens, config=CONFIG)
    with pytest.raises(ConfigError, match="one transcoder per hook"):
        replacement_hooks([transcoders[0], transcoders[0]])
