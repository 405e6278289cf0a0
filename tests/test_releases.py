"""Pretrained releases through SAELens' own API: directory, loaders, metadata, safety, clear failures."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys

import pytest
import torch
import yaml

# isort: off
import qwen3_scope  # first, as users do: SAELens readers imported afterwards see our releases

# isort: on
from sae_lens import SAE
from sae_lens.evals import get_saes_from_regex
from sae_lens.loading import pretrained_sae_loaders as loaders
from sae_lens.loading.pretrained_saes_directory import (
    get_config_overrides,
    get_pretrained_saes_directory,
    get_repo_id_and_folder_name,
)

from qwen3_scope.releases import RELEASE, hook_for, paper_entries, register_release_file, release_file
from qwen3_scope.saes.loaders import (
    SAEModelMismatchError,
    SAEWeightsUnavailableError,
    UnsafeWeightsError,
    load_qwen_scope_file,
)


def make_topk_sae(
    d_in: int = 64,
    d_sae: int = 256,
    k: int = 8,
    hook: str = "blocks.1.hook_resid_post",
    model: str = "m",
    seed: int = 0,
):
    torch.manual_seed(seed)
    sae = SAE.from_dict(
        {
            "architecture": "topk",
            "d_in": d_in,
            "d_sae": d_sae,
            "k": k,
            "dtype": "float32",
            "device": "cpu",
            "metadata": {"hook_name": hook, "model_name": model, "prepend_bos": False},
        }
    )
    with torch.no_grad():
        for p in sae.parameters():
            p.normal_(0, 0.1)
    return sae


@pytest.fixture()
def local_release(tmp_path, tiny_qwen3_dir):
    """A user's suite directory registered as a release through a yaml file, the way register_suite writes it."""
    suite = tmp_path / "suite"
    sae = make_topk_sae(model=str(tiny_qwen3_dir))
    sae.save_model(suite / "resid_post" / "layer_1")
    release_yaml = tmp_path / "releases.yaml"
    release_yaml.write_text(
        yaml.safe_dump(
            {
                "my-suite": {
                    "repo_id": str(suite),
                    "model": str(tiny_qwen3_dir),
                    "conversion_func": "qwen3_scope",
                    "config_overrides": {"prepend_bos": False, "context_size": 64},
                    "saes": [
                        {
                            "id": "tiny/resid_post/layer_1",
                            "path": "resid_post/layer_1",
                            "l0": 8,
                            "variance_explained": 0.5,
                            "neuronpedia": "tiny/1-mine-res",
                        }
                    ],
                }
            }
        )
    )
    register_release_file(release_yaml)
    return "my-suite", "tiny/resid_post/layer_1", sae


def test_registration_is_idempotent_and_offline():
    directory = get_pretrained_saes_directory()
    before = (len(directory), dict(loaders.NAMED_PRETRAINED_SAE_LOADERS))
    qwen3_scope.register()
    qwen3_scope.register()
    assert (len(get_pretrained_saes_directory()), dict(loaders.NAMED_PRETRAINED_SAE_LOADERS)) == before
    code = "import qwen3_scope, qwen3_scope; from sae_lens.loading.pretrained_saes_directory import get_pretrained_saes_directory as d; print(len(d()['qwen3-instruct-sae'].saes_map))"
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True).stdout
    assert int(out.strip().splitlines()[-1]) == len(get_pretrained_saes_directory()[RELEASE].saes_map)


def test_every_sae_lens_reader_sees_the_release():
    lookup = get_pretrained_saes_directory()[RELEASE]
    assert loaders.get_conversion_loader_name(RELEASE) == "qwen3_scope"
    repo, folder = get_repo_id_and_folder_name(RELEASE, "qwen3-4b/mlp_out/layer_12")
    assert (repo, folder) == (lookup.repo_id, "qwen3-4b/mlp_out/layer_12")
    assert (
        get_config_overrides(RELEASE, "qwen3-8b/resid_post/layer_3")["neuronpedia_id"]
        == "qwen3-8b/3-qwen3scope-residpost-65k"
    )
    found = get_saes_from_regex(RELEASE, r"qwen3-8b/resid_post/layer_\d+")
    assert sorted(s[1] for s in found) == [f"qwen3-8b/resid_post/layer_{i}" for i in range(9)]


def test_paper_layout_entries():
    ids = [e["id"] for e in paper_entries()]
    assert len(ids) == 28 * 3 + 36 * 3 + 9 and len(set(ids)) == len(ids)
    assert "qwen3-4b/attn_out/layer_35" in ids and "qwen3-8b/mlp_out/layer_0" not in ids
    shipped = yaml.safe_load(release_file().read_text())[RELEASE]["saes"]
    assert [e for e in shipped if not str(e["path"]).startswith("bundled:")] == paper_entries()
    assert hook_for("qwen3-4b/mlp_out/layer_12", "bridge") == "blocks.12.mlp.hook_out"


def test_release_paper_table_agrees_with_the_paper_recipe():
    """releases lists the paper's SAEs from naming's table (it does not import training); the recipe must agree."""
    from qwen3_scope import naming
    from qwen3_scope.training.recipes import PAPER

    assert PAPER.width_multiplier.value == naming.PAPER_WIDTH_MULTIPLIER
    assert tuple(PAPER.sites) == naming.PAPER_LAYOUT["Qwen/Qwen3-4B"][0]


