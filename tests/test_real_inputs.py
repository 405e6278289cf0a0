"""Device/dtype checks, the config-derived CLIs, portable artifacts and real dataset shapes (issue 11)."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from conftest import TINY_TEXT, suite_for


# ---------------------------------------------------------------------------------------------- devices
def test_device_and_dtype_are_checked_with_clear_errors():
    from qwen3_scope.core.devices import DeviceError, PlacementOptions, resolve_device, resolve_dtype, resolve_placement

    assert resolve_device(None) == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("CPU") == "cpu" and resolve_dtype("bf16", "cpu") == torch.bfloat16
    if not torch.backends.cuda.is_built():
        with pytest.raises(
            DeviceError,
            match="cuda requested but this torch has no CUDA: install a CUDA build of torch or pass --device cpu",
        ):
            resolve_device("cuda")
    elif torch.cuda.is_available():
        with pytest.raises(DeviceError, match="CUDA device"):
            resolve_device(f"cuda:{torch.cuda.device_count()}")
    with pytest.raises(DeviceError, match="unknown device 'tpu'"):
        resolve_device("tpu")
    with pytest.raises(DeviceError, match="float16 is not supported on the CPU"):
        resolve_dtype("float16", "cpu")
    with pytest.raises(DeviceError, match="unknown dtype 'int8'"):
        resolve_dtype("int8", "cpu")
    placement = resolve_placement("cpu", "bfloat16", None, None)
    assert (placement.sae_device, placement.dtype, placement.sae_dtype) == ("cpu", torch.bfloat16, torch.float32)
    with pytest.raises(DeviceError):
        PlacementOptions(device="cpu", sae_dtype="float16")


@pytest.mark.parametrize(
    "argv",
    [
        ["train", "--device", "cuda"],
        ["eval", "--device", "cuda"],
        ["steer", "refusal", "--device", "cuda"],
        ["train", "--dtype", "float16", "--device", "cpu"],
    ],
)
def test_cli_rejects_an_unavailable_device_before_loading_anything(argv, capsys):
    from qwen3_scope.cli import main

    if argv[-1] == "cuda" and torch.backends.cuda.is_built():
        pytest.skip("this torch has CUDA: the no-CUDA error cannot occur here")  # CPU CI always runs it
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "cuda requested but this torch has no CUDA" in err or "float16 is not supported on the CPU" in err
    assert "Traceback" not in err


# ---------------------------------------------------------------------------------------------- config CLI
def _parser():
    from qwen3_scope.cli import build_parser

    return build_parser()


def test_train_cli_is_derived_from_the_config_dataclass(tmp_path):
    from qwen3_scope.core.config_cli import cli_fields, config_from_args
    from qwen3_scope.training.config import SuiteTrainingConfig

    parser = _parser()
    train = parser._subparsers._group_actions[0].choices["train"]
    dests = {a.dest for a in train._actions}
    assert {f.name for f in cli_fields(SuiteTrainingConfig)} <= dests  # every field is an option, none hand-copied
    for field in dataclasses.fields(SuiteTrainingConfig):
        assert field.metadata.get("help"), f"{field.name} is undocumented"
    config_file = tmp_path / "suite.yaml"
    config_file.write_text("model: organism\nlayers: 0-1\ntraining_tokens: 20k\nsites: [resid_post]\nseed: 3\n")
    args = parser.parse_args(["train", "--config", str(config_file), "--seed", "5", "--tokens", "30k"])
    config = config_from_args(SuiteTrainingConfig, args)
    assert (config.layers, config.sites, config.training_tokens, config.seed) == ([0, 1], ["resid_post"], 30_000, 5)
    assert config.device in ("cpu", "cuda") and config.sae_dtype == "float32"


def test_config_file_errors_are_clear(tmp_path, capsys):
    from qwen3_scope.cli import main

    bad = tmp_path / "bad.yaml"
    bad.write_text("model: organism\nlearning_rate: 3\n")
    assert main(["train", "--config", str(bad)]) == 2
    assert "unknown key(s) ['learning_rate'] for SuiteTrainingConfig" in capsys.readouterr().err
    assert main(["train", "--config", str(tmp_path / "missing.yaml")]) == 2
    assert "does not exist" in capsys.readouterr().err
    bad.write_text("n_batches: 2\nbogus: 1\n")
    assert main(["eval", "--config", str(bad)]) == 2
    assert "unknown key(s) ['bogus'] for SuiteEvalConfig" in capsys.readouterr().err


def test_eval_and_steer_take_placement_options():
    parser = _parser()
    args = parser.parse_args(
        ["eval", "--device", "cpu", "--dtype", "bfloat16", "--sae-dtype", "float32", "--batches", "3"]
    )
    from qwen3_scope.core.config_cli import config_from_args
    from qwen3_scope.evaluation.suite_eval import SuiteEvalConfig

    config = config_from_args(SuiteEvalConfig, args)
    assert (config.device, config.dtype, config.sae_dtype, config.n_batches) == ("cpu", "bfloat16", "float32", 3)
    args = parser.parse_args(["steer", "refusal", "--device", "cpu", "--sae-device", "cpu", "--dtype", "bfloat16"])
    from qwen3_scope.steering.cli import _shared_kwargs
    from qwen3_scope.steering.refusal import RefusalStudyConfig

    cfg = RefusalStudyConfig(**_shared_kwargs(args))
    assert (cfg.device, cfg.sae_device, cfg.dtype) == ("cpu", "cpu", "bfloat16")


# ---------------------------------------------------------------------------------------------- portability
def test_an_sae_whose_model_is_not_here_says_which_model_it_needs(tiny_qwen3_dir):
    from sae_lens import SAE

    from qwen3_scope.evaluation.suite_eval import ModelNotAvailableError, evaluate_suite

    sae = SAE.from_dict(
        {
            "architecture": "topk",
            "d_in": 64,
            "d_sae": 128,
            "k": 8,
            "dtype": "float32",
            "device": "cpu",
            "apply_b_dec_to_input": False,
            "metadata": {"hook_name": "blocks.0.hook_resid_post", "model_name": "my-finetune", "prepend_bos": False},
        }
    )
    with pytest.raises(ModelNotAvailableError, match=r"trained on model 'my-finetune'.*--model /path/to/my-finetune"):
        evaluate_suite([("a", sae)])


def test_portable_names():
    from qwen3_scope.core.portable import machine_paths_in, portable_dataset_name, portable_model_name
    from qwen3_scope.model.family import resolve_model

    assert portable_model_name(resolve_model("Qwen/Qwen3-4B")) == "Qwen/Qwen3-4B"
    assert portable_model_name(resolve_model("organism")) == "organism"
    assert portable_dataset_name("/data/corpora/chats.jsonl") == "chats.jsonl"
    assert (
        portable_dataset_name("HuggingFaceFW/fineweb") == "HuggingFaceFW/fineweb"
        and portable_dataset_name(None) is None
    )
    assert machine_paths_in('{"dataset_path": "/tmp/x/data"}') and not machine_paths_in('{"model_name": "organism"}')


# ---------------------------------------------------------------------------------------------- datasets
@pytest.fixture(scope="module")
def tok(tiny_qwen3_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(tiny_qwen3_dir))


def test_sae_lens_pretokenized_dataset_is_read_as_is(tok, tiny_qwen3_dir, tmp_path):
    from sae_lens import PretokenizeRunnerConfig
    from sae_lens.pretokenize_runner import PretokenizeRunner

    from qwen3_scope.data import prepare_data

    (tmp_path / "text.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in TINY_TEXT * 60))
    PretokenizeRunner(
        PretokenizeRunnerConfig(
            tokenizer_name=str(tiny_qwen3_dir),
            dataset_path="json",
            data_files=[str(tmp_path / "text.jsonl")],
            context_size=16,
            begin_batch_token=None,
            sequence_separator_token="eos",
            num_proc=1,
            shuffle=False,
            save_path=str(tmp_path / "pretok"),
        )
    ).run()
    assert (tmp_path / "pretok" / "sae_lens.json").is_file()
    data = prepare_data(tok, 400, 64, tmp_path / "d", str(tmp_path / "pretok"), context_size=16)
    assert data.info["pretokenized"] and data.info["sae_lens_metadata"]["tokenizer_name"] == str(tiny_qwen3_dir)
    from datasets import load_from_disk

    source = [list(map(int, row)) for row in load_from_disk(str(tmp_path / "pretok"))["input_ids"]]
    held = data.info[
        "heldout_documents"
    ]  # the first rows are held out; the rest are the training windows, as they were
    assert data.train["input_ids"] == source[held : held + len(data.train)]


def test_pretokenized_dataset_from_another_tokenizer_is_refused(tok, tmp_path):
    import datasets

    from qwen3_scope.data import DatasetSourceError, prepare_data, tokenizer_fingerprint

    datasets.Dataset.from_dict({"input_ids": [[1, 2, 3, 5000]] * 50}).save_to_disk(str(tmp_path / "wide"))
    with pytest.raises(DatasetSourceError, match="token id 5000, outside this model's vocabulary of 3"):
        prepare_data(tok, 100, 8, tmp_path / "d", str(tmp_path / "wide"), context_size=4)
    datasets.Dataset.from_dict({"input_ids": [[5, 6, 7, 8]] * 50}).save_to_disk(str(tmp_path / "other"))
    print_ = tokenizer_fingerprint(tok)
    other = {**print_, "special_tokens": {**print_["special_tokens"], "<|im_end|>": 99}}
    (tmp_path / "other" / "sae_lens.json").write_text(
        json.dumps({"tokenizer_name": "x", "qwen3_scope_tokenizer": other})
    )
    with pytest.raises(DatasetSourceError, match="made with another tokenizer \\(special_tokens"):
        prepare_data(tok, 100, 8, tmp_path / "d", str(tmp_path / "other"), context_size=4)


def test_dataset_without_a_document_column_fails_before_any_model(tmp_path):
    import datasets

    from qwen3_scope.data import DatasetSourceError, check_source

    datasets.Dataset.from_dict({"label": [1, 2]}).to_parquet(str(tmp_path / "labels.parquet"))
    with pytest.raises(DatasetSourceError, match="rows need 'messages'.*'text', or token ids"):
        check_source(str(tmp_path / "labels.parquet"))


def test_chat_thinking_mode_and_a_stated_mix(tok, tmp_path):
    from qwen3_scope.data import prepare_data

    # prompts (a trailing user turn): the generation prompt differs between the modes (non-thinking: an empty think block)
    chats = [{"messages": [{"role": "user", "content": "hi there"}]}] * 200
    (tmp_path / "chats.jsonl").write_text("".join(json.dumps(r) + "\n" for r in chats))
    (tmp_path / "plain.txt").write_text("\n".join(TINY_TEXT * 200))
    thinking = prepare_data(tok, 200, 16, tmp_path / "t", str(tmp_path / "chats.jsonl"), context_size=8, thinking=True)
    plain = prepare_data(tok, 200, 16, tmp_path / "n", str(tmp_path / "chats.jsonl"), context_size=8)
    assert (
        "<think>\n\n</think>" in plain.heldout[0]["text"] and "<think>\n\n</think>" not in thinking.heldout[0]["text"]
    )
    mix = prepare_data(
        tok,
        3000,
        16,
        tmp_path / "m",
        [str(tmp_path / "chats.jsonl"), str(tmp_path / "plain.txt")],
        context_size=8,
        weights=[1, 3],
    )
    shares = mix.info["mix_tokens"]
    assert mix.info["kind"] == "mix" and mix.info["weights"] == [0.25, 0.75]
    assert shares["plain.txt"] / sum(shares.values()) == pytest.approx(0.75, abs=0.05)


def test_hub_datasets_stream_through_the_datasets_library(tmp_path, monkeypatch):
    """The hub code path up to the network boundary: `load_dataset(name, streaming=True)` (a local dataset
    directory stands in for the hub); offline, a hub name is refused before anything loads."""
    from qwen3_scope.data import DatasetSourceError, check_source, stream_hub_dataset

    (tmp_path / "hub_like").mkdir()
    (tmp_path / "hub_like" / "train.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in TINY_TEXT))
    rows = stream_hub_dataset(str(tmp_path / "hub_like"))
    assert [r["text"] for r in rows] == TINY_TEXT
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DatasetSourceError, match="cannot be read offline"):
        check_source("HuggingFaceFW/fineweb-edu")


def test_wandb_logging_is_opt_in_through_sae_lens_logging_config(tiny_qwen3_dir, tmp_path, monkeypatch):
    from qwen3_scope.training.config import SuiteTrainingConfig
    from qwen3_scope.training.suite import train_suite

    assert suite_for(str(tiny_qwen3_dir), "qwen-scope", special_token_ids=[0]).logging_config().log_to_wandb is False
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    (tmp_path / "chats.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in TINY_TEXT * 300))
    config = SuiteTrainingConfig(
        model=str(tiny_qwen3_dir),
        recipe="qwen-scope",
        out=tmp_path / "suite",
        layers=[0],
        training_tokens=2048,
        dataset=str(tmp_path / "chats.jsonl"),
        wandb_project="qwen3-scope-test",
        device="cpu",
        runner_overrides=dict(
            context_size=32, train_batch_size_tokens=256, store_batch_size_prompts=4, n_batches_in_buffer=16
        ),
    )
    result = train_suite(config, progress=False)
    assert result.manifest["config"]["wandb_project"] == "qwen3-scope-test"
    runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and any(runs[0].rglob("*.wandb"))
