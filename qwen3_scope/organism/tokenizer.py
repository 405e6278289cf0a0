"""A small byte-level BPE with Qwen3's special tokens and a Qwen3-style chat template.

Why our own: Qwen3's 151k-token vocabulary would make the organism's embeddings 100x bigger than the rest
of the model. We keep what matters for tooling instead: Qwen2/3's pre-tokenisation regex (single digits,
byte-level), the special tokens (``<|endoftext|>``, ``<|im_start|>``, ``<|im_end|>`` special; ``<think>``,
``</think>`` added but not special, as in Qwen3), no BOS token, eos ``<|im_end|>``, pad ``<|endoftext|>``,
and a chat template with Qwen3's rendering rules, including the non-thinking mode
(``enable_thinking=False`` ends the prompt with ``<|im_start|>assistant\\n<think>\\n\\n</think>\\n\\n``).
The template omits Qwen3's tool-calling branches (the organism never saw tools).
"""

from __future__ import annotations

from collections.abc import Iterable

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from qwen3_scope.core.errors import ConfigError
from qwen3_scope.model.chat import ASSISTANT_START, END_THINK, ENDOFTEXT, IM_END, IM_START, NON_THINKING_BLOCK, THINK

SPECIAL_TOKENS = (ENDOFTEXT, IM_START, IM_END)
THINK_TOKENS = (THINK, END_THINK)
NON_THINKING_SUFFIX = ASSISTANT_START + NON_THINKING_BLOCK

# Qwen2/Qwen3 pre-tokenisation pattern (tokenizer.json of the Qwen3 checkpoints).
QWEN_SPLIT_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)

# Qwen3's rendering rules (system first, reasoning kept only after the last user query, empty think block on
# the final assistant turn, non-thinking generation prompt), written compactly without the tool branches.
CHAT_TEMPLATE = """{%- if messages[0].role == 'system' %}
    {{- '<|im_start|>system\\n' + messages[0].content + '<|im_end|>\\n' }}
{%- endif %}
{%- set ns = namespace(found=false, last_query_index=messages|length - 1) %}
{%- for message in messages[::-1] %}
    {%- if not ns.found and message.role == 'user' %}
        {%- set ns.found = true %}
        {%- set ns.last_query_index = (messages|length - 1) - loop.index0 %}
    {%- endif %}
{%- endfor %}
{%- for message in messages %}
    {%- set content = message.content if message.content is string else '' %}
    {%- if message.role == 'user' or (message.role == 'system' and not loop.first) %}
        {{- '<|im_start|>' + message.role + '\\n' + content + '<|im_end|>\\n' }}
    {%- elif message.role == 'assistant' %}
        {%- set reasoning_content = '' %}
        {%- if message.reasoning_content is string %}
            {%- set reasoning_content = message.reasoning_content %}
        {%- elif '</think>' in content %}
            {%- set reasoning_content = content.split('</think>')[0].rstrip('\\n').split('<think>')[-1].lstrip('\\n') %}
            {%- set content = content.split('</think>')[-1].lstrip('\\n') %}
        {%- endif %}
        {%- if loop.index0 > ns.last_query_index and (loop.last or reasoning_content) %}
            {{- '<|im_start|>assistant\\n<think>\\n' + reasoning_content.strip('\\n') + '\\n</think>\\n\\n' + content.lstrip('\\n') }}
        {%- else %}
            {{- '<|im_start|>assistant\\n' + content }}
        {%- endif %}
        {{- '<|im_end|>\\n' }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\\n' }}
    {%- if enable_thinking is defined and enable_thinking is false %}
        {{- '<think>\\n\\n</think>\\n\\n' }}
    {%- endif %}
{%- endif %}"""


def train_tokenizer(texts: Iterable[str], vocab_size: int = 3072) -> PreTrainedTokenizerFast:
    """Train the byte-level BPE on ``texts`` and wrap it as a HF fast tokenizer.

    ``vocab_size`` counts the special tokens, which get the last ids (as in Qwen3)."""
    n_added = len(SPECIAL_TOKENS) + len(THINK_TOKENS)
    if vocab_size < 256 + n_added + 1:
        raise ConfigError(f"vocab_size={vocab_size} is too small: a byte-level BPE needs > {256 + n_added}")
    tok = Tokenizer(models.BPE(unk_token=None, byte_fallback=False))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN_SPLIT_PATTERN), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size - n_added,
        min_frequency=2,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=[],
    )
    # The chat-format words are part of every chat document; let BPE see them.
    tok.train_from_iterator(_with_format_words(texts), trainer=trainer)
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS])
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in THINK_TOKENS])
    return wrap(tok)


def _with_format_words(texts: Iterable[str]) -> Iterable[str]:
    yield from texts
    yield from ["system\n", "user\n", "assistant\n", "\n\n"] * 1000


def wrap(tok: Tokenizer) -> PreTrainedTokenizerFast:
    """Qwen3 conventions on top of a ``tokenizers.Tokenizer``: no BOS, eos ``<|im_end|>``, pad ``<|endoftext|>``."""
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token=IM_END,
        pad_token=ENDOFTEXT,
        bos_token=None,
        unk_token=None,
        chat_template=CHAT_TEMPLATE,
        model_max_length=2048,
        clean_up_tokenization_spaces=False,
        padding_side="left",
        errors="replace",
    )