def test_unpublished_id_says_how_to_produce_it(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    with pytest.raises(
        SAEWeightsUnavailableError, match="qwen3-scope train --model Qwen/Qwen3-4B .*--sites mlp_out --layers 12"
    ):
        SAE.from_pretrained(RELEASE, "qwen3-4b/mlp_out/layer_12")
    with pytest.raises(ValueError, match="not found in release"):
        SAE.from_pretrained(RELEASE, "qwen3-4b/mlp_out/layer_99")
    with pytest.raises(ValueError, match="not found in pretrained SAEs directory"):
        SAE.from_pretrained("qwen3-instruct-sea", "x")


def test_local_release_loads_with_metadata(local_release, tiny_qwen3_dir):
    release, sae_id, original = local_release
    sae = SAE.from_pretrained(release, sae_id)
    torch.testing.assert_close(sae.W_enc, original.W_enc)
    assert sae.cfg.metadata.neuronpedia_id == "tiny/1-mine-res"  # the SAELens 6.x gap, closed
    assert sae.cfg.metadata.context_size == 64 and sae.cfg.metadata.prepend_bos is False
    assert sae.cfg.metadata.hook_name == "blocks.1.hook_resid_post"
    assert sae.cfg.metadata.model_name == str(tiny_qwen3_dir)


def test_corrupt_and_missing_files(local_release, tmp_path):
    release, sae_id, _ = local_release
    folder = tmp_path / "suite" / "resid_post" / "layer_1"
    (folder / "sae_weights.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00garbage!")
    with pytest.raises(SAEWeightsUnavailableError, match="corrupt or truncated"):
        SAE.from_pretrained(release, sae_id)
    (folder / "cfg.json").unlink()
    with pytest.raises(SAEWeightsUnavailableError, match="has no cfg.json"):
        SAE.from_pretrained(release, sae_id)


def _qwen_scope_file(path, d_in=64, d_sae=128):
    torch.manual_seed(1)
    torch.save(
        {
            "W_enc": torch.randn(d_sae, d_in),
            "W_dec": torch.randn(d_in, d_sae),
            "b_enc": torch.randn(d_sae),
            "b_dec": torch.randn(d_in),
        },
        path,
    )
    return path


def test_qwen_scope_file_loads_safely_on_an_instruct_model(tmp_path, tiny_qwen3_dir):
    from qwen3_scope import load_model

    path = _qwen_scope_file(tmp_path / "layer1.sae.pt")
    raw = torch.load(path, weights_only=True)
    sae = load_qwen_scope_file(path, model=str(tiny_qwen3_dir), k=8)
    torch.testing.assert_close(sae.W_enc, raw["W_enc"].T)
    assert sae.cfg.metadata.hook_name == "blocks.1.hook_resid_post" and sae.cfg.k == 8
    model = load_model(tiny_qwen3_dir, backend="hooked")
    model.add_sae(sae)
    with torch.no_grad():
        _, cache = model.run_with_cache(torch.tensor([[5, 6, 7, 8]]))
    feats = cache["blocks.1.hook_resid_post.hook_sae_acts_post"]
    assert ((feats != 0).sum(-1) == 8).all()  # TopK k=8 really ran on the instruct model's residual
    bridge_sae = load_qwen_scope_file(path, model=str(tiny_qwen3_dir), backend="bridge")
    assert bridge_sae.cfg.metadata.hook_name == "blocks.1.hook_out"
    with pytest.raises(SAEModelMismatchError, match="residual stream is 2048 wide"):
        load_qwen_scope_file(path, model="Qwen/Qwen3-1.7B")


class _Exploit:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def test_pickle_with_code_is_refused(tmp_path, tiny_qwen3_dir):
    path = tmp_path / "layer0.sae.pt"
    with open(path, "wb") as handle:
        pickle.dump({"W_enc": _Exploit()}, handle)
    with pytest.raises(UnsafeWeightsError, match="refusing to load"):
        load_qwen_scope_file(path, model=str(tiny_qwen3_dir))
    assert loaders.NAMED_PRETRAINED_SAE_LOADERS["qwen_scope"].__module__ == "qwen3_scope.saes.loaders"


def test_user_suite_becomes_a_release_with_one_call(tmp_path, tiny_qwen3_dir, monkeypatch):
    from qwen3_scope.cli import main
    from qwen3_scope.releases import list_release_saes, register_suite

    suite = tmp_path / "my_suite"
    make_topk_sae(hook="blocks.0.hook_resid_post", model=str(tiny_qwen3_dir), seed=1).save_model(suite / "a")
    make_topk_sae(hook="blocks.1.hook_mlp_out", model=str(tiny_qwen3_dir), seed=2).save_model(suite / "b")
    key = tiny_qwen3_dir.name.lower()
    user_file = tmp_path / "user.yaml"
    monkeypatch.setenv("QWEN3_SCOPE_RELEASES", str(user_file))
    release = register_suite(suite, metrics={f"{key}/mlp_out/layer_1": {"l0": 8.0, "variance_explained": 0.7}})
    assert release == "qwen3-scope-local-my-suite"
    sae = SAE.from_pretrained(release, f"{key}/mlp_out/layer_1")
    assert sae.cfg.metadata.hook_name == "blocks.1.hook_mlp_out"
    table = list_release_saes(key).set_index("sae_id")
    assert (
        table.loc[f"{key}/mlp_out/layer_1", "l0"] == 8.0 and table.loc[f"{key}/resid_post/layer_0", "source"] == "local"
    )
    assert main(["releases", "add", str(suite), "--release", "again"]) == 0
    assert "again" in yaml.safe_load(user_file.read_text())
    assert main(["releases", "add", str(tmp_path / "nowhere")]) == 2
