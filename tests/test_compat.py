"""Every private SAELens/torch API in qwen3_scope.core.compat, exercised on real objects: an upgrade that changes one
fails here, naming the symbol (see compat.PRIVATE_APIS for the reason each is used)."""

from __future__ import annotations

import pytest
import torch
from transformer_lens.hook_points import HookPoint

from qwen3_scope.core import compat
from qwen3_scope.core.errors import IncompatibleVersionError, PrivateAPIError


def test_every_private_api_has_a_reason_and_is_tested_here():
    symbols = [api.symbol for api in compat.PRIVATE_APIS]
    assert len(symbols) == len(set(symbols)) == 8
    source = open(__file__).read()
    for api in compat.PRIVATE_APIS:
        assert len(api.reason) > 40, api.symbol
        assert api.symbol.rsplit(".", 1)[-1].split("/")[0] in source, f"no test names {api.symbol}"


def test_storage_Use_Count_counts_references():
    assert compat.storage_use_count_available(), "torch._C._storage_Use_Count is gone: the buffer pool will allocate"
    t = torch.zeros(8)
    storage = t.untyped_storage()
    alone = compat.storage_use_count(storage)
    view = t[2:]
    assert compat.storage_use_count(storage) > alone  # _storage_Use_Count sees the view
    del view


def test_forward_hooks_and_backward_hooks_are_seen():
    hook = HookPoint()
    assert not compat.module_has_hooks(hook)  # torch.nn.Module._forward_hooks / _backward_hooks
    handle = hook.register_forward_hook(lambda *a: None)
    assert compat.module_has_hooks(hook)
    handle.remove()
    assert not compat.module_has_hooks(hook)


def test_embedding_bag_per_sample_weights_backward_is_a_rowwise_dot():
    op = compat.per_sample_weights_backward()  # torch.ops.aten._embedding_bag_per_sample_weights_backward
    torch.manual_seed(0)
    grad, weight = torch.randn(3, 4), torch.randn(5, 4)
    indices, offsets = torch.tensor([0, 2, 4, 1]), torch.tensor([0, 2, 3])
    got = op(grad, weight, indices, offsets, torch.tensor([0, 0, 1, 2]), 0, -1)
    want = torch.stack([grad[0] @ weight[0], grad[0] @ weight[2], grad[1] @ weight[4], grad[2] @ weight[1]])
    torch.testing.assert_close(got, want)


@pytest.fixture(scope="module")
def store(tiny_qwen3_dir):
    from datasets import Dataset
    from sae_lens.training.activations_store import ActivationsStore

    import qwen3_scope

    model = qwen3_scope.load_model(tiny_qwen3_dir)
    torch.manual_seed(0)
    data = Dataset.from_dict({"input_ids": torch.randint(5, 300, (16, 8)).tolist()})
    hooks = ["blocks.0.hook_resid_post", "blocks.1.hook_resid_post"]
    return ActivationsStore.from_config_multi_hook(
        model,
        dataset=data,
        hook_names=hooks,
        hook_d_ins={h: 64 for h in hooks},
        streaming=False,
        context_size=8,
        n_batches_in_buffer=2,
        total_training_tokens=10**6,
        store_batch_size_prompts=4,
        train_batch_size_tokens=16,
        prepend_bos=False,
        exclude_special_tokens=torch.tensor([0, 1]),
    ), hooks


def test_get_filtered_multi_hook_llm_batch_and_iterate_filtered_multi_hook_activations(store):
    store, hooks = store
    batch = compat.filtered_multi_hook_batch(store)  # ActivationsStore._get_filtered_multi_hook_llm_batch
    assert set(batch) == set(hooks) and batch[hooks[0]].shape[-1] == 64
    stream = compat.filtered_multi_hook_activations(store)  # ActivationsStore._iterate_filtered_multi_hook_activations
    assert set(next(stream)) == set(hooks)


