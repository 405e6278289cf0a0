"""Layer 1, the model: the Qwen3 family table, sites and hook names, chat formatting, loading in three backends, the refusal judge, language detection, loss masks."""