def test_iterate_tokenized_sequences_restarts_the_store(store):
    store, _ = store
    next(store.iterable_sequences)
    next(store.iterable_sequences)
    compat.restart_tokenized_sequences(store)  # ActivationsStore._iterate_tokenized_sequences
    assert next(store.iterable_sequences).tolist() == list(store.dataset[0]["input_ids"])


def test_set_sae_metadata_fills_saelens_metadata(tiny_qwen3_dir, tmp_path):
    from datasets import Dataset
    from sae_lens import LoggingConfig, MultiSAETrainingRunner, MultiSAETrainingRunnerConfig
    from sae_lens.saes.topk_sae import TopKTrainingSAEConfig

    import qwen3_scope

    model = qwen3_scope.load_model(tiny_qwen3_dir)
    data = Dataset.from_dict({"input_ids": torch.randint(5, 300, (16, 8)).tolist()})
    cfg = MultiSAETrainingRunnerConfig(
        saes={"a": TopKTrainingSAEConfig(d_in=64, d_sae=128, k=4)},
        hook_names={"a": "blocks.1.hook_resid_post"},
        model_name=str(tiny_qwen3_dir),
        dataset_path="",
        context_size=8,
        prepend_bos=False,
        train_batch_size_tokens=16,
        training_tokens=64,
        store_batch_size_prompts=4,
        n_batches_in_buffer=2,
        streaming=False,
        logger=LoggingConfig(log_to_wandb=False),
        output_path=None,
        checkpoint_path=str(tmp_path),
    )
    runner = MultiSAETrainingRunner(cfg, override_dataset=data, override_model=model)
    compat.set_sae_metadata(runner)  # MultiSAETrainingRunner._set_sae_metadata
    meta = runner.saes["a"].cfg.metadata
    assert (meta.hook_name, meta.context_size, meta.prepend_bos) == ("blocks.1.hook_resid_post", 8, False)


def test_a_missing_private_method_names_the_symbol():
    with pytest.raises(PrivateAPIError, match="_set_sae_metadata"):
        compat.set_sae_metadata(object())


@pytest.mark.parametrize(
    ("installed", "ok"), [("6.54.0", True), ("6.54.12", True), ("6.55.0", False), ("7.0.0", False)]
)
def test_sae_lens_version_policy(installed, ok, monkeypatch):
    monkeypatch.delenv(compat.SKIP_VERSION_CHECK_ENV, raising=False)
    if ok:
        assert compat.check_sae_lens_version(installed) == installed
    else:
        with pytest.raises(IncompatibleVersionError, match=r"pip install 'sae-lens>=6.54,<6.55'"):
            compat.check_sae_lens_version(installed)
        monkeypatch.setenv(compat.SKIP_VERSION_CHECK_ENV, "1")
        assert compat.check_sae_lens_version(installed) == installed


def test_queue_callback_runs_after_every_gradient_is_accumulated():
    """_execution_engine.queue_callback: the callback sees the finished gradients of the backward it was queued in."""
    weight = torch.nn.Parameter(torch.ones(3))
    seen = []

    def hook(grad):
        compat.queue_after_backward(lambda: seen.append(weight.grad.clone()))
        return grad

    weight.register_hook(hook)
    (weight * torch.tensor([1.0, 2.0, 3.0])).sum().backward()
    assert len(seen) == 1 and torch.equal(seen[0], torch.tensor([1.0, 2.0, 3.0]))


def test_naming_spells_saelens_file_names():
    """qwen3_scope.naming spells SAELens' file names so that it stays importable without SAELens; they must agree."""
    from sae_lens import constants

    from qwen3_scope import naming

    assert naming.SAE_CFG_FILENAME == constants.SAE_CFG_FILENAME
    assert naming.SAE_WEIGHTS_FILENAME == constants.SAE_WEIGHTS_FILENAME
    assert naming.SPARSITY_FILENAME == constants.SPARSITY_FILENAME
    assert naming.RUNNER_CFG_FILENAME == constants.RUNNER_CFG_FILENAME
